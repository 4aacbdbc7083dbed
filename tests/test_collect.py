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


# ------------------------------------------- a run's files carry its identity: a same-named copy is seen
ONE_RUN = {"seeds": (0,), "latents": (25,), "encoders": ("dense1",), "decoders": ("dense1",)}
NAME = "L25_dense1_dense1_s0"
REPRODUCE = Path(__file__).resolve().parent.parent / "results" / "examples" / "reproduce"


def _unstamp(path: Path) -> None:
    """Rewrite ``path`` without its identity stamp, as a file written before stamps existed."""
    from sweep.results import IDENTITY_KEY, write_parquet

    t = pq.read_table(path)
    write_parquet(
        path, t.replace_schema_metadata({k: v for k, v in t.schema.metadata.items() if k != IDENTITY_KEY})
    )


def _stamp_of_row(run_dir: Path) -> str:
    from sweep.keys import identity_digest

    return identity_digest(pq.read_table(run_dir / "run.parquet").to_pylist()[0])


def _no_row_yet(run_dir: Path) -> None:
    """The run as it is while it trains: its stored config (its row's identity keys, nested), no
    run.parquet."""
    import yaml

    from sweep.keys import row_identity

    nested: dict = {}
    for k, v in row_identity(pq.read_table(run_dir / "run.parquet").to_pylist()[0]):
        *parents, last = k.split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = v
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(nested))
    (run_dir / "run.parquet").unlink()


# (case, how the other run of the same name differs, what predates stamps, skipped)
IDENTITY_CASES = [
    ("another-config", {"loss_reduction": "paper"}, None, True),
    ("same-config-reevaluated", {"rng_seed": 1}, None, False),
    ("another-config-run-row-unstamped", {"loss_reduction": "paper"}, "run", True),
    ("same-config-run-row-unstamped", {"rng_seed": 1}, "run", False),
    ("another-config-no-run-row-yet", {"loss_reduction": "paper"}, "no row", True),
    ("another-config-file-unstamped", {"loss_reduction": "paper"}, "file", False),  # the name check: unseen
]
STAMPED = [  # only epochs.parquet is written before run.parquet
    (table, *c) for table in ("eval", "dims", "epochs", "latents") for c in IDENTITY_CASES
    if c[2] != "no row" or table == "epochs"
]  # fmt: skip


@pytest.mark.parametrize(
    "table, case, theirs, old, skipped", STAMPED, ids=[f"{t}-{c}" for t, c, *_ in STAMPED]
)
def test_a_file_of_a_same_named_run_of_another_identity_is_skipped_naming_both_stamps(
    tmp_path, capsys, table, case, theirs, old, skipped
):
    mine = make_sweep(tmp_path / "mine", **ONE_RUN) / NAME
    other = make_sweep(tmp_path / "theirs", **ONE_RUN, **theirs) / NAME
    path = mine / f"{table}.parquet"
    shutil.copy(other / path.name, path)
    mine_stamp, their_stamp = _stamp_of_row(mine), _stamp_of_row(other)
    assert (mine_stamp == their_stamp) == ("loss_reduction" not in theirs)  # same name either way
    if old == "run":
        _unstamp(mine / "run.parquet")
    elif old == "file":
        _unstamp(path)
    elif old == "no row":
        _no_row_yet(mine)
    got = collect(mine.parent, table)
    if not skipped:
        assert got.skipped == [] and got.to_pandas()["run_dir"].unique().tolist() == [NAME]
        return
    source = mine / ("run.parquet" if old != "no row" else ".hydra/config.yaml")
    reason = (
        f"it is stamped with run identity {their_stamp}, but {source} is run identity {mine_stamp} "
        "(another config or seed, whatever its run name): another run's file, not used"
    )
    assert got.skipped == [(str(path), reason)]
    assert f"warning: skipped {path}: {reason}" in capsys.readouterr().err
    if table == "latents":  # what the figures read of a run is checked the same way
        sweep = load_sweep(mine.parent)
        assert sweep.latents(NAME) is None and sweep.projection(NAME) is None
        assert capsys.readouterr().err.count(f"warning: skipped {path}: {reason}") == 2


def test_an_unstamped_file_of_another_run_name_is_skipped_by_the_name_check(tmp_path, capsys):
    """Files written before stamps (the committed runs') fall back to the run name."""
    sweep_dir = make_sweep(tmp_path, seeds=(0, 1), **{k: v for k, v in ONE_RUN.items() if k != "seeds"})
    for path in sweep_dir.glob("*/*.parquet"):
        _unstamp(path)
    shutil.copy(sweep_dir / "L25_dense1_dense1_s1" / "eval.parquet", sweep_dir / NAME / "eval.parquet")
    got = collect(sweep_dir, "eval")
    reason = (
        f"holds run L25_dense1_dense1_s1, but {sweep_dir / NAME / 'run.parquet'} is run {NAME}: "
        "another run's file, not used"
    )
    assert got.skipped == [(str(sweep_dir / NAME / "eval.parquet"), reason)]


def test_the_committed_runs_are_collected_whole_and_their_config_and_row_have_one_identity():
    """The runs under results/examples predate stamps (read only, never rewritten): every file is read
    (the name check), and the identity of each stored config is the identity of its run row, so a run
    re-evaluated now (files stamped from its config) keeps its evaluation beside its unstamped row."""
    from sweep.keys import identity_digest
    from sweep.results import identity_of, read_stored_config

    for table in ("run", "eval", "dims", "epochs"):
        got = collect(REPRODUCE, table)
        assert got.skipped == [] and got.to_pandas()["run_dir"].nunique() == 300, table
    run_dirs = sorted(p.parent for p in REPRODUCE.glob("*/run.parquet"))
    assert len(run_dirs) == 300 and {identity_of(d / "eval.parquet") for d in run_dirs} == {None}
    differ = [d.name for d in run_dirs if identity_digest(read_stored_config(d)) != _stamp_of_row(d)]
    assert differ == []


def test_a_run_cut_off_before_its_complete_marker_is_skipped_not_counted(tmp_path, capsys):
    """run.parquet is written before COMPLETE: a run killed between them says ok but is not complete,
    and a relaunch finishes it. Counted, it would sit in every table while the report's grid line
    counts it missing; it is skipped with a warning instead. A failed run (no marker by design) stays."""
    from synthetic import make_sweep

    from analysis.collect import load_sweep

    sweep = make_sweep(
        tmp_path,
        seeds=(0,),
        encoders=("dense1",),
        decoders=("dense1", "conv2"),
        failed=("L25_dense1_conv2_s0",),
    )
    whole = load_sweep(sweep).runs
    cut = sorted(set(whole.loc[whole["status"].eq("ok"), "run_dir"]))[0]
    (sweep / cut / "COMPLETE").unlink()
    got = load_sweep(sweep)
    assert cut not in set(got.runs["run_dir"]) and len(got.runs) == len(whole) - 1
    assert "L25_dense1_conv2_s0" in set(got.runs["run_dir"])  # failed: kept, with no marker
    assert any(p.endswith(f"{cut}/run.parquet") and "no COMPLETE marker" in why for p, why in got.skipped)
