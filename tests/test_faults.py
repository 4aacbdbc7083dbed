"""Faults: bad input (guarantee 2), numerical faults (3) and resources (4) of issue 7.

Every bad input must be refused with a message naming the value and what is valid, before anything
on disk changes (a snapshot of every file and its mtime is compared). Numerical faults end a run as
``diverged`` with its epoch; an exploding log-variance is clamped; running out of disk keeps the
previous good files and a relaunch finishes the run; IWAE retries with smaller chunks on OOM.
"""

from __future__ import annotations

import copy
import errno
import json
import math
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import (
    LAUNCHED,
    SMALL,
    TINY,
    assert_same_results,
    cli,
    interrupt_in_epoch,
    make_cfg,
    one_error_line,
    results_of,
    snapshot,
)
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from synthetic import make_sweep

import sweep.cohort as cohort_mod
import sweep.config as config_mod
import sweep.data as data_mod
import sweep.rules as rules_mod
import sweep.slot as slot_mod
import sweep.stack as stack_mod
import sweep.train as train_mod
from analysis import figures
from analysis.collect import collect, load_sweep
from analysis.own_figures import fig_iwae_heatmap
from analysis.paper_figures import _pca_figure
from sweep import divergence, evaluate, grid, metrics, rerun, results
from sweep import search as search_mod
from sweep.config import CONF_DIR
from sweep.data import DataError
from sweep.member import ConfigMismatchError
from sweep.models import LOGVAR_MAX, LOGVAR_MIN, GaussianHead, SpecError
from sweep.names import GRAMMAR
from sweep.paths import PathError
from sweep.rules import ConfigError
from sweep.train import train

FILE = "<a file>"  # placeholder: replaced by the path of an existing regular file


@pytest.fixture(scope="module")
def populated(tmp_path_factory) -> Path:
    """A results directory holding one finished run, so 'nothing changed' has something to protect."""
    root = tmp_path_factory.mktemp("results")
    assert train(make_cfg("num_threads=1"), root / "runs" / "L4_dense1_conv2_s0")["status"] == "ok"
    (root / "a_file").write_text("not a directory\n")
    return root


# ---------------------------------------------------------------- guarantee 2: bad input, in process


