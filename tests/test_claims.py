"""analysis.claims on constructed run tables where each claim is clearly reproduced, clearly not
reproduced, or cannot be decided (one seed, one level of the claim's factor)."""

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
def c1_runs(fractions, n=10):
    rows = []
    for seed, f in enumerate(fractions):
        k = round(f * n)
        rows += [{"seed": seed, "paper_collapsed": i < k, "collapsed": i < k // 2} for i in range(n)]
        rows.append({**DIVERGED, "seed": seed, "paper_collapsed": True})  # a stale flag must not count
    return table(rows)


def test_c1_reproduced_when_the_interval_lies_in_the_band():
    v = verdict(c1_runs([0.5, 0.5, 0.5, 0.4]), "C1")
    mean, low, high = t_ci([0.5, 0.5, 0.5, 0.4])
    assert (v.statistic, v.ci_low, v.ci_high) == (
        pytest.approx(mean),
        pytest.approx(low),
        pytest.approx(high),
    )
    assert claims.C1_BAND[0] <= low and high <= claims.C1_BAND[1]
    assert v.verdict == "reproduced" and v.n == 4
    assert "4 diverged" in v.why and "collapsed" in v.why


def test_c1_not_reproduced_when_few_runs_collapse():
    v = verdict(c1_runs([0.0, 0.0, 0.1, 0.0]), "C1")
    assert v.statistic == pytest.approx(0.025) and v.ci_high < claims.C1_BAND[0]
    assert v.verdict == "not reproduced"


def test_c1_inconclusive_when_the_interval_straddles_the_band_or_there_is_one_seed():
    assert verdict(c1_runs([0.1, 0.5, 0.9]), "C1").verdict == "inconclusive"
    one = verdict(c1_runs([0.5]), "C1")
    assert one.verdict == "inconclusive" and one.ci_low is None and one.n == 1
    assert one.why.startswith("1 seed") and "5/10" in one.why


# ------------------------------------------------------------------------------------------------- C2
def c2_runs(flags, distortions_of_seed, seeds=3):
    return table(
        [
            {"seed": s, "collapsed": bool(c), "test/distortion": d}
            for s in range(seeds)
            for c, d in zip(flags, distortions_of_seed(s), strict=True)
        ]
        + [DIVERGED]
    )


def test_c2_reproduced_when_collapse_barely_tracks_distortion():
    flags = [1, 1, 0, 0, 1, 1, 0, 0]
    dist = lambda s: [100, 200 + s, 100, 200, 150, 150, 150, 150 + s]  # noqa: E731
    v = verdict(c2_runs(flags, dist), "C2")
    rs = [np.corrcoef(flags, dist(s))[0, 1] for s in range(3)]
    assert v.statistic == pytest.approx(np.mean(rs))
    assert v.verdict == "reproduced" and -claims.C2_WEAK_R < v.ci_low and v.ci_high < claims.C2_WEAK_R


def test_c2_not_reproduced_when_collapsed_runs_reconstruct_much_worse():
    flags = [1, 1, 1, 1, 0, 0, 0, 0]
    dist = lambda s: [300, 310 + s, 305, 295, 100, 110, 105, 95 + s]  # noqa: E731
    v = verdict(c2_runs(flags, dist), "C2")
    assert v.verdict == "not reproduced" and v.ci_low >= claims.C2_WEAK_R
    # a strong correlation the other way (collapsed runs reconstruct better) is not "weak" either
    better = verdict(c2_runs(flags, lambda s: [100, 110 + s, 105, 95, 300, 310, 305, 295 + s]), "C2")
    assert better.verdict == "not reproduced" and better.ci_high <= -claims.C2_WEAK_R


def test_c2_inconclusive_without_collapse_or_with_one_seed():
    none = verdict(c2_runs([0] * 8, lambda s: list(range(8))), "C2")
    assert none.verdict == "inconclusive" and "undefined" in none.why and none.statistic is None
    one = verdict(c2_runs([1, 1, 0, 0, 1, 1, 0, 0], lambda s: [1, 2, 1, 2, 1, 2, 1, 3], seeds=1), "C2")
    assert one.verdict == "inconclusive" and one.why.startswith("1 seed")


# ------------------------------------------------------------------------------------------------- C3
def c3_runs(top_rates_per_seed):
    """16 ranked runs per seed: the top 4 (distortion 0..3) carry the given rates; a diverged run with
    the best distortion of all and a huge rate must not enter the top set."""
    rows = []
    for seed, rates in enumerate(top_rates_per_seed):
        rows += [{"seed": seed, "test/distortion": float(i), "test/rate": r} for i, r in enumerate(rates)]
        rows += [{"seed": seed, "test/distortion": 10.0 + i, "test/rate": 5.0} for i in range(12)]
        rows.append({"seed": seed, "status": "diverged", "test/distortion": -5.0, "test/rate": 1e3})
    return table(rows)


def test_c3_reproduced_when_lower_distortion_goes_with_higher_rate_in_the_top_set():
    rates = [[40, 30, 20, 10], [40, 30, 10, 20], [30, 40, 20, 10]]
    v = verdict(c3_runs(rates), "C3")
    rhos = [stats.spearmanr([0, 1, 2, 3], r)[0] for r in rates]
    mean, low, high = t_ci(rhos)
    assert (v.statistic, v.ci_high) == (pytest.approx(mean), pytest.approx(high))
    assert high < 0 and v.verdict == "reproduced" and v.n == 3


def test_c3_not_reproduced_when_the_relation_is_reversed_and_inconclusive_when_mixed():
    assert (
        verdict(c3_runs([[10, 20, 30, 40], [10, 20, 40, 30], [20, 10, 30, 40]]), "C3").verdict
        == "not reproduced"
    )
    assert (
        verdict(c3_runs([[40, 30, 20, 10], [10, 20, 30, 40], [40, 30, 10, 20]]), "C3").verdict
        == "inconclusive"
    )
    one = verdict(c3_runs([[40, 30, 20, 10]]), "C3")
    assert (
        one.verdict == "inconclusive"
        and one.why.startswith("1 seed")
        and one.statistic == pytest.approx(-1.0)
    )


# ---------------------------------------------------------------------------------------------- C4, C5
def lift_runs(column, member, other, member_positions_per_seed, n=8):
    """n ranked runs per seed ordered by distortion; ``member`` at the given positions, ``other`` elsewhere."""
    rows = []
    for seed, positions in enumerate(member_positions_per_seed):
        rows += [
            {"seed": seed, "test/distortion": float(i), column: member if i in positions else other}
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
    assert (v.statistic, v.ci_low) == (pytest.approx(mean), pytest.approx(low))
    assert low > 1 and v.verdict == "reproduced" and v.n == 4
    assert v.p_value == pytest.approx(stats.ttest_1samp(lifts, 1.0).pvalue)


def test_c4_not_reproduced_when_dense1_encoders_are_never_on_top():
    v = verdict(lift_runs("family/encoder", "dense1", "conv4", [(6, 7)] * 3), "C4")
    assert v.statistic == 0.0 and v.verdict == "not reproduced"


def test_c4_inconclusive_with_one_encoder_family_or_one_seed():
    absent = verdict(lift_runs("family/encoder", "conv2", "conv4", [(0, 1)] * 3), "C4")
    assert absent.verdict == "inconclusive" and "one level" in absent.why and absent.statistic is None
    only = verdict(lift_runs("family/encoder", "dense1", "dense1", [(0, 1)] * 3), "C4")
    assert only.verdict == "inconclusive" and "one level" in only.why
    one = verdict(lift_runs("family/encoder", "dense1", "conv4", [(0, 1)]), "C4")
    assert one.verdict == "inconclusive" and one.why.startswith("1 seed") and one.statistic == 4.0


def test_c5_reproduced_when_deep_conv_decoders_fill_the_top_set():
    v = verdict(lift_runs("family/decoder", "conv4", "dense1", [(0, 1), (0, 1), (0, 1), (1, 4)]), "C5")
    assert v.verdict == "reproduced" and v.statistic == pytest.approx(3.5)
    assert "minus the others" in v.why


def test_c5_counts_only_conv_decoders_of_depth_two_or_more():
    rows = []
    for seed in range(3):  # conv1 on top, conv4 in the middle, dense1 at the bottom
        decoders = ["conv1", "conv1", "conv4", "conv4", "dense1", "dense1", "dense1", "dense1"]
        rows += [
            {"seed": seed, "test/distortion": float(i), "family/decoder": d} for i, d in enumerate(decoders)
        ]
    v = verdict(table(rows), "C5")
    assert v.statistic == 0.0 and v.verdict == "not reproduced"  # conv1 is not "several blocks"


def test_c5_inconclusive_with_one_decoder_family_or_one_seed():
    only = verdict(lift_runs("family/decoder", "conv2", "conv4", [(0, 1)] * 3), "C5")
    assert only.verdict == "inconclusive" and "one level" in only.why
    one = verdict(lift_runs("family/decoder", "conv2", "dense4", [(0, 1)]), "C5")
    assert one.verdict == "inconclusive" and one.why.startswith("1 seed")


# ------------------------------------------------------------------------------------------------- C6
def c6_runs(acc_of_size, seeds=3, sizes=(25, 50, 100, 200)):
    rows = []
    for seed in range(seeds):
        for size in sizes:
            for j in range(2):
                acc = acc_of_size[size] + 0.005 * seed - 0.01 * j
                rows.append({"seed": seed, "latent_dim": size, "latent/linear_probe_acc": acc})
        # a diverged run with a stale probe score that would change rho if it were used
        rows.append({**DIVERGED, "seed": seed, "latent_dim": 200, "latent/linear_probe_acc": 0.99})
    return table(rows)


DEGRADING = {25: 0.97, 50: 0.95, 100: 0.93, 200: 0.80}


def test_c6_reproduced_when_accuracy_falls_with_size_but_stays_high_at_moderate_sizes():
    v = verdict(c6_runs(DEGRADING), "C6")
    sizes = [25, 25, 50, 50, 100, 100, 200, 200]
    rhos = [stats.spearmanr(sizes, [DEGRADING[s] + 0.005 * seed - 0.01 * (i % 2) for i, s in enumerate(sizes)])[0]
            for seed in range(3)]  # fmt: skip
    assert v.statistic == pytest.approx(np.mean(rhos)) and v.ci_high < 0
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


def test_c6_inconclusive_with_one_latent_size_or_one_seed():
    single = verdict(c6_runs({25: 0.97}, sizes=(25,)), "C6")
    assert single.verdict == "inconclusive" and "one level" in single.why
    one = verdict(c6_runs(DEGRADING, seeds=1), "C6")
    assert one.verdict == "inconclusive" and one.why.startswith("1 seed")


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
        "claim", "statement", "test", "statistic", "ci_low", "ci_high", "p_value", "n", "verdict", "why"
    ]  # fmt: skip
    assert got["claim"].tolist() == ["C1", "C2", "C3", "C4", "C5", "C6"]
    assert set(got["verdict"]) <= {"reproduced", "not reproduced", "inconclusive"}
    assert all(str(claims.C1_BAND[0]) in t for t in got.loc[got["claim"] == "C1", "test"])
