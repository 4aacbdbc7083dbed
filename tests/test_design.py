"""analysis.design on synthetic ``experiment=design`` grids (27 configurations: 3 encoders × 3 decoders ×
3 norms, seed 0) with planted truth: each question's contrast equals its raw cell-mean difference in a
complete grid and the formula model's prediction in an incomplete one; the change rows find a planted
change of dense1's gap or of the decoder gap, and stay quiet when only the other encoders swap places
(which the omnibus F-test does not); without any effect every row holds its level and its t-interval
its coverage (binomial bands over seeded draws); runs not ok, non-finite values and runs of other widths
are left out and named, never crash the table or split the arms; the report's "Design choices" section
appears for a design sweep only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.multitest import multipletests
from synthetic import DESIGN_FAMILIES, DESIGN_NORMS, make_sweep, planted_design

from analysis import design, figures, report
from analysis.claim_stats import ALPHA, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from analysis.collect import load_sweep
from analysis.tables import build_tables

DIST = design.DECIDING_METRIC
DRAWS = 200
BAND = stats.binom.interval(0.99, DRAWS, ALPHA)  # rejections under the null: [3, 19] of 200
COVER = stats.binom.interval(0.99, DRAWS, 0.95)  # a 95 % interval covering the truth: [181, 197]
# nuisance structure every draw carries: main effects, and an encoder × decoder interaction the model
# must keep out of the error term
NUISANCE = {"decoder": {"dense1": 10.0}, "norm": {"layer": 8.0, "batch": -3.0}, "enc_dec_sd": 2.0}
FAMILY = [
    "encoder dense1 − conv2", "encoder dense1 − res2", "decoder conv2 − dense1", "decoder res2 − dense1",
    "dense1's encoder gap, batch − none", "dense1's encoder gap, layer − none",
    "dense1's encoder gap, to res2 − to conv2", "decoder gap conv2 − dense1, batch − none",
    "decoder gap conv2 − dense1, layer − none", "decoder gap to dense1, res2 − conv2",
]  # fmt: skip


def _row(table: pd.DataFrame, part: str, norm: str | None = None, metric: str = DIST) -> pd.Series:
    hit = table["part"].eq(part) & table["metric"].eq(metric)
    hit &= table["norm"].eq(norm) if norm is not None else table["decides"] | table["role"].eq("supporting")
    (i,) = table.index[hit]
    return table.loc[i]


def _cells(runs: pd.DataFrame) -> pd.Series:
    """The distortion of each (enc, dec, norm) cell of a one-seed planted table."""
    return runs.set_index(["family/encoder", "family/decoder", "encoder.norm"])["test/distortion"]


# ---------------------------------------------------------------------------------- known answers
def test_each_question_is_its_raw_cell_mean_difference_in_a_complete_grid():
    y = _cells(planted_design(np.random.default_rng(11), encoder={"res2": 2.0}, enc_norm=1.5, **NUISANCE))
    table = design.design_table(
        planted_design(np.random.default_rng(11), encoder={"res2": 2.0}, enc_norm=1.5, **NUISANCE)
    )

    def mean(e=None, d=None, n=None) -> float:
        keep = [
            (a, b, c)
            for a, b, c in y.index
            if (e is None or a == e) and (d is None or b == d) and (n is None or c == n)
        ]
        return float(y.loc[keep].mean())

    def enc_gap(n=None) -> float:  # dense1 − the mean of conv2 and res2, over decoders
        return mean("dense1", n=n) - (mean("conv2", n=n) + mean("res2", n=n)) / 2

    want = {
        "encoder dense1 − conv2": mean("dense1") - mean("conv2"),
        "encoder dense1 − res2": mean("dense1") - mean("res2"),
        "decoder conv2 − dense1": mean(d="conv2") - mean(d="dense1"),
        "decoder res2 − dense1": mean(d="res2") - mean(d="dense1"),
        "dense1's encoder gap, batch − none": enc_gap("batch") - enc_gap("none"),
        "dense1's encoder gap, layer − none": enc_gap("layer") - enc_gap("none"),
        "dense1's encoder gap, to res2 − to conv2": mean("conv2") - mean("res2"),
        "decoder gap conv2 − dense1, batch − none": (mean(d="conv2", n="batch") - mean(d="dense1", n="batch"))
        - (mean(d="conv2", n="none") - mean(d="dense1", n="none")),
        "decoder gap conv2 − dense1, layer − none": (mean(d="conv2", n="layer") - mean(d="dense1", n="layer"))
        - (mean(d="conv2", n="none") - mean(d="dense1", n="none")),
        "decoder gap to dense1, res2 − conv2": mean(d="res2") - mean(d="conv2"),
    }
    fam = table[table["decides"].astype(bool)]
    assert fam["part"].tolist() == FAMILY
    for _, r in fam.iterrows():
        assert r["statistic"] == pytest.approx(want[r["part"]], abs=1e-9), r["part"]
        assert r["ci_low"] < r["statistic"] < r["ci_high"] and r["df_den"] == 8
    # the interval is the t-interval on the error df: estimate ± t(0.975, 8) · SE, SE from the p-value
    r = _row(table, "encoder dense1 − res2")
    se = (r["ci_high"] - r["ci_low"]) / 2 / stats.t.ppf(0.975, 8)
    assert r["p_value"] == pytest.approx(2 * stats.t.sf(abs(r["statistic"]) / se, 8), rel=1e-6)
    per = _row(table, "encoder dense1 − conv2", norm="layer")  # descriptive, at one norm level
    assert per["statistic"] == pytest.approx(mean("dense1", n="layer") - mean("conv2", n="layer"), abs=1e-9)


def test_a_missing_cell_is_the_formula_models_prediction():
    """One run diverged: its cell's mean is the model's prediction, the formula API's own (an independent
    route to the same design), and the note says so."""
    runs = planted_design(np.random.default_rng(12), encoder={"res2": 2.0}, **NUISANCE)
    gone = (
        runs["family/encoder"].eq("dense1")
        & runs["family/decoder"].eq("conv2")
        & runs["encoder.norm"].eq("none")
    )
    runs.loc[gone, "status"] = "diverged"
    table = design.design_table(runs)
    ok = runs[~gone]
    c = pd.DataFrame(
        {
            "enc": ok["family/encoder"],
            "dec": ok["family/decoder"],
            "norm": ok["encoder.norm"],
            "y": ok["test/distortion"],
        }
    )
    fit = smf.ols(design.FORMULA, data=c).fit()
    g = pd.MultiIndex.from_product(
        [DESIGN_FAMILIES, DESIGN_FAMILIES, DESIGN_NORMS], names=["enc", "dec", "norm"]
    ).to_frame(index=False)
    mu = pd.Series(fit.predict(g).to_numpy(), index=pd.MultiIndex.from_frame(g))
    want = mu.xs("dense1", level="enc").mean() - mu.xs("conv2", level="enc").mean()
    r = _row(table, "encoder dense1 − conv2")
    assert r["statistic"] == pytest.approx(want, abs=1e-9) and r["df_den"] == 7
    assert "1 runs not ok, left out: L50_dense1_conv2_s0 (diverged)" in r["note"]
    assert "1 of 27 cells not trained: their means are the model's predictions" in r["note"]
    assert r["n_units"] == 17  # the trained cells it averages over
    sd = table[table["test"].eq("error sd") & table["metric"].eq(DIST)].iloc[0]
    assert (
        sd["statistic"] == pytest.approx(np.sqrt(fit.scale), rel=1e-9) and sd["df_den"] == fit.df_resid == 7
    )


# ---------------------------------------------------------------------------------- planted truth
def test_a_planted_change_of_dense1s_gap_is_shown_with_its_size_and_the_decoder_rows_stay_quiet():
    """dense1's advantage shrinks 3 nats per norm step (none → batch → layer; noise sd 0.5): its gap to
    the other encoders changes by +3 (batch) and +6 (layer); the decoder gap does not change."""
    covered, shown, draws = 0, 0, 10
    for seed in range(draws):
        table = design.design_table(
            planted_design(np.random.default_rng(seed), enc_norm=3.0, noise=0.5, **NUISANCE)
        )
        for part, planted in (
            ("dense1's encoder gap, batch − none", 3.0),
            ("dense1's encoder gap, layer − none", 6.0),
        ):
            r = _row(table, part)
            assert r["verdict"] == design.SHOWN, (seed, part)  # noncentrality > 100: found in every draw
            covered += r["ci_low"] < planted < r["ci_high"]
        quiet = table[table["decides"] & table["part"].str.match(r"decoder gap conv2 − dense1, \w+ − none")]
        shown += (quiet["verdict"] == design.SHOWN).sum()  # no planted change of the decoder gap
    assert shown <= stats.binom.ppf(0.99, 2 * draws, ALPHA)
    assert covered >= stats.binom.ppf(0.01, 2 * draws, 0.95)


def test_other_encoders_swapping_places_is_no_change_of_dense1s_place():
    """dense1 4 nats better than both others at every norm; conv2 and res2 swap places (±3 nats) across
    norms. The omnibus encoder × norm F-test rejects (some encoder's effect changes); dense1's gap does
    not change, and the change rows say so by their intervals (around 0)."""
    f_rejects, shown, covered, draws = 0, 0, 0, 40
    for seed in range(draws):
        runs = planted_design(np.random.default_rng(seed), encoder={"conv2": 4.0, "res2": 4.0}, noise=0.5)
        trend = runs["encoder.norm"].map({"none": -3.0, "batch": 0.0, "layer": 3.0})
        runs["test/distortion"] += np.where(runs["family/encoder"].eq("conv2"), trend, 0.0)
        runs["test/distortion"] -= np.where(runs["family/encoder"].eq("res2"), trend, 0.0)
        table = design.design_table(runs)
        f_rejects += _row(table, "encoder × norm")["p_value"] < ALPHA
        rows = table[table["decides"] & table["part"].str.contains("dense1's encoder gap, (?:batch|layer)")]
        shown += (rows["verdict"] == design.SHOWN).sum()
        covered += ((rows["ci_low"] < 0) & (rows["ci_high"] > 0)).sum()
    assert f_rejects == draws  # the omnibus test answers another question
    assert shown <= stats.binom.ppf(0.99, 2 * draws, ALPHA)
    assert covered >= stats.binom.ppf(0.01, 2 * draws, 0.95)


def test_residual_blocks_and_a_decoder_gap_change_are_found():
    """res2 encoders 3 nats worse than conv2 (dense1's gap to them larger); the dense1 decoder's penalty
    grows 2 nats per norm step (the conv2 − dense1 decoder gap −2 at batch, −4 at layer against none)."""
    table = design.design_table(
        planted_design(np.random.default_rng(1), encoder={"res2": 3.0}, dec_norm=2.0, noise=0.3, **NUISANCE)
    )
    res = _row(table, "dense1's encoder gap, to res2 − to conv2")
    assert res["verdict"] == design.SHOWN and res["ci_low"] < -3.0 < res["ci_high"] < 0
    assert _row(table, "encoder dense1 − res2")["verdict"] == REPRODUCED
    assert _row(table, "encoder dense1 − conv2")["verdict"] != REPRODUCED
    for level, planted in (("batch", -2.0), ("layer", -4.0)):
        r = _row(table, f"decoder gap conv2 − dense1, {level} − none")
        assert r["verdict"] == design.SHOWN and r["ci_low"] < planted < r["ci_high"]
    # the planted 10-nat dense1-decoder penalty: conv2 decodes better (C5a's direction)
    assert _row(table, "decoder conv2 − dense1")["verdict"] == REPRODUCED
    wrong = design.design_table(
        planted_design(np.random.default_rng(1), encoder={"dense1": 3.0}, noise=0.3, **NUISANCE)
    )
    assert _row(wrong, "encoder dense1 − conv2")["verdict"] == NOT_REPRODUCED  # decided on the other side


def _model(runs: pd.DataFrame) -> design.Model:
    """design_table's model of one complete planted grid's distortion."""
    return design.Model(pd.DataFrame({
        "enc": runs["family/encoder"], "dec": runs["family/decoder"], "norm": runs["encoder.norm"],
        "y": runs["test/distortion"], "n": 1,
    }))  # fmt: skip


def _family(runs: pd.DataFrame) -> pd.DataFrame:
    """The deciding contrasts of one complete planted grid, as design_table computes them (its Model and
    questions, Holm p and verdicts) without the rows beside them: the draws below are many."""
    model = _model(runs)
    rows = {part: {"kind": kind, **model.contrast(w)} for kind, part, _, _, w in design.questions(model.g)}
    t = pd.DataFrame.from_dict(rows, orient="index")
    t["p_holm"] = design.contrasts.holm(t["p_value"])
    t["verdict"] = [
        design._verdict(k, p, x) for k, p, x in zip(t["kind"], t["p_holm"], t["statistic"], strict=True)
    ]
    return t


def test_the_fast_family_is_the_tables():
    runs = planted_design(np.random.default_rng(9), enc_norm=1.0, **NUISANCE)
    table = design.design_table(runs)
    fam = table[table["decides"].astype(bool)].set_index("part")
    fast = _family(runs)
    assert fast.index.tolist() == FAMILY
    for col in ("statistic", "ci_low", "ci_high", "p_value", "p_holm"):  # float64: one rounding apart
        assert np.allclose(
            fast[col].astype(float), fam.loc[FAMILY, col].astype(float), rtol=1e-12, atol=1e-12
        ), col
    assert fast["verdict"].tolist() == fam.loc[FAMILY, "verdict"].tolist()


def test_without_any_effect_every_row_holds_its_level_and_its_interval_its_coverage():
    """Main effects of norm and decoder and an encoder × decoder interaction (sd 2 against noise sd 1),
    no change with the norm: over DRAWS seeded grids each row's interval covers its true value (the
    estimator on the same grid without noise: the encoder × decoder draws give the pooled contrasts a
    true value of their own) in the 99 % binomial band around 95 %; each norm-change row (true value 0)
    rejects at ALPHA in the band around ALPHA · DRAWS, and the Holm family decides any of them in at
    most the band's top; each omnibus F-test holds its level too; the error σ̂'s χ² interval covers the
    planted noise sd (the encoder × decoder draws are the model's, not its error's) in the band around
    95 %, the truth below it and above it each in at most the band's top around 2.5 %."""
    changes = [p for p in FAMILY if " − none" in p]
    reject, cover = dict.fromkeys(changes, 0), dict.fromkeys(FAMILY, 0)
    f_reject = dict.fromkeys(design.TERMS, 0)
    any_decided, sd_side = 0, {"below": 0, "above": 0}
    for seed in range(DRAWS):
        runs = planted_design(np.random.default_rng(seed), **NUISANCE)
        fam = _family(runs)
        sd = _model(runs).error_sd()
        sd_side["below"] += 1.0 <= sd["ci_low"]  # the planted noise sd (planted_design's default)
        sd_side["above"] += sd["ci_high"] <= 1.0
        truth = _family(planted_design(np.random.default_rng(seed), **NUISANCE, noise=0.0))["statistic"]
        for p in FAMILY:
            cover[p] += fam.at[p, "ci_low"] < truth[p] < fam.at[p, "ci_high"]
        for p in changes:
            assert abs(truth[p]) < 1e-9
            reject[p] += fam.at[p, "p_value"] < ALPHA
        any_decided += (fam.loc[changes, "verdict"] != INCONCLUSIVE).any()
        f = design.interaction_tests(design.cells(runs.assign(n_seeds=1), DIST)[0])
        for t in f_reject:
            f_reject[t] += f[t]["p_value"] < ALPHA
    for p, k in cover.items():
        assert COVER[0] <= k <= COVER[1], (p, k, COVER)
    for p, k in reject.items():
        assert BAND[0] <= k <= BAND[1], (p, k, BAND)
    assert any_decided <= BAND[1]
    for t, k in f_reject.items():
        assert BAND[0] <= k <= BAND[1], (t, k, BAND)
    assert COVER[0] <= DRAWS - sum(sd_side.values()) <= COVER[1], (sd_side, COVER)
    tail = stats.binom.interval(0.99, DRAWS, (1 - design.CI) / 2)[1]
    assert max(sd_side.values()) <= tail, (sd_side, tail)


# ---------------------------------------------------------------------------------- the family
def test_the_family_is_the_ten_questions_on_distortion_holm_adjusted():
    runs = planted_design(np.random.default_rng(2), encoder={"res2": 3.0}, enc_norm=2.0, **NUISANCE)
    table = design.design_table(runs)
    fam = table[table["decides"].astype(bool)]
    assert fam["part"].tolist() == FAMILY and set(fam["metric"]) == {DIST}
    assert np.allclose(fam["p_holm"], multipletests(fam["p_value"], method="holm")[1])
    others = table[~table["decides"].astype(bool)]
    assert others["p_holm"].isna().all() and (others["verdict"] == "").all()  # −ELBO, F, per norm: beside
    assert set(others.loc[others["test"].eq("interaction F"), "role"]) == {"supporting"}
    per_norm = others[others["role"].eq("descriptive") & others["test"].eq("contrast")]
    assert len(per_norm) == 5 * len(DESIGN_NORMS) and set(per_norm["norm"]) == set(DESIGN_NORMS)
    ranks = table[table["test"].eq("rank")]
    assert list(ranks["norm"]) == [*DESIGN_NORMS, design.ALL] and not ranks["decides"].any()


def test_dense1s_rank_is_the_share_of_decoder_cells_it_wins():
    """dense1 5 and 2 nats better than the others at norm none and batch, 1 nat worse at layer."""
    runs = planted_design(
        np.random.default_rng(4), encoder={"conv2": 2.0, "res2": 2.0}, enc_norm=3.0, noise=0.1
    )
    table = design.design_table(runs)
    shares = table[table["test"].eq("rank")].set_index("norm")["statistic"]
    assert shares.to_dict() == {"none": 1.0, "batch": 1.0, "layer": 0.0, "all": pytest.approx(2 / 3)}


# ---------------------------------------------------------------------------------- what is left out
def test_runs_not_ok_nonfinite_values_and_other_widths_are_left_out_named_and_never_crash():
    """Two dense1-encoder runs at norm none diverged (one pair left per per-norm contrast: the former
    exact test raised), one configuration's distortion NaN, one run of a non-default width (it split the
    arms by width): every question is still estimated, on one arm, and the notes name each."""
    runs = planted_design(np.random.default_rng(3), encoder={"res2": 3.0}, **NUISANCE)
    runs["encoder.width"] = runs["family/encoder"].map({"dense1": 512, "conv2": 32, "res2": 32})

    def at(e, d, n):
        return runs["family/encoder"].eq(e) & runs["family/decoder"].eq(d) & runs["encoder.norm"].eq(n)

    runs.loc[at("dense1", "conv2", "none") | at("dense1", "res2", "none"), "status"] = "diverged"
    runs.loc[at("conv2", "conv2", "batch"), "test/distortion"] = np.nan
    runs.loc[at("res2", "dense1", "layer"), "encoder.width"] = 64
    table = design.design_table(runs)
    assert set(table["arm"]) == {"latent_dim=50"}
    fam = table[table["decides"].astype(bool)]
    assert fam["statistic"].notna().all() and (fam["df_den"] == 4).all()  # 27 − 4 cells, 19 terms
    note = fam["note"].iloc[0]
    assert "2 runs not ok, left out: L50_dense1_conv2_s0 (diverged), L50_dense1_res2_s0 (diverged)" in note
    assert "1 runs of a non-default width, left out: L50_res2ln_dense1ln_s0" in note
    assert "1 configurations without a finite test/distortion, left out" in note
    assert "4 of 27 cells not trained" in note
    assert any(line.startswith("Left out or predicted: ") for line in design.summary(table))


def test_a_contrast_the_cells_cannot_estimate_is_not_tested_and_says_so():
    """The res2 × res2 cell missing at every norm: no cell holds the encoder × decoder term of res2 with
    res2, so a contrast that averages over it (dense1 − res2 encoders) is not tested, never a number
    from an arbitrary solution; one where the term cancels (dense1's gap, batch − none) is estimated."""
    runs = planted_design(np.random.default_rng(5), **NUISANCE)
    runs.loc[runs["family/encoder"].eq("res2") & runs["family/decoder"].eq("res2"), "status"] = "failed"
    table = design.design_table(runs)
    r = _row(table, "encoder dense1 − res2")
    assert np.isnan(r["statistic"]) and "not estimable" in r["note"] and r["verdict"] == INCONCLUSIVE
    for part in ("encoder dense1 − conv2", "dense1's encoder gap, batch − none"):
        assert np.isfinite(_row(table, part)["statistic"]), part


def test_a_design_family_missing_at_one_norm_level_stays_and_only_what_needs_those_cells_is_untested():
    """The res2 decoder not trained at norm layer: it stays in the grid (dropping it turned "dense1's gap
    to the other encoders" into another question without a word); the rows that need its layer cells
    are not tested, saying why, the rest are."""
    runs = planted_design(np.random.default_rng(5), **NUISANCE)
    runs.loc[runs["family/decoder"].eq("res2") & runs["encoder.norm"].eq("layer"), "status"] = "failed"
    table = design.design_table(runs)
    for part in ("decoder res2 − dense1", "decoder gap to dense1, res2 − conv2"):
        r = _row(table, part)
        assert np.isnan(r["statistic"]) and "not estimable" in r["note"], part
    for part in (
        "encoder dense1 − res2",
        "dense1's encoder gap, layer − none",
        "decoder gap conv2 − dense1, layer − none",
    ):
        assert np.isfinite(_row(table, part)["statistic"]), part
    assert "left out: dec res2" not in " ".join(table["note"])


def test_a_stray_norm_level_is_left_out_not_the_grid():
    """One run with a mixed norm (encoder none, decoder batch) and one at norm group beside the complete
    27-cell grid: each is a level of one cell, left out and named; the analysis is the grid's (it had
    dropped every family and tested nothing)."""
    runs = planted_design(np.random.default_rng(6), **NUISANCE)
    mixed = runs.iloc[[0]].assign(**{"decoder.norm": "batch", "run_name": "L50_dense1_dense1bn_s0"})
    group = runs.iloc[[1]].assign(
        **{"encoder.norm": "group", "decoder.norm": "group", "run_name": "L50_dense1gn_conv2gn_s0"}
    )
    table = design.design_table(pd.concat([runs, mixed, group], ignore_index=True))
    alone = design.design_table(runs)
    fam, want = (t[t["decides"].astype(bool)] for t in (table, alone))
    assert fam["part"].tolist() == FAMILY and np.allclose(fam["statistic"], want["statistic"])
    note = fam["note"].iloc[0]
    assert "norm none/batch (1 cells of 9)" in note and "norm group (1 cells of 9)" in note
    assert "Norm levels analysed: none, batch, layer (10 questions" in "\n".join(design.summary(table))


def test_a_configuration_trained_twice_with_one_seed_is_named():
    """Two directories hold L50_dense1_conv2_s0 with different results (not one model counted twice:
    load_sweep keeps one of identical copies): averaged as if seeds, and the note says so."""
    runs = planted_design(np.random.default_rng(7), **NUISANCE)
    twice = runs[runs["run_name"].eq("L50_dense1_conv2_s0")].assign(
        **{"test/distortion": lambda d: d["test/distortion"] + 5}
    )
    table = design.design_table(pd.concat([runs, twice], ignore_index=True))
    note = table.loc[table["decides"].astype(bool), "note"].iloc[0]
    assert (
        "1 configurations trained more than once with one seed (averaged as seeds): L50_dense1_conv2_s0"
        in note
    )
    assert all(not line.endswith(": .") for line in design.summary(table))


# ---------------------------------------------------------------------------------- which sweeps
@pytest.mark.parametrize(
    ("families", "norms", "expected"),
    [
        (("dense1", "conv2"), None, False),  # the reproduction: no norm key at all
        (("dense1", "conv2"), ("none",), False),
        (("dense1", "res2"), ("none",), True),
        (("dense1", "conv2"), ("none", "batch"), True),
    ],
)
def test_the_design_axes_are_a_norm_other_than_none_or_a_res_family(families, norms, expected):
    rows = [{"family/encoder": e, "family/decoder": "conv2", "status": "ok"} for e in families]
    runs = pd.DataFrame(rows)
    if norms is not None:
        runs = pd.concat([runs.assign(**{"encoder.norm": n, "decoder.norm": n}) for n in norms])
    assert design.has_design(runs) is expected


def test_families_not_crossed_with_the_norm_are_left_out_and_named():
    """The design pooled with a reproduction's latent-50 runs (dense4 at norm none only) and its latent-25
    runs: the latent-25 arm has no design axis; in the latent-50 arm dense4 is left out, with a note."""
    runs = planted_design(np.random.default_rng(5))
    extra = runs[runs["encoder.norm"].eq("none") & runs["family/encoder"].eq("conv2")].assign(
        **{
            "family/encoder": "dense4",
            "run_name": lambda d: d["run_name"].str.replace("conv2_", "dense4_", n=1),
        }
    )
    other_latent = runs[runs["encoder.norm"].eq("none") & ~runs["run_name"].str.contains("res")]
    other_latent = other_latent.assign(
        latent_dim=25, run_name=lambda d: d["run_name"].str.replace("L50", "L25")
    )
    table = design.design_table(pd.concat([runs, extra, other_latent], ignore_index=True))
    assert set(table["arm"]) == {"latent_dim=50"}
    f = _row(table, "encoder × norm")
    assert f["df_den"] == 8 and "left out: enc dense4" in f["note"]


@pytest.fixture(scope="module")
def design_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("design")
    kw = {"seeds": (0,), "latents": (50,), "encoders": DESIGN_FAMILIES, "decoders": DESIGN_FAMILIES}
    return load_sweep(make_sweep(root, norms=DESIGN_NORMS, sweep_name="design", **kw))


@pytest.mark.parametrize("kind", ["design", "reproduce-like"])
def test_the_report_has_a_design_section_only_for_a_design_sweep(design_sweep, tmp_path, kind):
    sweep = design_sweep if kind == "design" else load_sweep(make_sweep(tmp_path, seeds=(0,), latents=(4,)))
    made = build_tables(sweep.runs)
    assert ("design" in made) is (kind == "design")
    tables = {"design": made["design"]()} if "design" in made else {}
    md = report.write_report(sweep, tmp_path, {}, tables)[0].read_text()
    if kind != "design":
        assert "## Design choices" not in md
        return
    section = md.split("## Design choices\n")[1].split("\n## ")[0]
    # the verdict table: the ten deciding rows, n configurations with the cells they average over
    verdicts = section.split("\n\n")[1]
    assert verdicts.startswith(
        "| statement | contrast | estimate [95 % CI] | p | Holm p | verdict | n configs (cells) |"
    )
    assert verdicts.count("\n| ") == 11  # the separator and ten rows
    assert "| encoder dense1 − res2 | " in verdicts and "| dense1's encoder gap, layer − none | " in verdicts
    assert "| 18 (18) |" in verdicts and "| 12 (12) |" in verdicts and "F(" not in verdicts
    assert section.count("error term") == 1 and "t-interval" in section and "cannot decide" in section
    assert "- dense1 is the best encoder in this many decoder cells per norm: none " in section
    assert (
        "- Omnibus F-tests (any encoder's or decoder's effect, descriptive): encoder × norm F(4, 8) = "
        in section
    )
    assert (
        "- Error σ̂ (distortion: the encoder × decoder × norm interaction plus one seed's noise): " in section
    )
    table = tables["design"]
    assert len(table) == 45 and list(table.columns) == design.COLUMNS  # one protocol: no group columns


def test_each_protocol_group_is_analysed_alone_its_columns_first():
    """The design at 10 and at 30 epochs: two protocol groups, never pooled (each its own Holm family)."""
    runs = pd.concat(
        [
            planted_design(np.random.default_rng(s), enc_norm=3.0).assign(epochs=e)
            for s, e in ((6, 10), (7, 30))
        ],
        ignore_index=True,
    )
    table = build_tables(runs)["design"]()
    assert list(table.columns) == ["epochs", *design.COLUMNS]
    for e, g in table.groupby("epochs"):
        alone = design.design_table(runs[runs["epochs"].eq(e)])
        assert np.allclose(g["p_holm"].to_numpy(float), alone["p_holm"].to_numpy(float), equal_nan=True)
        assert (g["n_configs"].to_numpy() <= 27).all()
    assert list(design.overview(table).columns[:2]) == ["epochs", "statement"]


@pytest.mark.slow  # every figure of a 27-run sweep
def test_the_command_decides_a_design_sweep_with_no_fallback(design_sweep, tmp_path, capsys):
    """``python -m analysis.figures`` on a design sweep (res families, norm tags in the run names): every
    figure and table drawn without a warning, design.csv written, the section in the report."""
    assert figures.main([str(design_sweep.root), "--out", str(tmp_path)]) == 0
    assert "warning" not in capsys.readouterr().err
    table = pd.read_csv(tmp_path / "design.csv")
    verdicts = set(table.loc[table["decides"], "verdict"])
    assert table["decides"].sum() == 10 and verdicts <= {
        REPRODUCED,
        INCONCLUSIVE,
        NOT_REPRODUCED,
        design.SHOWN,
    }
    assert "## Design choices" in (tmp_path / "report.md").read_text()
