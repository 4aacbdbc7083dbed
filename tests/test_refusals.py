"""Nothing wrong is ever silent (issue 23): what the per-key rules do not reach.

A resumed search explores instead of replaying its first trials and refuses objectives or directions
the stored study does not optimise; a multirun whose runs failed exits non-zero; the analysis counts
every run exactly once or names the file it skipped; Hydra's own errors, bad paths, launcher settings
and limits that depend on the data or a library are refused in one ``error:`` line, exit 2, before
anything is written; the read-only tools refuse what they cannot read instead of crashing. Each case
is a row of a table: the exit code, the one line (its needles name the key or path), files unchanged.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
from conftest import cli, make_cfg, one_error_line, snapshot, tiered
from hydra.core.global_hydra import GlobalHydra
from optuna.trial import TrialState
from synthetic import make_sweep

import sweep.slot as slot_mod
import sweep.stack as stack_mod
import sweep.train as train_mod
from analysis.collect import load_sweep
from sweep import results, status
from sweep import search as search_mod
from sweep.rules import ConfigError, validate
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


def test_a_resumed_search_draws_a_new_trial(tmp_path):
    """The default tier's half of the test below (the two-objective study resumes there): a second
    launch with n_trials = 2 adds one trial with parameters the first did not draw."""
    for n in (1, 2):
        search_mod.search(search_args(tmp_path, f"search.n_trials={n}"))
    trials = load(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert trials[0].params != trials[1].params


@pytest.mark.slow  # six launches per study
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
    line = one_error_line(capsys.readouterr().err)
    for needle in needles:
        assert needle in line, (needle, line)
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
    line = one_error_line(capsys.readouterr().err)
    assert f"{needle} {other}, the directory of another run" in line, line
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
    assert needle in one_error_line(capsys.readouterr().err)
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
    assert needle in one_error_line(captured.out + captured.err)
    assert snapshot(tmp_path) == before


OTHER_ENTRIES = [
    (["sweep.train", "data=foo"], "Could not find 'data/foo'"),  # the command itself, not only cli()
    (["sweep.rerun", "L2_dense1_dense1_s0", "data=foo"], "Could not find 'data/foo'"),
    (["sweep.rerun", "L2_dense1_dense1_s0", "lr=1e-3)"], "Error parsing override 'lr=1e-3)'"),
    (["sweep.search", "experiment=search_arch", "epoch=3"], "Could not override 'epoch'"),
    (["sweep.search", "experiment=search_arch", "sweep_name=café"], "sweep_name=café"),
]


@pytest.mark.parametrize("args, needle", OTHER_ENTRIES[1:], ids=[" ".join(a) for a, _ in OTHER_ENTRIES[1:]])
def test_hydra_errors_in_rerun_and_search_are_one_line_with_exit_2(tmp_path, capsys, args, needle):
    """What the commands below print, from each entry point's ``main`` in this process."""
    (tmp_path / "keep").write_text("x\n")
    before = snapshot(tmp_path)
    main = importlib.import_module(args[0]).main
    GlobalHydra.instance().clear()
    try:
        assert main([*args[1:], f"results_dir={tmp_path}"]) == 2
    finally:
        GlobalHydra.instance().clear()
    captured = capsys.readouterr()
    line = one_error_line(captured.out + captured.err)
    assert needle in line and "Config search path" not in line, line
    assert snapshot(tmp_path) == before


