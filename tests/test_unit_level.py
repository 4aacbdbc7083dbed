"""The configuration is the experimental unit: known-answer checks of the claims' tests on synthetic
sweeps whose seeds nearly copy one another (between-seed correlation >= 0.95), as the committed
reproduction's do (0.98).

Under "no architecture effect" the tests the claims decide with must reject at their nominal level: over
``DRAWS`` synthetic sweeps the rejection rate at alpha = 0.05 lies within the 99 % binomial band around
0.05. The former tests, which shuffled labels separately within each seed and so counted every seed as
new evidence, reject far more often: the same check fails for them (kept here, written with the same
primitives, so that a return to per-seed shuffling fails this file). With a planted effect the new tests
must keep their power, and one two-sided test, Holm-adjusted over the family, decides both ways: under
the global null a wrong verdict either way (reproduced or not reproduced) comes in at most alpha of the
draws, and an effect planted against a claim is found "not reproduced".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import arch_claims, claims, contrasts, latent_claims, permutation, rank, units
from analysis.claim_stats import NOT_REPRODUCED, REPRODUCED, decide, design, numeric, strata, tail_of

LATENTS = {25: 0.0, 50: -0.5, 100: -0.8, 200: -0.6}  # latent-size shifts: the strata matter
FAMILIES = ("dense1", "dense4", "conv1", "conv2", "conv4")
SEEDS, COPY_SD = 3, 0.14  # seed noise against configuration effects of sd 1: correlation 1/(1 + 0.02) = 0.98
DRAWS, N_PERM, ALPHA = 400, 199, 0.05
BAND = stats.binom.interval(0.99, DRAWS, ALPHA)  # rejections: (10, 32) of 400


def synthetic(gen: np.random.Generator, effect: float = 0.0, rate_effect: float = 0.0) -> pd.DataFrame:
    """A G0-shaped sweep (4 latents × 5 × 5 families × 3 seeds): each configuration draws one effect
    (sd 1), every seed copies it with noise COPY_SD. ``effect`` lowers dense1 encoders' distortion; the
    rate is a configuration value of its own, tied to the distortion by ``rate_effect`` (C3: lower
    distortion, higher rate)."""
    rows = []
    for latent, shift in LATENTS.items():
        for enc in FAMILIES:
            for dec in FAMILIES:
                base = shift + gen.normal() - effect * (enc == "dense1")
                rate = gen.normal() - rate_effect * base
                for seed in range(SEEDS):
                    rows.append({
                        "run_name": f"L{latent}_{enc}_{dec}_s{seed}", "label": f"L{latent}_{enc}_{dec}",
                        "latent_dim": latent, "family/encoder": enc, "family/decoder": dec, "seed": seed,
                        "status": "ok", "test/distortion": 80 + base + gen.normal(0, COPY_SD),
                        "test/rate": 20 + rate + gen.normal(0, COPY_SD),
                    })  # fmt: skip
    return pd.DataFrame(rows)


def _dense1(df: pd.DataFrame) -> pd.Series:
    return df["family/encoder"].astype(str).eq("dense1")


def per_seed_lift(runs: pd.DataFrame) -> float:
    """The former C4/C5 test: every run a row, dense1 labels shuffled within seed × latent size."""
    d = design(runs[rank.ranked_mask(runs, "recon")])
    return permutation.lift(
        d["_seed"], numeric(d, "test/distortion"), _dense1(d).to_numpy(dtype=float),
        strata(d, ["latent_dim"]), d["_cluster"], d["_latent"], fraction=rank.TOP_FRACTION,
        n_perm=N_PERM, n_boot=0,
    ).p_value  # fmt: skip


def per_seed_top_rho(runs: pd.DataFrame) -> float:
    """The former C3 test: distortion shuffled within each seed's top set."""
    d = design(runs[rank.ranked_mask(runs, "recon")])
    dist = numeric(d, "test/distortion")
    return permutation.correlation(
        d["_seed"], dist, numeric(d, "test/rate"), strata(d, []), d["_cluster"], d["_latent"],
        method="spearman", top_by=dist, fraction=rank.TOP_FRACTION, side="less", n_perm=N_PERM, n_boot=0,
    ).p_value  # fmt: skip


