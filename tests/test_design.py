"""analysis.design on synthetic ``experiment=design`` grids (27 configurations: 3 encoders × 3 decoders ×
3 norms, seed 0) with planted truth: the interaction F-tests find a planted encoder × norm interaction and
hold their level without one (a binomial band over seeded draws); the paired contrasts find a planted
dense1 − res2 gap with its sign, interval and exact sign-flip p; the per-norm rows never decide; the
report's "Design choices" section appears for a design sweep only."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
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
# nuisance structure every draw carries: main effects the pairing must cancel, an encoder × decoder
# interaction the model must keep out of the error term
NUISANCE = {"decoder": {"dense1": 10.0}, "norm": {"layer": 8.0, "batch": -3.0}, "enc_dec_sd": 2.0}


def _row(table: pd.DataFrame, part: str, norm: str = "all", metric: str = DIST) -> pd.Series:
    (i,) = table.index[table["part"].eq(part) & table["norm"].eq(norm) & table["metric"].eq(metric)]
    return table.loc[i]


def _f_tests(runs: pd.DataFrame) -> dict[str, dict]:
    return design.interaction_tests(design.cells(runs, DIST)[0])


# ---------------------------------------------------------------------------------- interactions
def test_a_planted_encoder_by_norm_interaction_is_found_and_the_decoder_by_norm_test_stays_quiet():
    """dense1's advantage shrinks 3 nats per norm step (none → batch → layer; noise sd 0.5); the decoder
    effect is the same at every norm. The error term is the three-way interaction: 27 cells − 19 terms =
    8 df. (Noncentrality 144 against F(4, 8): p < 0.01 in every draw with near certainty.)"""
    found, quiet = [], []
    for seed in range(20):
        runs = planted_design(np.random.default_rng(seed), enc_norm=3.0, noise=0.5, **NUISANCE)
        res = _f_tests(runs)
        enc, dec = res["C(enc):C(norm)"], res["C(dec):C(norm)"]
        assert (enc["df_num"], enc["df_den"]) == (4, 8) and (dec["df_num"], dec["df_den"]) == (4, 8)
        found.append(enc["p_value"] < 0.01)
        quiet.append(dec["p_value"] >= ALPHA)
    assert all(found)
    assert sum(quiet) >= 20 - stats.binom.ppf(0.99, 20, ALPHA)  # at most the 99 % binomial count rejects
    table = design.design_table(planted_design(np.random.default_rng(0), enc_norm=3.0, **NUISANCE))
    assert _row(table, "encoder × norm")["verdict"] == design.SHOWN
    assert _row(table, "decoder × norm")["verdict"] == INCONCLUSIVE  # an F-test never shows absence


def test_without_an_interaction_the_f_tests_reject_at_their_level():
    """No encoder × norm or decoder × norm interaction, but main effects and an encoder × decoder
    interaction (sd 2 against noise sd 1): over DRAWS seeded grids each F-test's rejection count at
    ALPHA lies in the 99 % binomial band around ALPHA · DRAWS. Pooling the encoder × decoder
    interaction into the error (the wrong error term) makes the test conservative and leaves the band."""
    rejections = {t: 0 for t in design.TERMS}
    for seed in range(DRAWS):
        res = _f_tests(planted_design(np.random.default_rng(seed), encoder={"res2": 3.0}, **NUISANCE))
        for t in design.TERMS:
            rejections[t] += res[t]["p_value"] < ALPHA
    for t, k in rejections.items():
        assert BAND[0] <= k <= BAND[1], (t, k, BAND)


# ---------------------------------------------------------------------------------- paired contrasts
@pytest.mark.parametrize(
    ("d", "p"),
    [
        ([-1.0] * 9, 1 / 512),  # every pair on the claimed side: the exact floor 2^-9
        ([1.0] * 9, 1.0),
        ([-1.0, -1.0, 1.0], 4 / 8),  # sums of ±1 ± 1 ± 1 at or below −1: 4 of 8
        ([-3.0, -2.0, 1.0], 2 / 8),  # ±3 ± 2 ± 1 at or below −4: −6, −4
    ],
)
def test_the_sign_flip_p_is_exact(d, p):
    got, p_min = design.sign_flip(d)
    assert got == pytest.approx(p, abs=1e-12) and p_min == 2.0 ** -len(d)


def test_the_sign_flip_p_counts_every_one_of_the_2_to_the_n_flips():
    d = np.random.default_rng(3).normal(-0.5, 1.0, 9)
    flips = np.array(list(itertools.product((-1, 1), repeat=9))) * np.abs(d)
    assert design.sign_flip(d)[0] == pytest.approx(np.mean(flips.mean(axis=1) <= d.mean() + 1e-12))


def test_a_planted_dense1_minus_res2_gap_is_found_paired_with_its_sign_and_interval():
    """res2 encoders 3 nats worse than dense1 and conv2 at every (decoder, norm) cell; the decoder and
    norm effects (up to 11 nats) cancel within pairs, so every one of the 9 pairs is negative and the
    exact p is its floor 2^-9; an unpaired comparison would drown the gap in those effects."""
    runs = planted_design(
        np.random.default_rng(1), encoder={"res2": 3.0}, noise=0.3, **{**NUISANCE, "enc_dec_sd": 0.0}
    )
    table = design.design_table(runs)
    res2 = _row(table, "encoder dense1 − res2")
    assert res2["n_units"] == 9 and res2["n_configs"] == 18
    assert (
        res2["ci_low"] < -3.0 < res2["ci_high"] < 0 and res2["ci_low"] <= res2["statistic"] <= res2["ci_high"]
    )
    assert res2["p_value"] == pytest.approx(2.0**-9) and res2["p_min"] == pytest.approx(2.0**-9)
    assert res2["verdict"] == REPRODUCED
    conv2 = _row(table, "encoder dense1 − conv2")
    assert conv2["ci_low"] < 0 < conv2["ci_high"] and conv2["verdict"] != REPRODUCED
    decoder = _row(table, "decoder conv2 − dense1")  # the planted 10-nat dense1-decoder penalty
    assert decoder["ci_high"] < 0 and decoder["verdict"] == REPRODUCED


# ---------------------------------------------------------------------------------- the family
def test_the_per_norm_rows_are_descriptive_and_outside_the_holm_family():
    runs = planted_design(np.random.default_rng(2), encoder={"res2": 3.0}, enc_norm=2.0, **NUISANCE)
    table = design.design_table(runs)
    per_norm = table[table["norm"].ne(design.ALL) & table["test"].eq("paired contrast")]
    assert len(per_norm) == 4 * len(DESIGN_NORMS) and set(per_norm["n_units"]) == {3}
    assert (per_norm["role"] == "descriptive").all() and not per_norm["decides"].any()
    assert np.allclose(per_norm["p_min"], 1 / 8) and (per_norm["p_value"] >= 1 / 8 - 1e-12).all()
    assert per_norm["p_holm"].isna().all() and (per_norm["verdict"] == "").all()
    assert per_norm["note"].str.startswith("descriptive: 3 pairs, the exact p cannot go below 0.125").all()
    ranks = table[table["test"].eq("rank")]
    assert list(ranks["norm"]) == [*DESIGN_NORMS, design.ALL] and not ranks["decides"].any()
    # one family: the two F-tests and the four pooled contrasts on distortion, Holm by statsmodels
    fam = table[table["decides"].astype(bool)]
    assert len(fam) == 6 and set(fam["metric"]) == {DIST} and set(fam["norm"]) == {design.ALL}
    assert np.allclose(fam["p_holm"], multipletests(fam["p_value"], method="holm")[1])
    assert table.loc[table["role"].eq("supporting"), "p_holm"].isna().all()  # −ELBO: beside, not in it


def test_dense1s_rank_is_the_share_of_decoder_cells_it_wins():
    """dense1 5 and 2 nats better than the others at norm none and batch, 1 nat worse at layer."""
    runs = planted_design(
        np.random.default_rng(4), encoder={"conv2": 2.0, "res2": 2.0}, enc_norm=3.0, noise=0.1
    )
    table = design.design_table(runs)
    shares = table[table["test"].eq("rank")].set_index("norm")["statistic"]
    assert shares.to_dict() == {"none": 1.0, "batch": 1.0, "layer": 0.0, "all": pytest.approx(2 / 3)}


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
    # the verdict table: the six deciding rows, n configurations with their units
    verdicts = section.split("\n\n")[1]
    assert verdicts.startswith(
        "| statement | test | statistic [95 % CI] | p | Holm p | verdict | n configs (units) |"
    )
    assert verdicts.count("\n| ") == 7  # the separator and six rows
    assert "| encoder × norm | F(4, 8) = " in verdicts and "| encoder dense1 − res2 | " in verdicts
    assert "| 18 (9) |" in verdicts and "| 27 (27) |" in verdicts
    assert section.count("error term") == 1 and "exact p ≥ 1/8" in section and "cannot decide" in section
    assert "- dense1 is the best encoder in this many decoder cells per norm: none " in section
    table = tables["design"]
    assert len(table) == 28 and list(table.columns) == design.COLUMNS  # one protocol: no group columns


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
    assert table["decides"].sum() == 6 and verdicts <= {REPRODUCED, INCONCLUSIVE, NOT_REPRODUCED, design.SHOWN}
    assert "## Design choices" in (tmp_path / "report.md").read_text()