@pytest.mark.slow  # one interpreter per command; the two tests above give the same refusals in process
@pytest.mark.parametrize("args, needle", OTHER_ENTRIES, ids=[" ".join(a) for a, _ in OTHER_ENTRIES])
def test_hydra_errors_are_one_line_with_exit_2_at_every_entry_point(tmp_path, args, needle):
    (tmp_path / "keep").write_text("x\n")
    before = snapshot(tmp_path)
    done = cli(*args, f"results_dir={tmp_path}", timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    line = one_error_line(done.stdout + done.stderr)
    assert needle in line and "Config search path" not in line, line
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


# ------------------------------------ class 6: a path is proven writable before anything is written

TMP, FILE, LINK = "<tmp>", "<a file>", "<a link to the file>"  # placeholders, filled in per test
LONG = "n" * 300  # a path component beyond NAME_MAX (255 bytes on every filesystem here)
DEEP = "/".join(["d" * 200] * 21)  # 21 short-enough names: a path beyond PATH_MAX (4096 bytes)
# /proc and /sys take no new entries even from root (tests may run as root, where chmod 0o555 does not
# stop a write), so they stand for a read-only directory
TRAIN_PATHS = [
    (["results_dir=/proc/vae-sweep"], "hydra.run.dir=/proc/vae-sweep/runs/L2_dense1_dense1_s0 cannot be "),
    (["-m", "results_dir=/proc/vae-sweep", "seed=0,1"], "hydra.sweep.dir=/proc/vae-sweep/sweeps/default "),
    (["results_dir=/sys/kernel/vae-sweep"], "/sys/kernel is not writable (creating entries there is not"),
    (["-m", "results_dir=/sys/kernel/vae-sweep", "seed=0,1"], "/sys/kernel is not writable"),
    (["-m", f"sweep_name={LONG}", "seed=0,1"], "is 300 bytes; valid: names of at most 255 bytes"),
    ([f"results_dir={TMP}/{LONG}"], "is 300 bytes; valid: names of at most 255 bytes (this filesystem's"),
    ([f"results_dir={TMP}/{DEEP}"], "bytes long; valid: paths shorter than 4096 bytes (PATH_MAX)"),
    (["-m", f"hydra.sweep.dir={FILE}", "seed=0,1"], f"hydra.sweep.dir={FILE} is a file; valid: a directory"),
    (["-m", f"hydra.sweep.dir={FILE}/sub", "seed=0,1"], f"lies below {FILE}, which is a file"),
    ([f"hydra.run.dir={FILE}"], f"hydra.run.dir={FILE} is a file"),
    ([f"hydra.run.dir={FILE}/a/b"], f"lies below {FILE}, which is a file"),
    ([f"results_dir={LINK}"], "is a file"),  # a link to a file is a file
    (["-m", f"results_dir={LINK}", "seed=0,1"], "is a file"),
]


def _paths(tmp_path: Path, args: list[str]) -> list[str]:
    (tmp_path / "keep").write_text("x\n")
    if not (tmp_path / "link").is_symlink():
        (tmp_path / "link").symlink_to(tmp_path / "keep")
    subs = {LINK: str(tmp_path / "link"), FILE: str(tmp_path / "keep"), TMP: str(tmp_path)}
    for k, v in subs.items():
        args = [a.replace(k, v) for a in args]
    return args


def _tree(root: Path) -> dict:
    """Every entry below ``root``, directories too (a refusal must not leave an empty sweeps/)."""
    return {**snapshot(root), "dirs": sorted(str(p) for p in root.rglob("*") if p.is_dir())}


@pytest.mark.parametrize("args, needle", TRAIN_PATHS, ids=[" ".join(a)[:60] for a, _ in TRAIN_PATHS])
def test_a_path_sweep_train_cannot_write_is_refused_before_anything_is_written(
    tmp_path, monkeypatch, capsys, args, needle
):
    args, (needle,) = _paths(tmp_path, args), _paths(tmp_path, [needle])
    before = _tree(tmp_path)
    flags, rest = [a for a in args if a == "-m"], [a for a in args if a != "-m"]
    results_dir = [] if any(a.startswith("results_dir=") for a in rest) else [f"results_dir={tmp_path}"]
    assert train_in_process(monkeypatch, *flags, *results_dir, *TINY_RUN, *rest) == 2
    captured = capsys.readouterr()
    assert needle in one_error_line(captured.out + captured.err)
    assert _tree(tmp_path) == before


RERUN_PATHS = [
    (["--out", f"{FILE}/x"], f"--out={FILE}/x lies below {FILE}, which is a file"),
    (["--out", FILE], f"--out={FILE} is a file"),
    (["--out", f"{TMP}/runs/{LONG}"], "is 300 bytes; valid: names of at most 255 bytes"),
    (["--out", f"{TMP}/a\0b"], "contains a NUL byte; valid: a path without one"),
    (["results_dir=/proc/vae-sweep"], "the run directory /proc/vae-sweep/runs/L2_dense1_dense1_s0 cannot be"),
]


@pytest.mark.parametrize("args, needle", RERUN_PATHS, ids=[" ".join(a)[:60] for a, _ in RERUN_PATHS])
def test_a_path_sweep_rerun_cannot_write_is_refused_before_anything_is_written(
    tmp_path, capsys, args, needle
):
    from sweep import rerun

    args, (needle,) = _paths(tmp_path, args), _paths(tmp_path, [needle])
    before = _tree(tmp_path)
    results_dir = [] if any(a.startswith("results_dir=") for a in args) else [f"results_dir={tmp_path}"]
    assert rerun.main(["L2_dense1_dense1_s0", *results_dir, *args]) == 2
    captured = capsys.readouterr()
    assert needle.replace("\0", "\\x00") in one_error_line(captured.out + captured.err)
    assert _tree(tmp_path) == before


SEARCH_PATHS = [
    (["results_dir=/proc/vae-sweep"], "the search directory /proc/vae-sweep/searches/search_arch cannot be"),
    ([f"sweep_name={LONG}"], "is 300 bytes; valid: names of at most 255 bytes"),
    ([f"results_dir={FILE}/r"], f"results_dir={FILE}/r lies below {FILE}, which is a file"),
]


@pytest.mark.parametrize("more, needle", SEARCH_PATHS, ids=[" ".join(m)[:60] for m, _ in SEARCH_PATHS])
def test_a_search_directory_that_cannot_be_written_is_refused_before_the_study_is_made(
    tmp_path, capsys, more, needle
):
    more, (needle,) = _paths(tmp_path, more), _paths(tmp_path, [needle])
    before = _tree(tmp_path)
    assert search_mod.main(search_args(tmp_path, "search.n_trials=1", *more)) == 2
    assert needle in one_error_line(capsys.readouterr().err)
    assert _tree(tmp_path) == before


SWEEP = "<the sweep>"  # placeholder: a 2-run synthetic sweep
# (entry point, arguments, the one line's needle): the analysis and the read-only tools
READ_AND_FIGURE_PATHS = [
    ("analysis.figures", [SWEEP, "--out", FILE], f"--out={FILE} is a file"),
    ("analysis.figures", [SWEEP, "--out", f"{FILE}/figs"], f"lies below {FILE}, which is a file"),
    ("analysis.figures", [SWEEP, "--out", "/proc/vae-sweep"], "/proc is not writable"),
    ("analysis.figures", [SWEEP, "--out", f"{TMP}/{LONG}"], "is 300 bytes"),
    ("analysis.figures", [f"{TMP}/{LONG}"], "sweep_dir=<tmp>/nnnn"),
    ("analysis.figures", [f"{TMP}/{LONG}"], "cannot be read: File name too long"),
    ("analysis.figures", [FILE], f"sweep_dir={FILE} is not a directory"),
    ("sweep.status", [f"{TMP}/{LONG}"], "sweep_dir=<tmp>/nnnn"),
    ("sweep.status", [f"{TMP}/{LONG}"], "cannot be read: File name too long"),
    ("sweep.status", [f"{TMP}/a\0b"], "contains a NUL byte"),
    ("sweep.evaluate", [f"{TMP}/{LONG}"], "path=<tmp>/nnnn"),
    ("sweep.evaluate", [f"{TMP}/{LONG}"], "cannot be read: File name too long"),
    ("sweep.evaluate", [f"{TMP}/{DEEP}"], "cannot be read: File name too long"),
    ("bench.status", ["--out", f"{FILE}/x.json"], f"argument --out: the file {FILE}/x.json lies below"),
    ("bench.status", ["--out", "/proc/status.json"], "argument --out: the file /proc/status.json cannot"),
    ("bench.status", ["--out", TMP], f"argument --out: the file {TMP} is a directory"),
    ("bench.throughput", ["--out", "/sys/kernel/cpu.json"], "/sys/kernel is not writable"),
    ("bench.throughput", ["--out", f"{TMP}/{LONG}.json"], "is 305 bytes"),
]


def _main(entry: str):
    import importlib

    return importlib.import_module(entry).main


@pytest.mark.parametrize(
    "entry, args, needle",
    READ_AND_FIGURE_PATHS,
    ids=[f"{e} {' '.join(a)[:50]}" for e, a, _ in READ_AND_FIGURE_PATHS],
)
def test_the_analysis_the_read_only_tools_and_the_benchmarks_refuse_a_bad_path_in_one_line(
    tmp_path, capsys, entry, args, needle
):
    sweep = _two_runs(tmp_path / "results")
    args = [a.replace(SWEEP, str(sweep)) for a in _paths(tmp_path, args)]
    needle = needle.replace(TMP, str(tmp_path)).replace(FILE, str(tmp_path / "keep"))
    before = _tree(tmp_path)
    assert _main(entry)(args) == 2
    captured = capsys.readouterr()
    assert needle in one_error_line(captured.out + captured.err)
    assert _tree(tmp_path) == before


# ------------------------------- class 7: launcher settings go through the rules before anything is written

CORES = os.cpu_count() or 1
LAUNCHERS = [
    (
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"],
        "hydra.launcher.n_jobs=0 is out of range; valid: 1..",
    ),
    (
        ["hydra/launcher=joblib", f"hydra.launcher.n_jobs=-{CORES + 1}"],
        f"valid: 1.. (that many workers), or -1..-{CORES}",
    ),
    (
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=1.5"],
        "hydra.launcher.n_jobs=1.5",
    ),  # Hydra's own type check
    (
        ["hydra/launcher=joblib", "hydra.launcher.prefer=gpus"],
        "hydra.launcher.prefer='gpus' is unknown; valid: processes, threads",
    ),
    (
        ["hydra/launcher=joblib", "hydra.launcher.timeout=-1"],
        "hydra.launcher.timeout=-1.0 is out of range; valid: > 0",
    ),
    (
        ["hydra/launcher=slurm", "hydra.launcher.runs_per_task=0"],
        "hydra.launcher.runs_per_task=0 is out of range; valid: >= 1",
    ),
    (
        ["hydra/launcher=slurm", "hydra.launcher.timeout_min=0"],
        "hydra.launcher.timeout_min=0 is out of range; valid: >= 1",
    ),
    (
        ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=0"],
        "hydra.launcher.cpus_per_task=0 is out of range",
    ),
    (
        ["hydra/launcher=slurm", "hydra.launcher.gpus_per_task=-1"],
        "hydra.launcher.gpus_per_task=-1 is out of range; valid: >= 0",
    ),
    (
        ["hydra/launcher=slurm", "hydra.launcher.array_parallelism=0"],
        "hydra.launcher.array_parallelism=0 is out of range",
    ),
    (
        ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=0"],
        "hydra.launcher.timeout_min=0 is out of range",
    ),
]


@pytest.mark.parametrize("args, needle", LAUNCHERS, ids=[" ".join(a) for a, _ in LAUNCHERS])
def test_a_bad_launcher_setting_is_refused_by_its_key_before_anything_is_written(
    tmp_path, monkeypatch, capsys, args, needle
):
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))  # no sinfo: the settings alone decide
    (tmp_path / "keep").write_text("x\n")
    before = _tree(tmp_path)
    assert train_in_process(monkeypatch, "-m", f"results_dir={tmp_path}", *TINY_RUN, *args, "seed=0,1") == 2
    captured = capsys.readouterr()
    assert needle in one_error_line(captured.out + captured.err)
    assert _tree(tmp_path) == before  # no grid.json, no multirun.yaml, no .submitit/