def unit_lift(runs: pd.DataFrame) -> float:
    """The C4 lift's p as the claims decide on it (two-sided)."""
    u = units.config_means(runs)
    return arch_claims.lift_test(
        u[rank.ranked_mask(u, "recon")], _dense1, "family/encoder", n_perm=N_PERM, n_boot=0
    ).p_two_sided


def unit_top_rho(runs: pd.DataFrame) -> float:
    u = units.config_means(runs)
    return claims.top_correlation_test(u[rank.ranked_mask(u, "recon")], n_perm=N_PERM, n_boot=0).p_two_sided


def unit_contrast(runs: pd.DataFrame) -> float:
    return unit_contrasts(runs)[0].p_two_sided


def unit_contrasts(runs: pd.DataFrame, n_perm: int = N_PERM) -> list[permutation.Result]:
    """dense1 against each other encoder family, matched on latent × decoder: C4's distortion family."""
    u = units.config_means(runs)
    cells = ["latent_dim", "family/decoder"]
    return [
        contrasts.paired(u, "test/distortion", "family/encoder", {"dense1"}, {f}, cells, n_perm=n_perm)
        for f in ("conv2", "dense4", "conv1", "conv4")
    ]


def family_verdicts(runs: pd.DataFrame, n_perm: int = 999) -> list[str]:
    """C4's four contrasts, the lift and C3's rho as one family: two-sided p, Holm, decided both ways
    (999 permutations: the floor 2/1000 times 6 stays under alpha)."""
    u = units.config_means(runs)
    ranked = u[rank.ranked_mask(u, "recon")]
    tests = [
        *[(r, 0.0, "above") for r in unit_contrasts(runs, n_perm)],
        (arch_claims.lift_test(ranked, _dense1, "family/encoder", n_perm=n_perm, n_boot=0), 1.0, "above"),
        (claims.top_correlation_test(ranked, n_perm=n_perm, n_boot=0), 0.0, "below"),
    ]
    adjusted = contrasts.holm([r.p_two_sided for r, _, _ in tests])
    return [
        decide(p, r.statistic, null, side, tail_of(r)) for p, (r, null, side) in zip(adjusted, tests, strict=True)
    ]


def rejections(test, draws: int, seed: int, **planted) -> int:
    gen = np.random.default_rng(seed)
    return sum(test(synthetic(gen, **planted)) < ALPHA for _ in range(draws))


def test_the_synthetic_seeds_nearly_copy_one_another():
    runs = synthetic(np.random.default_rng(0))
    wide = runs.pivot_table(index="label", columns="seed", values="test/distortion")
    assert wide.corr().to_numpy()[np.triu_indices(SEEDS, 1)].min() >= 0.95


def test_config_means_are_one_row_per_configuration_with_its_seeds_averaged():
    runs = synthetic(np.random.default_rng(0))
    runs["collapsed"] = runs["seed"].eq(0)  # one seed of three raises the flag
    u = units.config_means(runs)
    assert len(u) == 100 and u["n_seeds"].eq(SEEDS).all() and u["seed"].eq(0).all()
    first = runs[runs["label"].eq("L25_dense1_conv2")]
    row = u[u["label"].eq("L25_dense1_conv2")].iloc[0]
    assert row["test/distortion"] == pytest.approx(first["test/distortion"].mean(), rel=1e-12)
    assert row["collapsed"] == pytest.approx(1 / 3)
    assert units.counts(runs) == (100, 300)


