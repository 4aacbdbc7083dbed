"""The documented commands, run as a user runs them (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analysis.collect import collect

ROOT = Path(__file__).resolve().parent.parent
SMOKE_RUNS = {"L8_dense2_dense2_s0", "L8_dense2_conv5_s0", "L8_conv5_dense2_s0", "L8_conv5_conv5_s0"}


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "true", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_smoke_sweep_end_to_end_then_a_relaunch_skips_every_run(tmp_path):
    first = run("sweep.train", "experiment=smoke", f"results_dir={tmp_path}")
    assert first.returncode == 0, first.stderr[-3000:]
    sweep_dir = tmp_path / "sweeps" / "smoke"
    assert {p.name for p in sweep_dir.iterdir() if p.is_dir()} == SMOKE_RUNS
    got = collect(sweep_dir).to_pandas()
    assert set(got["run_name"]) == SMOKE_RUNS and (got["status"] == "ok").all()
    assert (got["test/neg_elbo"] > 0).all() and (got["epochs_done"] == 2).all()
    stamp = {p: p.stat().st_mtime_ns for p in sweep_dir.rglob("*.parquet")}
    again = run("sweep.train", "experiment=smoke", f"results_dir={tmp_path}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already complete (ok), skipped") == 4
    assert {p: p.stat().st_mtime_ns for p in sweep_dir.rglob("*.parquet")} == stamp


@pytest.mark.slow
def test_single_run_command_lands_in_runs_and_rerun_reuses_its_stored_config(tmp_path):
    args = ["encoder=dense", "encoder.depth=1", "decoder=conv", "decoder.depth=4", "latent_dim=25"]
    small = ["epochs=1", "data.subset=300", f"results_dir={tmp_path}", "encoder.width=64"]
    done = run("sweep.train", *args, *small)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "runs" / "L25_dense1_conv4_s0"
    assert f"results in {run_dir}" in done.stdout
    assert pq.read_table(run_dir / "run.parquet").column("encoder.width").to_pylist() == [64]

    out = tmp_path / "again"
    rerun = run(
        "sweep.rerun", "L25_DNN1_CNN4", "data.subset=200", f"results_dir={tmp_path}", "--out", str(out)
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"config: {run_dir}" in rerun.stdout
    row = pq.read_table(out / "run.parquet").to_pylist()[0]
    assert row["encoder.width"] == 64 and row["data.subset"] == 200 and row["status"] == "ok"


@pytest.mark.slow
def test_rerun_of_an_unknown_run_composes_it_from_the_name(tmp_path):
    done = run("sweep.rerun", "L3_conv2_dense1_s4", "epochs=1", "data.subset=200", f"results_dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "composed from the run name" in done.stdout
    row = pq.read_table(tmp_path / "runs" / "L3_conv2_dense1_s4" / "run.parquet").to_pylist()[0]
    assert (row["encoder.kind"], row["encoder.depth"], row["decoder.kind"], row["seed"]) == (
        "conv",
        2,
        "dense",
        4,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["sweep.rerun", "L25_dense1"],
            "cannot parse run name 'L25_dense1'; grammar: L{latent}_{enc}{depth}_{dec}{depth}",
        ),
        (["sweep.rerun", "L25_rnn1_conv4_s0"], "unknown layer kind 'rnn'"),
        (["sweep.rerun", "L25_conv9_conv4_s0"], "encoder.depth=9 is out of range for conv; valid: 1..5"),
        (["sweep.rerun", "L25_conv1_conv4_s0", "nokey=3"], "Could not override 'nokey'"),
        (
            ["sweep.train", "encoder=conv", "encoder.depth=6"],
            "encoder.depth=6 is out of range for conv; valid: 1..5",
        ),
        (["sweep.train", "latent_dim=0"], "latent_dim=0 is out of range; valid: an integer >= 1"),
        (["sweep.train", "decoder.kind=rnn"], "decoder.kind='rnn' is unknown; valid: dense, conv"),
        (
            ["sweep.train", "encoder.activation=swish2"],
            "encoder.activation='swish2' is unknown; valid: leaky_relu, relu",
        ),
        (["sweep.train", "experiment=papers"], "Could not find 'experiment/papers'"),
        (
            ["sweep.train", "experiment=smoke", "loss.reduction=sum,paper"],
            "the run name does not show loss.reduction",
        ),
    ],
)
def test_bad_input_is_rejected_before_anything_is_written(tmp_path, args, message):
    done = run(*args, f"results_dir={tmp_path}")
    assert done.returncode != 0
    assert message in done.stderr + done.stdout
    assert not any(tmp_path.iterdir())
