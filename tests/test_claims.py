"""analysis.claims on constructed run tables: every test runs on the configuration table (one row per
configuration, its seeds averaged), so each case is built where the configuration means make a claim
clearly reproduced, clearly not reproduced, or undecidable (one level of the factor, too few
configurations, empty or all-failed tables). The permutation p-values are checked against exact nulls
worked out on the configuration table (sign flips of matched cells, hypergeometric top sets, orders of a
top set), the Holm adjustment against statsmodels, and the per-seed robustness columns against a
Student-t interval computed by hand. tests/test_unit_level.py checks the level and power of the same
tests on synthetic near-copy seeds."""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis import arch_claims, claim_stats, claims, contrasts, latent_claims, permutation, units

B = permutation.N_PERM
FLOOR = 1 / (1 + B)  # the smallest p of B permutations, (1 + 0) / (1 + B)
FLOOR2 = 2 * FLOOR  # the smallest two-sided p: the claims decide on 2 × the smaller tail
DIST = arch_claims.DECIDING_METRIC
DEFAULTS = {
    "status": "ok",
    "seed": 0,
    "latent_dim": 25,
    "family/encoder": "conv4",
    "family/decoder": "dense1",
    "loss.reduction": "sum",
    "test/distortion": 100.0,
    "test/rate": 10.0,
    "test/neg_elbo": 110.0,
    "test/iwae_nll": 105.0,
    "collapsed": False,
    "partial": False,
    "paper_collapsed": False,
    "latent/knn_acc": 0.95,
    "latent/linear_probe_acc": 0.95,
}
DIVERGED = {"status": "diverged", "test/distortion": np.nan, "collapsed": None, "paper_collapsed": None}


def table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{**DEFAULTS, "run_name": f"r{i:04d}", **r} for i, r in enumerate(rows)])


def check(runs: pd.DataFrame, *only: str) -> list[claims.Verdict]:
    return claims.check_claims(runs, only=only or claims.CLAIMS)


def decider(verdicts, claim: str) -> claims.Verdict:
    """The one row that holds ``claim``'s verdict."""
    got = [v for v in verdicts if v.claim == claim and v.decides]
    assert len(got) == 1, [(v.claim, v.part) for v in got]
    return got[0]


def row(verdicts, claim: str, part: str, metric: str = DIST) -> claims.Verdict:
    got = [v for v in verdicts if (v.claim, v.part, v.metric) == (claim, part, metric)]
    assert len(got) == 1, (claim, part, metric, [(v.claim, v.part, v.metric) for v in verdicts])
    return got[0]


def mc_tol(p: float) -> float:
    """Where a permutation p estimated from B draws may lie around its exact value p: 4 Monte Carlo
    standard errors sqrt(p(1 - p)/B), plus the 1/(1 + B) that (1 + #>=)/(1 + B) adds."""
    return 4 * math.sqrt(p * (1 - p) / B) + FLOOR


def two_sided(upper: float, lower: float) -> float:
    """The claims' p from a test's two exact tails: 2 × the smaller, at most 1."""
    return min(1.0, 2 * min(upper, lower))


def mc_tol2(p2: float) -> float:
    """:func:`mc_tol` of a two-sided p: twice the smaller tail's."""
    return 2 * mc_tol(min(p2, 1.0) / 2)


