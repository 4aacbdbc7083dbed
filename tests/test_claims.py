"""analysis.claims on constructed run tables where each claim is clearly reproduced, clearly not
reproduced, or cannot be decided (too few configurations, one level of the claim's factor); the
all-runs tests against exact permutation nulls, and the per-seed robustness columns against a
Student-t interval computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import claims

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
    "collapsed": False,
    "partial": False,
    "paper_collapsed": False,
    "latent/linear_probe_acc": 0.95,
}


def table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{**DEFAULTS, "run_name": f"r{i:04d}", **r} for i, r in enumerate(rows)])


def verdict(runs: pd.DataFrame, claim: str) -> claims.Verdict:
    got = {v.claim: v for v in claims.check_claims(runs)}
    return got[claim]


def t_ci(values) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t 95 % interval, by hand."""
    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


DIVERGED = {"status": "diverged", "test/distortion": np.nan, "collapsed": None, "paper_collapsed": None}


# ------------------------------------------------------------------------------------------------- C1
def c1_runs(fractions, n=40):
    """n configurations (latent 25, encoders dense1..dense<n>) per seed; in a seed with fraction f the
    first round(f × n) configurations are paper-collapsed (so a configuration tends to collapse in every
    seed, as in a real sweep); plus a diverged run per seed whose stale flag must not count."""
    rows = []
    for seed, f in enumerate(fractions):
        k = round(f * n)
        rows += [
            {
                "seed": seed,
                "family/encoder": f"dense{i + 1}",
                "paper_collapsed": i < k,
                "collapsed": i < k // 2,
            }
            for i in range(n)
        ]
        rows.append({**DIVERGED, "seed": seed, "paper_collapsed": True})
    return table(rows)


def cluster_se(values_by_config) -> float:
    """Standard error of a mean of configuration means (the normal approximation of the cluster bootstrap)."""
    x = np.asarray(values_by_config, dtype=float)
    return x.std(ddof=0) / math.sqrt(len(x))


def test_c1_reproduced_when_the_bootstrap_interval_lies_in_the_band():
    fractions = [0.5, 0.5, 0.5, 0.4]
    v = verdict(c1_runs(fractions), "C1")
    mean, low, high = t_ci(fractions)
    assert v.statistic == pytest.approx(mean) and v.n == 160 and v.n_seeds == 4
    assert (v.seed_ci_low, v.seed_ci_high) == (pytest.approx(low), pytest.approx(high))
    # configuration means: 16 always collapse, 4 in 3 of 4 seeds, 20 never; the percentile interval is
    # close to mean ± 1.96 SE of the configuration means
    se = cluster_se([1.0] * 16 + [0.75] * 4 + [0.0] * 20)
    assert v.ci_low == pytest.approx(mean - 1.96 * se, abs=0.03)
    assert v.ci_high == pytest.approx(mean + 1.96 * se, abs=0.03)
    assert claims.C1_BAND[0] <= v.ci_low and v.ci_high <= claims.C1_BAND[1]
    assert v.verdict == "reproduced" and v.seed_verdict == "reproduced" and v.p_value is None
    assert "4 diverged" in v.why and "collapsed" in v.why and "bootstrap" in v.test


def test_c1_not_reproduced_when_few_runs_collapse():
    v = verdict(c1_runs([0.0, 0.0, 0.1, 0.0]), "C1")
    assert v.statistic == pytest.approx(0.025) and v.ci_high < claims.C1_BAND[0]
    assert v.verdict == "not reproduced"


def test_c1_uses_every_run_where_three_seeds_leave_it_open():
    # seeds disagree (0.1, 0.5, 0.9): the t interval over 3 seed means straddles the band, but the 40
    # configurations pin the pooled fraction inside it
    v = verdict(c1_runs([0.1, 0.5, 0.9]), "C1")
    assert v.seed_verdict == "inconclusive" and v.verdict == "reproduced"
    # 10 configurations are too few: the bootstrap interval straddles the band
    few = verdict(c1_runs([0.5, 0.5, 0.5], n=10), "C1")
    assert few.ci_low < claims.C1_BAND[0] and few.verdict == "inconclusive"