SINFO = "debug*|(null)\ngpu|gpu:a100:4(S:0-1)\ngpu|(null)\n"  # a CPU default partition, one with GPUs
SLURM_CLUSTER = [
    (
        ["hydra.launcher.partition=gpux"],
        "hydra.launcher.partition='gpux' is not a partition of this cluster (sinfo); valid: debug, gpu",
    ),
    (["hydra.launcher.partition='debug,gpux'"], "'debug,gpux' is not a partition of this cluster"),
    (
        ["hydra.launcher.partition=debug"],  # the default gpus_per_task=1 on a partition without GPUs
        "hydra.launcher.gpus_per_task=1 asks for GPUs, but partition 'debug' has none (no GRES gpu in sinfo); "
        "valid: hydra.launcher.gpus_per_task=0 for CPU tasks, or hydra.launcher.partition=one with GPUs: gpu",
    ),
    ([], "partition 'debug' has none"),  # no partition: Slurm's default, debug
    (
        [
            "hydra.launcher.partition=debug",
            "hydra.launcher.gpus_per_task=null",
            "hydra.launcher.gpus_per_node=2",
        ],
        "hydra.launcher.gpus_per_node=2 asks for GPUs",
    ),
]


def _fake_sinfo(tmp_path: Path, monkeypatch, text: str = SINFO) -> None:
    """A ``sinfo`` first on PATH that answers ``text`` (partition|gres lines), as a cluster would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sinfo").write_text("#!/bin/sh\n/bin/cat <<'EOF'\n" + text + "EOF\n")
    (bin_dir / "sinfo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


@pytest.mark.parametrize(
    "args, needle", SLURM_CLUSTER, ids=[" ".join(a) or "default" for a, _ in SLURM_CLUSTER]
)
def test_a_slurm_partition_the_cluster_lacks_or_gpus_it_lacks_are_refused_before_submitting(
    tmp_path, monkeypatch, capsys, args, needle
):
    _fake_sinfo(tmp_path, monkeypatch)
    results_dir = tmp_path / "results"
    assert (
        train_in_process(
            monkeypatch,
            "-m",
            f"results_dir={results_dir}",
            *TINY_RUN,
            "hydra/launcher=slurm",
            *args,
            "seed=0,1",
        )
        == 2
    )
    captured = capsys.readouterr()
    assert needle in one_error_line(captured.out + captured.err)
    assert not results_dir.exists()  # no grid.json, no .submitit/*.pkl


def test_the_partition_check_passes_what_the_cluster_has_and_is_silent_without_sinfo(tmp_path, monkeypatch):
    from sweep import slurm

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert slurm.partitions() is None
    slurm.check_partition({"partition": "nope", "gpus_per_task": 4})  # nothing to ask: nothing refused
    _fake_sinfo(tmp_path, monkeypatch)
    assert slurm.partitions() == {"debug": False, "gpu": True}
    for ok in (
        {"partition": "gpu", "gpus_per_task": 1},
        {"partition": "debug", "gpus_per_task": None},
        {"partition": "debug", "gpus_per_task": 0},
        {"partition": None, "gpus_per_task": 0},
        {"partition": "gpu", "gres": "gpu:2"},
    ):
        slurm.check_partition(ok)
    with pytest.raises(ConfigError, match="hydra.launcher.gres='gpu:1' asks for GPUs"):
        slurm.check_partition({"partition": "debug", "gres": "gpu:1"})


# --------------------------- class 8: limits that depend on the data, and model sizes, before training

# split_seed 8 puts two images of one digit first in the train split: its probe needs three
DATA_LIMITS = [
    (
        ["eval.probe_train=1", "eval.knn_k=1"],
        "eval.probe_train=1 is too small: the linear probe needs two classes, and the first 1 training "
        "images hold one; valid: >= 2",
    ),
    (
        ["data.subset=1", "batch_size=1", "eval.knn_k=1"],
        "data.subset=1 is too small: the linear probe needs two classes, and the first 1 training images "
        "hold one; valid: data.subset >= 2 (or null: every image)",
    ),
    (["data.split_seed=8", "eval.probe_train=2", "eval.knn_k=1"], "eval.probe_train=2 is too small"),
    (["data.split_seed=8", "eval.probe_train=2", "eval.knn_k=1"], "valid: >= 3"),
    (["data=fashion_mnist", "eval.probe_train=1", "eval.knn_k=1"], "eval.probe_train=1 is too small"),
    (
        ["latent_dim=10000000000"],
        "latent_dim=10000000000 is out of range; valid: 1..67108864 (a larger Gaussian head alone has more "
        "than 268435456 parameters)",
    ),
    (["encoder.width=1000000000"], "encoder.width=1000000000 is out of range; valid: 1..10737418"),
    (["decoder.width=10737419"], "decoder.width=10737419 is out of range; valid: 1..10737418"),
    (
        ["encoder=dense", "encoder.depth=16", "encoder.width=10000"],
        "make a model of 1508147721 parameters; valid: at most 268435456",
    ),
    (["latent_dim=67108864"], "make a model of"),  # in range alone; its head on 32 features is not
]


@pytest.mark.parametrize("more, needle", DATA_LIMITS, ids=[" ".join(m) for m, _ in DATA_LIMITS])
def test_a_value_the_data_or_the_memory_cannot_take_is_refused_by_its_key_before_training(
    tmp_path, more, needle
):
    cfg = make_cfg(*more)
    with pytest.raises(ConfigError) as got:  # the rules alone first: a miss must not allocate 40 TB
        validate(cfg)
    assert needle in str(got.value)
    with pytest.raises(ConfigError, match=re.escape(needle)):  # and so training refuses it
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_smallest_probe_the_labels_allow_trains_and_evaluates(tmp_path):
    """The bound is the least that works, not a guess: three images under split_seed 8 do."""
    cfg = make_cfg("data.split_seed=8", "eval.probe_train=3", "eval.knn_k=1", "num_threads=1", "logger=none")
    assert train(cfg, tmp_path / "run")["status"] == "ok"
    assert pq.read_table(tmp_path / "run" / "eval.parquet").to_pylist()[0]["eval/status"] == "ok"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["latent_dim=10000000000"], "error: latent_dim=10000000000 is out of range; valid: 1..67108864"),
        (
            ["-m", "latent_dim=2,10000000000"],
            "is invalid: latent_dim=10000000000 is out of range; valid: 1..67108864",
        ),
        (["eval.probe_train=1", "eval.knn_k=1"], "error: eval.probe_train=1 is too small"),
    ],
)
def test_sweep_train_refuses_a_size_or_data_limit_in_one_line(tmp_path, monkeypatch, capsys, args, needle):
    flags, rest = [a for a in args if a == "-m"], [a for a in args if a != "-m"]
    assert train_in_process(monkeypatch, *flags, f"results_dir={tmp_path}", *TINY_RUN, *rest) == 2
    captured = capsys.readouterr()
    assert needle in one_error_line(captured.out + captured.err)
    assert list(tmp_path.iterdir()) == []


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
    before = _tree(tmp_path)
    assert rerun.main(["--failed", str(sweep)]) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.out + captured.err)
    assert f"cannot retry {sweep / RUN1}: " in line and needle in line, line
    assert _tree(tmp_path) == before


def test_rerun_failed_retries_an_intact_failed_run(failed_sweep, tmp_path, capsys):
    """The positive control of the table above: the same sweep, unbroken, is retried and trains."""
    from sweep import rerun

    sweep = shutil.copytree(failed_sweep, tmp_path / "sweep")
    assert rerun.main(["--failed", str(sweep)]) == 0
    assert f"retrying 1 failed runs of {sweep}: {RUN1}" in capsys.readouterr().out
    assert status.main([str(sweep)]) == 0


BENCH_ARGS = [
    ("bench.status", ["--repeats", "0"], "argument --repeats: '0' is not an integer >= 1; valid: 1, 2, …"),
    ("bench.status", ["--runs", "0"], "argument --runs: '0' is not an integer >= 1"),
    ("bench.status", ["--runs", "-5"], "argument --runs: '-5' is not an integer >= 1"),
    ("bench.status", ["--runs", "abc"], "argument --runs: 'abc' is not an integer >= 1"),
    ("bench.throughput", ["--threads", "0"], "argument --threads: '0' is not an integer >= 1"),
    ("bench.throughput", ["--threads", "-1"], "argument --threads: '-1' is not an integer >= 1"),
    ("bench.throughput", ["--steps", "0"], "argument --steps: '0' is not an integer >= 1"),
    ("bench.throughput", ["--warmup", "-1"], "argument --warmup: '-1' is not an integer >= 0"),
    ("bench.throughput", ["--members", "0"], "argument --members: '0' is not an integer >= 1"),
    (
        "bench.throughput",
        ["--configs", "L0_dense1_conv1"],
        "argument --configs: latent_dim=0 is out of range; valid: an integer >= 1",
    ),
    (
        "bench.throughput",
        ["--configs", "L8_conv6_dense1"],
        "encoder.depth=6 is out of range for conv; valid: 1..5",
    ),
    (
        "bench.throughput",
        ["--configs", "L8_rnn1_dense1"],
        "unknown layer kind 'rnn' in run name 'L8_rnn1_dense1'",
    ),
    ("bench.throughput", ["--configs", "dense1"], "cannot parse run name 'dense1'; grammar: L{latent}"),
    ("bench.throughput", ["--nope"], "unrecognized arguments: --nope; see --help"),
]


@pytest.mark.parametrize(
    "entry, args, needle", BENCH_ARGS, ids=[f"{e} {' '.join(a)}" for e, a, _ in BENCH_ARGS]
)
def test_a_bench_argument_out_of_range_is_refused_in_one_line_before_it_measures(
    tmp_path, capsys, entry, args, needle
):
    out = tmp_path / "out.json"
    assert _main(entry)([*args, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert needle in one_error_line(captured.out + captured.err)
    assert list(tmp_path.iterdir()) == []
