"""Evaluation files of a run, and re-evaluation without retraining (python -m sweep.evaluate)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml
from conftest import make_cfg
from PIL import Image

import sweep.stack as stack_mod
from sweep import evaluate, fid_kid, metrics
from sweep.train import train

README = Path(__file__).resolve().parent.parent / "results" / "README.md"
TRAINING_FILES = ("run.parquet", "epochs.parquet", "best.pt", "COMPLETE", ".hydra/config.yaml")


def eval_row(run_dir: Path) -> dict:
    return pq.read_table(run_dir / "eval.parquet").to_pylist()[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    assert train(make_cfg("epochs=2", "data.subset=300"), run_dir)["status"] == "ok"
    return run_dir


def test_a_finished_run_carries_every_documented_metric(trained):
    table = pq.read_table(trained / "eval.parquet")
    documented = re.findall(
        r"^\| `([^`]+)` \|", README.read_text().split("## `eval.parquet`", 1)[1].split("\n## ")[0], re.M
    )
    assert table.column_names == evaluate.EVAL_COLUMNS == documented
    row = table.to_pylist()[0]
    nullable = {"eval/reason", "eval/nonfinite", "test/bce_pixel_mean", "test/iwae_null_reason"}
    assert [k for k, v in row.items() if v is None] == sorted(nullable, key=evaluate.EVAL_COLUMNS.index)
    assert row["eval/status"] == "ok" and row["test/iwae_k"] == 2
    assert row["test/neg_elbo"] == pytest.approx(row["test/rate"] + row["test/distortion"])
    # the IWAE bound is tighter than the one-sample ELBO on the same data
    assert row["test/iwae_nll"] < row["test/neg_elbo"]
    assert row["test/mutual_information_ceiling"] == pytest.approx(__import__("math").log(300))  # subset=300
    mi, ceiling = row["test/mutual_information"], row["test/mutual_information_ceiling"]
    assert 0 <= mi <= min(row["test/rate"], ceiling) + 1e-6
    assert 0 <= row["test/active_units"] <= 4 and 0.0 <= row["latent/knn_acc"] <= 1.0
    assert row["active_unit_threshold"] == metrics.ACTIVE_UNIT_THRESHOLD
    dims = pq.read_table(trained / "dims.parquet").to_pylist()
    assert [d["dim"] for d in dims] == [0, 1, 2, 3]
    assert sum(d["active"] for d in dims) == row["test/active_units"]
    assert sum(d["kl"] for d in dims) == pytest.approx(row["test/rate"], rel=1e-4)
    lat = pq.read_table(trained / "latents.parquet")
    assert (
        lat.num_rows == 100
        and len(lat.column("mu")[0]) == 4
        and str(lat.schema.field("mu").type.value_type) == "halffloat"
    )
    assert Image.open(trained / "recon.png").size == (16 * 29 + 1, 2 * 29 + 1)
    assert Image.open(trained / "samples.png").size == (8 * 29 + 1, 8 * 29 + 1)


def test_reevaluation_rewrites_only_the_evaluation_files_and_is_deterministic(trained):
    before = eval_row(trained)
    stamp = {f: (trained / f).stat().st_mtime_ns for f in TRAINING_FILES}
    assert evaluate.main([str(trained.parent), "eval.iwae_k=16"]) == 0
    after = eval_row(trained)
    assert after["test/iwae_k"] == 16 and after["test/iwae_nll"] != before["test/iwae_nll"]
    assert {f: (trained / f).stat().st_mtime_ns for f in TRAINING_FILES} == stamp
    assert evaluate.main([str(trained), "eval.iwae_k=2"]) == 0
    again = eval_row(trained)
    drop = lambda r: {k: v for k, v in r.items() if k != "eval/seconds"}  # noqa: E731
    assert drop(again) == drop(before)


def test_reevaluation_refuses_overrides_that_would_change_the_trained_model(trained, capsys):
    assert evaluate.main([str(trained), "epochs=3"]) == 2
    assert (
        "only eval.* and device may be overridden when re-evaluating, not epochs=3" in capsys.readouterr().err
    )
    assert evaluate.main([str(trained / "nothing-here")]) == 2


def test_bce_runs_have_no_iwae_and_report_the_per_pixel_scale(tmp_path):
    train(make_cfg("data.likelihood=bce"), tmp_path)
    row = eval_row(tmp_path)
    assert row["test/iwae_nll"] is None and "not a normalised likelihood" in row["test/iwae_null_reason"]
    assert row["test/bce_pixel_mean"] == pytest.approx(row["test/distortion"] / 784)


def test_a_diverged_run_is_not_evaluated_and_says_why(tmp_path, monkeypatch):
    real = stack_mod.recon_per_image
    monkeypatch.setattr(stack_mod, "recon_per_image", lambda *a: real(*a) * float("inf"))
    train(make_cfg(), tmp_path)
    row = eval_row(tmp_path)
    assert row["eval/status"] == "skipped" and row["eval/reason"] == "run diverged in epoch 1"
    assert row["test/iwae_nll"] is None
    assert evaluate.main([str(tmp_path)]) == 0  # re-evaluation keeps skipping it
    assert eval_row(tmp_path)["eval/reason"] == "run status is diverged"


def test_sample_quality_columns_and_their_recomputation_on_a_config_stored_before_them(trained):
    row = eval_row(trained)
    # eval.fid_samples=10000 prior samples, capped at the 300 test images of the subset
    assert row["test/fid_samples"] == row["test/fid_real"] == row["test/kid_subset_size"] == 300
    assert row["test/fid_prior"] > 0 and row["test/fid_recon"] > 0
    assert row["test/kid_prior_std"] == 0  # subsets of 300 from 300 images each: one subset, the sets
    assert row["test/fid_classifier"] == fid_kid.load_classifier("mnist").sha256
    # a config written before data.name and eval.fid_samples existed: both get their defaults
    path = trained / ".hydra" / "config.yaml"
    stored = yaml.safe_load(path.read_text())
    del stored["data"]["name"], stored["eval"]["fid_samples"]
    path.write_text(yaml.safe_dump(stored))
    assert evaluate.main([str(trained), "eval.fid_samples=100", "eval.kid_subset_size=50"]) == 0
    small = eval_row(trained)
    assert (small["test/fid_samples"], small["test/fid_real"], small["test/kid_subset_size"]) == (
        100,
        300,
        50,
    )
    assert small["test/kid_prior_std"] > 0  # 100 random subsets of 50
    assert small["test/fid_recon"] == pytest.approx(row["test/fid_recon"], rel=1e-6)  # same images
    assert small["test/fid_prior"] != row["test/fid_prior"]


def test_reevaluation_runs_on_the_runs_num_threads_and_restores_the_count(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    want = before + 1  # a count this process is not already using
    assert train(make_cfg(f"num_threads={want}"), tmp_path)["status"] == "ok"
    seen = []

    def record(model, data, cfg, run_dir, run_name, test_losses=None):
        seen.append(torch.get_num_threads())
        return {"run_name": run_name, "eval/status": "ok"}

    monkeypatch.setattr(evaluate, "evaluate_run", record)
    assert evaluate.main([str(tmp_path)]) == 0
    assert seen == [want] and torch.get_num_threads() == before


def test_runs_re_evaluated_with_another_profile_are_never_pooled(tmp_path):
    """A re-evaluation rewrites only the evaluation files, the run's config keeps the profile it was
    trained with: eval.parquet records the profile it was made with, and analysis groups by that."""
    import json

    from analysis import rank
    from analysis.collect import load_sweep

    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        cfg = make_cfg("epochs=1", "data.subset=300", f"seed={seed}")
        assert train(cfg, sweep / f"run{seed}")["status"] == "ok"
    assert json.loads(eval_row(sweep / "run0")["eval/profile"])["knn_k"] == 5
    assert evaluate.main([str(sweep / "run1"), "eval.knn_k=3"]) == 0
    profile = json.loads(eval_row(sweep / "run1")["eval/profile"])
    assert profile["knn_k"] == 3 and "mi_chunk" not in profile  # chunk sizes only batch a computation
    runs = load_sweep(sweep).runs
    assert sorted(zip(runs["seed"], runs["eval.knn_k"], strict=True)) == [(0, 5), (1, 3)]
    assert rank.protocol_columns(runs) == ["eval.knn_k"]  # two groups: never ranked or tested together