def test_c1_one_seed_is_decided_over_its_configurations():
    one = verdict(c1_runs([0.5]), "C1")
    assert one.verdict == "reproduced" and one.seed_ci_low is None and one.seed_verdict == "inconclusive"
    assert one.n_seeds == 1 and one.why.startswith("1 seed") and "20/40" in one.why
    # one configuration per seed: nothing to resample, no interval, no verdict
    single = verdict(table([{"seed": s, "paper_collapsed": s == 0} for s in range(3)]), "C1")
    assert single.ci_low is None and single.verdict == "inconclusive"


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


def test_c2_reproduced_when_collapse_barely_tracks_distortion():
    v = verdict(c2_runs(WEAK_FLAGS, weak), "C2")
    rs = [np.corrcoef(WEAK_FLAGS, weak(s))[0, 1] for s in range(3)]
    assert v.statistic == pytest.approx(np.mean(rs)) and abs(v.statistic) < 0.05
    assert v.verdict == "reproduced" and -claims.C2_WEAK_R < v.ci_low and v.ci_high < claims.C2_WEAK_R
    assert v.p_value > 0.05 and v.n == 360  # r = 0 is not rejected either
    # the same data in 8 configurations cannot show that r is weak
    few = verdict(c2_runs(WEAK_FLAGS[:8], lambda s: weak(s)[:8]), "C2")
    assert few.verdict == "inconclusive"


def test_c2_not_reproduced_when_collapsed_runs_reconstruct_much_worse():
    flags = [1, 1, 1, 1, 0, 0, 0, 0]
    dist = lambda s: [300, 310 + s, 305, 295, 100, 110, 105, 95 + s]  # noqa: E731
    v = verdict(c2_runs(flags, dist), "C2")
    assert v.verdict == "not reproduced" and v.ci_low >= claims.C2_WEAK_R
    assert v.p_value < 0.05 and v.seed_verdict == "not reproduced"
    # a strong correlation the other way (collapsed runs reconstruct better) is not "weak" either
    better = verdict(c2_runs(flags, lambda s: [100, 110 + s, 105, 95, 300, 310, 305, 295 + s]), "C2")
    assert better.verdict == "not reproduced" and better.ci_high <= -claims.C2_WEAK_R


def test_c2_inconclusive_without_collapse_and_decided_with_one_seed():
    none = verdict(c2_runs([0] * 8, lambda s: list(range(8))), "C2")
    assert none.verdict == "inconclusive" and "undefined" in none.why and none.statistic is None
    one = verdict(c2_runs(WEAK_FLAGS, weak, seeds=1), "C2")
    assert one.verdict == "reproduced" and one.why.startswith("1 seed") and one.seed_verdict == "inconclusive"


# ------------------------------------------------------------------------------------------------- C3
def c3_runs(top_rates_per_seed, rest_rate=lambda i: 5.0):
    """16 ranked configurations per seed: the top 4 (distortion 0..3) carry the given rates, the other 12
    ``rest_rate(i)``; a diverged run with the best distortion of all and a huge rate must not enter the
    top set."""
    rows = []
    for seed, rates in enumerate(top_rates_per_seed):
        rows += [
            {"seed": seed, "family/encoder": f"dense{i + 1}", "test/distortion": float(i), "test/rate": r}
            for i, r in enumerate(rates)
        ]
        rows += [
            {
                "seed": seed,
                "family/encoder": f"conv{i + 1}",
                "test/distortion": 10.0 + i,
                "test/rate": rest_rate(i),
            }
            for i in range(12)
        ]
        rows.append({"seed": seed, "status": "diverged", "test/distortion": -5.0, "test/rate": 1e3})
    return table(rows)


