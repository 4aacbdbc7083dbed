"""analysis.collect: gathering run files, joining evaluations by run directory, skipping bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import make_cfg
from synthetic import corrupt, make_sweep

from analysis.collect import collect, load_sweep


def test_ablation_variants_sharing_run_names_stay_separate_rows_with_their_own_evaluations(tmp_path):
    make_sweep(tmp_path / "loss.reduction=sum", seeds=(0,), latents=(25,), sweep_name="x", rng_seed=1)
    make_sweep(
        tmp_path / "loss.reduction=paper",
        seeds=(0,),
        latents=(25,),
        sweep_name="x",
        rng_seed=2,
        loss_reduction="paper",
    )
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
        deciding = table.loc[(table["arm"] == arm) & table["decides"], "claim"]
        assert list(deciding) == ["C1", "C2", "C3", "C4", "C5a", "C5b", "C6"]
    assert list(table.loc[table["arm"] == "all", "claim"]) == ["ablation"]
    # identical arms: each arm's verdicts equal the verdicts of that arm alone
    alone = claims_table(runs.assign(**{"loss.reduction": "sum"}))
    assert set(alone["arm"]) == {"all"} and len(alone) == (table["arm"] == "loss.reduction=sum").sum()
    cols = ["claim", "part", "metric", "verdict", "statistic"]
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


# ------------------------------------------------------------ a trained model counts once (issue 35)
def _copy_sweep(sweep_dir, root):
    shutil.copytree(sweep_dir, root / "copy_of_the_sweep")


def _rerun_beside(sweep_dir, root):
    run = sorted(sweep_dir.glob("L*"))[0]
    shutil.copytree(run, root / "runs" / f"{run.name}_again")


@pytest.mark.parametrize(
    "duplicate, n_skipped",
    [(_copy_sweep, 4), (_rerun_beside, 1)],
    ids=["two-copies-of-a-sweep", "a-rerun-beside-its-sweep"],
)
def test_a_run_stored_twice_counts_once_and_the_copy_is_named(tmp_path, capsys, duplicate, n_skipped):
    from analysis.rank import aggregate_seeds

    sweep_dir = make_sweep(tmp_path, seeds=(0,), latents=(25,))
    duplicate(sweep_dir, tmp_path)
    got = load_sweep(tmp_path)
    assert sorted(got.runs["run_name"]) == sorted(p.name for p in sweep_dir.glob("L*"))
    stored = {str(p.parent.relative_to(tmp_path)) for p in tmp_path.glob("**/run.parquet")}
    kept = set(got.runs["run_dir"])
    same = {
        str(Path(p).relative_to(tmp_path)) for p, r in got.skipped if "the same run (config and seed)" in r
    }
    assert len(same) == n_skipped == len(got.skipped) and same | kept == stored and not same & kept
    assert capsys.readouterr().err.count("counted once") == n_skipped
    assert set(got.dims["run_dir"]) == set(got.runs["run_dir"])
    agg = aggregate_seeds(got.runs, ["test/distortion"])
    assert (agg["test/distortion/n"] == 1).all()  # not n = 2 with a zero-width interval
    # the same copies given as two roots count once as well
    assert (
        len(load_sweep([sweep_dir, tmp_path / ("copy_of_the_sweep" if n_skipped == 4 else "runs")]).runs) == 4
    )


def test_runs_that_differ_in_one_config_key_or_the_seed_are_not_duplicates(tmp_path):
    make_sweep(tmp_path / "a", seeds=(0,), latents=(25,), sweep_name="x")
    make_sweep(tmp_path / "b", seeds=(1,), latents=(25,), sweep_name="x")
    make_sweep(tmp_path / "c", seeds=(0,), latents=(25,), sweep_name="x", loss_reduction="paper")
    got = load_sweep(tmp_path)
    assert len(got.runs) == 12 and not got.skipped


# ------------------------------------------------------------ a run's files agree with one another
def _eval_of_another_run(run_dir, other):
    shutil.copy(other / "eval.parquet", run_dir / "eval.parquet")
    return run_dir / "eval.parquet", "eval"


def _dims_of_another_run(run_dir, other):
    shutil.copy(other / "dims.parquet", run_dir / "dims.parquet")
    return run_dir / "dims.parquet", "dims"


def _epochs_of_another_run(run_dir, other):
    shutil.copy(other / "epochs.parquet", run_dir / "epochs.parquet")
    return run_dir / "epochs.parquet", "epochs"


def _row_of_another_config(run_dir, other):
    import yaml

    (run_dir / ".hydra").mkdir()
    cfg = {"latent_dim": 25, "seed": 0, "loss": {"reduction": "paper"}, "data": {"name": "mnist"}}
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run_dir / "run.parquet", "run"


@pytest.mark.parametrize(
    "plant",
    [_eval_of_another_run, _dims_of_another_run, _epochs_of_another_run, _row_of_another_config],
    ids=["eval-copied", "dims-copied", "epochs-copied", "run-row-not-its-config"],
)
def test_a_file_of_another_run_is_skipped_naming_it(tmp_path, capsys, plant):
    sweep_dir = make_sweep(tmp_path, seeds=(0,), latents=(25,))
    run_dirs = sorted(sweep_dir.glob("L*"))
    path, table = plant(run_dirs[0], run_dirs[1])
    got = collect(sweep_dir, table)
    assert [p for p, _ in got.skipped] == [str(path)]
    assert str(path) in capsys.readouterr().err
    assert run_dirs[0].name not in set(got.to_pandas()["run_dir"])
    if table == "eval":  # the run keeps its row, without the other run's numbers
        runs = load_sweep(sweep_dir).runs.set_index("run_name")
        assert len(runs) == 4 and runs["test/rate"].isna().sum() == 1
        assert runs.loc[run_dirs[0].name, "test/rate"] != runs.loc[run_dirs[1].name, "test/rate"]


def test_a_run_row_that_agrees_with_its_stored_config_is_kept(tmp_path):
    import yaml

    sweep_dir = make_sweep(tmp_path, seeds=(0,), latents=(25,))
    run_dir = sorted(sweep_dir.glob("L*"))[0]
    row = pq.read_table(run_dir / "run.parquet").to_pylist()[0]
    nested: dict = {}
    for k in ("latent_dim", "seed", "loss.reduction", "encoder.kind", "encoder.depth", "lr", "loss.beta"):
        *parents, last = k.split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = int(row[k]) if k == "loss.beta" else row[k]  # YAML's 1 is parquet's 1.0
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(nested))
    assert not collect(sweep_dir).skipped
