"""analysis.permutation: the resampling plans and weighted statistics against known answers, and the
all-runs tests' error rates over many synthetic sweeps where the truth is planted.

The many-draws tests use 200 draws and 499 permutations per draw. The p-value (1 + #≥)/(1 + B) is a
valid (never anti-conservative) p-value for any B (Phipson & Smyth 2010), so the rejection rate under
the null is bounded by alpha at B = 499 as at B = 10,000; a small B only costs a little power, which
the power floors allow for. The bound checked under the null is alpha + 3 binomial standard errors of
a rate over 200 draws (0.05 + 3 × 0.0154 = 0.096).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats
from synthetic import DECODER_EFFECT, FAMILIES, LATENT_EFFECT, planted_table

from analysis import permutation, rank

ALPHA = 0.05
DRAWS = 200
B = 499
NULL_BOUND = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / DRAWS)


# ---------------------------------------------------------------- resampling plans
def test_within_permutes_only_inside_strata_and_uniformly():
    strata = np.array([0, 0, 0, 1, 1, 2])
    perms = permutation.within(strata, 6000, np.random.default_rng(0))
    assert perms.shape == (6000, 6)
    assert np.all(strata[perms] == strata)  # a row only ever takes a value from its own stratum
    assert np.all(np.sort(perms[:, :3], axis=1) == [0, 1, 2]) and np.all(perms[:, 5] == 5)
    # the 3! orders of stratum 0 come up equally often (chi-square goodness of fit)
    counts = pd.Series([tuple(p) for p in perms[:, :3]]).value_counts()
    assert len(counts) == 6 and stats.chisquare(counts.to_numpy()).pvalue > 0.001
    again = permutation.within(strata, 6000, np.random.default_rng(0))
    assert np.array_equal(perms, again)  # a fixed seed gives the same plan


def test_within_blocks_are_within_drawn_a_block_at_a_time():
    # the same draws in the same order (so a correlation's p and interval did not move), each block
    # holding at most `chunk` permutations: memory chunk × n however many permutations a test draws
    strata = np.array([2, 0, 0, 1, 2, 0, 1])
    whole = permutation.within(strata, 5001, np.random.default_rng(3))
    blocks = list(permutation.within_blocks(strata, 5001, np.random.default_rng(3), chunk=777))
    assert [len(b) for b in blocks] == [777] * 6 + [5001 - 6 * 777]
    assert np.array_equal(np.concatenate(blocks), whole)
    assert permutation.within(strata, 0, np.random.default_rng(3)).shape == (0, 7)
    assert permutation.within(np.array([], dtype=int), 4, np.random.default_rng(3)).shape == (4, 0)


def test_cluster_weights_resample_whole_clusters_within_strata():
    clusters = np.array([0, 0, 1, 1, 2, 2, 3])  # cluster = configuration, its rows = its seeds
    strata = np.array([0, 0, 0, 0, 1, 1, 1])
    w = permutation.cluster_weights(clusters, strata, 4000, np.random.default_rng(1))
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 4] == w[:, 5])  # a cluster's rows move together
    assert np.all(w[:, 0] + w[:, 2] == 2) and np.all(w[:, 4] + w[:, 6] == 2)  # 2 clusters drawn per stratum
    assert w[:, 0].mean() == pytest.approx(1.0, abs=0.05)  # each cluster drawn once on average
    assert permutation.resamplable(clusters, strata)
    assert not permutation.resamplable(np.array([0, 0, 1]), np.array([0, 0, 1]))


def test_p_value_counts_the_observed_permutation():
    null = np.array([0.0, 1.0, 2.0, 3.0])
    assert permutation.p_value(2.0, null, "greater") == pytest.approx(3 / 5)  # 2 and 3, plus itself
    assert permutation.p_value(2.0, null, "less") == pytest.approx(4 / 5)
    assert permutation.p_value(-2.5, null, "two-sided") == pytest.approx(2 / 5)
    assert permutation.p_value(9.0, null, "greater") == pytest.approx(1 / 5)  # never 0
    with pytest.raises(ValueError, match="valid: greater, less, two-sided"):
        permutation.p_value(1.0, null, "both")
    assert permutation.mc_se(0.05, 10_000) == pytest.approx(0.00218, abs=1e-5)


def test_two_sided_p_is_twice_the_smaller_tail_of_one_null_and_a_bound_at_its_floor():
    null = np.array([0.0, 1.0, 2.0, 3.0])
    assert permutation.tails(2.0, null, "greater") == pytest.approx((3 / 5, 4 / 5))
    assert permutation.tails(2.0, null, "less") == pytest.approx((4 / 5, 3 / 5))
    res = permutation.Result(2.0, 3 / 5, 0.0, 1.0, 4, 4, 0, 0.0, 4 / 5)
    assert res.p_two_sided == pytest.approx(1.0) and not res.two_sided_bound  # 2 × 3/5, capped at 1
    low = permutation.Result(-1.0, 1.0, 0.0, 1.0, 4, 4, 0, 0.0, permutation.p_value(-1.0, null, "less"))
    assert low.p_two_sided == pytest.approx(2 / 5) and low.two_sided_bound  # nothing at or below -1
    assert "two-sided p ≤ 0.4" in low.text()
    mid = permutation.Result(0.5, 0.98, 0.0, 1.0, 4, 10_000, 0, permutation.mc_se(0.98, 10_000), 0.03)
    # its Monte Carlo error is the two-sided p's, twice the smaller tail's, not the claimed tail's
    assert mid.mc_se_two_sided == pytest.approx(2 * math.sqrt(0.03 * 0.97 / 10_000))
    assert f"MC SE {mid.mc_se_two_sided:.3g}" in mid.text() and f"{mid.mc_se:.3g}" not in mid.text()
    alone = permutation.Result(2.0, 0.3, 0.0, 1.0, 4, 4, 0, 0.0)  # a two-sided test: no other tail
    assert alone.p_two_sided == 0.3 and "permutation p = 0.3" in alone.text()
    # every one-sided test of this module reports both tails of one null: its two-sided p is 2 × the smaller
    x, y = np.arange(6.0), np.array([0.0, 2.0, 1.0, 3.0, 5.0, 4.0])
    for side in ("greater", "less"):
        got = permutation.correlation(
            np.zeros(6), x, y, np.zeros(6), np.arange(6), np.zeros(6), side=side, n_perm=2_000, n_boot=0,
        )  # fmt: skip
        assert got.p_two_sided == pytest.approx(min(1.0, 2 * min(got.p_value, got.p_other)))
        assert got.p_value + got.p_other >= 1 + 1 / 2001 - 1e-12  # both tails count the ties with the data


# ---------------------------------------------------------------- weighted statistics
def test_weighted_ranks_and_spearman_equal_scipy_on_repeated_rows():
    gen = np.random.default_rng(2)
    x = np.round(gen.normal(size=15), 1)  # rounded: ties
    y = gen.normal(size=15)
    w = gen.integers(0, 4, size=(20, 15)).astype(float)
    ranks = permutation.weighted_ranks(x, w)
    rho = permutation.weighted_pearson(ranks, permutation.weighted_ranks(y, w), w)
    for b in range(20):
        rows = np.repeat(np.arange(15), w[b].astype(int))
        np.testing.assert_allclose(ranks[b][rows], stats.rankdata(x[rows]))
        assert rho[b] == pytest.approx(stats.spearmanr(x[rows], y[rows])[0])
    r = permutation.weighted_pearson(x, y, np.ones((1, 15)))[0]
    assert r == pytest.approx(stats.pearsonr(x, y)[0])
    assert np.isnan(permutation.weighted_pearson(np.ones(15), y, np.ones((1, 15)))[0])  # constant x


def test_top_weights_match_the_top_set_of_the_resample():
    gen = np.random.default_rng(3)
    d = np.sort(gen.normal(size=12))
    w = gen.integers(0, 3, size=(30, 12)).astype(float)
    top = permutation.top_weights(w, 0.25)
    for b in range(30):
        rows = np.repeat(np.arange(12), w[b].astype(int))
        runs = pd.DataFrame({"run_name": [f"r{i:03d}" for i in range(len(rows))], "test/distortion": d[rows]})
        k = len(rank.top_set(runs))
        assert top[b].sum() == k
        assert np.array_equal(np.repeat(np.arange(12), top[b].astype(int)), rows[:k])


# ---------------------------------------------------------------- known answers over many draws
def _cells() -> list[tuple[float, bool]]:
    """(mean distortion offset, is dense1) of each configuration cell of planted_table."""
    return [
        (LATENT_EFFECT[lat] + DECODER_EFFECT[dec], enc == "dense1")
        for lat in LATENT_EFFECT
        for enc in FAMILIES
        for dec in FAMILIES
    ]


def population_lift(shift: float, sd: float = math.sqrt(5.0), fraction: float = 0.25) -> float:
    """The lift of dense1 in the top ``fraction`` of an infinitely large sweep of planted_table's model:
    a run's distortion is normal with its cell's mean (minus ``shift`` for dense1) and sd √(1 + 2²)."""
    mu = np.array([m - (shift if member else 0.0) for m, member in _cells()])
    member = np.array([member for _, member in _cells()])
    t = optimize.brentq(lambda t: stats.norm.cdf((t - mu) / sd).mean() - fraction, -50, 50)
    inside = stats.norm.cdf((t - mu) / sd)
    return inside[member].mean() / fraction


PLANTED_SHIFT = optimize.brentq(lambda s: population_lift(s) - 1.5, 0.0, 10.0)


def _lift_draw(gen, shift, n_boot=0):
    runs = planted_table(gen, shift=shift).sort_values("run_name")
    member = runs["family/encoder"].eq("dense1").to_numpy(float)
    return permutation.lift(
        runs["seed"], runs["test/distortion"], member, permutation.codes(runs, ["seed", "latent_dim"]),
        permutation.codes(runs, ["latent_dim", "family/encoder", "family/decoder"]),
        permutation.codes(runs, ["latent_dim", "family/encoder"]), fraction=0.25, n_perm=B, n_boot=n_boot,
        gen=gen,
    )  # fmt: skip


def test_planted_lift_is_what_the_model_implies():
    assert population_lift(0.0) == pytest.approx(1.0)
    assert population_lift(PLANTED_SHIFT) == pytest.approx(1.5)
    assert 1.0 < PLANTED_SHIFT < 3.0  # about one run-to-run sd: a modest effect


def test_lift_test_holds_its_level_under_the_null_and_finds_a_planted_lift_of_1_5():
    gen = np.random.default_rng(11)
    null = [_lift_draw(gen, 0.0) for _ in range(DRAWS)]
    planted = [_lift_draw(gen, PLANTED_SHIFT) for _ in range(DRAWS)]
    size = np.mean([r.p_value < ALPHA for r in null])
    power = np.mean([r.p_value < ALPHA for r in planted])
    assert size <= NULL_BOUND, size
    # power floor 0.70 for a 300-run sweep at B = 499 (measured 0.82 on these draws)
    assert power >= 0.70, power
    # the estimator is centred on the planted value (finite top sets: within 0.1)
    assert np.mean([r.statistic for r in planted]) == pytest.approx(1.5, abs=0.1)
    assert np.mean([r.statistic for r in null]) == pytest.approx(1.0, abs=0.1)


def _tiny_lift_design():
    """Two seeds of 9 runs, strata of 4 and 5 runs in each, 2 members per stratum; distortions put
    members and non-members at chosen ranks (the top 25 % of 9 runs: 3 runs)."""
    seed = np.repeat([0, 1], 9)
    strata = np.array([0] * 4 + [1] * 5 + [2] * 4 + [3] * 5)
    member = np.array([1, 1, 0, 0, 1, 1, 0, 0, 0] * 2, dtype=float)
    distortion = np.array([1.0, 5, 2, 9, 3, 7, 8, 4, 6, 2, 1, 9, 8, 7, 3, 5, 4, 6])
    return seed, distortion, member, strata


def _exact_lift_null(seed, distortion, member, strata, fraction=0.25):
    """Every arrangement of the member labels within the strata (C(4,2)·C(5,2) per seed, 3,600 in
    all, equally likely under the shuffle), and the lift of each: the permutation null, enumerated."""
    order = np.lexsort((distortion, seed))
    seed, member, strata = seed[order], member[order], strata[order]
    levels = np.unique(strata)
    per_stratum = []
    for s in levels:
        rows = np.flatnonzero(strata == s)
        per_stratum.append([rows[list(c)] for c in itertools.combinations(range(len(rows)), int(member[rows].sum()))])
    lifts = []
    for choice in itertools.product(*per_stratum):
        lab = np.zeros(len(member))
        lab[np.concatenate(choice)] = 1
        per_seed = []
        for s in np.unique(seed):
            g = np.flatnonzero(seed == s)
            k = math.ceil(fraction * len(g))
            per_seed.append(lab[g][:k].mean() / lab[g].mean())
        lifts.append(np.mean(per_seed))
    return np.array(lifts)


def test_lift_null_drawn_by_hypergeometric_counts_is_the_label_shuffles_null():
    # the lift's null is drawn as the number of members landing in the top set per stratum; on a
    # design small enough to enumerate every shuffle, its p is the exact permutation p (within 4 Monte
    # Carlo SE at 200,000 draws) and its distribution is the enumerated one (chi-square)
    seed, distortion, member, strata = _tiny_lift_design()
    exact = _exact_lift_null(seed, distortion, member, strata)
    got = permutation.lift(seed, distortion, member, strata, np.arange(18), strata, fraction=0.25,
                           n_perm=200_000, n_boot=0)  # fmt: skip
    # seed 0's top 3 hold 2 of its 4 members, seed 1's all 3: lifts (2/3)/(4/9) and 1/(4/9)
    assert got.statistic == pytest.approx(np.mean([2 / 3 / (4 / 9), 1 / (4 / 9)]))
    for p, tail in ((got.p_value, exact >= got.statistic - 1e-9), (got.p_other, exact <= got.statistic + 1e-9)):
        want = tail.mean()
        assert abs(p - want) < 4 * math.sqrt(want * (1 - want) / 200_000) + 1e-5, (p, want)
    # the whole distribution: the drawn null's frequencies against the enumerated probabilities
    order = np.lexsort((distortion, seed))
    in_top = np.zeros(18)
    for s in (0, 1):
        in_top[np.flatnonzero(seed[order] == s)[:3]] = 1
    groups = [np.flatnonzero(seed[order] == s) for s in (0, 1)]
    drawn = permutation._lift_null(member[order], in_top, strata[order], groups, 20_000, np.random.default_rng(5))
    values, probs = np.unique(np.round(exact, 9), return_counts=True)
    counts = pd.Series(np.round(drawn, 9)).value_counts().reindex(values, fill_value=0).to_numpy()
    assert counts.sum() == 20_000  # no drawn value outside the enumerated support
    assert stats.chisquare(counts, probs / probs.sum() * 20_000).pvalue > 0.001
    with pytest.raises(ValueError, match="0 or 1"):
        permutation.lift(seed, distortion, member * 0.5, strata, np.arange(18), strata, fraction=0.25, n_perm=10)


def test_an_interval_does_not_move_with_the_permutations_drawn_before_it():
    # the bootstrap draws from a generator spawned from the test's own: refining a p with more
    # permutations (the claims' refinement) leaves the interval where it was, for a lift as for a rho
    seed, distortion, member, strata = _tiny_lift_design()
    x = np.sin(np.arange(18.0))
    got = {}
    for n_perm in (99, 1000):
        lift = permutation.lift(seed, distortion, member, strata, np.arange(18), strata, fraction=0.5,
                                n_perm=n_perm, n_boot=300, gen=np.random.default_rng(4))  # fmt: skip
        rho = permutation.correlation(seed, x, distortion, strata, np.arange(18), strata, method="spearman",
                                      n_perm=n_perm, n_boot=300, gen=np.random.default_rng(4))  # fmt: skip
        got[n_perm] = (lift.ci_low, lift.ci_high, rho.ci_low, rho.ci_high)
    assert got[99] == got[1000] and all(np.isfinite(got[99])), got


def test_every_tests_interval_comes_from_the_one_spawned_stream():
    # one mechanism for all three tests: the resamples are those of the generator's first spawned
    # child, whatever the generator drew before (a mean draws no permutations, but a caller's
    # generator may have been used; the interval is the same)
    seed, distortion, member, strata = _tiny_lift_design()
    x = np.sin(np.arange(18.0))

    def used(n):
        gen = np.random.default_rng(4)
        gen.random(n)
        return gen

    intervals = {}
    for n in (0, 7):
        m = permutation.mean(seed, distortion, np.arange(18), strata, n_boot=300, gen=used(n))
        lift = permutation.lift(seed, distortion, member, strata, np.arange(18), strata, fraction=0.5,
                                n_perm=99, n_boot=300, gen=used(n))  # fmt: skip
        rho = permutation.correlation(seed, x, distortion, strata, np.arange(18), strata, n_perm=99,
                                      n_boot=300, gen=used(n))  # fmt: skip
        weights = permutation.cluster_weights(np.arange(18), strata, 300, np.random.default_rng(4).spawn(1)[0])
        per_seed = [(weights[:, seed == s] * distortion[seed == s]).sum(1) / weights[:, seed == s].sum(1)
                    for s in np.unique(seed)]  # fmt: skip
        assert (m.ci_low, m.ci_high) == permutation.percentile(np.mean(per_seed, axis=0)), n
        intervals[n] = (lift.ci_low, lift.ci_high, rho.ci_low, rho.ci_high)
    assert intervals[0] == intervals[7] and all(np.isfinite(intervals[0])), intervals


def test_lift_bootstrap_interval_covers_the_planted_lift():
    gen = np.random.default_rng(12)
    got = [_lift_draw(gen, PLANTED_SHIFT, n_boot=400) for _ in range(100)]
    covered = np.mean([r.ci_low <= 1.5 <= r.ci_high for r in got])
    # nominal 95 % (measured 0.97); 100 draws have a binomial SE of 0.022, so the floor 0.88 is 3 SEs
    # below nominal. Resampling within latent sizes only (the encoder count then varies) over-covers
    # (1.00, the interval half again as wide): hence the latent × family strata
    assert covered >= 0.88, covered


def _corr_draw(gen, rho, confounded=False, strata_cols=("seed",), n_configs=100, seeds=3):
    """n_configs × seeds runs; per run (x, y) bivariate normal with correlation ``rho``; with
    ``confounded``, each of 4 latent sizes shifts x and y alike (a between-strata correlation)."""
    latent = np.tile(np.arange(n_configs) % 4, seeds)
    seed = np.repeat(np.arange(seeds), n_configs)
    cov = [[1.0, rho], [rho, 1.0]]
    xy = gen.multivariate_normal([0.0, 0.0], cov, size=n_configs * seeds)
    x, y = xy[:, 0], xy[:, 1]
    if confounded:
        shift = np.array([0.0, 1.5, 3.0, 4.5])[latent]
        x, y = x + shift, y + shift
    frame = pd.DataFrame({"seed": seed, "latent_dim": latent})
    return permutation.correlation(
        seed, x, y, permutation.codes(frame, list(strata_cols)), np.tile(np.arange(n_configs), seeds),
        latent, method="spearman", side="greater", n_perm=B, n_boot=0, gen=gen,
    )  # fmt: skip


def test_correlation_test_holds_its_level_and_finds_a_planted_correlation():
    gen = np.random.default_rng(13)
    null = [_corr_draw(gen, 0.0) for _ in range(DRAWS)]
    planted = [_corr_draw(gen, 0.15) for _ in range(DRAWS)]
    assert np.mean([r.p_value < ALPHA for r in null]) <= NULL_BOUND
    # Spearman's rho of a bivariate normal is (6/π) asin(ρ/2) = 0.143 at ρ = 0.15
    assert np.mean([r.statistic for r in planted]) == pytest.approx(6 / math.pi * math.asin(0.075), abs=0.01)
    # power floor 0.65: the normal approximation gives Φ(0.143 √300 − 1.645) = 0.82; measured 0.76 at B = 499
    assert np.mean([r.p_value < ALPHA for r in planted]) >= 0.65


def test_correlation_strata_remove_a_between_strata_association():
    # x and y share a latent-size effect but are unrelated within latent sizes: shuffling within seed ×
    # latent holds the level; shuffling within seeds only would reject nearly always
    gen = np.random.default_rng(14)
    stratified = [_corr_draw(gen, 0.0, True, ("seed", "latent_dim")) for _ in range(DRAWS)]
    assert np.mean([r.p_value < ALPHA for r in stratified]) <= NULL_BOUND
    naive = [_corr_draw(gen, 0.0, True) for _ in range(20)]
    assert np.mean([r.p_value < ALPHA for r in naive]) == 1.0


def test_exact_small_null_for_a_correlation_within_one_stratum():
    # 5 runs, one seed: the full permutation distribution of Spearman's rho has 120 orders
    x, y = np.arange(5.0), np.array([0.0, 2.0, 1.0, 3.0, 4.0])
    rho = stats.spearmanr(x, y)[0]
    exact = np.mean([stats.spearmanr(x, p)[0] >= rho - 1e-9 for p in itertools.permutations(y)])
    got = permutation.correlation(
        np.zeros(5), x, y, np.zeros(5), np.arange(5), np.zeros(5), method="spearman", side="greater",
        n_perm=20_000, n_boot=0,
    )  # fmt: skip
    assert got.statistic == pytest.approx(rho) and got.p_value == pytest.approx(exact, abs=0.01)
