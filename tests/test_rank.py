"""analysis.rank on hand-built run tables whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import rank

DEFAULTS = {
    "status": "ok",
    "seed": 0,
    "latent_dim": 25,
    "family/encoder": "dense1",
    "family/decoder": "conv4",
    "encoder.width": 512,
    "loss.reduction": "sum",
    "results_dir": "results",
    "test/distortion": 100.0,
    "test/rate": 10.0,
    "test/neg_elbo": 110.0,
    "test/iwae_nll": 105.0,
}


def spell(family: str) -> str:
    """``dense1`` → ``DNN1``, ``conv4`` → ``CNN4`` (the paper's spelling)."""
    return family.replace("dense", "DNN").replace("conv", "CNN")


def table(rows: list[dict]) -> pd.DataFrame:
    """A run table: DEFAULTS overridden per row; run names and paper labels filled in when absent."""
    out = []
    for i, r in enumerate(rows):
        row = {**DEFAULTS, **r}
        enc, dec = row["family/encoder"], row["family/decoder"]
        row.setdefault("run_name", f"L{row['latent_dim']}_{enc}_{dec}_s{row['seed']}_{i:03d}")
        row.setdefault("label", f"L{row['latent_dim']}_{spell(enc)}_{spell(dec)}")
        out.append(row)
    return pd.DataFrame(out)


def test_ranking_sorts_ascending_breaks_ties_by_name_and_drops_runs_that_are_not_ok():
    runs = table(
        [
            {"run_name": "d", "test/distortion": 3.0},
            {"run_name": "c", "test/distortion": 1.0},
            {"run_name": "b", "test/distortion": 2.0},
            {"run_name": "a", "test/distortion": 1.0},
            {"run_name": "failed", "status": "failed", "test/distortion": 0.1},
            {"run_name": "diverged", "status": "diverged", "test/distortion": 0.2},
            {"run_name": "nan", "test/distortion": np.nan},
            {"run_name": "none", "test/distortion": None},
        ]
    )
    got = rank.ranking(runs)
    assert got["run_name"].tolist() == ["a", "c", "b", "d"]
    assert got["rank"].tolist() == [1, 2, 3, 4]
    assert (got["criterion"] == "recon").all()
    by_elbo = rank.ranking(
        runs.assign(**{"test/neg_elbo": [1.0, 4.0, 3.0, 2.0, 0.0, 0.0, 5.0, 6.0]}), "neg_elbo"
    )
    assert by_elbo["run_name"].tolist() == ["d", "a", "b", "c", "nan", "none"]


def test_ranking_by_iwae_skips_runs_without_an_nll_and_rejects_unknown_criteria():
    runs = table([{"run_name": "x", "test/iwae_nll": None}, {"run_name": "y", "test/iwae_nll": 90.0}])
    assert rank.ranking(runs, "iwae")["run_name"].tolist() == ["y"]
    with pytest.raises(ValueError, match="kl.*valid: recon, neg_elbo, iwae"):
        rank.ranking(runs, "kl")


def test_fids_of_two_feature_classifiers_are_ranked_apart_never_interleaved():
    runs = table(
        [
            {"run_name": "a", "test/fid_prior": 30.0, "test/fid_classifier": "new"},
            {"run_name": "b", "test/fid_prior": 10.0, "test/fid_classifier": "old"},
            {"run_name": "c", "test/fid_prior": 20.0, "test/fid_classifier": "new"},
            {"run_name": "d", "test/fid_prior": 40.0, "test/fid_classifier": "old"},
            {"run_name": "e", "test/fid_prior": None, "test/fid_classifier": None},  # not evaluated
            {"run_name": "f", "test/fid_prior": 5.0, "test/fid_classifier": None},  # classifier not recorded
        ]
    )
    got = rank.ranking(runs, "fid")
    assert got[["test/fid_classifier", "run_name", "rank"]].fillna("none").values.tolist() == [
        ["new", "c", 1], ["new", "a", 2], ["old", "b", 1], ["old", "d", 2], ["none", "f", 1],
    ]  # fmt: skip
    assert got["rank"].dtype.kind == "i"
    with pytest.raises(ValueError, match="several feature classifiers"):
        rank.top_set(runs, "fid")
    one = runs[runs["test/fid_classifier"].eq("new") | runs["run_name"].eq("e")]  # one classifier, one run without an FID
    assert rank.ranking(one, "fid")["rank"].tolist() == [1, 2] and len(rank.top_set(one, "fid", 0.5)) == 1


def test_ranking_of_an_empty_table_is_empty():
    got = rank.ranking(table([]).reindex(columns=list(DEFAULTS)))
    assert len(got) == 0 and {"rank", "criterion"} <= set(got.columns)


def test_top_set_takes_the_ceiling_of_fraction_times_ranked_runs():
    rows = [{"test/distortion": float(i)} for i in range(10)] + [
        {"status": "failed", "test/distortion": -1.0}
    ]
    runs = table(rows)
    assert len(rank.top_set(runs)) == math.ceil(0.25 * 10) == 3
    assert rank.top_set(runs)["test/distortion"].tolist() == [0.0, 1.0, 2.0]
    assert len(rank.top_set(runs, fraction=0.1)) == 1
    assert len(rank.top_set(runs, fraction=0.11)) == 2
    assert len(rank.top_set(runs, fraction=1.0)) == 10
    thirty = table([{"test/distortion": float(i)} for i in range(30)])
    assert len(rank.top_set(thirty, fraction=0.1)) == 3  # 0.1 × 30 is not 3.0000000000000004 here
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            rank.top_set(runs, fraction=bad)


def test_base_rates_lift_and_hypergeometric_p_by_hand():
    # 16 ranked runs, 4 of them dense1; the top 25 % (4 runs) holds 2 dense1 → lift (2/4) / (4/16) = 2
    encoders = ["dense1", "conv4", "dense1", "conv4"] + ["conv4"] * 10 + ["dense1", "dense1"]
    runs = table([{"family/encoder": e, "test/distortion": float(i)} for i, e in enumerate(encoders)])
    runs = pd.concat([runs, table([{"family/encoder": "dense1", "status": "diverged"}])], ignore_index=True)
    top = rank.top_set(runs)
    got = rank.base_rates(runs, top, "family/encoder").set_index("family/encoder")
    assert got.index.tolist() == ["conv4", "dense1"]  # sorted
    d = got.loc["dense1"]
    assert (d["n_trained"], d["n_top"]) == (4, 2)
    assert d["share_top"] == pytest.approx(0.5) and d["share_trained"] == pytest.approx(0.25)
    assert d["lift"] == pytest.approx(2.0)
    # P(X >= 2), X ~ hypergeometric(16 runs, 4 dense1, 4 drawn)
    p = sum(math.comb(4, k) * math.comb(12, 4 - k) for k in (2, 3, 4)) / math.comb(16, 4)
    assert d["p_value"] == pytest.approx(p)
    c = got.loc["conv4"]
    assert (c["n_trained"], c["n_top"], c["lift"]) == (12, 2, pytest.approx((2 / 4) / (12 / 16)))


def test_base_rates_list_values_absent_from_the_top_with_zero():
    runs = table(
        [{"latent_dim": 25, "test/distortion": 1.0}] + [{"latent_dim": 200, "test/distortion": 9.0}] * 3
    )
    got = rank.base_rates(runs, rank.top_set(runs), "latent_dim")
    assert got["latent_dim"].tolist() == [25, 200]
    assert got["n_top"].tolist() == [1, 0]
    assert got["lift"].tolist() == [pytest.approx(4.0), 0.0]


def test_config_columns_and_ids_follow_what_varies():
    runs = table(
        [
            {"loss.reduction": "paper", "seed": 0, "results_dir": "a"},
            {"loss.reduction": "sum", "seed": 1, "results_dir": "b"},
            {"family/encoder": "conv4", "encoder.width": 32},
        ]
    )
    cols = rank.config_columns(runs)
    assert cols[:3] == ["latent_dim", "family/encoder", "family/decoder"]
    assert set(cols[3:]) == {"loss.reduction", "encoder.width"}  # not seed, not results_dir
    ids = rank.with_config_id(runs)["config"].tolist()
    # encoder.width is fixed by the family, so it stays out of the id; loss.reduction does not
    assert ids == [
        "L25_DNN1_CNN4 loss.reduction=paper",
        "L25_DNN1_CNN4 loss.reduction=sum",
        "L25_CNN4_CNN4 loss.reduction=sum",
    ]
    plain = table([{"seed": 0}, {"seed": 1}])
    assert rank.config_columns(plain) == ["latent_dim", "family/encoder", "family/decoder"]
    assert rank.with_config_id(plain)["config"].tolist() == ["L25_DNN1_CNN4"] * 2


def test_aggregate_seeds_mean_and_student_t_interval_by_hand():
    runs = table(
        [
            {"seed": 0, "test/distortion": 10.0, "test/rate": 1.0},
            {"seed": 1, "test/distortion": 12.0, "test/rate": 2.0},
            {"seed": 2, "test/distortion": 17.0, "test/rate": np.nan},
            {"seed": 3, "status": "failed", "test/distortion": 1000.0},
            {"seed": 0, "latent_dim": 50, "test/distortion": 20.0},
        ]
    )
    got = rank.aggregate_seeds(runs, ["test/distortion", "test/rate"]).set_index("latent_dim")
    a = got.loc[25]
    assert (a["n_runs"], a["n_ok"]) == (4, 3)
    assert a["test/distortion/mean"] == pytest.approx(13.0)
    sd = math.sqrt(((10 - 13) ** 2 + (12 - 13) ** 2 + (17 - 13) ** 2) / 2)
    assert a["test/distortion/ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * sd / math.sqrt(3))
    assert a["test/distortion/n"] == 3
    assert a["test/rate/mean"] == pytest.approx(1.5) and a["test/rate/n"] == 2
    assert a["test/rate/ci95"] == pytest.approx(stats.t.ppf(0.975, 1) * math.sqrt(0.5) / math.sqrt(2))
    b = got.loc[50]
    assert (
        b["test/distortion/mean"] == 20.0
        and b["test/distortion/n"] == 1
        and np.isnan(b["test/distortion/ci95"])
    )


def test_aggregate_seeds_keeps_ablation_arms_apart():
    runs = table([{"loss.reduction": r, "seed": s, "test/distortion": d} for r, s, d in [
        ("paper", 0, 1.0), ("paper", 1, 3.0), ("sum", 0, 10.0), ("sum", 1, 30.0)
    ]])  # fmt: skip
    got = rank.aggregate_seeds(runs, ["test/distortion"]).set_index("loss.reduction")
    assert got.loc["paper", "test/distortion/mean"] == 2.0 and got.loc["sum", "test/distortion/mean"] == 20.0
    assert got.loc["paper", "config"] == "L25_DNN1_CNN4 loss.reduction=paper"


def test_cutoff_sensitivity_is_one_base_rate_table_per_cutoff():
    encoders = ["dense1", "conv4", "conv1"] * 4
    runs = table([{"family/encoder": e, "test/distortion": float(i)} for i, e in enumerate(encoders)])
    got = rank.cutoff_sensitivity(runs)
    assert got["cutoff"].tolist() == [c for c in rank.CUTOFFS for _ in range(3)]
    assert got.groupby("cutoff")["n_top_set"].first().tolist() == [math.ceil(c * 12) for c in rank.CUTOFFS]
    assert (got.groupby("cutoff")["n_top"].sum() == got.groupby("cutoff")["n_top_set"].first()).all()
    first = got[got["cutoff"] == 0.10].set_index("family/encoder")
    # ceil(0.1 × 12) = 2: runs 0 (dense1) and 1 (conv4)
    assert first["n_top"].to_dict() == {"conv1": 0, "conv4": 1, "dense1": 1}


# ------------------------------------------------------------ protocol groups are never pooled (issue 35)
@pytest.mark.parametrize(
    "column, other",
    [("data.name", "fashion_mnist"), ("epochs", 30), ("eval.iwae_k", 5000), ("loss.reduction", "paper")],
)
def test_every_table_is_computed_per_protocol_group_and_names_it(tmp_path, column, other):
    from synthetic import make_sweep

    from analysis.collect import load_sweep
    from analysis.tables import build_tables

    runs = load_sweep(make_sweep(tmp_path, seeds=(0, 1), latents=(25,))).runs
    if column not in runs.columns:
        runs[column] = 100
    # the same runs again under another protocol, their numbers shifted: pooled, they would interleave
    shifted = runs.assign(
        **{column: other, "run_dir": "b/" + runs["run_dir"], "test/distortion": runs["test/distortion"] + 0.5}
    )
    both = pd.concat([runs, shifted], ignore_index=True)
    alone, mixed = build_tables(runs), build_tables(both)
    assert rank.protocol_columns(runs) == [] and rank.protocol_columns(both) == [column]
    for name, table in mixed.items():
        if name == "runs" or name.startswith("claims") or name not in alone:
            continue  # (collapse_by_loss_reduction compares the two groups: it exists only with both)
        got = table()
        assert column in got.columns, name
        for value, expected in ((runs[column].iloc[0], alone[name]()), (other, None)):
            part = got[got[column].astype(str) == str(value)].drop(columns=column).reset_index(drop=True)
            if expected is not None:  # the group alone gives the same table (no column where one group)
                assert column not in expected.columns or name.startswith(("seed_", "collapse_by"))
                pd.testing.assert_frame_equal(
                    part, expected.drop(columns=column, errors="ignore"), check_dtype=False
                )
    ranking = mixed["ranking_recon"]()
    assert ranking.groupby(column)["run_name"].apply(lambda s: s.is_unique).all()
    assert sorted(ranking["rank"]) == sorted(list(range(1, 9)) * 2)  # ranks restart in each group