def test_c3_reproduced_when_lower_distortion_goes_with_higher_rate_in_the_top_set():
    rates = [[40, 30, 20, 10], [40, 30, 10, 20], [30, 40, 20, 10]]
    v = verdict(c3_runs(rates), "C3")
    rhos = [stats.spearmanr([0, 1, 2, 3], r)[0] for r in rates]
    mean, _, high = t_ci(rhos)
    assert (v.statistic, v.seed_ci_high) == (pytest.approx(mean), pytest.approx(high))
    # the permutation null by hand: rho of each seed's 4 top runs under all 24 orders, mean of 3 seeds
    import itertools

    null = [stats.spearmanr([0, 1, 2, 3], p)[0] for p in itertools.permutations(range(4))]
    sums = np.add.outer(np.add.outer(null, null), null).ravel() / 3
    exact = np.mean(sums <= mean + 1e-9)
    assert v.p_value == pytest.approx(exact, abs=4 * math.sqrt(exact / claims.permutation.N_PERM) + 2e-4)
    assert v.p_value < claims.ALPHA and v.verdict == "reproduced" and v.n == 12 and v.n_seeds == 3


def test_c3_not_reproduced_when_the_relation_is_reversed_and_inconclusive_when_mixed():
    # the rate rises with distortion through the whole ranking, so resampled top sets agree
    up = [[10, 20, 30, 40], [10, 20, 40, 30], [20, 10, 30, 40]]
    reversed_ = verdict(c3_runs(up, rest_rate=lambda i: 50.0 + i), "C3")
    assert reversed_.verdict == "not reproduced" and reversed_.ci_low >= 0 and reversed_.p_value > 0.5
    mixed = verdict(c3_runs([[40, 30, 20, 10], [10, 20, 30, 40], [40, 30, 10, 20]]), "C3")
    assert mixed.verdict == "inconclusive"


def test_c3_one_seed_is_a_permutation_test_within_that_seed():
    one = verdict(c3_runs([[40, 30, 20, 10]]), "C3")
    # rho = -1 is the most extreme of 24 orders of 4 runs: p = 1/24 up to Monte Carlo error
    assert one.statistic == pytest.approx(-1.0) and one.p_value == pytest.approx(1 / 24, abs=0.006)
    assert one.verdict == "reproduced" and one.why.startswith("1 seed") and one.seed_verdict == "inconclusive"


# ---------------------------------------------------------------------------------------------- C4, C5
OTHER = {"family/encoder": "family/decoder", "family/decoder": "family/encoder"}


def lift_runs(column, member, other, member_positions_per_seed, n=8):
    """n ranked runs per seed ordered by distortion; ``member`` at the given positions, ``other``
    elsewhere; the other architecture column tells the configurations apart (dense1..dense<n>)."""
    rows = []
    for seed, positions in enumerate(member_positions_per_seed):
        rows += [
            {
                "seed": seed,
                "test/distortion": float(i),
                column: member if i in positions else other,
                OTHER[column]: f"dense{i + 1}",
            }
            for i in range(n)
        ]
        rows.append({**DIVERGED, "seed": seed, column: member})
    return table(rows)


def test_c4_reproduced_when_dense1_encoders_fill_the_top_set():
    positions = [(0, 1), (0, 1), (0, 1), (0, 5)]
    v = verdict(lift_runs("family/encoder", "dense1", "conv4", positions), "C4")
    # top = ceil(0.25 × 8) = 2 runs; dense1 is 2 of 8 ranked runs
    lifts = [(sum(p < 2 for p in pos) / 2) / (2 / 8) for pos in positions]
    assert lifts == [4.0, 4.0, 4.0, 2.0]
    mean, low, _ = t_ci(lifts)
    assert (v.statistic, v.seed_ci_low) == (pytest.approx(mean), pytest.approx(low))
    assert v.seed_p_value == pytest.approx(stats.ttest_1samp(lifts, 1.0).pvalue)
    # exact null: each seed's 2 members land in its top 2 with hypergeometric counts; P(total >= 7)
    count = stats.hypergeom(8, 2, 2)
    p_exact = 4 * count.pmf(2) ** 3 * count.pmf(1) + count.pmf(2) ** 4
    assert v.p_value <= p_exact + 5 / claims.permutation.N_PERM and v.p_value < claims.ALPHA
    assert v.verdict == "reproduced" and v.n == 32 and v.n_seeds == 4 and v.seed_verdict == "reproduced"
    assert "permutation" in v.test and "Good 2005" in v.test and "Efron & Tibshirani 1993" in v.test


