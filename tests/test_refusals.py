"""Nothing wrong is ever silent (issue 23): what the per-key rules do not reach.

A resumed search explores instead of replaying its first trials and refuses objectives or directions
the stored study does not optimise; a multirun whose runs failed exits non-zero; the analysis counts
every run exactly once or names the file it skipped; Hydra's own errors, bad paths, launcher settings
and limits that depend on the data or a library are refused in one ``error:`` line, exit 2, before
anything is written; the read-only tools refuse what they cannot read instead of crashing. Each case
is a row of a table: the exit code, the one line (its needles name the key or path), files unchanged.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
from conftest import cli, make_cfg, snapshot
from hydra.core.global_hydra import GlobalHydra
from optuna.trial import TrialState
from synthetic import make_sweep

import sweep.slot as slot_mod
import sweep.stack as stack_mod
import sweep.train as train_mod
from analysis.collect import load_sweep
from sweep import results, status
from sweep import search as search_mod
from sweep.config import ConfigError
from sweep.train import train

# a search trial that trains in about a second: 64 images, one epoch, nothing logged
TINY_SEARCH = [
    "epochs=1",
    "data.subset=64",
    "data.val_size=64",
    "batch_size=32",
    "eval.iwae_k=2",
    "eval.latents_n=32",
    "eval.probe_train=64",
    "eval.fid_samples=16",
    "eval.kid_subset_size=8",
    "eval.kid_subsets=2",
    "logger=none",
    "progress=false",
    "device=cpu",
    "num_threads=1",
    "search.pruner=none",
    # dense1/dense1 only, as in the issue: every trial differs in latent_dim, lr and beta alone
    "search.space.encoder.choices=[dense1]",
    "search.space.decoder.choices=[dense1]",
    "search.space.latent_dim.choices=[2,4]",
]


def search_args(tmp_path, *more: str, experiment: str = "search_arch") -> list[str]:
    return [f"experiment={experiment}", f"results_dir={tmp_path}", *TINY_SEARCH, *more]


def load(tmp_path, name: str = "search_arch") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/searches/{name}/study.db")


# ------------------------------------------------------------ class 1: a resumed search explores


@pytest.mark.parametrize("experiment", ["search_arch", "search_pareto"])
def test_a_search_relaunched_one_trial_at_a_time_never_replays_a_trial(tmp_path, experiment):
    """Launched with n_trials = 1, 2, 3 (the issue's case), each launch adds one trial with new
    parameters; the same three launches over a fresh directory draw the same three (reproducible)."""
    extra = [] if experiment == "search_arch" else ["search.space.encoder.choices=[dense1]"]
    for root in (tmp_path / "a", tmp_path / "b"):
        for n in (1, 2, 3):
            search_mod.search(search_args(root, f"search.n_trials={n}", *extra, experiment=experiment))
    a, b = load(tmp_path / "a", experiment), load(tmp_path / "b", experiment)
    assert [t.state for t in a.trials] == [TrialState.COMPLETE] * 3
    params = [tuple(sorted(t.params.items())) for t in a.trials]
    assert len(set(params)) == 3, params
    assert params == [tuple(sorted(t.params.items())) for t in b.trials]


STUDY_MISMATCH = [
    (
        ["search.directions=[maximize]"],
        ["search.directions=['maximize'] disagrees with the study", "minimize"],
    ),
    (
        ["search.objectives=[val/kl]"],
        ["search.objectives=['val/kl'] disagrees with the study", "valid: ['val/neg_elbo']"],
    ),
    (
        ["search.objectives=[val/recon,val/kl]", "search.directions=[minimize,minimize]"],
        ["search.objectives=['val/recon', 'val/kl'] disagrees with the study"],
    ),
]


@pytest.fixture(scope="module")
def one_trial_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    search_mod.search(search_args(root, "search.n_trials=1"))
    return root


@pytest.mark.parametrize("more, needles", STUDY_MISMATCH, ids=[" ".join(m) for m, _ in STUDY_MISMATCH])
def test_a_relaunch_that_changes_what_the_study_optimises_is_refused(one_trial_study, capsys, more, needles):
    before = snapshot(one_trial_study)
    assert search_mod.main(search_args(one_trial_study, "search.n_trials=2", *more)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    assert snapshot(one_trial_study) == before
    assert len(load(one_trial_study).trials) == 1


# ----------------------------------------------------- class 3: a multirun whose runs failed exits 1

TINY_RUN = [
    "encoder=dense1",
    "decoder=dense1",
    "latent_dim=2",
    *(o for o in TINY_SEARCH if not o.startswith("search.")),  # the same seconds-long settings
]


def train_in_process(monkeypatch, *args: str) -> int:
    """``python -m sweep.train <args>`` in this process (Hydra's basic launcher runs a multirun's jobs
    here too, so a test can inject a fault); returns its exit status."""
    monkeypatch.setattr(sys, "argv", ["sweep.train", *args])
    GlobalHydra.instance().clear()
    try:
        train_mod.cli()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        GlobalHydra.instance().clear()
    return 0


def _fail_seeds(*seeds: int):
    """A ``train_epoch`` that raises for runs of these seeds (a fault no check can foresee)."""

    real = slot_mod.train_epoch

    def train_epoch(cohort, epoch):
        for cfg in cohort.cfgs:
            if cfg["seed"] in seeds:
                raise ValueError(f"an injected fault in seed {cfg['seed']}")
        return real(cohort, epoch)

    return train_epoch


@pytest.mark.parametrize(
    "failing, code, needle",
    [
        (None, 0, None),
        (1, 1, "error: 1 of 2 runs of the grid failed (L2_dense1_dense1_s1: ValueError: an injected fault"),
        (0, 1, "error: 1 of 2 runs of the grid failed (L2_dense1_dense1_s0: ValueError: an injected fault"),
        (
            "all",
            1,
            "error: 2 of 2 runs of the grid failed (L2_dense1_dense1_s0: ValueError: an injected fault",
        ),
        ("diverged", 0, None),  # a diverged run is a result (a single run that diverged exits 0 too)
    ],
    ids=["all ok", "the last run failed", "the first run failed", "every run failed", "a run diverged"],
)
def test_a_multirun_exits_1_when_a_run_failed_and_sweep_status_agrees(
    tmp_path, monkeypatch, capsys, failing, code, needle
):

    if failing == "diverged":
        real = stack_mod.recon_per_image
        monkeypatch.setattr(stack_mod, "recon_per_image", lambda logits, x: real(logits, x) * float("inf"))
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


def _two_runs(root: Path) -> Path:
    return make_sweep(root, seeds=(0, 1), latents=(25,), encoders=("dense1",), decoders=("dense1",))


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
    roots = breaks(_two_runs(tmp_path))
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
    other = _two_runs(tmp_path / "other") / "L25_dense1_dense1_s0"
    args = [a.replace(INSIDE, str(other / "nested")) for a in args]
    before = snapshot(tmp_path)
    assert train_in_process(monkeypatch, *args, f"results_dir={tmp_path}", *TINY_RUN) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert f"{needle} {other}, the directory of another run" in err[0], err[0]
    assert snapshot(tmp_path) == before


# ------------------------------------- class 4: a search's objectives are checked before it trains

BAD_OBJECTIVES = [
    (
        ["search.objectives=[val/no_such_metric]"],
        "search.objectives='val/no_such_metric' is not a numeric column",
    ),
    (["search.objectives=[run_name]"], "search.objectives='run_name' is not a numeric column"),
    (["search.objectives=[eval/status]"], "search.objectives='eval/status' is not a numeric column"),
    (["search.objectives=[val/neg_elbo/]"], "valid: epochs_done, params/encoder"),
    (["search.objectives=val/neg_elbo"], "search.objectives='val/neg_elbo' must be a list"),
    (["search.directions=minimize"], "search.directions='minimize' must be a list"),
    (
        ["search.objectives=[val/kl,val/kl]", "search.directions=[minimize,minimize]"],
        "search.objectives=['val/kl', 'val/kl'] repeats an objective",
    ),
    (["search.objectives=[]", "search.directions=[]"], "must pair up"),
    (["search.directions=[minimise]"], "search.directions='minimise' is unknown; valid: minimize, maximize"),
]


@pytest.mark.parametrize("more, needle", BAD_OBJECTIVES, ids=[" ".join(m) for m, _ in BAD_OBJECTIVES])
def test_a_bad_objective_is_refused_before_any_trial_trains_or_the_study_is_written(
    tmp_path, capsys, more, needle
):
    (tmp_path / "keep").write_text("x\n")
    before = snapshot(tmp_path)
    assert search_mod.main(search_args(tmp_path, "search.n_trials=1", *more)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert snapshot(tmp_path) == before and not (tmp_path / "searches").exists()


# ------------------------------------------- class 5: Hydra's own errors are one line at every entry

HYDRA_ERRORS = [
    (["data=foo"], "Could not find 'data/foo' Available options in 'data': fashion_mnist mnist"),
    (["encoder=conv6"], "Could not find 'encoder/conv6' Available options in 'encoder': conv conv1"),
    (["epoch=3"], "Could not override 'epoch'. To append to your config use +epoch=3"),
    (["lr=1e-3)"], "Error parsing override 'lr=1e-3)'"),
    (["sweep_name=café"], "sweep_name=café"),
    (["latent_dim=4,5"], "Ambiguous value for argument 'latent_dim=4,5'"),  # a sweep without -m
    (["-m", "data=foo", "seed=0,1"], "Could not find 'data/foo'"),
    (["-m", "encoder=conv6,conv1"], "Could not find 'encoder/conv6'"),
    (["-m", "epoch=3", "seed=0,1"], "Could not override 'epoch'"),
    (["-m", "hydra/launcher=nope", "seed=0,1"], "Could not find 'hydra/launcher/nope'"),
    (["--nope"], "unrecognized arguments: --nope; see --help"),
    (["--cfg", "job", "data=foo"], "Could not find 'data/foo'"),
]


@pytest.mark.parametrize("args, needle", HYDRA_ERRORS, ids=[" ".join(a) for a, _ in HYDRA_ERRORS])
def test_hydra_errors_in_sweep_train_are_one_line_with_exit_2(tmp_path, monkeypatch, capsys, args, needle):
    (tmp_path / "keep").write_text("x\n")
    before = snapshot(tmp_path)
    flags = [a for a in args if a.startswith("-")] + (["job"] if "job" in args else [])
    rest = [a for a in args if a not in flags]
    assert train_in_process(monkeypatch, *flags, f"results_dir={tmp_path}", *TINY_RUN, *rest) == 2
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines[-10:]
    assert snapshot(tmp_path) == before


OTHER_ENTRIES = [
    (["sweep.train", "data=foo"], "Could not find 'data/foo'"),  # the command itself, not only cli()
    (["sweep.rerun", "L2_dense1_dense1_s0", "data=foo"], "Could not find 'data/foo'"),
    (["sweep.rerun", "L2_dense1_dense1_s0", "lr=1e-3)"], "Error parsing override 'lr=1e-3)'"),
    (["sweep.search", "experiment=search_arch", "epoch=3"], "Could not override 'epoch'"),
    (["sweep.search", "experiment=search_arch", "sweep_name=café"], "sweep_name=café"),
]


@pytest.mark.parametrize("args, needle", OTHER_ENTRIES, ids=[" ".join(a) for a, _ in OTHER_ENTRIES])
def test_hydra_errors_are_one_line_with_exit_2_at_every_entry_point(tmp_path, args, needle):
    (tmp_path / "keep").write_text("x\n")
    before = snapshot(tmp_path)
    done = cli(*args, f"results_dir={tmp_path}", timeout=120)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, lines[-10:]
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert "Config search path" not in lines[0]
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
    sweep = _two_runs(tmp_path)
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


# ------------------------------------- class 8: limits a library sets are checked before training

SEED_KEYS = ["seed", "eval.seed", "data.binarize_seed", "data.split_seed"]


@pytest.mark.parametrize("value", [2**32, 2**40, 2**64])
@pytest.mark.parametrize("key", SEED_KEYS)
def test_a_seed_beyond_what_numpy_and_sklearn_take_is_refused_by_its_key(tmp_path, key, value):
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match=rf"^{key}={value} is out of range; valid: 0\.\.4294967295$"):
        train(make_cfg(f"{key}={value}"), tmp_path / "run")
    assert snapshot(tmp_path) == before


def test_the_largest_seed_on_every_seed_key_trains_and_evaluates(tmp_path):
    cfg = make_cfg(*(f"{k}={2**32 - 1}" for k in SEED_KEYS), "num_threads=1", "logger=none")
    assert train(cfg, tmp_path / "run")["status"] == "ok"
    assert pq.read_table(tmp_path / "run" / "eval.parquet").to_pylist()[0]["eval/status"] == "ok"


@pytest.mark.parametrize("value", [2**32, 2**64])
def test_a_search_seed_beyond_the_samplers_range_is_refused_by_its_key(tmp_path, capsys, value):
    assert search_mod.main(search_args(tmp_path, f"search.seed={value}")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: search.seed={value} is out of range; valid: 0..4294967295"]
    assert not tmp_path.joinpath("searches").exists()
