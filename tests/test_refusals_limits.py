"""Nothing wrong is ever silent (issue 23), here: limits the per-key rules cannot see alone are refused by
their key before training: seeds beyond what numpy, scikit-learn take; launcher settings and the Slurm
partitions the cluster has; values the data or the memory cannot take.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import TINY_RUN, make_cfg, one_error_line, snapshot, train_in_process, tree

from sweep.rules import ConfigError, validate
from sweep.train import train

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
    before = tree(tmp_path)
    assert train_in_process(monkeypatch, "-m", f"results_dir={tmp_path}", *TINY_RUN, *args, "seed=0,1") == 2
    captured = capsys.readouterr()
    assert needle in one_error_line(captured.out + captured.err)
    assert tree(tmp_path) == before  # no grid.json, no multirun.yaml, no .submitit/


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


def test_a_submission_slurm_refuses_is_one_error_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    """Where ``sinfo`` cannot answer (no controller reachable) the partition check is skipped, and
    ``sbatch`` itself refuses (here a gres this cluster does not know): one ``error:`` line naming what
    Slurm said and the settings sent, exit status 2 (it was a 40-line traceback, exit 1)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in {
        "sinfo": "#!/bin/sh\necho 'slurm_load_partitions: Unable to contact slurm controller' >&2\nexit 1\n",
        "sbatch": "#!/bin/sh\necho 'sbatch: error: Invalid generic resource (gres) specification' >&2\nexit 1\n",
        "scontrol": "#!/bin/sh\nexit 1\n",
        "srun": "#!/bin/sh\nexit 1\n",  # submitit's executor only looks for it (a machine without Slurm)
    }.items():
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    args = ["-m", f"results_dir={tmp_path / 'results'}", *TINY_RUN, "hydra/launcher=slurm", "seed=0,1"]
    assert train_in_process(monkeypatch, *args, "hydra.launcher.partition=gpu") == 2
    captured = capsys.readouterr()
    (line,) = [x for x in (captured.out + captured.err).splitlines() if x.startswith("error:")]
    assert line.startswith(
        "error: Slurm refused the submission (sbatch: error: Invalid generic resource (gres) specification); "
        "nothing was submitted. Sent: hydra.launcher.partition='gpu'"
    )
    assert "Traceback" not in captured.err and "hydra.launcher.gpus_per_node=0 for CPU tasks" in line
    # nothing written: no grid.json, multirun.yaml or .submitit/ of a launch that submitted nothing
    assert not (tmp_path / "results").exists()
    # a launch into a trained sweep (seed 0 trained, seeds 0 and 1 launched), refused the same way, leaves
    # it byte for byte as it was: its grid.json and multirun.yaml the first launch's, no .submitit/ or lock
    first = [a for a in args if a not in ("hydra/launcher=slurm", "seed=0,1")]
    assert train_in_process(monkeypatch, *first, "seed=0") == 0
    before = tree(tmp_path / "results")
    assert any(p.endswith("grid.json") for p in before) and any(p.endswith("multirun.yaml") for p in before)
    assert train_in_process(monkeypatch, *args, "hydra.launcher.partition=gpu") == 2
    assert tree(tmp_path / "results") == before


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