def t_ci(values) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t 95 % interval, by hand."""
    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def same(a, b) -> bool:
    """Equal, or both missing (a table shows None as NaN)."""
    return (pd.isna(a) and pd.isna(b)) if a is None or b is None or pd.isna(a) else a == b


def holm_by_statsmodels(verdicts) -> list[float]:
    fam = [v for v in verdicts if v.in_family]
    raw = np.array([np.nan if v.p_value is None else v.p_value for v in fam])
    out = np.full(len(raw), np.nan)
    out[np.isfinite(raw)] = multipletests(raw[np.isfinite(raw)], method="holm")[1]
    return list(out)


# ------------------------------------------------------------------------------------------------- C1
def c1_runs(fractions, n=40):
    """n configurations (latent 25, encoders dense1..dense<n>); in a seed with fraction f the first
    round(f × n) configurations are paper-collapsed, so configuration i's collapsed fraction is the
    share of seeds with i < round(f × n); plus a diverged run per seed with a stale flag."""
    rows = []
    for seed, f in enumerate(fractions):
        k = round(f * n)
        rows += [
            {"seed": seed, "family/encoder": f"dense{i + 1}", "paper_collapsed": i < k, "collapsed": i < k // 2}
            for i in range(n)
        ]  # fmt: skip
        rows.append({**DIVERGED, "seed": seed, "paper_collapsed": True})
    return table(rows)


def c1_config_fractions(fractions, n=40) -> np.ndarray:
    return np.array([np.mean([i < round(f * n) for f in fractions]) for i in range(n)])


@pytest.mark.parametrize(
    "fractions, n, want",
    [
        ([0.5, 0.5], 40, "reproduced"),
        ([0.0, 0.1], 40, "not reproduced"),
        ([0.1, 0.5, 0.9], 40, "reproduced"),  # the seeds disagree; the 40 configuration means decide
        ([0.5, 0.5], 10, "inconclusive"),  # too few configurations: the interval reaches past the band
        ([1.0, 1.0], 1, "inconclusive"),  # one configuration: nothing to resample, no interval
    ],
    ids=["in-band", "few-collapse", "seeds-disagree", "ten-configs", "one-config"],
)
def test_c1_is_decided_on_the_configuration_fractions(fractions, n, want):
    v = decider(check(c1_runs(fractions, n), "C1"), "C1")
    assert v.statistic == pytest.approx(c1_config_fractions(fractions, n).mean())
    assert (v.n_configs, v.n_runs, v.verdict) == (n, n * len(fractions), want)
    assert f"excluded {len(fractions)} diverged runs" in v.why  # their stale flags do not count
    assert v.p_value is None and not v.in_family and v.metric == "paper_collapsed"
    if n == 1:
        assert v.ci_low is None and v.ci_high is None
    lo, hi = claims.C1_BAND
    if want == "reproduced":
        assert lo <= v.ci_low and v.ci_high <= hi
    if want == "not reproduced":
        assert v.ci_high < lo


def test_c1_interval_is_the_binomial_bootstrap_of_configurations_that_always_or_never_collapse():
    # 20 of 40 configurations collapse in both seeds: a resample's mean is Binomial(40, 1/2)/40 exactly.
    # The 2.5 % percentile of 2,000 resamples sits at the true quantile of level 0.025 ± 0.0035 (the
    # binomial sd of a proportion over 2,000 draws); 3 sd either side bound it
    v = decider(check(c1_runs([0.5, 0.5]), "C1"), "C1")
    q = stats.binom(40, 0.5).ppf
    assert q(0.015) / 40 <= v.ci_low <= q(0.035) / 40 and q(0.965) / 40 <= v.ci_high <= q(0.985) / 40


def test_c1_seed_columns_are_the_student_t_interval_of_the_seed_fractions():
    fractions = [0.1, 0.5, 0.9]
    v = decider(check(c1_runs(fractions), "C1"), "C1")
    _, low, high = t_ci(fractions)  # clipped to [0, 1], a fraction's range
    assert (v.seed_ci_low, v.seed_ci_high) == (pytest.approx(max(low, 0.0)), pytest.approx(min(high, 1.0)))
    assert v.seed_p_value == pytest.approx(stats.ttest_1samp(fractions, 0.5).pvalue) and v.n_seeds == 3
    assert v.seed_verdict == "inconclusive"  # three seed means straddle the band; the configurations do not


# ------------------------------------------------------------------------------------------------- C2
def c2_runs(flags, distortions_of_seed, seeds=3):
    """One configuration per position (encoders dense1..), the same in every seed."""
    return table(
        [
            {"seed": s, "family/encoder": f"dense{i + 1}", "collapsed": bool(c), "test/distortion": d}
            for s in range(seeds)
            for i, (c, d) in enumerate(zip(flags, distortions_of_seed(s), strict=True))
        ]
        + [DIVERGED]
    )


WEAK_FLAGS = [i % 2 for i in range(120)]


def weak(s):
    """Distortions unrelated to WEAK_FLAGS (equal within each pair of positions), with a small seed wobble."""
    return [100 + 10 * ((i // 2) % 5) + 0.5 * ((i + s) % 3) for i in range(120)]


FLAGS8 = [1, 1, 1, 1, 0, 0, 0, 0]


def worse(s):
    return [300, 310 + s, 305, 295, 100, 110, 105, 95 + s]


def better(s):
    return [100, 110 + s, 105, 95, 300, 310, 305, 295 + s]


@pytest.mark.parametrize(
    "flags, dist, want",
    [
        (WEAK_FLAGS, weak, "reproduced"),
        (WEAK_FLAGS[:8], lambda s: weak(s)[:8], "inconclusive"),  # 8 configurations cannot show r is weak
        (FLAGS8, worse, "not reproduced"),
        (FLAGS8, better, "not reproduced"),  # strong the other way is not weak either
    ],
    ids=["weak", "weak-8-configs", "collapsed-worse", "collapsed-better"],
)
def test_c2_is_decided_on_the_correlation_of_configuration_means(flags, dist, want):
    v = decider(check(c2_runs(flags, dist), "C2"), "C2")
    means = np.mean([dist(s) for s in range(3)], axis=0)
    assert v.statistic == pytest.approx(stats.pearsonr(flags, means)[0])
    assert (v.n_configs, v.n_runs, v.verdict) == (len(flags), 3 * len(flags), want)
    assert not v.in_family and v.p_holm is None and "excluded 1 diverged runs" in v.why
    w = claims.C2_WEAK_R
    if want == "reproduced":
        assert -w < v.ci_low and v.ci_high < w
    if flags == FLAGS8:
        # two-sided exact null: of the C(8, 4) = 70 placements of 4 flags only the perfect split and its
        # mirror reach |r| of the data
        assert v.p_value == pytest.approx(2 / 70, abs=mc_tol(2 / 70))
        assert v.ci_low >= w if dist is worse else v.ci_high <= -w


def test_c2_is_undefined_without_a_collapsed_configuration():
    v = decider(check(c2_runs([0] * 8, lambda s: list(range(8))), "C2"), "C2")
    assert v.verdict == "inconclusive" and "undefined" in v.why and v.statistic is None


# ------------------------------------------------------------------------------------------------- C3
def c3_runs(top_rates_per_seed, rest_rate=lambda i: 5.0, n_rest=15):
    """k + n_rest configurations (k rates a seed), the same in every seed: the k best (distortion 0..k-1,
    encoders dense1..) carry the given rates, the others (distortion 10.., encoders conv1..) ``rest_rate(i)``;
    a diverged run per seed with the best distortion and a huge rate must not enter the top set."""
    rows = []
    for seed, rates in enumerate(top_rates_per_seed):
        rows += [
            {"seed": seed, "family/encoder": f"dense{i + 1}", "test/distortion": float(i), "test/rate": r}
            for i, r in enumerate(rates)
        ]
        rows += [
            {"seed": seed, "family/encoder": f"conv{i + 1}", "test/distortion": 10.0 + i, "test/rate": rest_rate(i)}
            for i in range(n_rest)
        ]  # fmt: skip
        rows.append({"seed": seed, "status": "diverged", "test/distortion": -5.0, "test/rate": 1e3})
    return table(rows)


def exact_top_p(rates) -> float:
    """Two-sided p of rho when the top set's k distortions are shuffled: both tails over all k! orders,
    by hand."""
    k = len(rates)
    observed = stats.spearmanr(range(k), rates)[0]
    null = np.array([stats.spearmanr(order, rates)[0] for order in itertools.permutations(range(k))])
    return two_sided(np.mean(null >= observed - 1e-9), np.mean(null <= observed + 1e-9))


@pytest.mark.parametrize(
    "rates_per_seed, want",
    [
        ([[50, 40, 30, 20, 10]], "reproduced"),  # rho = -1: p = 2 × 1/120
        ([[50, 40, 30, 10, 20]], "inconclusive"),  # rho = -0.9: p = 2 × 5/120
        ([[90, 70, 50, 30, 10], [10, 10, 12, 14, 30]], "reproduced"),  # seed 1 alone: rho > 0; the means: -1
        ([[50, 40, 30, 20, 10], [20, 50, 10, 40, 35]], "inconclusive"),  # means 35, 45, 20, 30, 22.5: rho -0.6
    ],
    ids=["one-seed", "one-seed-weaker", "seeds-disagree", "seeds-cancel"],
)
def test_c3_is_a_permutation_test_within_the_top_configurations(rates_per_seed, want):
    v = decider(check(c3_runs(rates_per_seed), "C3"), "C3")
    means = np.mean(rates_per_seed, axis=0)
    seeds = len(rates_per_seed)
    assert v.statistic == pytest.approx(stats.spearmanr(range(5), means)[0])
    assert (v.n_configs, v.n_runs, v.verdict) == (5, 5 * seeds, want)  # the diverged runs stay out
    assert v.p_value == pytest.approx(exact_top_p(means), abs=mc_tol2(exact_top_p(means)))
    assert v.in_family and v.p_holm == v.p_value  # a family of one
    assert f"excluded {seeds} diverged runs" in v.why and (v.null, v.side) == (0.0, "below")


def test_c3_seed_columns_are_the_student_t_interval_of_the_seed_correlations():
    rates = [[70, 50, 30, 10], [10, 10, 12, 30], [40, 30, 10, 20]]
    v = decider(check(c3_runs(rates, n_rest=12), "C3"), "C3")
    rhos = [stats.spearmanr([0, 1, 2, 3], r)[0] for r in rates]
    _, low, high = t_ci(rhos)
    assert (v.seed_ci_low, v.seed_ci_high) == (pytest.approx(max(low, -1.0)), pytest.approx(min(high, 1.0)))
    assert v.seed_p_value == pytest.approx(stats.ttest_1samp(rhos, 0.0).pvalue)
    assert v.n_seeds == 3 and v.seed_verdict == "inconclusive"


def test_c3_not_reproduced_when_reversed_and_undecidable_with_a_top_set_under_three():
    # the rate rises with distortion through the whole ranking, so resampled top sets agree
    # (one test decides both ways: rho = +1 of 5, p = 2 × 1/120 with the statistic on the other side)
    up = decider(check(c3_runs([[10, 20, 30, 40, 50]], rest_rate=lambda i: 60.0 + i), "C3"), "C3")
    assert up.verdict == "not reproduced" and up.ci_low >= 0 and up.statistic == pytest.approx(1.0)
    assert up.p_value == pytest.approx(2 / 120, abs=mc_tol2(2 / 120)) and up.p_holm < claims.ALPHA
    # 8 configurations: a top set of 2
    few = decider(check(c3_runs([[40, 30, 20, 10]], n_rest=4), "C3"), "C3")
    assert few.verdict == "inconclusive" and few.statistic is None
    assert f"fewer than {claims.MIN_CORR_RUNS} configurations" in few.why


# ------------------------------------------------------------------------------- C4, C5: the top-25 % lift
def lift_runs(member_positions, n=8):
    """n configurations of one seed, distortion 0..n-1, told apart by their decoders (dense1..);
    encoder dense1 at the given positions, conv4 elsewhere."""
    return table(
        [
            {
                "test/distortion": float(i),
                "family/encoder": "dense1" if i in member_positions else "conv4",
                "family/decoder": f"dense{i + 1}",
            }
            for i in range(n)
        ]  # fmt: skip
    )


@pytest.mark.parametrize(
    "n, positions, want",
    [(20, (0, 1, 2, 3), "reproduced"), (8, (0, 5), "inconclusive"), (16, (0, 1, 2), "reproduced"),
     (40, tuple(range(20, 40)), "not reproduced")],
    ids=["four-of-five", "one-of-two", "three-of-four", "never-on-top"],
)  # fmt: skip
def test_c4_lift_against_the_hypergeometric_null_of_the_top_set(n, positions, want):
    v = row(check(lift_runs(positions, n), "C4"), "C4", f"lift in the top {claims.rank.TOP_FRACTION:.0%}")
    top, m = math.ceil(n / 4), len(positions)
    k = sum(p < top for p in positions)
    assert v.statistic == pytest.approx((k / top) / (m / n))
    null = stats.hypergeom(n, m, top)  # members among the top set: at least k, at most k
    exact = two_sided(null.sf(k - 1), null.cdf(k))
    assert v.p_value == pytest.approx(exact, abs=mc_tol2(exact))
    assert v.verdict == want and not v.decides and v.in_family and v.p_holm == v.p_value
    if want == "not reproduced":
        assert v.statistic == 0.0 and v.ci_high <= 1


def test_lift_strata_hold_the_latent_size_fixed():
    # latent 25 beats every other size, so the top 6 of 24 configurations are its six, and dense1
    # encoders exist only there: lift 4, all of it the latent size's doing. Shuffled within latent
    # sizes dense1 stays in the top set (p = 1); shuffled over all configurations it would not
    rows = []
    for latent, base in ((25, 0.0), (50, 100.0), (100, 200.0), (200, 300.0)):
        for i in range(6):
            enc = "dense1" if latent == 25 and i in (1, 2, 4) else "conv4"
            rows.append({"latent_dim": latent, "family/encoder": enc, "family/decoder": f"dense{i + 1}",
                         "test/distortion": base + i})  # fmt: skip
    runs = table(rows)
    v = row(check(runs, "C4"), "C4", "lift in the top 25%")
    assert (v.statistic, v.p_value, v.verdict) == (pytest.approx(4.0), pytest.approx(1.0), "inconclusive")
    d = runs.sort_values("run_name")
    naive = permutation.lift(
        np.zeros(24), d["test/distortion"], d["family/encoder"].eq("dense1").to_numpy(float), np.zeros(24),
        np.arange(24), d["latent_dim"], fraction=0.25,
    )  # fmt: skip
    exact = stats.hypergeom(24, 3, 6).pmf(3)  # C(6, 3) / C(24, 3) = 0.0099
    assert naive.p_value == pytest.approx(exact, abs=mc_tol(exact)) and naive.p_value < claims.ALPHA


def test_a_verdict_needs_the_tail_and_the_statistic_on_one_side():
    # latent stratum 25 (50 configurations, 25 dense1) beats stratum 50 (50, 5 dense1), so the top 25 all
    # come from it; there dense1 ranks low: 9 of its top 25. The lift, 9/25 over 30/100 = 1.2 > 1, is
    # above the claim's null of 1, yet below the permutation null's centre (shuffled within strata, the
    # top set holds 12.5 dense1 on average): the small tail is the other one. Neither verdict then
    rows = []
    for i, mem in enumerate([1] * 8 + [0] * 17 + [1] * 17 + [0] * 8):
        rows.append({"latent_dim": 25, "family/encoder": "dense1" if mem else "conv4",
                     "family/decoder": f"dense{i + 1}", "test/distortion": 10 + 0.01 * i})  # fmt: skip
    for i in range(50):
        rows.append({"latent_dim": 50, "family/encoder": "dense1" if i < 5 else "conv4",
                     "family/decoder": f"dense{i + 1}", "test/distortion": 20 + 0.01 * i})  # fmt: skip
    v = row(check(table(rows), "C4"), "C4", "lift in the top 25%")
    assert v.statistic > 1 and v.tail == "other" and v.p_holm < claims.ALPHA
    assert v.verdict == "inconclusive"
    # the rule itself: a p under alpha decides only where tail and statistic agree
    assert claim_stats.decide(0.01, 1.2, 1.0, "above", "other") == "inconclusive"
    assert claim_stats.decide(0.01, 1.2, 1.0, "above", "claimed") == "reproduced"
    assert claim_stats.decide(0.01, 0.8, 1.0, "above", "other") == "not reproduced"
    assert claim_stats.decide(0.01, 0.8, 1.0, "above", "claimed") == "inconclusive"


def test_lift_rows_are_inconclusive_with_one_level_of_the_factor():
    # no dense1 encoder, no deep conv decoder
    got = check(table([{"family/encoder": f"conv{i + 1}", "family/decoder": "conv1", "test/distortion": float(i)}
                       for i in range(8)]))  # fmt: skip
    for claim in ("C4", "C5b"):
        v = row(got, claim, "lift in the top 25%")
        assert v.verdict == "inconclusive" and v.statistic is None and "one level" in v.why


# ----------------------------------------------------------------------- C4, C5: matched sign-flip nulls
def paired_runs(gaps, seeds=((0.0, 0.0),)):
    """dense1 and conv2 encoders in len(gaps) (latent 25, decoder) cells; in cell i conv2's distortion
    is dense1's + gaps[i]. ``seeds``: per seed, the (dense1, conv2) shift added to that seed's runs, so
    the seeds may disagree while the configuration means keep the gaps plus the mean shift."""
    rows = []
    for s, (d1, c2) in enumerate(seeds):
        for i, g in enumerate(gaps):
            base = {"seed": s, "family/decoder": f"dense{i + 1}"}
            rows.append({**base, "family/encoder": "dense1", "test/distortion": 100.0 + i + d1})
            rows.append({**base, "family/encoder": "conv2", "test/distortion": 100.0 + i + g + c2})
    return table(rows)


def sign_flip_p(gaps) -> float:
    """Exact two-sided p of the paired permutation test from its tails, P(mean of ±gap >= mean gap) and
    P(<=), over all 2^k signs."""
    g = np.asarray(gaps, dtype=float)
    null = (np.array(list(itertools.product((1.0, -1.0), repeat=len(g)))) * g).mean(axis=1)
    return two_sided(np.mean(null >= g.mean() - 1e-9), np.mean(null <= g.mean() + 1e-9))


@pytest.mark.parametrize(
    "gaps",
    [[1.0, 2.0, 3.0, 4.0, 5.0], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [3.0, 2.0, -1.0, 4.0, 0.5, 1.5], [1.0, -2.0, 0.5, -1.5],
     [0.3, -1.1, 0.8, 0.25, 1.4, -0.2, 0.6, 0.9, -0.7, 0.45, 1.2, 0.1, -0.35, 0.7, 0.05, 0.55, -0.15]],
    ids=["five-for", "seven-equal", "one-against", "mixed", "seventeen"],
)  # fmt: skip
def test_c4_contrast_against_the_exact_sign_flip_null(gaps):
    v = row(check(paired_runs(gaps), "C4"), "C4", "dense1 vs conv2")
    exact = sign_flip_p(gaps)  # all k cells for dense1: 1/2^k
    assert v.statistic == pytest.approx(np.mean(gaps))
    # k <= EXACT_CELLS: every one of the 2^k − 1 sign patterns is counted once, so the p is the exact one,
    # not a bound (the 17 cells' 131,071 patterns are more than the 10,000 a random test would draw)
    assert v.p_value == pytest.approx(exact, rel=1e-12) and not v.p_bound
    assert (v.n_configs, v.n_runs, v.null, v.side) == (2 * len(gaps), 2 * len(gaps), 0.0, "above")
    # the interval is the test inverted: with k <= 5 cells no sign pattern is rarer than 2/2^k > 0.05,
    # so no shift is rejected and there is no interval; else every shift outside the gaps' range makes
    # all signs agree (p = 2/2^k < 0.05) and the mean (statistic 0: p = 1) is inside
    if 2 / 2 ** len(gaps) > claim_stats.ALPHA:
        assert v.ci_low is None and v.ci_high is None
        # and its words say so, never "[nan, nan]"
        assert f"no inverted sign-flip test 95 % CI (its {2 ** len(gaps)} arrangements" in v.why and "nan" not in v.why
    else:
        assert min(gaps) - 1e-9 <= v.ci_low <= np.mean(gaps) <= v.ci_high <= max(gaps) + 1e-9
        assert "inverted sign-flip test 95 % CI [" in v.why


def test_c4_contrast_counts_every_sign_pattern_up_to_the_exact_limit_and_draws_beyond():
    k = contrasts.EXACT_CELLS
    # all 2^k patterns counted: only the identity and the all-flipped one reach |mean gap|, p = 2/2^k exactly
    v = row(check(paired_runs([1.0] * k), "C4"), "C4", "dense1 vs conv2")
    assert v.p_value == pytest.approx(2 / 2**k, rel=1e-12) and not v.p_bound and v.p_mc_se == 0.0
    assert v.p_draws == 2**k - 1 and "exact" in v.why and v.verdict == "reproduced"
    # one cell more: 10,000 random patterns, and the one that reaches the data is hardly ever drawn, so
    # the p rests on the permutation floor, a bound
    v = row(check(paired_runs([1.0] * (k + 1)), "C4"), "C4", "dense1 vs conv2")
    assert v.p_value == pytest.approx(FLOOR2) and v.p_bound and "≤" in claim_stats.p_fmt(v.p_value, v.p_bound)
    assert v.p_draws == permutation.N_PERM and v.verdict == "reproduced"


def test_a_contrast_given_a_number_of_draws_draws_them_unless_they_cover_every_pattern():
    # a simulation of the test names n_perm: random patterns, as before the exact rule, unless 2^k − 1 fit
    u = units.config_means(paired_runs([1.0] * 20))
    cells = ["latent_dim", "family/decoder"]
    drawn = contrasts.paired(u, DIST, "family/encoder", {"dense1"}, {"conv2"}, cells, n_perm=999)
    assert not drawn.exact and drawn.n_perm == 999 and drawn.p_two_sided == pytest.approx(2 / 1000)
    exact = contrasts.paired(u, DIST, "family/encoder", {"dense1"}, {"conv2"}, cells)
    assert exact.exact and exact.n_perm == 2**20 - 1 and exact.p_two_sided == pytest.approx(2 / 2**20)
    small = contrasts.paired(units.config_means(paired_runs([1.0] * 9)), DIST, "family/encoder", {"dense1"}, {"conv2"}, cells, n_perm=999)
    assert small.exact and small.n_perm == 2**9 - 1  # 511 patterns <= 999 draws: every one, once


@pytest.mark.parametrize("k", [1, 2, 5, 8, 11, 16])
def test_every_sign_pattern_is_each_pattern_once(k):
    # meet in the middle against the 2^k × k sign matrix itself, odd and even k: the same multiset of
    # (statistic, slope) pairs, the identity left out
    gaps = np.random.default_rng(k).normal(size=k)
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=k)))[1:]  # the first row is the identity
    want = np.sort(np.round(np.c_[signs @ gaps / k, signs.mean(axis=1)], 9).view(complex).ravel())
    null, slope = contrasts.every_pattern(gaps)
    got = np.sort(np.round(np.c_[null, slope], 9).view(complex).ravel())
    assert len(null) == 2**k - 1 and np.array_equal(got, want)


def test_the_configuration_means_decide_where_the_seeds_disagree():
    # seed 0: dense1 better by 4 nats in every cell; seed 1: worse by 2. The means: better by 1
    gaps = [1.0] * 20
    got = check(paired_runs(gaps, seeds=((0.0, 3.0), (0.0, -3.0))), "C4")
    for seed, want in (((0.0, 3.0), "reproduced"), ((0.0, -3.0), "not reproduced")):
        alone = row(check(paired_runs(gaps, seeds=(seed,)), "C4"), "C4", "dense1 vs conv2")
        assert alone.verdict == want
    v = row(got, "C4", "dense1 vs conv2")
    assert v.statistic == pytest.approx(1.0) and (v.n_configs, v.n_runs) == (40, 80)
    assert v.verdict == "reproduced" and v.p_value == pytest.approx(2 / 2**20, rel=1e-12) and not v.p_bound


def test_holm_adjusts_the_family_and_the_verdict_follows_the_adjusted_p():
    # six cells all for dense1: raw p = 2 × 1/64 < 0.05; the family also holds the lift and the -ELBO and
    # IWAE contrasts (no gap: p = 1), so Holm multiplies 1/32, the smallest of four, by 4
    got = check(paired_runs([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), "C4")
    fam = [v for v in got if v.in_family]
    assert [(v.part, v.metric) for v in fam] == [
        ("lift in the top 25%", DIST), ("dense1 vs conv2", DIST), ("dense1 vs conv2", "test/neg_elbo"),
        ("dense1 vs conv2", "test/iwae_nll"),
    ]  # fmt: skip
    assert [v.p_holm for v in fam] == pytest.approx(holm_by_statsmodels(got), rel=1e-12)
    v = row(got, "C4", "dense1 vs conv2")
    assert v.p_holm == pytest.approx(4 * v.p_value) and v.p_value < claims.ALPHA <= v.p_holm and v.ci_low > 0
    assert v.verdict == "inconclusive" and decider(got, "C4").verdict == "inconclusive"
    assert v.p_value == pytest.approx(1 / 32, abs=mc_tol2(1 / 32))
    elbo = row(got, "C4", "dense1 vs conv2", "test/neg_elbo")  # gap 0 [0, 0]: no evidence either way
    assert (elbo.statistic, elbo.p_value, elbo.verdict) == (0.0, 1.0, "inconclusive")


# ------------------------------------------------------------------------ a G0-shaped grid, every claim
FAMILIES = ("dense1", "dense4", "conv1", "conv2", "conv4")
LATENTS = (25, 50, 100, 200)
ENC_ADVANTAGE = {"dense1": 4.0, "dense4": 3.0, "conv1": 2.0, "conv2": 1.0, "conv4": 0.0}  # nats
DEC_ADVANTAGE = {"dense1": 0.0, "dense4": 0.5, "conv1": 1.0, "conv2": 2.0, "conv4": 3.0}


def g0_runs(enc=ENC_ADVANTAGE, dec=DEC_ADVANTAGE, latents=LATENTS, seeds=(0,)) -> pd.DataFrame:
    """latents × 5 × 5 families, additive: distortion = 100 + 0.01 latent − the encoder's and the
    decoder's advantages (``enc`` values may be callables of the cell index, for a gap that varies);
    −ELBO does not depend on the encoder; the IWAE NLL follows the distortion; the rate falls with the
    distortion (C3); kNN accuracy falls with the latent size and the full-latent probe rises (C6)."""
    rows = []
    for s in seeds:
        for li, latent in enumerate(latents):
            for ei, e in enumerate(FAMILIES):
                for di, d in enumerate(FAMILIES):
                    a = enc[e](li * len(FAMILIES) + di) if callable(enc[e]) else enc[e]
                    dist = 100.0 + 0.01 * latent - a - dec[d]
                    rows.append({
                        "seed": s, "latent_dim": latent, "family/encoder": e, "family/decoder": d,
                        "test/distortion": dist, "test/iwae_nll": dist - 5.0, "test/neg_elbo": 120.0 - dec[d],
                        "test/rate": 30.0 - dist / 10 + 0.001 * (ei + 5 * di),
                        "latent/knn_acc": 0.98 - 0.0001 * latent - 0.001 * ei - 0.002 * di,
                        "latent/linear_probe_acc": 0.90 + 0.0002 * latent + 0.001 * ei,
                    })  # fmt: skip
    return table(rows)


@pytest.fixture(scope="module")
def g0():
    return check(g0_runs())


def test_every_claim_has_one_deciding_row_in_claim_order(g0):
    assert [v.claim for v in claims.deciding(g0)] == list(claims.CLAIMS)
    assert [decider(g0, c).claim for c in claims.CLAIMS] == list(claims.CLAIMS)  # exactly one each
    assert {decider(g0, c).part for c in ("C4", "C5a", "C5b")} == {
        "dense1 vs every family", "conv1+conv2+conv4 vs dense", "conv2+conv4 vs conv1",
    }  # fmt: skip
    assert all(v.metric == DIST for c in ("C4", "C5a", "C5b") for v in [decider(g0, c)])


def test_holm_over_the_whole_family_equals_statsmodels_and_decides_each_row(g0):
    fam = [v for v in g0 if v.in_family]
    # C3 1, C4 13 (lift, 4 families × 3 metrics), C5 7 (lift, 2 contrasts × 3), C6 2 (kNN, probe: the 2-D
    # probe and the silhouette are not stored here)
    assert {v.claim for v in fam} == {"C3", "C4", "C5a", "C5b", "C6"} and len(fam) == 23
    assert [v.p_holm for v in fam] == pytest.approx(holm_by_statsmodels(g0), rel=1e-12)
    outside = [v for v in g0 if not v.in_family and v.p_holm is not None]
    assert [v.part for v in outside] == ["dense1 vs every family"]  # the largest Holm p of C4's contrasts
    for v in fam:  # decided exactly where the adjusted p is under alpha, the way the statistic lies
        decided = v.p_holm is not None and v.p_holm < claims.ALPHA
        claimed = (v.statistic > v.null) == (v.side == "above")
        assert v.verdict == ("inconclusive" if not decided else "reproduced" if claimed else "not reproduced"), v


def test_g0_decides_each_contrast_on_the_configuration_table(g0):
    for other in FAMILIES[1:]:
        v = row(g0, "C4", f"dense1 vs {other}")
        assert v.statistic == pytest.approx(ENC_ADVANTAGE["dense1"] - ENC_ADVANTAGE[other])
        assert (v.n_configs, v.n_runs, v.verdict) == (40, 40, "reproduced")
        # 20 cells, every gap alike: of the 2^20 sign patterns only the identity and its mirror reach it
        assert v.p_value == pytest.approx(2 / 2**20, rel=1e-12) and not v.p_bound
        assert row(g0, "C4", f"dense1 vs {other}", "test/iwae_nll").verdict == "reproduced"
        elbo = row(g0, "C4", f"dense1 vs {other}", "test/neg_elbo")  # no encoder effect on -ELBO
        assert elbo.statistic == pytest.approx(0.0) and elbo.verdict == "inconclusive" and not elbo.decides
    c5a, c5b = decider(g0, "C5a"), decider(g0, "C5b")
    assert c5a.statistic == pytest.approx(np.mean([1.0, 2.0, 3.0]) - np.mean([0.0, 0.5]))
    assert c5b.statistic == pytest.approx(np.mean([2.0, 3.0]) - 1.0)
    assert (c5a.n_configs, c5b.n_configs) == (100, 60) and c5a.verdict == c5b.verdict == "reproduced"
    assert row(g0, "C5b", "lift in the top 25%").claim == "C5b"  # the paper's figure, supporting C5b
    assert decider(g0, "C6").verdict == "reproduced" and decider(g0, "C3").verdict == "reproduced"


def cell_sign(i: int) -> float:
    return 1.0 if i % 2 else -1.0


@pytest.mark.parametrize(
    "conv2, want",
    [(1.0, "reproduced"), (lambda i: 4.0 + cell_sign(i), "inconclusive"), (5.0, "not reproduced")],
    ids=["all-four", "mixed", "one-family-beats-dense1"],
)
def test_c4_joint_row_is_the_intersection_union_of_the_four_contrasts(conv2, want):
    # conv2's advantage against dense1's 4 nats: 3 nats worse (dense1 better), ±1 around equal (cells
    # alternate), or 1 nat better; dense4, conv1, conv4 stay clearly worse than dense1
    runs = g0_runs(enc={**ENC_ADVANTAGE, "conv2": conv2})
    got = check(pd.concat([runs, table([{**DIVERGED, "test/distortion": 0.0}])]), "C4")  # a stale best
    parts = [row(got, "C4", f"dense1 vs {f}") for f in FAMILIES[1:]]
    assert [v.verdict for v in parts if v.part != "dense1 vs conv2"] == ["reproduced"] * 3
    assert row(got, "C4", "dense1 vs conv2").verdict == want
    joint = decider(got, "C4")
    assert joint.part == "dense1 vs every family" and joint.verdict == want and not joint.in_family
    worst = min(parts, key=lambda v: v.statistic)
    assert (joint.statistic, joint.ci_low, joint.ci_high) == (worst.statistic, worst.ci_low, worst.ci_high)
    if want == "not reproduced":  # every number of the contrast that decides it, not the largest p
        vs_conv2 = row(got, "C4", "dense1 vs conv2")
        assert (joint.p_value, joint.p_holm) == (vs_conv2.p_value, vs_conv2.p_holm) and joint.p_holm < claims.ALPHA
        assert joint.statistic == vs_conv2.statistic
    else:  # the intersection-union test's
        assert joint.p_value == max(v.p_value for v in parts) and joint.p_holm == max(v.p_holm for v in parts)
    assert all(f"dense1 vs {f}" in joint.why for f in FAMILIES[1:])
    assert joint.why.endswith("(excluded 1 diverged runs).") and (joint.n_configs, joint.n_runs) == (40, 40)


def test_c4_joint_row_not_reproduced_reports_the_contrast_that_decides_it():
    # conv2 is 1 nat better than dense1 on average but ±8 from cell to cell (inconclusive); conv1 is 0.5
    # better in every cell (not reproduced): the joint row's numbers are conv1's, not the smallest gap's
    runs = g0_runs(enc={**ENC_ADVANTAGE, "conv2": lambda i: 5.0 + 8.0 * cell_sign(i), "conv1": 4.5})
    got = check(runs, "C4")
    vs_conv1, vs_conv2 = row(got, "C4", "dense1 vs conv1"), row(got, "C4", "dense1 vs conv2")
    assert (vs_conv1.verdict, vs_conv2.verdict) == ("not reproduced", "inconclusive")
    assert (vs_conv2.statistic, vs_conv1.statistic) == (pytest.approx(-1.0), pytest.approx(-0.5))
    joint = decider(got, "C4")
    assert joint.verdict == "not reproduced"
    got_numbers = (joint.statistic, joint.ci_low, joint.ci_high, joint.p_value, joint.p_holm, joint.n_configs)
    assert got_numbers == (
        vs_conv1.statistic, vs_conv1.ci_low, vs_conv1.ci_high, vs_conv1.p_value, vs_conv1.p_holm, vs_conv1.n_configs
    )
    assert joint.tail == vs_conv1.tail == "other"


def test_c4_joint_row_p_is_undefined_where_a_contrast_has_none():
    got = check(g0_runs(), "C4")
    vs_conv1 = row(got, "C4", "dense1 vs conv1")
    vs_conv1.p_value = vs_conv1.p_holm = None  # a contrast without a p (no permutations)
    arch_claims.decide_joint(got)
    joint = decider(got, "C4")
    assert joint.p_value is None and joint.p_holm is None and joint.statistic is not None


def test_c4_joint_row_is_inconclusive_when_a_family_has_no_matched_cell():
    # conv4 encoders appear only at latent 50, where there is no dense1 encoder: dense1 beats conv2 in
    # every cell it shares with it, but is never compared with conv4
    rows = []
    for seed in (0, 1):
        for i in range(12):
            dec = {"seed": seed, "family/decoder": f"dense{i + 1}"}
            rows.append({**dec, "latent_dim": 25, "family/encoder": "dense1", "test/distortion": 99.0})
            rows.append({**dec, "latent_dim": 25, "family/encoder": "conv2", "test/distortion": 100.0})
            rows.append({**dec, "latent_dim": 50, "family/encoder": "conv2", "test/distortion": 100.0})
            rows.append({**dec, "latent_dim": 50, "family/encoder": "conv4", "test/distortion": 90.0})
    got = check(table([*rows, DIVERGED]), "C4")
    vs_conv2, vs_conv4 = row(got, "C4", "dense1 vs conv2"), row(got, "C4", "dense1 vs conv4")
    assert vs_conv2.verdict == "reproduced" and vs_conv4.statistic is None and not vs_conv4.in_family
    assert (vs_conv2.n_configs, vs_conv2.n_runs) == (24, 48)  # conv2's latent-50 runs are not matched
    joint = decider(got, "C4")
    assert joint.verdict == "inconclusive" and "dense1 vs conv4: no matched cell" in joint.why
    assert joint.why.endswith("(excluded 1 diverged runs).")


def test_c4_joint_row_counts_the_configurations_of_the_contrast_it_reports():
    # dense1 vs conv2 in 12 cells (gap 1.0), vs conv4 in 4 of them (gap 0.5): the joint row's statistic
    # is conv4's smallest gap, so its n is conv4's 8 configurations, not conv2's 24
    rows = []
    for seed in (0, 1):
        for i in range(12):
            dec = {"seed": seed, "latent_dim": 25, "family/decoder": f"dense{i + 1}"}
            rows.append({**dec, "family/encoder": "dense1", "test/distortion": 99.0})
            rows.append({**dec, "family/encoder": "conv2", "test/distortion": 100.0})
            if i < 4:
                rows.append({**dec, "family/encoder": "conv4", "test/distortion": 99.5})
    got = check(table(rows), "C4")
    joint, vs_conv2 = decider(got, "C4"), row(got, "C4", "dense1 vs conv2")
    assert joint.statistic == pytest.approx(0.5) and (vs_conv2.n_configs, vs_conv2.n_runs) == (24, 48)
    assert (joint.n_configs, joint.n_runs) == (8, 16)


# ------------------------------------------------------------------------------------------------- C5
def c5_runs(dense=(110.0, 111.0), encoders=("conv1",), latents=(25, 50)):
    """Cells latent × encoder, each with decoders conv4 100, conv2 101, conv1 102 and dense4, dense1 at
    ``dense`` (no dense decoder when None)."""
    decs = {"conv4": 100.0, "conv2": 101.0, "conv1": 102.0}
    if dense is not None:
        decs |= {"dense4": dense[0], "dense1": dense[1]}
    return table([
        {"latent_dim": latent, "family/encoder": e, "family/decoder": d, "test/distortion": x + 0.01 * li}
        for li, latent in enumerate(latents) for e in encoders for d, x in decs.items()
    ])  # fmt: skip


def c5_gap_runs(a_gaps, b_gaps, spread: float = 0.5):
    """One cell (latent × encoder) per pair of gaps: conv4 and conv2 at 100 ∓ ``spread`` and conv1 at 100 +
    b (C5b's gap: conv1 − mean(conv2, conv4) = b), dense4 and dense1 at m ∓ 1 with m − mean(conv) = a
    (C5a's gap)."""
    rows = []
    for i, (a, b) in enumerate(zip(a_gaps, b_gaps, strict=True)):
        conv = {"conv4": 100.0 - spread, "conv2": 100.0 + spread, "conv1": 100.0 + b}
        m = np.mean(list(conv.values())) + a
        cell = {"latent_dim": (25, 50, 100, 200)[i % 4], "family/encoder": FAMILIES[i // 4]}
        rows += [
            {**cell, "family/decoder": d, "test/distortion": x}
            for d, x in (conv | {"dense4": m - 1.0, "dense1": m + 1.0}).items()
        ]
    return table(rows)


def test_c5_contrasts_are_sign_flip_tests_of_the_cell_gaps():
    # the null is the claim's, the groups' means equal: each cell's gap keeps or flips its sign, so the
    # exact p comes from the gaps alone (all 2^8 signs), whatever the families of one group do
    a_gaps, b_gaps = [9.5, 3.0, -2.0, 5.0, 1.0, 7.0, 0.5, 4.0], [1.5, -1.0, 2.0, 0.5, 3.0, -0.5, 1.0, 2.0]
    got = check(c5_gap_runs(a_gaps, b_gaps), "C5")
    assert {v.claim for v in got} == {"C5a", "C5b"}
    a, b = decider(got, "C5a"), decider(got, "C5b")
    assert a.statistic == pytest.approx(np.mean(a_gaps)) and b.statistic == pytest.approx(np.mean(b_gaps))
    for v, gaps in ((a, a_gaps), (b, b_gaps)):
        exact = sign_flip_p(gaps)
        assert v.p_value == pytest.approx(exact, abs=mc_tol2(exact))
        assert min(gaps) <= v.ci_low <= np.mean(gaps) <= v.ci_high <= max(gaps)  # 2/2^8 < 0.05 outside
    assert (a.n_configs, b.n_configs) == (40, 24)
    # conv2 and conv4 20 nats apart instead of 1: neither group's mean moves, nor does any test
    apart = check(c5_gap_runs(a_gaps, b_gaps, spread=10.0), "C5")
    for claim in ("C5a", "C5b"):
        v, w = decider(got, claim), decider(apart, claim)
        assert (w.statistic, w.p_value, w.ci_low, w.ci_high) == pytest.approx((v.statistic, v.p_value, v.ci_low, v.ci_high))
    # the lift of deep conv decoders in the top 25 % is a test of its own (not a contrast)
    assert not row(got, "C5b", "lift in the top 25%").decides


def test_c5b_ignores_dense_decoders_and_c5a_reads_them():
    encoders = ("conv1", "dense1", "conv2")  # 9 cells: C5a's sign flip reaches 2/2^9 before Holm
    best = check(c5_runs(dense=(90.0, 91.0), encoders=encoders, latents=(25, 50, 100)), "C5")
    none = check(c5_runs(dense=None, encoders=encoders, latents=(25, 50, 100)), "C5b")
    for metric in arch_claims.METRICS:
        with_dense = row(best, "C5b", "conv2+conv4 vs conv1", metric)
        without = row(none, "C5b", "conv2+conv4 vs conv1", metric)
        assert (with_dense.statistic, with_dense.p_value, with_dense.ci_low, with_dense.ci_high) == (
            without.statistic, without.p_value, without.ci_low, without.ci_high,
        )  # fmt: skip
    assert decider(best, "C5b").p_value == pytest.approx(2 / 2**9, abs=mc_tol2(2 / 2**9))  # conv1 worst in all 9
    a = decider(best, "C5a")  # dense decoders 10 nats better in every cell
    assert a.statistic == pytest.approx(90.5 - 101.0) and a.ci_high <= 0 and a.verdict == "not reproduced"
    # one decoder kind: C5a has no cell holding both
    only_conv = decider(check(c5_runs(dense=None), "C5a"), "C5a")
    assert only_conv.verdict == "inconclusive" and "no (latent_dim, family/encoder) cell" in only_conv.why


def test_only_expands_c5_and_refuses_an_unknown_claim():
    runs = c5_runs()
    assert {v.claim for v in check(runs, "C5a")} == {"C5a"}
    assert {v.claim for v in check(runs, "C5b")} == {"C5b"}
    with pytest.raises(ValueError, match=r"C7.*valid: C1, C2, C3, C4, C5a, C5b, C6"):
        check(runs, "C7")


# ------------------------------------------------------------------------------------------------- C6
DEGRADING = {25: 0.97, 50: 0.95, 100: 0.93, 200: 0.80}
RISING = {25: 0.91, 50: 0.93, 100: 0.95, 200: 0.97}


C6_FAMILIES = ("dense1", "conv1", "conv2")  # 9 encoder × decoder cells: 2^9 sign patterns, p down to 2/512


def c6_runs(knn, probe=RISING, seeds=2):
    """Per seed, encoder × decoder (``C6_FAMILIES``)² × the latent sizes of ``knn``; kNN accuracy and the
    full-latent probe from the given tables, shifted per seed and per cell; plus a diverged run with a
    stale kNN score that would change rho if it were used."""
    rows = []
    for seed in range(seeds):
        for size in knn:
            for j, (e, d) in enumerate(itertools.product(C6_FAMILIES, repeat=2)):
                rows.append({
                    "seed": seed, "latent_dim": size, "family/encoder": e, "family/decoder": d,
                    "latent/knn_acc": knn[size] + 0.004 * seed - 0.003 * j,
                    "latent/linear_probe_acc": probe.get(size, 0.9) + 0.002 * seed - 0.001 * j,
                })  # fmt: skip
        rows.append({**DIVERGED, "seed": seed, "latent_dim": 200, "latent/knn_acc": 0.99})
    return table(rows)


def test_c6_decides_on_knn_where_the_full_latent_probe_rises():
    got = check(c6_runs(DEGRADING), "C6")
    probe_acc = "latent/linear_probe_acc"
    v, probe = decider(got, "C6"), row(got, "C6", latent_claims.C6_MEASURES[probe_acc], probe_acc)
    assert (v.metric, v.verdict) == (latent_claims.C6_DECIDING, "reproduced") and "separability: reproduced" in v.why
    # within each of the 9 cells the kNN accuracy falls with the size: every cell's rho is -1, the mean
    # too, and of the 2^9 sign patterns (exact) only the identity reaches it: two-sided p = 2/2^9
    assert v.statistic == pytest.approx(-1.0) and v.p_value == pytest.approx(2 / 2**9) and not v.p_bound
    assert (v.n_configs, v.n_runs) == (36, 72) and "over 9 cells" in v.why
    assert probe.statistic == pytest.approx(1.0) and probe.ci_low >= 0 and not probe.decides
    assert probe.verdict == "not reproduced"  # the probe's input grows with the latent size
    assert "excluded 2 diverged runs" in v.why


def test_c6_statistic_is_the_mean_within_cell_rho_not_the_pooled_one():
    # cells far apart (a cell offset of 0.1 dwarfs the latent effect), the latent effect alike in every
    # cell: rho pooled over the configurations is diluted by the spread between cells; the mean of the
    # within-cell rhos is the latent effect, as each architecture sees it, and the test and the interval agree
    gen = np.random.default_rng(3)
    rows = []
    for j, (e, d) in enumerate(itertools.product(FAMILIES, repeat=2)):
        for size, drop in {25: 0.0, 50: -0.002, 100: -0.004, 200: -0.006}.items():
            rows.append({"latent_dim": size, "family/encoder": e, "family/decoder": d,
                         "latent/knn_acc": 0.5 + 0.1 * (j % 5) + drop + gen.normal(0, 0.003)})  # fmt: skip
    runs = table(rows)
    v = decider(check(runs, "C6"), "C6")
    within = [stats.spearmanr(g.latent_dim, g["latent/knn_acc"])[0] for _, g in runs.groupby(latent_claims.C6_CELLS)]
    pooled = stats.spearmanr(runs.latent_dim, runs["latent/knn_acc"])[0]
    assert v.statistic == pytest.approx(np.mean(within)) and abs(pooled) < abs(v.statistic) / 2
    assert v.ci_high < 0 and v.p_value < 0.05 and "mean within-cell rho" in v.why
    assert "sign-flip" in v.test and "inverted" in v.why


def test_c6_interval_excludes_0_exactly_where_the_test_rejects():
    # 200 draws of noisy 25-cell grids, some with a planted within-cell effect, some without: the
    # interval (the sign-flip test inverted) excludes 0 iff the raw two-sided p is at most 0.05
    gen = np.random.default_rng(4)
    agree = 0
    for i in range(40):
        rhos = np.clip(gen.normal(-0.3 * (i % 2), 0.6, 25), -1, 1)
        res = contrasts.sign_flip(rhos, 100, side="less", n_perm=4000, gen=np.random.default_rng(i))
        agree += (res.ci_high < 0 or res.ci_low > 0) == (res.p_two_sided <= 0.05)
    assert agree == 40


def test_an_interval_bound_that_is_0_in_exact_arithmetic_is_0():
    # rank correlations lie on a lattice (multiples of 0.2 for 4 points), so a bound of the inverted
    # test can be exactly 0; in floats it came out as ±1e-16 (2 of 600 bounds here), an interval
    # "excluding" 0 beside a p above 0.05. Every bound is now 0.0 or clearly away from it, and 0 lies
    # outside the interval exactly where the test rejects
    gen = np.random.default_rng(0)
    bounds = []
    for _ in range(300):
        res = contrasts.sign_flip(gen.integers(-5, 6, size=9) * 0.2, 9)
        bounds += [res.ci_low, res.ci_high]
        assert (res.ci_low > 0 or res.ci_high < 0) == (res.p_two_sided <= 0.05)
    assert all(b == 0.0 or abs(b) > 1e-9 for b in bounds) and bounds.count(0.0) >= 5


@pytest.mark.parametrize(
    "knn, why",
    [
        (RISING, "separability: reproduced"),  # no degradation
        ({k: a - 0.45 for k, a in DEGRADING.items()}, "separability: not reproduced"),  # not separable
        ({50: 0.99, 100: 0.70, 200: 0.50}, "separability: not reproduced"),  # latent 100 counts as moderate
    ],
    ids=["knn-rises", "low-accuracy", "poor-at-100"],
)
def test_c6_not_reproduced_without_degradation_or_separability(knn, why):
    v = decider(check(c6_runs(knn, probe=DEGRADING), "C6"), "C6")
    assert v.verdict == "not reproduced" and why in v.why


def test_c6_inconclusive_with_one_latent_size():
    v = decider(check(c6_runs({25: 0.97}), "C6"), "C6")
    assert v.verdict == "inconclusive" and "one level" in v.why and v.metric == latent_claims.C6_DECIDING


# ------------------------------------------------------------------------ seeds, empty tables, table form
def test_the_tests_see_only_the_configuration_means():
    # two seeds that disagree (independent noise of 3 nats) against one run per configuration holding
    # their means: every statistic, interval, p-value and verdict is the same; only the run counts and
    # the per-seed columns differ
    gen = np.random.default_rng(0)
    runs = g0_runs(latents=(25, 200), seeds=(0, 1))
    for col in ("test/distortion", "test/rate", "test/neg_elbo", "test/iwae_nll", "latent/knn_acc"):
        runs[col] += gen.normal(0, 3.0 if col.startswith("test/") else 0.02, len(runs))
    keys = ["latent_dim", "family/encoder", "family/decoder"]
    means = runs.groupby(keys, as_index=False).mean(numeric_only=True).assign(seed=0)
    means = table(means.drop(columns=["collapsed", "partial", "paper_collapsed"]).to_dict("records"))
    cols = ["claim", "part", "metric", "statistic", "ci_low", "ci_high", "p_value", "p_holm", "verdict"]
    two = claims.verdicts_table(check(runs, "C3", "C4", "C5", "C6"))
    one = claims.verdicts_table(check(means, "C3", "C4", "C5", "C6"))
    pd.testing.assert_frame_equal(two[cols], one[cols], rtol=1e-9)
    assert (two["n_configs"] == one["n_configs"]).all()
    assert (two["n_runs"] == 2 * one["n_runs"]).all() and set(one["n_seeds"]) <= {0, 1}
    assert set(two["verdict"]) == {
        "reproduced",
        "not reproduced",
        "inconclusive",
    }  # a table that says something


@pytest.mark.parametrize("kind", ["no-columns", "no-rows", "all-failed"])
def test_every_claim_is_inconclusive_on_empty_or_all_failed_tables(kind):
    failed = table([{**DIVERGED, "status": "failed", "seed": s} for s in range(3)])
    runs = {"no-columns": pd.DataFrame(), "no-rows": table([]), "all-failed": failed}[kind]
    got = check(runs)
    assert [v.claim for v in claims.deciding(got)] == list(claims.CLAIMS)
    assert all(v.verdict == "inconclusive" and v.why for v in got)
    assert all(v.n_configs == 0 and v.n_runs == 0 for v in got)
    if kind == "all-failed":
        assert all("excluded 3 failed runs" in v.why for v in claims.deciding(got))


def test_verdicts_table_has_the_verdict_fields_as_columns_in_order(g0):
    got = claims.verdicts_table(g0)
    assert list(got.columns) == [
        "claim", "part", "metric", "statement", "test", "statistic", "ci_low", "ci_high", "p_value", "p_holm",
        "p_bound", "n_configs", "n_runs", "verdict", "decides", "in_family", "why", "null", "side", "tail", "n_seeds",
        "seed_ci_low", "seed_ci_high", "seed_p_value", "seed_verdict", "p_mc_se", "p_draws", "p_holm_mc_low",
        "p_holm_mc_high", "mc_stable",
    ]  # fmt: skip
    assert len(got) == len(g0)
    for (_, r), v in zip(got.iterrows(), g0, strict=True):
        assert all(same(r[k], x) for k, x in asdict(v).items()), v
    assert set(got["verdict"]) <= {"reproduced", "not reproduced", "inconclusive"}
    assert got.groupby("claim")["decides"].sum().to_dict() == dict.fromkeys(claims.CLAIMS, 1)


# ------------------------------------------------------------------------------------------- ablation
def ablation_runs(paper, sum_):
    """(collapsed, evaluated) counts per arm; plus one diverged run per arm."""
    rows = []
    for arm, (k, n) in (("paper", paper), ("sum", sum_)):
        rows += [{"loss.reduction": arm, "seed": i % 3, "collapsed": i < k} for i in range(n)]
        rows.append({**DIVERGED, "loss.reduction": arm})
    return table(rows)


def ablation(runs) -> claims.Verdict:
    return decider(claims.check_claims(runs), "ablation")


def test_ablation_reproduced_when_the_paper_reduction_collapses_more():
    v = ablation(ablation_runs((15, 20), (1, 20)))
    assert v.statistic == pytest.approx(15 / 20 - 1 / 20) and (v.n_runs, v.n_configs) == (40, 2)
    assert v.p_value == pytest.approx(stats.fisher_exact([[15, 5], [1, 19]]).pvalue)
    assert (v.ci_low, v.ci_high) == pytest.approx(claims.newcombe_interval(15, 20, 1, 20))
    assert v.verdict == "reproduced" and "15/20" in v.why and "1/20" in v.why and not v.in_family


@pytest.mark.parametrize(
    "paper, sum_, want",
    [((0, 60), (0, 60), "not reproduced"), ((1, 20), (15, 20), "not reproduced"), ((2, 10), (1, 10), "inconclusive")],
    ids=["neither-collapses", "reversed", "small"],
)  # fmt: skip
def test_ablation_not_reproduced_or_inconclusive(paper, sum_, want):
    v = ablation(ablation_runs(paper, sum_))
    assert v.verdict == want
    if paper == (0, 60):
        assert v.ci_high < claims.ABLATION_MIN_EFFECT


def test_ablation_only_when_both_reductions_are_present_and_other_claims_say_they_pool_them():
    assert "ablation" not in [v.claim for v in claims.check_claims(table([{"loss.reduction": "sum"}] * 4))]
    got = claims.check_claims(ablation_runs((1, 4), (1, 4)))
    assert got[-1].claim == "ablation"
    assert all("pooled over loss.reduction" in v.why for v in claims.deciding(got))


def test_newcombe_interval_known_value():
    # Newcombe (1998), Stat. Med. 17:873, example (a): 56/70 − 48/80, hybrid score interval 0.0524 to 0.3339
    low, high = claims.newcombe_interval(56, 70, 48, 80)
    assert (low, high) == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))


@pytest.mark.parametrize("dataset", sorted(latent_claims.PIXEL_KNN))
def test_each_pixel_knn_reference_is_the_probe_on_the_bundled_pixels(dataset, atol=0.002):
    # atol: 20 of the 10,000 test images, room for a float32 distance tie resolved otherwise on another CPU
    from sweep.metrics import pixel_knn_accuracy

    assert pixel_knn_accuracy(dataset) == pytest.approx(latent_claims.PIXEL_KNN[dataset], abs=atol)


@pytest.mark.parametrize(
    "dataset, verdict",
    [("mnist", "not reproduced"), ("fashion_mnist", "reproduced"), ("cifar10", "inconclusive")],
)
def test_c6_separability_is_judged_against_the_dataset_s_own_pixels(dataset, verdict):
    # kNN ≈ 0.85 at moderate sizes: below MNIST's bar (0.90), above Fashion-MNIST's (0.9486 × 0.8186 =
    # 0.7765); a dataset without a pixel reference has no bar
    runs = c6_runs({k: a - 0.10 for k, a in DEGRADING.items()}).assign(**{"data.name": dataset})
    v = decider(check(runs, "C6"), "C6")
    assert f"(separability: {verdict})" in v.why
    bar = latent_claims.separability_bar(dataset)
    assert (bar is None) == (dataset not in latent_claims.PIXEL_KNN)
    assert (f"against {bar:.4g}" if bar else "against no bar") in v.why and "pixels" in v.test
    assert v.verdict == verdict  # the kNN degrades (reproduced): the verdict is separability's


@pytest.mark.parametrize("seed", range(5))
def test_holm_is_statsmodels_holm_with_nans_ties_and_large_p(seed):
    rng = np.random.default_rng(seed)
    p = rng.choice([*rng.uniform(0, 1, 6), 0.01, 0.01, 0.6, np.nan], size=int(rng.integers(1, 12)))
    got = contrasts.holm(p)
    finite = np.isfinite(p)
    assert np.isnan(got[~finite]).all()
    if finite.any():
        assert np.allclose(got[finite], multipletests(p[finite], method="holm")[1], rtol=0, atol=1e-15)
    assert np.array_equal(contrasts.holm([]), np.array([]))


# ------------------------------------------------------------------------------------------ Monte Carlo
def _family_row(p: float, se: float, statistic: float = 1.0) -> claims.Verdict:
    return claim_stats.row(
        "C3", f"p {p}", DIST, "", "", "", statistic=statistic, p_value=p, p_mc_se=se, in_family=True,
        null=0.0, side="above", tail="claimed",
    )  # fmt: skip


def test_a_verdict_within_monte_carlo_error_of_alpha_is_flagged_and_no_other():
    # three tests: Holm multiplies the smallest p by 3. 0.0164 × 3 = 0.049 (reproduced), but with each
    # raw p 2 MC SE lower or higher it spans 0.037-0.061: flagged. The others are inconclusive either way
    rows = [_family_row(0.0164, 0.002), _family_row(0.5, 0.005), _family_row(0.2, 0.004)]
    claims._adjust(rows)
    shaky, far, mid = rows
    assert shaky.verdict == claim_stats.REPRODUCED and shaky.mc_stable is False
    assert shaky.p_holm_mc_low == pytest.approx(3 * (0.0164 - 0.004))
    assert shaky.p_holm_mc_high == pytest.approx(3 * (0.0164 + 0.004))
    assert far.mc_stable and mid.mc_stable and far.p_holm_mc_low < far.p_holm < far.p_holm_mc_high
    # 0.001 (± 0.0006) stays far below alpha; an exact p (SE 0) does not move
    sure = [_family_row(0.001, 0.0003), _family_row(0.5, 0.005), _family_row(0.2, 0.004)]
    claims._adjust(sure)
    assert sure[0].verdict == claim_stats.REPRODUCED and all(v.mc_stable for v in sure)
    exact = [_family_row(0.0164, 0.0), _family_row(0.5, 0.0), _family_row(0.2, 0.0)]
    claims._adjust(exact)
    assert all(v.mc_stable and v.p_holm_mc_low == v.p_holm == v.p_holm_mc_high for v in exact)
    # the report names the flagged row with its Holm p and the range, and says when there is none
    from analysis import report

    text = report.monte_carlo_text(claims.verdicts_table(rows).assign(arm="all"))
    assert "1 of the family's 3 verdicts could change, even at 1,000,000 permutations: C3 p 0.0164" in text
    assert "none rests on the permutations drawn" in report.monte_carlo_text(claims.verdicts_table(sure))


def _draws_row(p: float, claim: str = "C3") -> claims.Verdict:
    """A family row whose p carries the Monte Carlo SE of the draws in force when it is computed."""
    n = permutation.draws()
    row = _family_row(p, math.sqrt(p * (1 - p) / n))
    row.claim, row.p_draws = claim, n
    return row


def test_a_claim_resting_on_the_draws_is_tested_again_with_more_until_it_does_not():
    # one row at p 0.049 against alpha 0.05 (a one-test family: Holm p = raw p): 2 SE is 0.0043 at
    # 10,000 draws and 0.0014 at 100,000, both across 0.05; 0.00043 at 1,000,000 is not
    calls = {"C3": [], "C4": []}

    def make(claim, p):
        def once():
            calls[claim].append(permutation.draws())
            return [_draws_row(p, claim)] if claim == "C3" else [claim_stats.row("C4", "", DIST, "", "", "")]
        return once

    got = claims._refined(("C3", "C4"), {"C3": make("C3", 0.049), "C4": make("C4", 0.0)})
    assert calls == {"C3": [10_000, 100_000, 1_000_000], "C4": [10_000]}  # only the noisy claim again
    assert got[0].p_draws == claims.MAX_DRAWS and got[0].mc_stable and got[0].verdict == claim_stats.REPRODUCED
    assert permutation.draws() == permutation.N_PERM  # the context is left as found
    # an exact row (C4, p 0.03) made shaky by another claim's Monte Carlo error: Holm gives it
    # max(2 × C3's p, 0.03), and C3's p 0.0235 spans 2 × [0.0205, 0.0265] across 0.05 at 10,000 draws,
    # 2 × [0.0225, 0.0245] below it at 100,000. The noisy claim is drawn again, the exact one is not
    calls = {"C3": [], "C4": []}

    def exact_row():
        calls["C4"].append(permutation.draws())
        row = _family_row(0.03, 0.0)
        row.claim = "C4"
        return [row]

    got = claims._refined(("C3", "C4"), {"C3": make("C3", 0.0235), "C4": exact_row})
    assert calls["C3"][:2] == [10_000, 100_000] and calls["C4"] == [10_000]
    assert all(v.mc_stable for v in got)
    # a p on the bar itself never settles: tested up to MAX_DRAWS, then left flagged
    calls = {"C3": [], "C4": []}
    got = claims._refined(("C3",), {"C3": make("C3", 0.05)})
    assert calls["C3"] == [10_000, 100_000, 1_000_000] and got[0].mc_stable is False
    # the report names the rows tested again and how many draws they took
    from analysis import report

    text = report.monte_carlo_text(claims.verdicts_table(
        claims._refined(("C3",), {"C3": make("C3", 0.049)})).assign(arm="all"))  # fmt: skip
    assert "tested again with more permutations so that it does not: C3 p 0.049 · test/distortion, 1,000,000" in text
