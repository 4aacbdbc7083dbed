"""Nothing wrong is ever silent (issue 23), here: every entry point refuses in one ``error:`` line, exit 2,
before anything is written: Hydra's own errors, a path it cannot write or read, a bench argument out of
range.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from conftest import (
    TINY,
    TINY_RUN,
    cli,
    one_error_line,
    search_args,
    snapshot,
    train_in_process,
    tree,
    two_run_sweep,
)
from hydra.core.global_hydra import GlobalHydra

from sweep import search as search_mod

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


@pytest.mark.parametrize("args, needle", TRAIN_PATHS, ids=[" ".join(a)[:60] for a, _ in TRAIN_PATHS])
def test_a_path_sweep_train_cannot_write_is_refused_before_anything_is_written(
    tmp_path, monkeypatch, capsys, args, needle
):
    args, (needle,) = _paths(tmp_path, args), _paths(tmp_path, [needle])
    before = tree(tmp_path)
    flags, rest = [a for a in args if a == "-m"], [a for a in args if a != "-m"]
    results_dir = [] if any(a.startswith("results_dir=") for a in rest) else [f"results_dir={tmp_path}"]
    assert train_in_process(monkeypatch, *flags, *results_dir, *TINY_RUN, *rest) == 2
    captured = capsys.readouterr()
    assert needle in one_error_line(captured.out + captured.err)
    assert tree(tmp_path) == before


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
    before = tree(tmp_path)
    results_dir = [] if any(a.startswith("results_dir=") for a in args) else [f"results_dir={tmp_path}"]
    assert rerun.main(["L2_dense1_dense1_s0", *results_dir, *args]) == 2
    captured = capsys.readouterr()
    assert needle.replace("\0", "\\x00") in one_error_line(captured.out + captured.err)
    assert tree(tmp_path) == before


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
    before = tree(tmp_path)
    assert search_mod.main(search_args(tmp_path, "search.n_trials=1", *more)) == 2
    assert needle in one_error_line(capsys.readouterr().err)
    assert tree(tmp_path) == before


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
    sweep = two_run_sweep(tmp_path / "results")
    args = [a.replace(SWEEP, str(sweep)) for a in _paths(tmp_path, args)]
    needle = needle.replace(TMP, str(tmp_path)).replace(FILE, str(tmp_path / "keep"))
    before = tree(tmp_path)
    assert _main(entry)(args) == 2
    captured = capsys.readouterr()
    assert needle in one_error_line(captured.out + captured.err)
    assert tree(tmp_path) == before


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


# ------------------------------------------------------------ a rerun never joins a sweep it is not of (issue 35)
def _sweep_with_one_run(root: Path) -> Path:
    """A sweep directory with grid.json (settings recorded) and one stored run, L2_dense1_dense1_s0."""
    import yaml
    from conftest import make_cfg

    from sweep.grid import write_grid_file
    from sweep.keys import flatten, protocol

    cfg = make_cfg(f"results_dir={root}", "latent_dim=2", "encoder=dense1", "decoder=dense1", arch=[])
    sweep = root / "sweeps" / "s"
    (sweep / "L2_dense1_dense1_s0" / ".hydra").mkdir(parents=True)
    (sweep / "L2_dense1_dense1_s0" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    write_grid_file(sweep, [sweep / "L2_dense1_dense1_s0"], ["sweep.train"], protocol(flatten(cfg)))
    return sweep


RERUN_INTO_SWEEPS = [
    (
        ["--out", "S/L2_dense1_dense1_s0_again"],
        "lies in the sweep S, whose grid has no run L2_dense1_dense1_s0_again",
    ),
    (["--out", "S/extra/L2_dense1_dense1_s0"], "whose grid has no run extra/L2_dense1_dense1_s0"),
    (
        ["--out", "S/L2_dense1_dense1_s0", "eval.iwae_k=7"],
        "which holds eval.iwae_k=2, but this run sets eval.iwae_k=7",
    ),
    (["--out", "S/L2_dense1_dense1_s0", "epochs=3"], "which holds epochs=1, but this run sets epochs=3"),
    (["--out", "S/L2_dense1_dense1_s0", "seed=1"], "is the sweep S's run L2_dense1_dense1_s0, but this run is L2_dense1_dense1_s1"),
]


@pytest.mark.parametrize("args, needle", RERUN_INTO_SWEEPS, ids=["again", "nested", "eval", "epochs", "seed"])
def test_a_rerun_out_into_a_sweep_it_does_not_belong_to_is_refused(tmp_path, capsys, args, needle):
    from sweep import rerun

    sweep = _sweep_with_one_run(tmp_path)
    before = tree(tmp_path)
    args = [a.replace("S/", f"{sweep}/") for a in args]
    source = ["--from", str(sweep / "L2_dense1_dense1_s0")]
    assert rerun.main(["L2_dense1_dense1_s0", f"results_dir={tmp_path}", *source, *args]) == 2
    captured = capsys.readouterr()
    assert needle.replace("sweep S", f"sweep {sweep.resolve()}") in one_error_line(
        captured.out + captured.err
    )
    assert tree(tmp_path) == before


def test_a_rerun_out_of_a_sweeps_own_run_with_its_settings_is_accepted(tmp_path):
    from sweep import rerun

    sweep = _sweep_with_one_run(tmp_path)
    cfg, _ = rerun.build_config("L2_dense1_dense1_s0", [f"results_dir={tmp_path}"], tmp_path)
    assert rerun.output_dir(cfg, sweep / "L2_dense1_dense1_s0") == sweep / "L2_dense1_dense1_s0"
    assert rerun.output_dir(cfg, tmp_path / "runs" / "x") == tmp_path / "runs" / "x"


# the command line that composes _sweep_with_one_run's run (its results_dir set per test)
SWEEP_RUN = ["latent_dim=2", "encoder=dense1", "decoder=dense1", "epochs=1", *TINY]
TRAIN_INTO_SWEEPS = [
    (["hydra.run.dir=S/L2_dense1_dense1_s0_again"], "hydra.run.dir 'S/L2_dense1_dense1_s0_again' lies in the sweep S, whose grid has no run L2_dense1_dense1_s0_again"),
    (["hydra.run.dir=S/extra/L2_dense1_dense1_s0"], "lies in the sweep S, whose grid has no run extra/L2_dense1_dense1_s0"),
    (["hydra.run.dir=S/L2_dense1_dense1_s0", "eval.iwae_k=7"], "is a run of the sweep S, which holds eval.iwae_k=2, but this run sets eval.iwae_k=7"),
    (["hydra.run.dir=S/L2_dense1_dense1_s0", "epochs=3"], "which holds epochs=1, but this run sets epochs=3; valid: epochs=1, or a hydra.run.dir outside the sweep"),
    (["hydra.run.dir=S/L2_dense1_dense1_s0", "seed=1"], "is the sweep S's run L2_dense1_dense1_s0, but this run is L2_dense1_dense1_s1"),
    (["hydra.run.dir=S/L2_dense1_dense1_s0", "encoder.depth=2"], "but this run is L2_dense2_dense1_s0 (its architecture, seed or trial differ)"),
]  # fmt: skip


@pytest.mark.parametrize("args, needle", TRAIN_INTO_SWEEPS, ids=["again", "nested", "eval", "epochs", "seed", "architecture"])
def test_a_single_run_dir_in_a_sweep_it_does_not_belong_to_is_refused(
    tmp_path, monkeypatch, capsys, args, needle
):
    """``python -m sweep.train hydra.run.dir=…`` is checked as ``sweep.rerun --out`` is."""
    sweep = _sweep_with_one_run(tmp_path)
    before = tree(tmp_path)
    args = [a.replace("S/", f"{sweep}/") for a in args]
    assert train_in_process(monkeypatch, f"results_dir={tmp_path}", *SWEEP_RUN, *args) == 2
    line = one_error_line(capsys.readouterr().err)
    assert needle.replace("S/", f"{sweep}/").replace("sweep S", f"sweep {sweep.resolve()}") in line, line
    assert tree(tmp_path) == before


def test_a_single_run_into_its_sweeps_own_run_with_its_settings_trains(tmp_path, monkeypatch):
    sweep = _sweep_with_one_run(tmp_path)
    run = sweep / "L2_dense1_dense1_s0"
    assert train_in_process(monkeypatch, f"results_dir={tmp_path}", *SWEEP_RUN, f"hydra.run.dir={run}") == 0
    assert (run / "COMPLETE").is_file() and sorted(p.name for p in sweep.iterdir()) == [
        "L2_dense1_dense1_s0",
        "grid.json",
    ]


# ------------------------------- issue 35: what was accepted but must be refused, in one line, exit 2
EMPTY = "<an empty directory>"  # placeholder: tmp_path / "empty", made per test
NOT_A_SWEEP = [
    ("analysis.figures", [EMPTY], f"sweep_dir={EMPTY} holds no run (no run.parquet below it); valid:"),
    ("analysis.figures", [EMPTY, "--out", f"{TMP}/figs"], f"sweep_dir={EMPTY} holds no run"),
    ("sweep.status", [EMPTY], f"sweep_dir={EMPTY} holds no sweep: no grid.json, multirun.yaml or run"),
    ("sweep.rerun", ["--failed", f"{TMP}/nowhere"], f"--failed={TMP}/nowhere is not a directory; valid:"),
    ("sweep.rerun", ["--failed", FILE], f"--failed={FILE} is not a directory; valid: a sweep directory"),
    ("sweep.rerun", ["--failed", EMPTY], f"sweep_dir={EMPTY} holds no sweep"),
    ("sweep.rerun", ["--failed", EMPTY, "L2_dense1_dense1_s0"], "--failed takes one sweep directory and"),
    ("sweep.rerun", [], "a run name is required (or --failed SWEEP_DIR); see --help"),
    ("sweep.rerun", ["--nope"], "unrecognized arguments: --nope; see --help"),
]


@pytest.mark.parametrize(
    "entry, args, needle", NOT_A_SWEEP, ids=[f"{e} {' '.join(a)[:50]}" for e, a, _ in NOT_A_SWEEP]
)
def test_a_directory_that_holds_no_sweep_is_refused_in_one_line_and_nothing_is_written(
    tmp_path, capsys, entry, args, needle
):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a run\n")
    subs = {EMPTY: str(tmp_path / "empty")}
    args = [subs.get(a, a) for a in _paths(tmp_path, args)]
    (needle,) = _paths(tmp_path, [needle.replace(EMPTY, str(tmp_path / "empty"))])
    before = tree(tmp_path)
    assert _main(entry)(args) == 2
    captured = capsys.readouterr()
    assert needle in one_error_line(captured.out + captured.err)
    assert tree(tmp_path) == before


# ------------------- issue 35: the FID classifier is checked before a launch, with the data checksums


def _record(d: Path, **changes) -> None:
    import json

    record = json.loads((d / "classifier.json").read_text())
    (d / "classifier.json").write_text(json.dumps({**record, **changes}))


def _garbage_weights(d: Path) -> None:
    """Bytes that are not a state dict, with a record whose checksum matches them."""
    import hashlib

    (d / "feature_cnn.pt").write_bytes(b"not a checkpoint")
    _record(d, sha256=hashlib.sha256(b"not a checkpoint").hexdigest())


# (what is done to a copy of data/mnist/classifier/, the needle of the one error line)
BAD_CLASSIFIERS = [
    (
        lambda d: (d / "feature_cnn.pt").unlink(),
        "the mnist feature classifier is missing (<c>/feature_cnn.pt)",
    ),
    (
        lambda d: (d / "classifier.json").unlink(),
        "the mnist feature classifier is missing (<c>/classifier.json)",
    ),
    (
        lambda d: (d / "feature_cnn.pt").write_bytes((d / "feature_cnn.pt").read_bytes()[:-1]),
        "checksum mismatch for <c>/feature_cnn.pt: sha256",
    ),
    (lambda d: (d / "classifier.json").write_text("{"), "<c>/classifier.json is not a classifier record"),
    (
        lambda d: (d / "classifier.json").write_text("[]"),
        "<c>/classifier.json is not a classifier record (TypeError",
    ),
    (_garbage_weights, "<c>/feature_cnn.pt does not load as the feature classifier"),
]
LAUNCHES = {"a grid": ["-m", "seed=0,1"], "a single run": []}


@pytest.mark.parametrize("launch", list(LAUNCHES))
@pytest.mark.parametrize(
    "spoil, needle",
    BAD_CLASSIFIERS,
    ids=[
        "no weights",
        "no record",
        "corrupt weights",
        "record not JSON",
        "record not a mapping",
        "garbage weights",
    ],
)
def test_a_missing_or_corrupt_fid_classifier_refuses_the_launch_before_anything_is_written(
    tmp_path, monkeypatch, capsys, spoil, needle, launch
):
    import shutil

    from sweep import fid_kid

    classifier = tmp_path / "classifier"
    shutil.copytree(fid_kid.cache_dir("mnist"), classifier)
    monkeypatch.setattr(fid_kid, "cache_dir", lambda dataset: classifier)
    monkeypatch.setattr(fid_kid, "_cache", {})
    spoil(classifier)
    results = tmp_path / "results"
    args = LAUNCHES[launch]
    flags, rest = [a for a in args if a == "-m"], [a for a in args if a != "-m"]
    assert train_in_process(monkeypatch, *flags, f"results_dir={results}", *TINY_RUN, *rest) == 2
    captured = capsys.readouterr()
    assert needle.replace("<c>", str(classifier)) in one_error_line(captured.out + captured.err)
    assert not results.exists()  # no grid.json, no run directory


# ---------------- issue 35: a run directory that holds anything but its run's own files is refused
FOREIGN = [
    ("hydra.run.dir", ["notes.txt"], "holds 'notes.txt', which no run writes"),
    ("hydra.run.dir", ["data/", "z.csv"], "holds 'data' and 1 more entries, which no run writes"),
    ("hydra.run.dir", ["run.parquet.bak"], "holds 'run.parquet.bak', which no run writes"),
    ("hydra.sweep.dir", ["L2_dense1_dense1_s1/notes.txt"], "holds 'notes.txt', which no run writes"),
    ("--out", ["runs/here/notes.txt"], "holds 'notes.txt', which no run writes"),
]


@pytest.mark.parametrize("key, entries, needle", FOREIGN, ids=[f"{k} {' '.join(e)}" for k, e, _ in FOREIGN])
def test_a_run_directory_holding_unrelated_files_is_refused_before_anything_is_written(
    tmp_path, monkeypatch, capsys, key, entries, needle
):
    target = tmp_path / "target"
    for entry in entries:
        path = target / entry.rstrip("/")
        if entry.endswith("/"):
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("not a run's\n")
    before = tree(tmp_path)
    results = [f"results_dir={tmp_path / 'target'}"]
    if key == "--out":
        from sweep import rerun

        code = rerun.main(
            ["L2_dense1_dense1_s0", *results, "--out", str(target / "runs" / "here"), *TINY_RUN]
        )
    elif key == "hydra.sweep.dir":
        code = train_in_process(monkeypatch, "-m", f"{key}={target}", *results, *TINY_RUN, "seed=0,1")
    else:
        code = train_in_process(monkeypatch, f"{key}={target}", *results, *TINY_RUN)
    assert code == 2
    captured = capsys.readouterr()
    assert needle in one_error_line(captured.out + captured.err)
    assert tree(tmp_path) == before
