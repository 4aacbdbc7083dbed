"""analysis.collect: gathering run files, joining evaluations by run directory, skipping bad files."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from conftest import make_cfg
from synthetic import corrupt, make_sweep

from analysis.collect import collect, load_sweep


def test_ablation_variants_sharing_run_names_stay_separate_rows_with_their_own_evaluations(tmp_path):
    make_sweep(tmp_path / "loss.reduction=sum", seeds=(0,), latents=(25,), sweep_name="x", rng_seed=1)
    make_sweep(tmp_path / "loss.reduction=paper", seeds=(0,), latents=(25,), sweep_name="x", rng_seed=2)
    got = load_sweep(tmp_path)
    runs = got.runs
    assert len(runs) == 8 and runs["run_name"].nunique() == 4 and runs["run_dir"].nunique() == 8
    for _, r in runs.iterrows():  # each row carries the evaluation stored beside its own run.parquet
        ev = pq.read_table(tmp_path / r["run_dir"] / "eval.parquet").to_pylist()[0]
        assert r["test/rate"] == ev["test/rate"]
    mu, labels = got.latents(runs["run_dir"].iloc[0])
    assert mu.shape[0] == labels.shape[0] and mu.dtype.name == "float32"
    assert len(got.dims) == sum(runs["latent_dim"])


def test_a_corrupted_file_is_skipped_with_one_warning_naming_it(tmp_path, capsys):
    root = make_sweep(tmp_path, seeds=(0,), latents=(25,))
    bad = sorted(root.glob("*/run.parquet"))[0]
    corrupt(bad)
    got = collect(root)
    assert got.table.num_rows == 3 and [p for p, _ in got.skipped] == [str(bad)]
    err = capsys.readouterr().err
    assert err.count("warning: skipped") == 1 and str(bad) in err


def test_claims_are_decided_within_each_ablation_arm_and_the_ablation_across_them(tmp_path):
    import pandas as pd

    from analysis.tables import claims_table

    make_sweep(tmp_path / "a", seeds=(0, 1), latents=(25, 50), sweep_name="x", rng_seed=1)
    runs = load_sweep(tmp_path / "a").runs
    paper = runs.assign(**{"loss.reduction": "paper", "run_dir": "p/" + runs["run_dir"]})
    both = pd.concat([runs.assign(**{"loss.reduction": "sum"}), paper], ignore_index=True)
    table = claims_table(both)
    assert sorted(set(table["arm"])) == ["all", "loss.reduction=paper", "loss.reduction=sum"]
    for arm in ("loss.reduction=paper", "loss.reduction=sum"):
        assert list(table.loc[table["arm"] == arm, "claim"]) == ["C1", "C2", "C3", "C4", "C5", "C6"]
    assert list(table.loc[table["arm"] == "all", "claim"]) == ["ablation"]
    # identical arms: each arm's verdicts equal the verdicts of that arm alone
    alone = claims_table(runs.assign(**{"loss.reduction": "sum"}))
    assert list(alone["arm"]) == ["all"] * 6
    cols = ["claim", "verdict", "statistic"]
    pd.testing.assert_frame_equal(
        table.loc[table["arm"] == "loss.reduction=sum", cols].reset_index(drop=True), alone[cols]
    )


@pytest.mark.slow  # two runs with the CPU's default IWAE K (100): half a minute
def test_runs_launched_with_auto_and_numeric_engine_settings_collect_as_one_sweep(tmp_path, capsys):
    """``engine.max_members`` is ``auto`` or a number, ``progress`` ``auto`` or a boolean: launches that
    set them differently must still give one column type, so no run of the sweep is skipped."""
    from sweep.train import train

    for seed, knobs in ((0, ["engine.max_members=2", "progress=false"]), (1, ["progress=auto"])):
        cfg = make_cfg(f"seed={seed}", *knobs, "eval.iwae_k=null")
        train(cfg, tmp_path / f"s{seed}")
    got = collect(tmp_path)
    assert got.skipped == [] and got.table.num_rows == 2
    assert sorted(got.table.column("engine.max_members").to_pylist()) == ["2", "auto"]
    assert "warning" not in capsys.readouterr().err