BAD_CONFIGS = [
    (["latent_dim=0"], "latent_dim=0 is out of range; valid: an integer >= 1"),
    (["latent_dim=-3"], "latent_dim=-3 is out of range; valid: an integer >= 1"),
    (["latent_dim=2.5"], "latent_dim=2.5 is out of range; valid: an integer >= 1"),
    (["batch_size=abc"], "batch_size='abc' must be an integer"),
    (["batch_size=201"], "batch_size=201 is larger than the training set (200 images)"),
    (["encoder.depth=0"], "encoder.depth=0 is out of range; valid: >= 1"),
    (["decoder.depth=6"], "decoder.depth=6 is out of range for conv; valid: 1..5"),
    (["encoder.depth=1.5"], "encoder.depth=1.5 must be an integer; valid: >= 1"),
    (["encoder.width=0"], "encoder.width=0 is out of range; valid: >= 1"),
    (["encoder.kind=rnn"], "encoder.kind='rnn' is unknown; valid: dense, conv, res"),
    (["decoder.kind=rnn"], "decoder.kind='rnn' is unknown; valid: dense, conv, res"),
    (["encoder=res", "encoder.depth=6"], "encoder.depth=6 is out of range for res; valid: 1..5"),
    (["encoder.norm=instance"], "encoder.norm='instance' is unknown; valid: none, batch, layer, group"),
    (
        ["decoder.norm=group", "decoder.width=12"],
        "decoder.width=12 is not divisible by GroupNorm's 8 groups (decoder.norm=group); valid: a multiple of 8",
    ),
    (
        ["encoder=dense", "encoder.width=8", "norm=group"],
        "encoder.width=8 leaves encoder.norm=group at most two features per group on a dense layer",
    ),
    (["norm=batch", "batch_size=1"], "batch_size=1 with encoder.norm=batch gives a batch of 1"),
    (
        ["decoder.norm=batch", "batch_size=199"],
        "batch_size=199 with decoder.norm=batch gives a last batch of 1 image (200 training images)",
    ),
    (
        ["decoder.activation=swish"],
        "decoder.activation='swish' is unknown; valid: leaky_relu, relu, tanh, elu, gelu, silu",
    ),
    (
        ["data.likelihood=gauss"],
        "data.likelihood='gauss' is unknown; valid: bernoulli, bce, continuous_bernoulli, gaussian, "
        "gaussian_learned, logistic",
    ),
    (["loss.reduction=mean"], "loss.reduction='mean' is unknown; valid: sum, paper"),
    (["lr=-0.1"], "lr=-0.1 is out of range; valid: > 0"),
    (["lr=0"], "lr=0 is out of range; valid: > 0"),
    (["loss.beta=-1"], "loss.beta=-1 is out of range; valid: >= 0"),
    (["loss.free_bits=-0.5"], "loss.free_bits=-0.5 is out of range; valid: >= 0"),
    (["epochs=-1"], "epochs=-1 is out of range; valid: >= 1"),
    (["epochs=0"], "epochs=0 is out of range; valid: >= 1"),
    (["eval.iwae_k=0"], "eval.iwae_k=0 is out of range; valid: >= 1"),
    (["eval.iwae_sample_chunk=0"], "eval.iwae_sample_chunk=0 is out of range; valid: >= 1"),
    (["seed=-1"], "seed=-1 is out of range; valid: 0..4294967295"),
    (["num_threads=0"], "num_threads=0 is out of range; valid: >= 1"),
    (["data.subset=0"], "data.subset=0 is out of range; valid: >= 1"),
    (["data.val_size=60000"], "data.val_size=60000 is out of range; valid: 1..59999"),
    ([f"results_dir={FILE}"], "is a file; valid: a directory, or a path that does not exist yet"),
    # issue 14: every key has a rule, checked against what the run will use, before anything is written
    (["lr=nan"], "lr=nan must be a finite number; valid: > 0"),
    (["lr=inf"], "lr=inf must be a finite number; valid: > 0"),
    (["loss.beta=nan"], "loss.beta=nan must be a finite number; valid: >= 0"),
    (["eval.knn_k=201"], "eval.knn_k=201 is larger than the kNN probe's training set (200 images"),
    (
        ["eval.probe_train=3", "eval.knn_k=4"],
        "eval.knn_k=4 is larger than the kNN probe's training set (3 images",
    ),
    (["eval.seed=-1"], "eval.seed=-1 is out of range; valid: 0..4294967295"),
    (["data.split_seed=x"], "data.split_seed='x' must be an integer; valid: 0..4294967295"),
    (["engine.slots=0"], "engine.slots=0 is out of range; valid: auto, or >= 1"),
    (["engine.slots=foo"], "engine.slots='foo' is not auto or a number; valid: auto, or >= 1"),
    (["engine.cuda_graphs=maybe"], "engine.cuda_graphs='maybe' must be true or false; valid: true, false"),
    (["progress=sometimes"], "progress='sometimes' is unknown; valid: auto, true, false"),
    (["train.eval_test_each_epoch=1"], "train.eval_test_each_epoch=1 must be true or false"),
    (["+nokey=1"], "nokey=1 is not a key of the run config; valid keys: latent_dim, encoder, decoder"),
    (
        ["+encoder.depht=2"],
        "encoder.depht is not a key of encoder; valid keys: kind, depth, width, activation",
    ),
    (["logger=wandb"], "logger='wandb' is unknown; valid: tensorboard, none"),
    (["data.name=cifar10"], "data.name='cifar10' is unknown; valid: mnist, fashion_mnist"),
    (["eval.fid_samples=1"], "eval.fid_samples=1 is out of range; valid: >= 2"),
    (["eval.kid_subsets=0"], "eval.kid_subsets=0 is out of range; valid: >= 1"),
    (["device=bogus"], "device='bogus' is not a device; valid: auto, cpu, cuda, cuda:<n>, mps"),
    (["device=cuda:99"], "device='cuda:99' is not available: this machine has "),
    (["sweep_name=../x"], "sweep_name='../x' would leave its directory; valid: one directory name"),
    (["sweep_name=/abs"], "sweep_name='/abs' would leave its directory; valid: one directory name"),
    (["sweep_name=.."], "sweep_name='..' would leave its directory; valid: one directory name"),
    (
        ["results_dir="],
        "results_dir='' is empty (it would mean the filesystem root or the working directory)",
    ),
    *(
        [
            (
                ["device=cuda"],
                "device='cuda' is not available: this machine has no CUDA device; valid here: auto, cpu",
            )
        ]
        if not torch.cuda.is_available()
        else []
    ),
]


@pytest.mark.parametrize("overrides, message", BAD_CONFIGS, ids=[" ".join(o) for o, _ in BAD_CONFIGS])
def test_bad_config_is_refused_by_name_and_nothing_on_disk_changes(populated, overrides, message):
    overrides = [o.replace(FILE, str(populated / "a_file")) for o in overrides]
    before = snapshot(populated)
    cfg = make_cfg(*overrides)
    with pytest.raises((ConfigError, SpecError)) as got:
        train(cfg, populated / "runs" / "bad")
    assert message in str(got.value)
    assert "valid" in str(got.value)  # what is valid, always
    assert snapshot(populated) == before


def test_after_every_refusal_the_corrected_run_trains_to_completion_in_the_same_directory(populated):
    """No refusal leaves anything behind that the corrected launch would trip over."""
    run = populated.parent / f"{populated.name}_corrected" / "runs" / "L4_dense1_conv2_s0"
    for overrides, _ in BAD_CONFIGS:
        if any(FILE in o for o in overrides):
            continue  # a placeholder the table's own test fills in
        with pytest.raises((ConfigError, SpecError)):
            train(make_cfg(*overrides), run)
    assert not run.exists()
    row = train(make_cfg("num_threads=1"), run)
    assert row["status"] == "ok" and row["epochs_done"] == 1 and results.read_complete(run)["status"] == "ok"


# ------------------------------------------------------------- guarantee 2: bad input, on the CLI

BAD_COMMANDS = [
    (["experiment=nope"], ["Could not find 'experiment/nope'", "Available options in 'experiment'", "smoke"]),
    (["encoder=nope"], ["Could not find 'encoder/nope'", "Available options in 'encoder'", "dense"]),
    (["decoder=nope"], ["Could not find 'decoder/nope'", "Available options in 'decoder'", "conv"]),
    (["hydra/launcher=nope"], ["Could not find 'hydra/launcher/nope'", "joblib", "submitit_local"]),
    (["nokey=1"], ["Could not override 'nokey'", "Key 'nokey' is not in struct", "use +nokey=1"]),
    (["latent_dim=2.5"], ["latent_dim=2.5 is out of range; valid: an integer >= 1"]),
    ([f"results_dir={FILE}"], ["is a file; valid: a directory, or a path that does not exist yet"]),
    (
        ["experiment=smoke", "encoder.width=0"],
        ["is invalid: encoder.width=0 is out of range; valid: >= 1"],
    ),
]