def test_claims_report_configurations_as_the_unit_with_runs_beside():
    runs = synthetic(np.random.default_rng(3), effect=2.0)
    table = claims.verdicts_table(claims.check_claims(runs, only=("C3", "C4")))
    c3 = table[table["claim"].eq("C3")].iloc[0]
    assert (c3["n_configs"], c3["n_runs"]) == (25, 75)  # the top 25 % of 100 configurations
    vs = table[table["part"].eq("dense1 vs conv2") & table["metric"].eq("test/distortion")].iloc[0]
    assert (vs["n_configs"], vs["n_runs"]) == (40, 120)  # 20 matched (latent, decoder) pairs


@pytest.mark.slow
@pytest.mark.parametrize(
    "test, planted",
    [(unit_lift, {"effect": 1.0}), (unit_contrast, {"effect": 1.0}), (unit_top_rho, {"rate_effect": 1.0})],
    ids=["lift", "contrast", "top_rho"],
)
def test_configuration_level_tests_hold_their_level_with_near_copy_seeds_and_keep_power(test, planted):
    low, high = BAND
    got = rejections(test, DRAWS, seed=7)
    # the lift counts configurations in a top set: a discrete statistic whose exact level lies below
    # alpha (measured 0.02 over 400 draws, two-sided), so only its upper side is bounded by the level; the
    # others are continuous (contrast 0.0525, top rho 0.05)
    assert (got <= high) if test is unit_lift else (low <= got <= high), (got, BAND)
    # power with a planted effect of one configuration sd (measured over 100 draws in the test). C3's rho
    # on the top 25 configurations is the weakest: one-sided it found 52 of these 100, two-sided (the
    # claims decide both ways on one error rate since 2026-12-06) 42; the bound says so, not more
    assert rejections(test, 100, seed=8, **planted) >= (40 if test is unit_top_rho else 50)


@pytest.mark.slow
def test_one_family_bounds_a_wrong_verdict_either_way_and_finds_a_reversed_effect():
    gen = np.random.default_rng(11)
    null = [family_verdicts(synthetic(gen)) for _ in range(200)]
    wrong = sum(any(v in (REPRODUCED, NOT_REPRODUCED) for v in vs) for vs in null)
    # family-wise over 6 tests, either direction: at most alpha (99 % band of 200 draws: <= 18; measured
    # 7, Holm being conservative for correlated tests)
    assert wrong <= stats.binom.interval(0.99, 200, ALPHA)[1], wrong
    # dense1 planted 1 configuration sd *worse*: its contrast against conv2 is not reproduced
    reversed_ = [family_verdicts(synthetic(gen, effect=-1.0))[0] for _ in range(50)]
    assert reversed_.count(NOT_REPRODUCED) >= 25 and REPRODUCED not in reversed_  # measured 32 of 50


@pytest.mark.slow
@pytest.mark.parametrize("test", [per_seed_lift, per_seed_top_rho], ids=["lift", "top_rho"])
def test_the_former_per_seed_shuffles_reject_too_often_with_near_copy_seeds(test):
    # each seed shuffled on its own treats three near copies as three draws: measured 0.13 for both (400 draws)
    assert rejections(test, DRAWS, seed=7) > BAND[1]


def _contrast(runs: pd.DataFrame, other: set[str], n_perm: int | None = N_PERM) -> permutation.Result:
    u = units.config_means(runs)
    return contrasts.paired(
        u, "test/distortion", "family/encoder", {"dense1"}, other, ["latent_dim", "family/decoder"], n_perm=n_perm
    )