def test_c4_not_reproduced_when_dense1_encoders_are_never_on_top():
    v = verdict(lift_runs("family/encoder", "dense1", "conv4", [(6, 7)] * 3), "C4")
    assert v.statistic == 0.0 and v.ci_high <= 1 and v.p_value == 1.0 and v.verdict == "not reproduced"


def test_c4_inconclusive_with_one_encoder_family_and_decided_with_one_seed():
    absent = verdict(lift_runs("family/encoder", "conv2", "conv4", [(0, 1)] * 3), "C4")
    assert absent.verdict == "inconclusive" and "one level" in absent.why and absent.statistic is None
    only = verdict(lift_runs("family/encoder", "dense1", "dense1", [(0, 1)] * 3), "C4")
    assert only.verdict == "inconclusive" and "one level" in only.why
    # one seed: both members in the top 2 of 8 has probability 1 / C(8, 2) = 1/28 under the null
    one = verdict(lift_runs("family/encoder", "dense1", "conv4", [(0, 1)]), "C4")
    assert one.statistic == 4.0 and one.p_value == pytest.approx(1 / 28, abs=0.006)
    assert one.verdict == "reproduced" and one.why.startswith("1 seed") and one.seed_verdict == "inconclusive"
    # one member, in the middle, in one seed: the permutation test cannot tell (p = 1 - 6/8)
    mid = verdict(lift_runs("family/encoder", "dense1", "conv4", [(3,)]), "C4")
    assert mid.p_value == pytest.approx(1.0) and mid.verdict in ("inconclusive", "not reproduced")


def test_c5_reproduced_when_deep_conv_decoders_fill_the_top_set():
    v = verdict(lift_runs("family/decoder", "conv4", "dense1", [(0, 1), (0, 1), (0, 1), (1, 4)]), "C5")
    assert v.verdict == "reproduced" and v.statistic == pytest.approx(3.5) and v.p_value < claims.ALPHA
    assert "minus the others" in v.why


def test_c5_counts_only_conv_decoders_of_depth_two_or_more():
    rows = []
    for seed in range(3):  # conv1 on top, dense1 in the middle, conv4 at the bottom
        decoders = ["conv1", "conv1", "dense1", "dense1", "dense1", "dense1", "conv4", "conv4"]
        rows += [
            {
                "seed": seed,
                "test/distortion": float(i),
                "family/decoder": d,
                "family/encoder": f"dense{i + 1}",
            }
            for i, d in enumerate(decoders)
        ]
    v = verdict(table(rows), "C5")
    assert v.statistic == 0.0 and v.verdict == "not reproduced"  # conv1 is not "several blocks"


def test_c5_inconclusive_with_one_decoder_family():
    only = verdict(lift_runs("family/decoder", "conv2", "conv4", [(0, 1)] * 3), "C5")
    assert only.verdict == "inconclusive" and "one level" in only.why