@pytest.mark.slow  # subprocesses; the default tier runs one (sweep.train lr=nan, below)
@pytest.mark.parametrize("args, needles", BAD_COMMANDS, ids=[" ".join(a) for a, _ in BAD_COMMANDS])
def test_bad_command_line_is_refused_by_name_and_nothing_on_disk_changes(populated, args, needles):
    args = [a.replace(FILE, str(populated / "a_file")) for a in args]
    if not any(a.startswith("results_dir=") for a in args):
        args.append(f"results_dir={populated}")
    before = snapshot(populated)
    done = cli("sweep.train", *args, *LAUNCHED)
    assert done.returncode != 0
    for needle in needles:
        assert needle in done.stderr + done.stdout, (needle, done.stderr[-2000:])
    assert snapshot(populated) == before


def test_an_unparseable_run_name_is_refused_with_the_grammar(populated, capsys):
    before = snapshot(populated)
    for name, message in [
        ("L25_dense1", f"cannot parse run name 'L25_dense1'; grammar: {GRAMMAR}"),
        ("L25_rnn1_conv4_s0", "unknown layer kind 'rnn' in run name 'L25_rnn1_conv4_s0'; grammar:"),
        ("L0_dense1_conv4_s0", "latent_dim=0 is out of range; valid: an integer >= 1"),
    ]:
        assert rerun.main([name, f"results_dir={populated}"]) == 2
        assert message in capsys.readouterr().err
    assert snapshot(populated) == before


# ------------------------------------------- issue 14: every entry point, one line, exit 2, nothing written

RUN = "<the finished run>"  # placeholder: the populated fixture's run directory
# (command and arguments, needles of the one error line). sweep.train and sweep.search also get LAUNCHED.
REFUSED = [
    (["sweep.train", "lr=nan"], ["error: lr=nan must be a finite number; valid: > 0"]),
    (["sweep.train", "device=cuda:99"], ["device='cuda:99' is not available", "valid here: auto, cpu"]),
    (
        ["sweep.train", "-m", "sweep_name=../x", "latent_dim=4,5"],
        ["sweep_name='../x' would leave its directory; valid: one directory name"],
    ),
    (["sweep.train", "-m", "latent_dim=4,4"], ["is listed twice: a value is repeated in latent_dim=4"]),
    (
        ["sweep.rerun", "L8_dense1_conv2_s0", "--from", RUN],
        ["run name 'L8_dense1_conv2_s0' disagrees with --from", "valid: L4_dense1_conv2_s0"],
    ),
    (["sweep.evaluate", RUN, "eval.iwae_k=0"], ["error: eval.iwae_k=0 is out of range; valid: >= 1"]),
    (["sweep.search", "experiment=search_arch", "lr=nan"], ["error: lr=nan must be a finite number"]),
]


