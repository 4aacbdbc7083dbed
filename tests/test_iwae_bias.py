"""``python -m bench.iwae_bias``: at the evaluation's own K it reproduces a run's stored IWAE NLL on the
same images, a larger K is reported against the largest, and a bad argument or a run without
its checkpoint is refused in one line."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import make_cfg, one_error_line

from bench import iwae_bias
from sweep.train import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("iwae_bias") / "run"
    assert train(make_cfg("eval.iwae_k=4", "eval.iwae_images=20"), out)["status"] == "ok"
    return out


def test_at_the_runs_own_k_it_reproduces_the_stored_estimate_and_measures_bias_against_the_largest(
    run_dir, tmp_path, capsys
):
    stored = pd.read_parquet(run_dir / "eval.parquet").iloc[0]
    assert stored["test/iwae_k"] == 4 and stored["test/iwae_images"] == 20
    out = tmp_path / "bias.json"
    assert iwae_bias.main([str(run_dir), "--k", "4", "64", "--images", "20", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    (row,) = doc["runs"]
    assert row["run"] == run_dir.name and row["images"] == 20
    # the same weights, images, noise seed and chunks as the evaluation (which ran the model as a
    # stack of one): identical here, but another CPU's kernels may round differently. Each image's
    # value is a log-mean-exp over K sums of 784 non-negative per-pixel terms and the KL, so float32
    # summation bounds its error by n·u ≈ 800 × 6e-8 ≈ 5e-5 relative (no cancellation to amplify
    # it); the SE is a spread of ~30 nats over 20 such values, moved by at most ~0.02 nats each
    assert row["by_k"]["4"]["nll"] == pytest.approx(stored["test/iwae_nll"], rel=5e-5)
    assert row["by_k"]["4"]["se"] == pytest.approx(stored["test/iwae_nll_se"], rel=2e-3)
    assert row["bias_vs_max_k"]["64"] == 0.0
    assert row["bias_vs_max_k"]["4"] == row["by_k"]["4"]["nll"] - row["by_k"]["64"]["nll"]
    # IWAE_K is a bound that tightens with K: on 20 images, K=64 lies below K=4 by far more than
    # either estimate's noise for a one-epoch model (whose posterior is far from the true one)
    assert row["bias_vs_max_k"]["4"] > 0
    assert doc["command"].startswith("python -m bench.iwae_bias ")


@pytest.mark.parametrize(
    "args, named",
    [
        (["--k", "0"], "argument --k: '0' is not an integer >= 1"),
        (["--k", "100", "x"], "argument --k: 'x' is not an integer >= 1"),
        (["--images", "1"], "argument --images: '1' is not an integer >= 2"),
        (["--threads", "-1"], "argument --threads: '-1' is not an integer >= 1"),
    ],
)
def test_a_bad_argument_is_refused_in_one_line_naming_it_and_nothing_is_written(
    run_dir, tmp_path, capsys, args, named
):
    out = tmp_path / "bias.json"
    assert iwae_bias.main([str(run_dir), *args, "--out", str(out)]) == 2
    assert one_error_line(capsys.readouterr().err).startswith(f"error: {named}")
    assert not out.exists()


def test_a_run_without_its_checkpoint_is_refused_by_name(tmp_path, capsys):
    empty = tmp_path / "L4_dense1_conv2_s0"
    empty.mkdir()
    assert iwae_bias.main([str(empty), "--out", str(tmp_path / "bias.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no best.pt in") and str(empty) in err