def test_lift_strata_hold_the_latent_size_fixed():
    # latent 25 beats every other latent size, so the top 4 of 16 runs per seed are the latent-25 runs,
    # and dense1 encoders exist only there: lift 4, all of it the latent size's doing. Shuffled within
    # seed × latent, dense1 stays in the top set (p = 1); shuffled within seeds only, it would not
    rows = []
    for seed in range(3):
        for latent, base in ((25, 0.0), (50, 100.0), (100, 200.0), (200, 300.0)):
            for i in range(4):
                enc = "dense1" if latent == 25 and i in (1, 2) else f"conv{i + 1}"
                rows.append({"seed": seed, "latent_dim": latent, "family/encoder": enc,
                             "family/decoder": f"dense{i + 1}", "test/distortion": base + i})  # fmt: skip
    runs = table(rows)
    v = verdict(runs, "C4")
    assert (
        v.statistic == pytest.approx(4.0) and v.p_value == pytest.approx(1.0) and v.verdict == "inconclusive"
    )
    d = runs.sort_values("run_name")
    member = d["family/encoder"].eq("dense1").to_numpy(float)
    naive = claims.permutation.lift(
        d["seed"], d["test/distortion"], member, d["seed"], d["latent_dim"], d["latent_dim"], fraction=0.25
    )
    assert naive.p_value < claims.ALPHA  # P(both in the top 4 of 16) = 1/20 per seed, (1/20)^3 for three


# ------------------------------------------------------------------------------------------------- C6
def c6_runs(acc_of_size, seeds=3, sizes=(25, 50, 100, 200)):
    """Per seed, two encoder cells (conv1, conv2) × the latent sizes."""
    rows = []
    for seed in range(seeds):
        for size in sizes:
            for j in range(2):
                acc = acc_of_size[size] + 0.005 * seed - 0.01 * j
                rows.append(
                    {
                        "seed": seed,
                        "latent_dim": size,
                        "family/encoder": f"conv{j + 1}",
                        "latent/linear_probe_acc": acc,
                    }
                )
        # a diverged run with a stale probe score that would change rho if it were used
        rows.append({**DIVERGED, "seed": seed, "latent_dim": 200, "latent/linear_probe_acc": 0.99})
    return table(rows)


DEGRADING = {25: 0.97, 50: 0.95, 100: 0.93, 200: 0.80}


def test_c6_reproduced_when_accuracy_falls_with_size_but_stays_high_at_moderate_sizes():
    v = verdict(c6_runs(DEGRADING), "C6")
    sizes = [25, 25, 50, 50, 100, 100, 200, 200]
    rhos = [stats.spearmanr(sizes, [DEGRADING[s] + 0.005 * seed - 0.01 * (i % 2) for i, s in enumerate(sizes)])[0]
            for seed in range(3)]  # fmt: skip
    assert v.statistic == pytest.approx(np.mean(rhos)) and v.ci_high < 0 and v.seed_ci_high < 0
    # 6 cells (seed × encoder) of 4 sizes each, every one perfectly ordered: p = 1/24^6 + Monte Carlo
    assert v.p_value == pytest.approx(1 / (1 + claims.permutation.N_PERM))
    assert v.verdict == "reproduced" and "separability: reproduced" in v.why


def test_c6_not_reproduced_when_accuracy_grows_with_size_or_is_low_at_moderate_sizes():
    growing = {25: 0.91, 50: 0.93, 100: 0.95, 200: 0.97}
    assert verdict(c6_runs(growing), "C6").verdict == "not reproduced"
    low = {k: v - 0.45 for k, v in DEGRADING.items()}
    got = verdict(c6_runs(low), "C6")
    assert got.ci_high < 0 and got.verdict == "not reproduced" and "separability: not reproduced" in got.why


def test_c6_counts_latent_100_as_moderate():
    # accurate at 50, poor at 100: with 100 counted as moderate the mean falls below C6_MIN_PROBE_ACC
    got = verdict(c6_runs({50: 0.99, 100: 0.70, 200: 0.50}, sizes=(50, 100, 200)), "C6")
    assert got.verdict == "not reproduced" and "separability: not reproduced" in got.why