@pytest.mark.parametrize("other", [{"conv2"}, {"conv2", "conv4"}, {"dense4", "conv1", "conv2"}])
def test_a_contrasts_interval_is_its_permutation_test_inverted(other):
    """The interval is every shift δ of the other families that the two-sided test does not reject:
    brute force, the test rerun (same permutations) on the data with δ taken off the other families,
    just inside each bound p > 0.05, just outside p <= 0.05; and 0 lies outside exactly where p <= 0.05."""
    runs = synthetic(np.random.default_rng(5), effect=0.6)
    got = _contrast(runs, other, n_perm=None)  # the claims' test: all 2^20 sign patterns
    assert got.exact
    assert got.interval == contrasts.INTERVAL and got.ci_low < got.statistic < got.ci_high

    def p_at(delta: float) -> float:
        shifted = runs.copy()
        shifted.loc[shifted["family/encoder"].isin(other), "test/distortion"] -= delta
        return _contrast(shifted, other, n_perm=None).p_two_sided

    for bound, inward in ((got.ci_low, 1.0), (got.ci_high, -1.0)):
        eps = 1e-7 * max(1.0, abs(bound))
        assert p_at(bound + inward * eps) > ALPHA >= p_at(bound - inward * eps)
    # a shift model's interval moves with the shift, and 0 is outside it exactly when the test rejects
    assert (got.ci_low > 0) == (got.p_two_sided <= ALPHA)
    null = _contrast(synthetic(np.random.default_rng(6)), other, n_perm=None)
    assert (null.ci_low <= 0 <= null.ci_high) == (null.p_two_sided > ALPHA)


@pytest.mark.slow
@pytest.mark.parametrize("other", [{"conv2"}, {"conv1", "conv2", "conv4"}], ids=["one", "three"])
def test_a_contrasts_interval_covers_a_planted_gap_at_its_level(other):
    """Planted: dense1's distortion 0.5 configuration sd below every other family's, in each of the 20
    cells (latent × decoder), the other families alike: the shift model holds and the inverted test's
    interval covers 0.5 at its level (measured with every sign pattern, as the claims test: 0.955 against
    one family, 0.96 against three; 0.95 and 0.96 with 199 random patterns). The
    percentile bootstrap over cells within latent sizes it replaced covered 0.93 and 0.90 on the same
    draws, a fifth narrower (5 cells per latent size: the resample variance is 4/5 of the plug-in, and
    percentile intervals of 5 points are short)."""
    gen = np.random.default_rng(21)
    draws = 200
    got = [_contrast(synthetic(gen, effect=0.5), other, n_perm=None) for _ in range(draws)]  # exact, as the claims
    covered = sum(r.ci_low <= 0.5 <= r.ci_high for r in got)
    low, high = stats.binom.interval(0.99, draws, 0.95)
    assert low <= covered <= high, (covered, (low, high))


def _group_null(gen: np.random.Generator, kind: str, cells: int = 20) -> pd.DataFrame:
    """C5b's shape, conv1 against conv2 and conv4 in each cell, the groups' means equal (the claim's
    null): ``varying``, conv2 = conv4 = u_c with u_c ~ N(0, 1) from cell to cell (conv1 0); ``apart``,
    conv2 and conv4 3 sd either side of conv1."""
    rows = []
    for c in range(cells):
        u = gen.normal()
        values = {"conv1": 0.0, "conv2": u, "conv4": u} if kind == "varying" else {"conv1": 0.0, "conv2": 3 + u, "conv4": -3 - u}
        for dec, v in values.items():
            rows.append({"latent_dim": c % 4, "family/encoder": c, "family/decoder": dec, "y": v + gen.normal(0, 0.05)})
    return pd.DataFrame(rows)


def _label_shuffle_p(rows: pd.DataFrame, gen: np.random.Generator) -> float:
    """The former test of a group contrast: the three labels shuffled within each cell."""
    label = rows["family/decoder"].ne("conv1").to_numpy(dtype=float)
    x, cell = rows["y"].to_numpy(), rows["family/encoder"].to_numpy()
    def stat(lab):
        return np.mean([x[(cell == c) & (lab == 1)].mean() - x[(cell == c) & (lab == 0)].mean() for c in np.unique(cell)])
    perms = permutation.within(cell, N_PERM, gen)
    null = np.array([stat(label[p]) for p in perms])
    return permutation.p_value(stat(label), null, "two-sided")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["varying", "apart"])
