"""The documented commands, run as a user runs them (subprocesses)."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import SMOKE_RUNS, cli, make_cfg

from analysis.collect import collect
from sweep.names import GRAMMAR

# every test here runs the commands as subprocesses: the full tier (python -m pytest -m "")
pytestmark = pytest.mark.slow


def test_smoke_sweep_end_to_end_then_a_relaunch_skips_every_run(tmp_path):
    first = cli("sweep.train", "experiment=smoke", f"results_dir={tmp_path}")
    assert first.returncode == 0, first.stderr[-3000:]
    sweep_dir = tmp_path / "sweeps" / "smoke"
    assert {p.name for p in sweep_dir.iterdir() if p.is_dir()} == SMOKE_RUNS
    got = collect(sweep_dir).to_pandas()
    assert set(got["run_name"]) == SMOKE_RUNS and (got["status"] == "ok").all()
    assert (got["test/neg_elbo"] > 0).all() and (got["epochs_done"] == 2).all()
    stamp = {p: p.stat().st_mtime_ns for p in sweep_dir.rglob("*.parquet")}
    again = cli("sweep.train", "experiment=smoke", f"results_dir={tmp_path}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already complete (ok), skipped") == 4
    assert {p: p.stat().st_mtime_ns for p in sweep_dir.rglob("*.parquet")} == stamp


def test_single_run_command_lands_in_runs_and_rerun_reuses_its_stored_config(tmp_path):
    args = ["encoder=dense", "encoder.depth=1", "decoder=conv", "decoder.depth=4", "latent_dim=25"]
    small = ["epochs=1", "data.subset=300", f"results_dir={tmp_path}", "encoder.width=64"]
    done = cli("sweep.train", *args, *small)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "runs" / "L25_dense1_conv4_s0"
    assert f"results in {run_dir}" in done.stdout
    assert pq.read_table(run_dir / "run.parquet").column("encoder.width").to_pylist() == [64]

    out = tmp_path / "again"
    rerun = cli(
        "sweep.rerun", "L25_DNN1_CNN4", "data.subset=200", f"results_dir={tmp_path}", "--out", str(out)
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"config: {run_dir}" in rerun.stdout
    row = pq.read_table(out / "run.parquet").to_pylist()[0]
    assert row["encoder.width"] == 64 and row["data.subset"] == 200 and row["status"] == "ok"


def test_rerun_of_an_unknown_run_composes_it_from_the_name(tmp_path):
    done = cli("sweep.rerun", "L3_conv2_dense1_s4", "epochs=1", "data.subset=200", f"results_dir={tmp_path}")
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
            f"cannot parse run name 'L25_dense1'; grammar: {GRAMMAR}",
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
    done = cli(*args, f"results_dir={tmp_path}")
    assert done.returncode != 0
    assert message in done.stderr + done.stdout
    assert not any(tmp_path.iterdir())


def test_fashion_mnist_smoke_relaunch_rerun_and_the_analysis_of_both_datasets(tmp_path):
    from sweep.train import train

    grid = ["experiment=smoke", "encoder=dense2", "epochs=1", f"results_dir={tmp_path}"]  # 2 runs
    first = cli("sweep.train", *grid, "data=fashion_mnist")
    assert first.returncode == 0, first.stderr[-3000:]
    fashion = tmp_path / "sweeps" / "smoke_fashion_mnist"
    got = collect(fashion).to_pandas()
    assert set(got["run_name"]) == {"L8_dense2_dense2_s0", "L8_dense2_conv5_s0"}
    assert (got["data.name"] == "fashion_mnist").all() and (got["status"] == "ok").all()
    again = cli("sweep.train", *grid, "data=fashion_mnist")
    assert again.returncode == 0 and again.stdout.count("already complete (ok), skipped") == 2
    mnist = tmp_path / "sweeps" / "smoke"
    for dec in ("dense2", "conv5"):  # the MNIST side, trained in this process (same configs)
        cfg = make_cfg(*grid[:3], f"decoder={dec}", "data.subset=1000", "batch_size=100", arch=[])
        train(cfg, mnist / f"L8_dense2_{dec}_s0")
    # rerun by name: data=fashion_mnist picks the Fashion-MNIST run of that name (here: already complete)
    target = fashion / "L8_dense2_dense2_s0"
    rerun = cli(
        "sweep.rerun",
        "L8_dense2_dense2_s0",
        "data=fashion_mnist",
        f"results_dir={tmp_path}",
        "--out",
        str(target),
    )
    assert (
        rerun.returncode == 0 and f"config: {target}" in rerun.stdout and "already complete" in rerun.stdout
    )

    done = cli("analysis.figures", str(mnist), str(fashion))
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "sweeps" / "figures_smoke+smoke_fashion_mnist"
    report = (out / "report.md").read_text()
    assert "### Verdicts by dataset" in report and "| claim | arm | fashion_mnist | mnist |" in report
    claims = pd.read_csv(out / "claims.csv")
    assert set(claims["arm"]) == {"data.name=mnist", "data.name=fashion_mnist"}
    ranking = pd.read_csv(out / "ranking_fid.csv")
    assert len(ranking) == 4 and ranking["test/fid_prior"].is_monotonic_increasing
    assert (out / "fid_distortion.png").is_file() and "not comparable with Inception-based FIDs" in report