def test_c6_inconclusive_with_one_latent_size_and_decided_with_one_seed():
    single = verdict(c6_runs({25: 0.97}, sizes=(25,)), "C6")
    assert single.verdict == "inconclusive" and "one level" in single.why
    one = verdict(c6_runs(DEGRADING, seeds=1), "C6")
    assert one.verdict == "reproduced" and one.why.startswith("1 seed") and one.seed_verdict == "inconclusive"


# ------------------------------------------------------------------------------------------- ablation
def ablation_runs(paper, sum_):
    """(collapsed, evaluated) counts per arm; plus one diverged run per arm."""
    rows = []
    for arm, (k, n) in (("paper", paper), ("sum", sum_)):
        rows += [{"loss.reduction": arm, "seed": i % 3, "collapsed": i < k} for i in range(n)]
        rows.append({**DIVERGED, "loss.reduction": arm})
    return table(rows)


def test_ablation_reproduced_when_the_paper_reduction_collapses_more():
    v = verdict(ablation_runs((15, 20), (1, 20)), "ablation")
    assert v.statistic == pytest.approx(15 / 20 - 1 / 20) and v.n == 40
    assert v.p_value == pytest.approx(stats.fisher_exact([[15, 5], [1, 19]]).pvalue)
    assert v.verdict == "reproduced" and "15/20" in v.why and "1/20" in v.why


def test_ablation_not_reproduced_when_neither_arm_collapses_and_inconclusive_when_small():
    none = verdict(ablation_runs((0, 60), (0, 60)), "ablation")
    assert none.ci_high < claims.ABLATION_MIN_EFFECT and none.verdict == "not reproduced"
    reversed_ = verdict(ablation_runs((1, 20), (15, 20)), "ablation")
    assert reversed_.p_value < claims.ABLATION_ALPHA and reversed_.verdict == "not reproduced"
    small = verdict(ablation_runs((2, 10), (1, 10)), "ablation")
    assert small.verdict == "inconclusive"


def test_ablation_only_when_both_reductions_are_present_and_other_claims_say_they_pool_them():
    assert "ablation" not in [v.claim for v in claims.check_claims(table([{"loss.reduction": "sum"}] * 4))]
    got = claims.check_claims(ablation_runs((1, 4), (1, 4)))
    assert got[-1].claim == "ablation"
    assert all("pooled over loss.reduction" in v.why for v in got[:6])


def test_newcombe_interval_known_value():
    # Newcombe (1998), Stat. Med. 17:873, example (a): 56/70 − 48/80, hybrid score interval 0.0524 to 0.3339
    low, high = claims.newcombe_interval(56, 70, 48, 80)
    assert (low, high) == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))


# ------------------------------------------------------------------------------------------ robustness
def test_every_claim_is_inconclusive_on_empty_or_all_failed_tables():
    failed = table([{**DIVERGED, "status": "failed", "seed": s} for s in range(3)])
    for runs in (pd.DataFrame(), table([]), failed):
        got = claims.check_claims(runs)
        assert [v.claim for v in got] == ["C1", "C2", "C3", "C4", "C5", "C6"]
        assert all(v.verdict == "inconclusive" and v.why for v in got)
    assert "3 failed" in claims.check_claims(failed)[0].why


def test_verdicts_table_has_one_row_per_verdict_in_field_order():
    got = claims.verdicts_table(claims.check_claims(c1_runs([0.5, 0.5, 0.4])))
    assert list(got.columns) == [
        "claim", "statement", "test", "statistic", "ci_low", "ci_high", "p_value", "n", "verdict", "why",
        "n_seeds", "seed_ci_low", "seed_ci_high", "seed_p_value", "seed_verdict",
    ]  # fmt: skip
    assert got["claim"].tolist() == ["C1", "C2", "C3", "C4", "C5", "C6"]
    assert set(got["verdict"]) <= {"reproduced", "not reproduced", "inconclusive"}
    assert all(str(claims.C1_BAND[0]) in t for t in got.loc[got["claim"] == "C1", "test"])
