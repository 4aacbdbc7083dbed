"""Nothing wrong is ever silent (issue 23), here: what a sweep's outcome must not hide: a multirun whose runs
failed exits 1; the analysis counts every run exactly once or names the file it skipped; sweep.status
names what it cannot trust and never crashes; sweep.rerun --failed refuses a run it cannot retry by its
directory and file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import TINY_RUN, one_error_line, snapshot, tiered, train_in_process, tree, two_run_sweep

import sweep.slot as slot_mod
import sweep.stack as stack_mod
from analysis.collect import load_sweep
from sweep import results, status

# ----------------------------------------------------- class 3: a multirun whose runs failed exits 1


def _fail_seeds(*seeds: int):
    """A ``train_epoch`` that raises for runs of these seeds (a fault no check can foresee)."""

    real = slot_mod.train_epoch

    def train_epoch(cohort, epoch):
        for cfg in cohort.cfgs:
            if cfg["seed"] in seeds:
                raise ValueError(f"an injected fault in seed {cfg['seed']}")
        return real(cohort, epoch)

    return train_epoch


MULTIRUN_ENDS = [
    "all ok",
    "the last run failed",
    "the first run failed",
    "every run failed",
    "a run diverged",
]


# the default tier: a failure that a later success must not mask, and a divergence that is a result
@pytest.mark.parametrize(
    "failing, code, needle",
    tiered(
        [
            (None, 0, None),
            (
                1,
                1,
                "error: 1 of 2 runs of the grid failed (L2_dense1_dense1_s1: ValueError: an injected fault",
            ),
            (
                0,
                1,
                "error: 1 of 2 runs of the grid failed (L2_dense1_dense1_s0: ValueError: an injected fault",
            ),
            (
                "all",
                1,
                "error: 2 of 2 runs of the grid failed (L2_dense1_dense1_s0: ValueError: an injected fault",
            ),
            ("diverged", 0, None),  # a diverged run is a result (a single run that diverged exits 0 too)
        ],
        MULTIRUN_ENDS,
        default={"the first run failed", "a run diverged"},
    ),
)
def test_a_multirun_exits_1_when_a_run_failed_and_sweep_status_agrees(
    tmp_path, monkeypatch, capsys, failing, code, needle
):

    if failing == "diverged":
        real = stack_mod.recon_per_image
        monkeypatch.setattr(stack_mod, "recon_per_image", lambda *a: real(*a) * float("inf"))
    elif failing is not None:
        monkeypatch.setattr(
            slot_mod, "train_epoch", _fail_seeds(*((0, 1) if failing == "all" else (failing,)))
        )
    got = train_in_process(monkeypatch, "-m", f"results_dir={tmp_path}", *TINY_RUN, "seed=0,1")
    err = capsys.readouterr().err.strip().splitlines()
    assert got == code, err[-5:]
    if needle is not None:
        assert needle in err[-1] and "python -m sweep.rerun --failed" in err[-1], err[-1]
    assert status.main([str(tmp_path / "sweeps" / "default")]) == code


# ------------------------------------------------ class 2: the analysis counts every run exactly once


def _rewrite(path: Path, rows) -> None:
    t = pq.read_table(path)
    results.write_parquet(path, rows(t.to_pylist()))


def _zero_rows(sweep: Path) -> list[Path]:
    _rewrite(sweep / "L25_dense1_dense1_s1" / "run.parquet", lambda rows: rows[:0])
    return [sweep]


def _dup_eval(sweep: Path) -> list[Path]:
    _rewrite(sweep / "L25_dense1_dense1_s1" / "eval.parquet", lambda rows: rows + rows)
    return [sweep]


def _dup_run(sweep: Path) -> list[Path]:
    _rewrite(sweep / "L25_dense1_dense1_s1" / "run.parquet", lambda rows: rows + rows)
    return [sweep]


def _dup_dim(sweep: Path) -> list[Path]:
    _rewrite(sweep / "L25_dense1_dense1_s1" / "dims.parquet", lambda rows: rows + rows[:1])
    return [sweep]


def _passed_twice(sweep: Path) -> list[Path]:
    return [sweep, sweep.parent / ".." / "sweeps" / sweep.name]


def _with_its_parent(sweep: Path) -> list[Path]:
    return [sweep, sweep.parent]


def _linked_run(sweep: Path) -> list[Path]:
    (sweep / "zz_link").symlink_to(sweep / "L25_dense1_dense1_s1", target_is_directory=True)
    return [sweep]


def _linked_sweep(sweep: Path) -> list[Path]:
    (sweep.parent / "alias").symlink_to(sweep, target_is_directory=True)
    return [sweep, sweep.parent / "alias"]


def _nested_run(sweep: Path) -> list[Path]:
    shutil.copytree(sweep / "L25_dense1_dense1_s0", sweep / "L25_dense1_dense1_s1" / "other" / "L25_x_s0")
    return [sweep]


# (case, how to break a 2-run sweep, runs counted, the skipped path's end, reason needle)
MISCOUNTS = [
    ("run.parquet with 0 rows", _zero_rows, 1, "s1/run.parquet", "0 rows where a run has exactly one"),
    (
        "eval.parquet with a repeated row",
        _dup_eval,
        2,
        "s1/eval.parquet",
        "2 rows where a run has exactly one",
    ),
    ("run.parquet with a repeated row", _dup_run, 1, "s1/run.parquet", "2 rows where a run has exactly one"),
    ("dims.parquet with a repeated dim", _dup_dim, 2, "s1/dims.parquet", "1 repeated (dim) rows"),
    ("the same sweep passed twice", _passed_twice, 2, "sweeps/../sweeps/synthetic", "counted once"),
    ("a sweep and its parent", _with_its_parent, 2, "synthetic", "the same directory as"),
    ("the sweep and a link to it", _linked_sweep, 2, "sweeps/alias", "the same directory as"),
    ("a link to a run inside the sweep", _linked_run, 2, None, None),  # not followed: counted once
    ("a run nested in a run", _nested_run, 2, "other/L25_x_s0/run.parquet", "inside the run directory"),
]


@pytest.mark.parametrize("case, breaks, n, path_end, reason", MISCOUNTS, ids=[m[0] for m in MISCOUNTS])
def test_every_run_counts_once_or_the_file_that_breaks_it_is_named(
    tmp_path, capsys, case, breaks, n, path_end, reason
):
    roots = breaks(two_run_sweep(tmp_path))
    before = snapshot(tmp_path)
    sweep = load_sweep(roots if len(roots) > 1 else roots[0])
    assert len(sweep.runs) == n and sweep.runs["run_name"].is_unique, sweep.runs["run_dir"].tolist()
    # a kept run's dimensions once each; none of a run whose row was skipped
    assert not sweep.dims.duplicated(["run_dir", "dim"]).any()
    assert set(sweep.dims["run_dir"]) <= set(sweep.runs["run_dir"])
    if path_end is None:
        assert sweep.skipped == []
    else:
        named = [(p, r) for p, r in sweep.skipped if p.endswith(path_end)]
        assert len(named) == 1 and all(reason in r for _, r in sweep.skipped), sweep.skipped
        assert f"warning: skipped {named[0][0]}: " in capsys.readouterr().err
    assert snapshot(tmp_path) == before


INSIDE = "<inside a run>"  # placeholder: a directory below a run directory of another sweep
NESTED = [
    (["-m", f"hydra.sweep.dir={INSIDE}", "seed=0,1"], "is inside"),
    ([f"hydra.run.dir={INSIDE}/L2_dense1_dense1_s0"], "is inside"),
    ([f"hydra.run.dir={INSIDE}/a/b"], "is inside"),  # deeper still
]


@pytest.mark.parametrize("args, needle", NESTED, ids=[" ".join(a) for a, _ in NESTED])
def test_a_run_directory_inside_another_runs_directory_is_refused(
    tmp_path, monkeypatch, capsys, args, needle
):
    other = two_run_sweep(tmp_path / "other") / "L25_dense1_dense1_s0"
    args = [a.replace(INSIDE, str(other / "nested")) for a in args]
    before = snapshot(tmp_path)
    assert train_in_process(monkeypatch, *args, f"results_dir={tmp_path}", *TINY_RUN) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{needle} {other}, the directory of another run" in line, line
    assert snapshot(tmp_path) == before


# --------------------------------------------- class 9: the read-only tools check what they read


def _wall_seconds_text(sweep: Path) -> None:
    _rewrite(
        sweep / "L25_dense1_dense1_s1" / "run.parquet", lambda rows: [{**rows[0], "wall_seconds": "abc"}]
    )


def _status_unknown(sweep: Path) -> None:
    _rewrite(sweep / "L25_dense1_dense1_s1" / "run.parquet", lambda rows: [{**rows[0], "status": "great"}])


def _grid(runs) -> object:
    def write(sweep: Path) -> None:
        (sweep / "grid.json").write_text(json.dumps({"schema_version": 1, "runs": runs}))

    return write


# (case, how to break a 2-run sweep, sweep.status arguments, exit code, the line that must name it)
STATUS_INPUTS = [
    (
        "wall_seconds is text",
        _wall_seconds_text,
        [],
        1,
        "unreadable L25_dense1_dense1_s1  run.parquet: ValueError: wall_seconds='abc' is not a number",
    ),
    ("an unknown status", _status_unknown, [], 1, "status='great'; valid: ok, diverged, failed, pruned"),
    (
        "grid.json runs is a string",
        _grid("abc"),
        [],
        0,
        "grid.json is unreadable ('runs' is 'abc', not a list of run directories)",
    ),
    (
        "grid.json runs outside the sweep",
        _grid(["../../x"]),
        [],
        0,
        "run '../../x' is outside the sweep directory",
    ),
    ("grid.json runs absolute", _grid(["/etc"]), [], 0, "run '/etc' is outside the sweep directory"),
    ("grid.json runs of numbers", _grid([1, 2]), [], 0, "not a list of run directories"),
    (
        "--interval -1",
        None,
        ["--watch", "--interval", "-1"],
        2,
        "error: argument --interval: '-1' is not a number of seconds; valid: a finite number > 0",
    ),
    (
        "--interval nan",
        None,
        ["--watch", "--interval", "nan"],
        2,
        "argument --interval: 'nan' is not a number of seconds",
    ),
    (
        "--interval abc",
        None,
        ["--interval", "abc"],
        2,
        "argument --interval: 'abc' is not a number of seconds",
    ),
    (
        "--stale-after -1",
        None,
        ["--stale-after", "-1"],
        2,
        "argument --stale-after: '-1' is not a number of seconds",
    ),
    (
        "--stale-after 0",
        None,
        ["--stale-after", "0"],
        2,
        "argument --stale-after: '0' is not a number of seconds",
    ),
]


@pytest.mark.parametrize("case, breaks, args, code, line", STATUS_INPUTS, ids=[s[0] for s in STATUS_INPUTS])
def test_sweep_status_names_what_it_cannot_trust_and_never_crashes(
    tmp_path, capsys, case, breaks, args, code, line
):
    sweep = two_run_sweep(tmp_path)
    for run in sweep.iterdir():  # what a started run has (runs_on_disk finds runs by it)
        (run / ".hydra").mkdir()
        (run / ".hydra" / "config.yaml").write_text("{}\n")
    _grid(sorted(r.name for r in sweep.iterdir()))(sweep)  # as the launch wrote it
    if breaks is not None:
        breaks(sweep)
    before = snapshot(tmp_path)
    assert status.main([str(sweep), *args]) == code
    captured = capsys.readouterr()
    assert any(line in x for x in (captured.out + captured.err).splitlines()), captured.out + captured.err
    if code == 2:
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    if case.startswith("grid.json"):  # fell back to the run directories on disk: nothing outside followed
        assert "2 runs in the grid (from the run directories on disk" in captured.out
    assert snapshot(tmp_path) == before


# ------------------------- class 9: sweep.rerun --failed and the bench commands refuse in one line


@pytest.fixture(scope="module")
def failed_sweep(tmp_path_factory) -> Path:
    """A 2-run sweep of real runs whose seed-1 run failed in its first epoch (an injected fault)."""
    root = tmp_path_factory.mktemp("failed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(slot_mod, "train_epoch", _fail_seeds(1))
        assert train_in_process(mp, "-m", f"results_dir={root}", *TINY_RUN, "seed=0,1") == 1
    return root / "sweeps" / "default"


RUN1 = "L2_dense1_dense1_s1"


def _rm(name: str):
    return lambda run: (run / ".hydra" / name).unlink()


def _put(name: str, text: str):
    return lambda run: (run / ".hydra" / name).write_text(text)


def _nan_lr(run: Path) -> None:
    import yaml

    cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({**cfg, "lr": float("nan")}))


# (case, how to break the failed run, the one line's needle after "cannot retry <run dir>: <run dir>/.hydra/")
BROKEN_FAILED_RUNS = [
    ("overrides.yaml missing", _rm("overrides.yaml"), "overrides.yaml is missing"),
    ("config.yaml missing", _rm("config.yaml"), "config.yaml is missing"),
    ("config.yaml not YAML", _put("config.yaml", "a: [\n"), "config.yaml is not valid YAML"),
    ("config.yaml a list", _put("config.yaml", "- 1\n"), "config.yaml does not hold a config"),
    ("config.yaml lr nan", _nan_lr, "config.yaml: lr=nan must be a finite number; valid: > 0"),
    ("overrides.yaml not YAML", _put("overrides.yaml", "[\n"), "overrides.yaml is not valid YAML"),
    ("overrides.yaml a mapping", _put("overrides.yaml", "a: 1\n"), "overrides.yaml does not hold a list"),
]


@pytest.mark.parametrize("case, breaks, needle", BROKEN_FAILED_RUNS, ids=[b[0] for b in BROKEN_FAILED_RUNS])
def test_rerun_failed_refuses_a_run_it_cannot_retry_by_its_directory_and_file(
    failed_sweep, tmp_path, capsys, case, breaks, needle
):
    from sweep import rerun

    sweep = shutil.copytree(failed_sweep, tmp_path / "sweep")
    breaks(sweep / RUN1)
    before = tree(tmp_path)
    assert rerun.main(["--failed", str(sweep)]) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.out + captured.err)
    assert f"cannot retry {sweep / RUN1}: " in line and needle in line, line
    assert tree(tmp_path) == before


def test_rerun_failed_retries_an_intact_failed_run(failed_sweep, tmp_path, capsys):
    """The positive control of the table above: the same sweep, unbroken, is retried and trains."""
    from sweep import rerun

    sweep = shutil.copytree(failed_sweep, tmp_path / "sweep")
    assert rerun.main(["--failed", str(sweep)]) == 0
    assert f"retrying 1 failed runs of {sweep}: {RUN1}" in capsys.readouterr().out
    assert status.main([str(sweep)]) == 0