def test_a_group_contrast_holds_its_level_where_the_families_of_a_group_differ(kind):
    """With the groups' means equal, the sign-flip test of the cell gaps rejects at its level whatever
    the families inside a group do (measured 0.0525 and 0.045 over 400 grids). The label shuffle it
    replaced tested that every family of the cell is exchangeable: it rejected in 0.175 of the grids
    whose gaps vary between cells, and in none where conv2 and conv4 lie apart."""
    gen = np.random.default_rng(31)
    grids = [_group_null(gen, kind) for _ in range(DRAWS)]
    got = sum(
        contrasts.paired_test(g, "y", "family/decoder", {"conv2", "conv4"}, ["latent_dim", "family/encoder"],
                              n_perm=N_PERM, gen=gen).p_two_sided < ALPHA for g in grids
    )  # fmt: skip
    low, high = BAND
    assert low <= got <= high, (got, BAND)
    former = sum(_label_shuffle_p(g, gen) < ALPHA for g in grids[:100])
    # above the 99 % binomial band of 100 draws (0, 11) where the gaps vary; none at all where apart
    assert (former > stats.binom.interval(0.99, 100, ALPHA)[1]) if kind == "varying" else (former == 0), former


def c6_grid(gen: np.random.Generator, slope_sd: float = 0.0, mean_slope: float = 0.0) -> pd.DataFrame:
    """C6's shape on one seed: 5 × 5 encoder × decoder cells far apart (offset sd 1) × 4 latent sizes;
    the kNN accuracy moves with the latent size's index by the cell's own slope (mean ``mean_slope``, sd
    ``slope_sd`` from cell to cell) plus noise of sd 0.3."""
    rows = []
    for enc in FAMILIES:
        for dec in FAMILIES:
            base, slope = gen.normal(), mean_slope + slope_sd * gen.normal()
            for i, latent in enumerate(LATENTS):
                rows.append({
                    "run_name": f"L{latent}_{enc}_{dec}_s0", "latent_dim": latent, "family/encoder": enc,
                    "family/decoder": dec, "seed": 0, "latent/knn_acc": base + slope * (i - 1.5) + gen.normal(0, 0.3),
                })  # fmt: skip
    return pd.DataFrame(rows)


def unit_c6(u: pd.DataFrame) -> float:
    """C6's test as the claims decide on it: the within-cell rhos' mean, sign-flipped over the cells."""
    rhos, used = latent_claims.cell_rhos(u, "latent/knn_acc")
    return contrasts.sign_flip(rhos, len(used), side="less", n_perm=N_PERM).p_two_sided


def pooled_c6(u: pd.DataFrame) -> float:
    """C6's former test: rho pooled over the configurations, latent sizes shuffled within the cells."""
    d = design(u)
    return permutation.correlation(
        d["_seed"], numeric(d, "latent_dim"), numeric(d, "latent/knn_acc"), strata(d, latent_claims.C6_CELLS),
        d["_cluster"], d["_latent"], method="spearman", side="less", n_perm=N_PERM, n_boot=0,
    ).p_two_sided  # fmt: skip


@pytest.mark.slow
def test_c6_holds_its_level_where_architectures_differ_in_their_latent_effect():
    """The claim is about the average architecture: where each cell has a latent effect of its own, of
    either sign, mean 0 (slope sd 0.3 against noise 0.3), C6's test over the cells rejects at its level,
    while the former test, rho pooled over the configurations with latent sizes shuffled within cells
    (a null of no effect in *any* cell), rejects far more often (measured over 400 draws: 13 against 69;
    with no effect at all, 13 and 11). With a planted mean slope of -0.1 the test keeps its power
    (measured 84 of 400)."""
    gen = np.random.default_rng(7)
    grids = [c6_grid(gen, slope_sd=0.3) for _ in range(200)]
    low, high = stats.binom.interval(0.99, 200, ALPHA)
    assert low <= sum(unit_c6(g) < ALPHA for g in grids) <= high
    assert sum(pooled_c6(g) < ALPHA for g in grids) > high
    assert sum(unit_c6(c6_grid(gen, slope_sd=0.3, mean_slope=-0.1)) < ALPHA for _ in range(100)) >= 12