# one interpreter per command: the full tier; every entry point's main() refuses the same values in
# process in the default tier (test_evaluate_rerun_and_search_refuse_what_train_refuses)
@pytest.mark.slow
@pytest.mark.parametrize("args, needles", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_every_entry_point_refuses_in_one_line_with_exit_2_and_writes_nothing(populated, args, needles):
    args = [a.replace(RUN, str(populated / "runs" / "L4_dense1_conv2_s0")) for a in args]
    extra = {"sweep.train": LAUNCHED, "sweep.search": LAUNCHED, "sweep.rerun": [], "sweep.evaluate": []}[
        args[0]
    ]
    if args[0] != "sweep.evaluate":
        extra = [*extra, f"results_dir={populated}"]
    before = snapshot(populated)
    if args[0] in (
        "sweep.train",
        "sweep.search",
    ):  # Hydra's flag first; the case's values win over LAUNCHED's
        flags, rest = [a for a in args[1:] if a == "-m"], [a for a in args[1:] if a != "-m"]
        args = [args[0], *flags, *extra, *rest]
    else:
        args = [*args, *extra]
    done = cli(*args)
    assert done.returncode == 2, done.stderr[-2000:]
    line = one_error_line(done.stdout + done.stderr)
    for needle in needles:
        assert needle in line, (needle, line)
    assert snapshot(populated) == before


def test_the_grid_check_fails_closed_on_its_own_bug(tmp_path, monkeypatch, capsys):
    """Hydra turns an exception in a callback into a warning and launches anyway: any exception inside
    the checks must stop the launch (exit 2, one line) before a run starts, for a grid and a single run."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"results_dir={tmp_path}"], return_hydra_config=True)
    cfg.hydra.overrides.task = [f"results_dir={tmp_path}", "latent_dim=4,5"]
    check = grid.GridCheck()

    def broken(*a, **k):
        raise IndexError("list index out of range")

    for hook, target in (("on_multirun_start", "check_grid"), ("on_run_start", "validate")):
        monkeypatch.setattr(grid, target, broken)
        with pytest.raises(SystemExit) as got:
            getattr(check, hook)(cfg)
        assert got.value.code == 2
        line = one_error_line(capsys.readouterr().err)
        assert "failed (IndexError: list index out of range); nothing was started" in line
        monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    cfg.hydra.overrides.task = [f"results_dir={tmp_path}", "latent_dim=4,4"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"), pytest.raises(SystemExit):
        check.on_multirun_start(cfg)  # the real check of a grid with a repeated value refuses too
    assert "a value is repeated in latent_dim=4" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_run_that_failed_before_its_first_epoch_does_not_block_the_corrected_relaunch(
    tmp_path, monkeypatch
):
    """A run that fails before its first epoch (as one with a value the checks once let through did)
    leaves its stored config and a failed run.parquet; the corrected relaunch must train, not be
    refused as a config mismatch. A run that trained an epoch still holds its directory."""
    bad, good = make_cfg("num_threads=1", "lr=5"), make_cfg("num_threads=1")
    run = tmp_path / "runs" / "L4_dense1_conv2_s0"

    def fails(cohort, epoch):
        raise ValueError("a value the checks let through")

    monkeypatch.setattr(slot_mod, "train_epoch", fails)
    assert train(bad, run)["status"] == "failed"
    monkeypatch.undo()
    assert results.read_stored_config(run)["lr"] == 5 and not results.has_trained(run)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):  # the grid check agrees
        args = [*SMALL, "epochs=1", *TINY, f"results_dir={tmp_path}"]
        cfg = compose("config", overrides=args, return_hydra_config=True)
        cfg.hydra.overrides.task = [*args, "seed=0,1", f"hydra.sweep.dir={tmp_path / 'runs'}"]
        cfg.hydra.sweep.dir = str(tmp_path / "runs")
        got = grid.check_grid(cfg)
        assert (got["runs"], got["complete"], got["sweep_dir"]) == (2, 0, tmp_path / "runs")
    row = train(good, run)
    assert row["status"] == "ok" and row["epochs_done"] == 1 and row["lr"] == good["lr"]
    assert results.read_stored_config(run)["lr"] == good["lr"]

    interrupt_in_epoch(monkeypatch, 1)  # trains epoch 1 of 2, then stops: it has trained
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg("num_threads=1", "epochs=2", "seed=1"), tmp_path / "b")
    monkeypatch.undo()
    with pytest.raises(ConfigMismatchError, match=r"epochs: 2 -> 1"):
        train(make_cfg("num_threads=1", "seed=1"), tmp_path / "b")


@pytest.mark.slow
def test_a_corrected_single_run_trains_to_completion_after_its_refusal(tmp_path):
    done = cli("sweep.train", "lr=nan", f"results_dir={tmp_path}", *LAUNCHED)
    assert done.returncode == 2 and not tmp_path.joinpath("runs").exists()
    done = cli("sweep.train", "lr=1e-3", f"results_dir={tmp_path}", *LAUNCHED)
    assert done.returncode == 0, done.stderr[-2000:]
    run = next((tmp_path / "runs").iterdir())
    assert results.read_complete(run)["status"] == "ok"


def test_evaluate_rerun_and_search_refuse_what_train_refuses(populated, capsys):
    """One validator: the entry points other than sweep.train refuse the same values with the same
    message, before anything is written (in process: the command-line table covers the edges)."""
    run = populated / "runs" / "L4_dense1_conv2_s0"
    before = snapshot(populated)
    for overrides, message in [
        (["eval.iwae_k=0"], "eval.iwae_k=0 is out of range; valid: >= 1"),
        (["eval.knn_k=1000"], "eval.knn_k=1000 is larger than the kNN probe's training set (200 images"),
        (["eval.fid_samples=1"], "eval.fid_samples=1 is out of range; valid: >= 2"),
        (["eval.kid_subsets=0"], "eval.kid_subsets=0 is out of range; valid: >= 1"),
        (["device=bogus"], "device='bogus' is not a device; valid: auto, cpu, cuda, cuda:<n>, mps"),
        (["eval.latents_n=abc"], "eval.latents_n='abc' must be an integer; valid: >= 1"),
        (["epochs=3"], "only eval.* and device may be overridden when re-evaluating"),
        (["eval.iwae_k"], "Error parsing override 'eval.iwae_k'"),
    ]:
        assert evaluate.main([str(run), *overrides]) == 2
        assert message in one_error_line(capsys.readouterr().err)
        if overrides != ["eval.iwae_k=0"]:
            continue
        assert rerun.main(["L4_dense1_conv2_s0", f"results_dir={populated}", *overrides]) == 2
        assert message in capsys.readouterr().err
    outside = populated.parent / f"{populated.name}_outside"
    for args, message in [
        (
            ["--out", str(outside)],
            f"--out '{outside}' is not below results_dir ({populated}); valid: a directory",
        ),
        (["--out", str(populated)], "is not below results_dir"),
        (["--from", str(run), "L8_dense1_conv2_s0"], "disagrees with --from"),
    ]:
        name = args.pop() if len(args) == 3 else "L4_dense1_conv2_s0"
        assert rerun.main([name, f"results_dir={populated}", *args]) == 2
        assert message in capsys.readouterr().err
    assert not outside.exists()
    search_base = ["experiment=search_arch", f"results_dir={populated}", *TINY]
    for overrides, message in [
        (["eval.iwae_k=0"], "eval.iwae_k=0 is out of range; valid: >= 1"),
        (["sweep_name=.."], "sweep_name='..' would leave its directory"),
        (
            ["search.space.latent_dim.choices=[0,4]"],
            "search.space.latent_dim can give latent_dim=0, which is",
        ),
        (
            ["search.space.lr.low=0"],
            "search.space.lr.low=0 cannot start a log scale; valid: > 0 with log: true",
        ),
    ]:
        assert search_mod.main([*search_base, *overrides]) == 2
        assert message in capsys.readouterr().err
    assert snapshot(populated) == before


def _drifted_sweep(tmp_path) -> tuple[Path, Path, Path]:
    """Two runs: one whose run.parquet stores a string where the other's has an int, one whose stored
    Hydra config is not YAML. Returns (sweep, the drifted file, the broken file)."""
    sweep_dir = make_sweep(
        tmp_path, seeds=(0,), latents=(4,), encoders=("dense1", "conv2"), decoders=("dense1",)
    )
    drifted = sweep_dir / "L4_conv2_dense1_s0" / "run.parquet"
    t = pq.read_table(drifted)  # what a run that failed on a bad value could store: a string, not an int
    t = t.set_column(t.schema.get_field_index("batch_size"), "batch_size", pa.array(["abc"]))
    pq.write_table(t, drifted)
    broken = sweep_dir / "L4_dense1_dense1_s0" / ".hydra" / "config.yaml"
    broken.parent.mkdir()
    broken.write_text("latent_dim: [4,\n  : :")
    return sweep_dir, drifted, broken


def _assert_drift_warnings(err: str, drifted: Path, broken: Path) -> None:
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, warnings
    assert (
        str(drifted) in warnings[0]
        and "column batch_size is string where the other runs' is int64" in warnings[0]
    )
    assert str(broken) in warnings[1] and "is not valid YAML" in warnings[1]


def test_reading_a_sweep_skips_a_file_whose_column_type_drifted_and_a_config_that_is_not_yaml(
    tmp_path, capsys
):
    sweep_dir, drifted, broken = _drifted_sweep(tmp_path)
    sweep = load_sweep(sweep_dir)
    _assert_drift_warnings(capsys.readouterr().err, drifted, broken)
    assert sorted(path for path, _ in sweep.skipped) == sorted([str(drifted), str(broken)])


@pytest.mark.slow  # every figure drawn; the test above reads the same sweep
def test_analysis_survives_column_type_drift_and_a_stored_config_that_is_not_yaml(tmp_path, capsys):
    sweep_dir, drifted, broken = _drifted_sweep(tmp_path)
    out = tmp_path / "figures"
    assert figures.main([str(sweep_dir), "--out", str(out)]) == 0
    _assert_drift_warnings(capsys.readouterr().err, drifted, broken)
    skipped = (out / "report.md").read_text().split("## Skipped files")[1]
    assert "L4_conv2_dense1_s0/run.parquet" in skipped and "L4_dense1_dense1_s0/.hydra/config.yaml" in skipped


def test_non_finite_latents_are_flagged_in_the_row_and_named_on_the_figures(tmp_path, monkeypatch):
    """A run stored before the divergence bound (sweep/divergence.py, which now ends such a run
    ``diverged``) could end ``ok`` with μ beyond float16's range (a huge learning rate does it): its
    stored latents are inf. The evaluation row says so, and the PCA figures name the run instead of
    drawing a single point. The encoder's μ bias is set to 1e5 here, which is what such a run learns."""
    real_build = cohort_mod.build_model
    monkeypatch.setattr(divergence, "NEG_ELBO_MULTIPLE", math.inf)  # as before the bound

    def huge_mu(cfg):
        model = real_build(cfg)
        with torch.no_grad():
            model.encoder.head.linear.bias[: cfg["latent_dim"]] = 1e5  # > 65504, float16's largest
        return model

    monkeypatch.setattr(cohort_mod, "build_model", huge_mu)
    root = tmp_path / "sweep"
    assert train(make_cfg("num_threads=1"), root / "L4_dense1_conv2_s0")["status"] == "ok"
    monkeypatch.undo()
    ev = pq.read_table(root / "L4_dense1_conv2_s0" / "eval.parquet").to_pylist()[0]
    assert ev["eval/nonfinite"] == "latents.parquet mu (100 of 100 images)"
    assert train(make_cfg("num_threads=1", "seed=1"), root / "L4_dense1_conv2_s1")["status"] == "ok"
    assert pq.read_table(root / "L4_dense1_conv2_s1" / "eval.parquet").column(
        "eval/nonfinite"
    ).to_pylist() == [None]
    sweep = load_sweep(root)
    assert sweep.runs.set_index("run_name")["eval/nonfinite"].isna().tolist() == [False, True]
    from matplotlib.text import Text

    shown = "\n".join(t.get_text() for t in _pca_figure(sweep, 1.0, "all runs").findobj(Text))
    assert "non-finite\nlatents" in shown
    assert "stored latent means μ not finite (beyond float16) for L4_dense1_conv2_s0" in shown.replace("\n", " ")
    runs = sweep.runs.copy()
    runs.loc[runs["run_name"] == "L4_dense1_conv2_s1", "test/iwae_nll"] = float("inf")
    shown = "\n".join(t.get_text() for t in fig_iwae_heatmap.__wrapped__(runs).findobj(Text))
    assert "Not shown (IWAE NLL not finite): L4_dense1_conv2_s1." in shown.replace("\n", " ")


def test_every_rule_refuses_a_value_of_the_wrong_kind_naming_the_key_and_what_is_valid():
    """Totality: each key of the config has a rule, and each rule refuses garbage by name."""
    cfg = make_cfg()
    for key in rules_mod.RULES:
        bad = copy.deepcopy(cfg)
        node = bad
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = ["garbage"]
        with pytest.raises(ConfigError) as got:
            rules_mod.validate(bad)
        assert str(got.value).startswith(key) and "valid" in str(got.value), (key, str(got.value))
    leaves = {k for k in config_mod.flatten(cfg) if k.split(".")[0] not in ("encoder", "decoder")}
    assert leaves <= set(rules_mod.RULES), leaves - set(rules_mod.RULES)


def test_a_missing_config_group_in_process_names_the_options():
    with pytest.raises(MissingConfigException, match="Could not find 'experiment/papers'"):
        make_cfg("experiment=papers")


def test_a_read_only_results_directory_is_refused_with_the_path(tmp_path, monkeypatch):
    """As root, chmod does not stop writes: the denial is then simulated at the OS calls a run makes
    (mkdir, open, mkstemp) for paths below the directory, which is what a read-only mount does."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        real_mkdir, real_open = os.mkdir, os.open

        def deny(path):
            if str(path).startswith(str(ro)):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

        monkeypatch.setattr(os, "mkdir", lambda p, *a, **k: deny(p) or real_mkdir(p, *a, **k))
        monkeypatch.setattr(os, "open", lambda p, *a, **k: deny(p) or real_open(p, *a, **k))
    else:
        ro.chmod(0o555)
    try:
        with pytest.raises(PathError) as got:  # refused by sweep.paths.writable, before any write
            train(make_cfg("num_threads=1"), ro / "runs" / "L4_dense1_conv2_s0")
    finally:
        ro.chmod(0o755)
    assert f"{ro} is not writable (Permission denied)" in str(got.value)
    monkeypatch.undo()
    assert snapshot(ro) == {} and list(ro.iterdir()) == []


def test_a_checksum_mismatch_of_the_data_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    root = tmp_path / "data" / "mnist"
    shutil.copytree(data_mod.root_of("mnist"), root, ignore=shutil.ignore_patterns(".cache"))
    bad = root / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-10] + b"0123456789")
    monkeypatch.setattr(data_mod, "DATA_DIR", root.parent)
    with pytest.raises(DataError) as got:
        train(make_cfg("num_threads=1"), tmp_path / "run")
    assert f"checksum mismatch for {bad}: sha256 " in str(got.value)
    assert "expected" in str(got.value) and "restore the file from the repository" in str(got.value)
    assert not (tmp_path / "run").exists()


def test_a_corrupted_checkpoint_fails_the_run_names_the_file_and_is_moved_aside(tmp_path, monkeypatch):
    """Decision: a truncated ``last.pt`` cannot be resumed from. The run is recorded ``failed`` with an
    error naming the file; the file is renamed to ``last.pt.corrupt`` (kept for inspection, never
    overwritten); nothing else is touched; the relaunch trains the run from the start."""
    cfg = make_cfg("epochs=2", "num_threads=1")
    run = tmp_path / "a" / "run"
    interrupt_in_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run)
    monkeypatch.undo()
    last = run / "last.pt"
    truncated = last.read_bytes()[: last.stat().st_size // 2]
    last.write_bytes(truncated)
    before = snapshot(run, skip=("last.pt", ".lock"))

    row = train(cfg, run)
    assert row["status"] == "failed"
    assert f"cannot resume: checkpoint {last} is unreadable" in row["error"]
    assert "moved it to last.pt.corrupt, so a relaunch trains this run from the start" in row["error"]
    assert (run / "last.pt.corrupt").read_bytes() == truncated and not last.exists()
    assert not (run / "COMPLETE").exists()
    after = snapshot(run, skip=("last.pt.corrupt", ".lock"))
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed == {"run.parquet"}  # only the record of the failure

    row = train(cfg, run)
    assert row["status"] == "ok" and row["epochs_done"] == 2
    assert (run / "last.pt.corrupt").read_bytes() == truncated
    train(cfg, tmp_path / "b" / "run")
    assert_same_results(results_of(tmp_path / "a"), results_of(tmp_path / "b"))


def _write_foreign_run(run_dir: Path, version: int = 999) -> None:
    run_dir.mkdir(parents=True)
    table = pa.table({"schema_version": [version], "run_name": ["L4_dense1_conv2_s0"], "status": ["ok"]})
    table = table.replace_schema_metadata({b"vae_sweep.schema_version": str(version).encode()})
    pq.write_table(table, run_dir / "run.parquet")
    (run_dir / results.COMPLETE).write_text(json.dumps({"status": "ok", "schema_version": version}))


def test_a_run_of_an_incompatible_schema_version_is_skipped_by_collect_and_refused_by_train(
    populated, tmp_path, capsys
):
    sweep = tmp_path / "sweep"
    shutil.copytree(populated / "runs", sweep)
    _write_foreign_run(sweep / "old" / "L4_dense1_conv2_s0")
    got = collect(sweep)
    assert got.table.num_rows == 1
    assert got.skipped == [
        (str(sweep / "old" / "L4_dense1_conv2_s0" / "run.parquet"), "schema version 999, this code reads 1")
    ]
    assert "warning: skipped" in capsys.readouterr().err

    before = snapshot(sweep)
    with pytest.raises(results.SchemaVersionError) as err:
        train(make_cfg("num_threads=1"), sweep / "old" / "L4_dense1_conv2_s0")
    message = str(err.value)
    assert "was written by an incompatible version of vae-sweep" in message
    assert "COMPLETE: schema version 999; run.parquet: schema version 999" in message
    assert f"this code writes schema version {results.SCHEMA_VERSION}" in message
    assert snapshot(sweep) == before


@pytest.mark.slow  # the command; the test above refuses the same run in process
def test_relaunching_a_sweep_over_an_incompatible_run_is_refused_before_anything_is_written(tmp_path):
    run_dir = tmp_path / "sweeps" / "smoke" / "L8_dense2_dense2_s0"
    _write_foreign_run(run_dir)
    before = snapshot(tmp_path)
    done = cli("sweep.train", "experiment=smoke", f"results_dir={tmp_path}", *LAUNCHED)
    assert done.returncode != 0
    assert f"{run_dir} was written by an incompatible version of vae-sweep" in done.stderr
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- guarantee 3: numerical faults


def test_a_nan_gradient_with_a_finite_loss_marks_the_run_diverged_in_that_epoch(tmp_path, monkeypatch):
    """The hook poisons one parameter's gradient at the last step of epoch 2 (the loss of every step
    is finite). Adam turns the NaN gradient into NaN weights; the validation pass at the end of the
    same epoch sees a NaN loss, so the run is ``diverged`` in epoch 2 — no epoch late."""
    cfg = make_cfg("epochs=3", "num_threads=1")
    real_of = cohort_mod.Stack.of
    steps = []

    def stack_with_poison(models, *, trainable=True):
        stack = real_of(models, trainable=trainable)
        if trainable:  # the weights the cohort trains (not an evaluation's copy)
            param = next(v for k, v in stack.params.items() if k.startswith("decoder."))
            steps_per_epoch = math.ceil(200 / cfg["batch_size"])

            def hook(grad):
                steps.append(1)
                return grad * float("nan") if len(steps) == 2 * steps_per_epoch else grad

            param.register_hook(hook)
        return stack

    monkeypatch.setattr(cohort_mod.Stack, "of", stack_with_poison)
    row = train(cfg, tmp_path / "nan")
    assert row["status"] == "diverged" and row["diverged_epoch"] == 2 and row["epochs_done"] == 2
    assert row["error"] == "non-finite loss in epoch 2"
    epochs = pq.read_table(tmp_path / "nan" / "epochs.parquet").to_pylist()
    train_rows = [r for r in epochs if r["split"] == "train"]
    assert all(math.isfinite(r["loss"]) for r in train_rows)  # the loss never saw the NaN
    assert math.isnan([r for r in epochs if r["split"] == "val"][-1]["loss"])
    ev = pq.read_table(tmp_path / "nan" / "eval.parquet").to_pylist()[0]
    assert ev["eval/status"] == "skipped" and ev["eval/reason"] == "run diverged in epoch 2"
    assert results.read_complete(tmp_path / "nan")["status"] == "diverged"
    monkeypatch.undo()
    assert train(make_cfg("seed=1", "num_threads=1"), tmp_path / "next")["status"] == "ok"  # sweep goes on


def test_an_inf_loss_is_diverged_and_its_evaluation_is_skipped_with_the_reason(tmp_path, monkeypatch):
    real = stack_mod.recon_per_image
    monkeypatch.setattr(stack_mod, "recon_per_image", lambda *a: real(*a) * float("inf"))
    row = train(make_cfg("num_threads=1"), tmp_path)
    assert row["status"] == "diverged" and row["diverged_epoch"] == 1
    ev = pq.read_table(tmp_path / "eval.parquet").to_pylist()[0]
    assert ev["eval/status"] == "skipped" and ev["eval/reason"] == "run diverged in epoch 1"
    assert all(ev[k] is None for k in ("test/neg_elbo", "test/iwae_nll", "test/rate"))


def test_an_exploding_log_variance_is_clamped_never_inf():
    head = GaussianHead(3, 2)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.copy_(torch.tensor([0.0, 0.0, 200.0, -200.0]))
    mu, logvar = head(torch.ones(5, 3))
    assert logvar[:, 0].eq(LOGVAR_MAX).all() and logvar[:, 1].eq(LOGVAR_MIN).all()
    from sweep.losses import kl_per_dim

    kl = kl_per_dim(mu, logvar)
    assert torch.isfinite(kl).all() and float(kl[0, 0].detach()) == pytest.approx(
        0.5 * (math.exp(20) - 1 - 20), rel=1e-5
    )
    inside = torch.tensor([[0.5, -1.0, 19.5, -29.5]])
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.copy_(inside[0])
    assert torch.equal(head(torch.zeros(1, 3))[1], inside[:, 2:])  # values in range pass bit for bit


def test_a_run_whose_encoder_explodes_reports_finite_metrics(tmp_path, monkeypatch):
    real_build = cohort_mod.build_model

    def exploding(cfg):
        model = real_build(cfg)
        with torch.no_grad():
            model.encoder.head.linear.bias[cfg["latent_dim"] :] = 200.0  # logvar = +200 at init
        return model

    monkeypatch.setattr(cohort_mod, "build_model", exploding)
    row = train(make_cfg("num_threads=1"), tmp_path / "bounded")
    assert row["status"] == "diverged" and "-ELBO" in row["error"]  # finite, so by the bound
    monkeypatch.setattr(divergence, "NEG_ELBO_MULTIPLE", math.inf)  # without it, evaluated:
    monkeypatch.setattr(divergence, "MI_SE_MULTIPLE", math.inf)
    row = train(make_cfg("num_threads=1"), tmp_path / "evaluated")
    assert row["status"] == "ok"
    assert math.isfinite(row["test/kl"]) and row["test/kl"] > 1e8  # huge, reported, not inf
    ev = pq.read_table(tmp_path / "evaluated" / "eval.parquet").to_pylist()[0]
    for k in ("test/neg_elbo", "test/rate", "test/iwae_nll", "test/mutual_information", "test/psnr"):
        assert math.isfinite(ev[k]), k


# ---------------------------------------------------------------- guarantee 4: resources


def _enospc_on(monkeypatch, name: str, nth: int | None) -> list[int]:
    """Make fsync of the temp file of ``name`` raise ENOSPC (the ``nth`` time only, or always)."""
    real, seen = os.fsync, []

    def fsync(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{name}."):
            seen.append(fd)
            if nth is None or len(seen) == nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_out_of_disk_at_a_checkpoint_keeps_the_previous_one_and_a_relaunch_finishes(tmp_path, monkeypatch):
    """Decision: an ENOSPC while checkpointing ends the run as ``failed`` (the error names the file and
    'No space left on device'); the previous ``last.pt`` is intact and a relaunch resumes from it."""
    cfg = make_cfg("epochs=2", "num_threads=1")
    run = tmp_path / "run"
    _enospc_on(monkeypatch, "last.pt", nth=2)
    row = train(cfg, run)
    monkeypatch.undo()
    assert row["status"] == "failed" and "No space left on device" in row["error"]
    assert f"writing {run / 'last.pt'}; its previous version is intact" in row["error"]
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 1  # the previous good one
    assert pq.read_table(run / "epochs.parquet").num_rows == 4 and not (run / "COMPLETE").exists()
    assert not list(run.rglob("*.tmp"))
    assert train(cfg, run)["status"] == "ok"  # space freed: resumes from epoch 1
    train(cfg, tmp_path / "straight" / "run")
    assert_same_results(results_of(tmp_path), results_of(tmp_path / "straight"))


def test_out_of_disk_while_recording_the_result_propagates_and_a_relaunch_finishes(tmp_path, monkeypatch):
    """When even ``run.parquet`` cannot be written, the OSError propagates (a sweep cannot go on with
    a full disk); no ``COMPLETE``, every earlier file readable, and the relaunch completes the run."""
    cfg = make_cfg("num_threads=1")
    _enospc_on(monkeypatch, "run.parquet", nth=None)
    with pytest.raises(OSError, match="No space left on device") as got:
        train(cfg, tmp_path)
    monkeypatch.undo()
    assert got.value.errno == errno.ENOSPC and got.value.filename == str(tmp_path / "run.parquet")
    assert not (tmp_path / "COMPLETE").exists() and not (tmp_path / "run.parquet").exists()
    assert not list(tmp_path.rglob("*.tmp"))
    for p in tmp_path.glob("*.parquet"):
        pq.read_table(p)
    assert train(cfg, tmp_path)["status"] == "ok" and (tmp_path / "COMPLETE").is_file()


def test_iwae_retries_with_halved_chunks_after_out_of_memory(monkeypatch):
    torch.manual_seed(0)
    model = train_mod.build_model(make_cfg())
    x = torch.bernoulli(torch.rand(6, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    real, calls = metrics.iwae_nll, []

    def flaky(*a, **k):
        calls.append((k["image_chunk"], k["sample_chunk"]))
        if len(calls) <= 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake)")
        return real(*a, **k)

    monkeypatch.setattr(metrics, "iwae_nll", flaky)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    nll, used = evaluate.iwae_with_retry(model, x, k=8, gen=gen, chunks=(4, 4))
    assert calls == [(4, 4), (4, 2), (4, 1), (2, 1), (1, 1)] and used == (1, 1)
    want = real(model, x, k=8, generator=gen(), image_chunk=4, sample_chunk=4)
    torch.testing.assert_close(nll, want)

    calls.clear()
    monkeypatch.setattr(
        metrics, "iwae_nll", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("out of memory"))
    )
    with pytest.raises(RuntimeError, match="out of memory"):  # 1 x 1 still does not fit: give up
        evaluate.iwae_with_retry(model, x, k=8, gen=gen, chunks=(2, 2))
    monkeypatch.setattr(metrics, "iwae_nll", lambda *a, **k: (_ for _ in ()).throw(ValueError("other")))
    with pytest.raises(ValueError, match="other"):  # not an OOM: no retry
        evaluate.iwae_with_retry(model, x, k=8, gen=gen, chunks=(2, 2))


def test_a_run_whose_evaluation_runs_out_of_memory_completes_with_smaller_chunks(
    tmp_path, monkeypatch, capsys
):
    real, calls = metrics.iwae_nll, []

    def flaky(*a, **k):
        calls.append((k["image_chunk"], k["sample_chunk"]))
        if len(calls) <= 2:
            raise RuntimeError("CUDA out of memory (fake)")
        return real(*a, **k)

    monkeypatch.setattr(metrics, "iwae_nll", flaky)
    row = train(make_cfg("num_threads=1", "eval.iwae_image_chunk=8", "eval.iwae_sample_chunk=8"), tmp_path)
    assert row["status"] == "ok" and calls == [(8, 8), (8, 4), (8, 2)]
    assert "IWAE evaluated with image_chunk=8, sample_chunk=2" in capsys.readouterr().out
    assert math.isfinite(pq.read_table(tmp_path / "eval.parquet").to_pylist()[0]["test/iwae_nll"])
