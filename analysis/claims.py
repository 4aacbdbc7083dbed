"""The claims check (docs/protocol.md "Claims check"): a verdict on each claim C1–C6 and the loss ablation.

Design. Each claim is decided by one named statistic computed **per seed** (seeds are the replicate
units: a sweep trains every configuration once per seed), summarised as the mean over seeds with a
Student-t 95 % interval (``rank.t_interval``) and a two-sided one-sample t-test p-value against the
claim's null value. One seed gives no interval, so the verdict is *inconclusive*. The ablation is a
pooled 2 × 2 count (collapsed or not × reduction), decided by Fisher's exact test with a Newcombe
(Wilson-score) interval of the rate difference. Only runs with ``status == "ok"`` enter a statistic;
diverged/failed runs are counted in ``why``. The decision rules are the named constants below and each
verdict's ``test`` text states them; ``CONSTANTS`` collects them for the report.

    from analysis import claims
    table = claims.verdicts_table(claims.check_claims(runs))
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
from scipy import stats

from analysis import collapse, rank

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
MIN_SEEDS = 2  # seeds needed for an interval across seeds
MIN_CORR_RUNS = 3  # runs a seed needs for a correlation to count
C1_BAND = (0.30, 0.70)  # "nearly half": the per-seed paper_collapsed fraction's CI must lie inside
C2_WEAK_R = 0.30  # |r| below this is a weak correlation
C5_MIN_DEPTH = 2  # "several blocks"
C6_MODERATE_LATENT = 100  # latent sizes up to this are "moderate"
C6_MIN_PROBE_ACC = 0.90  # "separable": linear-probe accuracy at moderate sizes
ABLATION_ALPHA = 0.05  # Fisher exact test level
ABLATION_MIN_EFFECT = 0.10  # a collapse-rate increase below this is negligible
CONSTANTS = {
    "top_fraction": rank.TOP_FRACTION,
    "ci_level": rank.CI_LEVEL,
    "min_seeds": MIN_SEEDS,
    "min_corr_runs": MIN_CORR_RUNS,
    "c1_band_low": C1_BAND[0],
    "c1_band_high": C1_BAND[1],
    "c2_weak_r": C2_WEAK_R,
    "c5_min_depth": C5_MIN_DEPTH,
    "c6_moderate_latent": C6_MODERATE_LATENT,
    "c6_min_probe_acc": C6_MIN_PROBE_ACC,
    "ablation_alpha": ABLATION_ALPHA,
    "ablation_min_effect": ABLATION_MIN_EFFECT,
}
UNIT, CORR = (0.0, 1.0), (-1.0, 1.0)  # ranges that intervals are clipped to
_FAMILY = re.compile(r"^([a-z]+)(\d+)$")


@dataclass
class Verdict:
    claim: str  # "C1".."C6" or "ablation"
    statement: str  # the claim in one sentence
    test: str  # the statistic and the decision rule in words
    statistic: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n: int  # units the test used: seeds (C1–C6) or runs (ablation)
    verdict: str  # reproduced | not reproduced | inconclusive
    why: str  # one sentence, always filled


@dataclass
class _Est:
    """Per-seed values of a statistic and their summary across seeds."""

    per_seed: dict
    mean: float | None = None
    low: float | None = None
    high: float | None = None
    p_value: float | None = None

    @property
    def n(self) -> int:
        return len(self.per_seed)


def _float(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _g(x) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.3g}"


def _across(per_seed: dict, null: float, bounds=(-math.inf, math.inf)) -> _Est:
    """Mean, Student-t 95 % CI and two-sided t-test p-value (against ``null``) of the finite values.
    The interval is clipped to ``bounds``, the statistic's range (a correlation's CI stays in [-1, 1])."""
    per_seed = {s: float(v) for s, v in per_seed.items() if v is not None and np.isfinite(v)}
    est = _Est(per_seed)
    mean, half, n = rank.t_interval(list(per_seed.values()))
    est.mean = _float(mean)
    if n >= MIN_SEEDS and np.isfinite(half):
        est.low, est.high = max(bounds[0], mean - half), min(bounds[1], mean + half)
        values = np.array(list(per_seed.values()))
        if values.std() > 1e-12 * max(1.0, abs(mean)):  # identical values: the t statistic is undefined
            est.p_value = _float(stats.ttest_1samp(values, null).pvalue)
    return est


def _verdict(claim, statement, test, est: _Est, verdict: str, why: str) -> Verdict:
    return Verdict(claim, statement, test, est.mean, est.low, est.high, est.p_value, est.n, verdict, why)


def _no_interval(claim, statement, test, est: _Est, what: str, note: str) -> Verdict | None:
    """The inconclusive verdict when fewer than MIN_SEEDS seeds give the statistic, else None."""
    if est.n >= MIN_SEEDS:
        return None
    if est.n == 0:
        why = f"no seed gives a {what}{note}"
    else:
        seed, value = next(iter(est.per_seed.items()))
        why = f"1 seed: no interval across seeds (seed {seed}: {what} {_g(value)}){note}"
    return _verdict(claim, statement, test, est, INCONCLUSIVE, why)


def _one_level(claim, statement, test, why: str) -> Verdict:
    return Verdict(claim, statement, test, None, None, None, None, 0, INCONCLUSIVE, why)


def _directional(est: _Est, null: float, side: str) -> str:
    """reproduced: CI entirely on the claimed side of ``null`` (strictly); not reproduced: CI entirely
    at or beyond it on the other side; inconclusive: the CI contains ``null``."""
    low, high = est.low, est.high
    if side == "below":
        return REPRODUCED if high < null else NOT_REPRODUCED if low >= null else INCONCLUSIVE
    return REPRODUCED if low > null else NOT_REPRODUCED if high <= null else INCONCLUSIVE


def _numeric(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return pd.Series(values, index=df.index)


def _kind_depth(families: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(kind, depth) parsed from ``family/...`` values such as ``conv4``."""
    parts = families.astype(str).str.extract(_FAMILY)
    return parts[0], pd.to_numeric(parts[1], errors="coerce")


def _corr(x: pd.Series, y: pd.Series, method: str) -> float:
    """Pearson or Spearman correlation of the rows finite in both; NaN below MIN_CORR_RUNS rows or when
    either side is constant."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep].to_numpy(), y[keep].to_numpy()
    if len(x) < MIN_CORR_RUNS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    f = stats.pearsonr if method == "pearson" else stats.spearmanr
    return float(f(x, y)[0])


def _lift(seed_runs: pd.DataFrame, member: pd.Series) -> float:
    """Lift of the rows in ``member`` in the seed's top TOP_FRACTION by reconstruction: share of the top
    set over share of the ranked runs; NaN when the seed ranks no member."""
    marked = seed_runs.assign(_member=member.astype(bool))
    ranked, top = rank.ranking(marked, "recon"), rank.top_set(marked, "recon")
    n_member = int(ranked["_member"].sum())
    if not n_member or not len(top):
        return np.nan
    return (int(top["_member"].sum()) / len(top)) / (n_member / len(ranked))


# ---------------------------------------------------------------------------------------------- claims
def _c1(ok: pd.DataFrame, seeds, note: str) -> Verdict:
    lo, hi = C1_BAND
    statement = "Nearly half the runs collapse (KL at the numerical floor)."
    test = (
        f"Per seed, the fraction of evaluated runs with paper_collapsed (rate < 1e-6 nats); mean over seeds "
        f"with a 95 % t interval. Reproduced if the interval lies within [{lo}, {hi}], not reproduced if it "
        f"lies entirely outside, else inconclusive. p: two-sided t-test of the per-seed values against 0.5."
    )
    paper, ours = {}, {}
    for seed, g in seeds:
        pf, cf = collapse.flag(g, "paper_collapsed").dropna(), collapse.flag(g, "collapsed").dropna()
        if len(pf):
            paper[seed] = float(pf.astype(float).mean())
        if len(cf):
            ours[seed] = float(cf.astype(float).mean())
    est, ours_est = _across(paper, 0.5, UNIT), _across(ours, 0.5, UNIT)
    pooled = collapse.flag(ok, "paper_collapsed").dropna()
    k, n = int(pooled.astype(int).sum()), len(pooled)
    w_lo, w_hi = collapse.wilson_interval(k, n)
    pooled_txt = (
        f"pooled {k}/{n} paper-collapsed, Wilson 95 % [{_g(w_lo)}, {_g(w_hi)}]"
        if n
        else "no evaluated ok run"
    )
    ours_txt = f"our `collapsed` flag (no active unit and rate < 0.1 nats): {_g(ours_est.mean)}"
    bad = _no_interval("C1", statement, test, est, "paper_collapsed fraction", f"; {pooled_txt}{note}")
    if bad:
        return bad
    if lo <= est.low and est.high <= hi:
        verdict = REPRODUCED
    elif est.high < lo or est.low > hi:
        verdict = NOT_REPRODUCED
    else:
        verdict = INCONCLUSIVE
    why = (
        f"paper_collapsed fraction {_g(est.mean)} over {est.n} seeds, 95 % CI [{_g(est.low)}, "
        f"{_g(est.high)}] against the band [{lo}, {hi}]; {ours_txt}; {pooled_txt}{note}."
    )
    return _verdict("C1", statement, test, est, verdict, why)


def _c2(ok: pd.DataFrame, seeds, note: str) -> Verdict:
    w = C2_WEAK_R
    statement = "Collapse correlates only weakly with poor reconstruction."
    test = (
        f"Per seed, the point-biserial (Pearson) r between `collapsed` (0/1) and test/distortion over "
        f"evaluated runs; mean over seeds with a 95 % t interval. Reproduced if the interval lies within "
        f"(-{w}, {w}), not reproduced if it lies entirely at or beyond +{w} or -{w} (a strong "
        f"correlation), else inconclusive. p: two-sided t-test of the per-seed values against 0."
    )
    per_seed = {}
    for seed, g in seeds:
        flag = collapse.flag(g, "collapsed")
        keep = flag.notna()
        per_seed[seed] = _corr(flag[keep].astype(float), _numeric(g, "test/distortion")[keep], "pearson")
    est = _across(per_seed, 0.0, CORR)
    n_coll = int(collapse.flag(ok, "collapsed").fillna(False).sum())
    if est.n == 0:
        why = (
            f"no seed has both collapsed and non-collapsed runs with varying distortions "
            f"({n_coll} of {len(ok)} ok runs collapsed): r is undefined{note}"
        )
        return _verdict("C2", statement, test, est, INCONCLUSIVE, why)
    bad = _no_interval("C2", statement, test, est, "r", note)
    if bad:
        return bad
    if -w < est.low and est.high < w:
        verdict = REPRODUCED
    elif est.low >= w or est.high <= -w:
        verdict = NOT_REPRODUCED
    else:
        verdict = INCONCLUSIVE
    why = (
        f"r = {_g(est.mean)} over {est.n} seeds, 95 % CI [{_g(est.low)}, {_g(est.high)}] "
        f"({n_coll} of {len(ok)} ok runs collapsed){note}."
    )
    return _verdict("C2", statement, test, est, verdict, why)


def _c3(ok: pd.DataFrame, seeds, note: str) -> Verdict:
    f = rank.TOP_FRACTION
    statement = "Within the top 25 % by reconstruction, lower reconstruction loss goes with higher KL."
    test = (
        f"Per seed, Spearman rho(test/distortion, test/rate) within that seed's top {f:.0%} by "
        f"test/distortion; mean over seeds with a 95 % t interval. Reproduced if the interval lies "
        f"entirely below 0, not reproduced if entirely at or above 0, else inconclusive. p: two-sided t-test of the per-seed values against 0."
    )
    per_seed = {}
    for seed, g in seeds:
        top = rank.top_set(g, "recon")
        per_seed[seed] = _corr(_numeric(top, "test/distortion"), _numeric(top, "test/rate"), "spearman")
    est = _across(per_seed, 0.0, CORR)
    bad = _no_interval(
        "C3",
        statement,
        test,
        est,
        f"rho (it needs a top set of at least {MIN_CORR_RUNS} runs whose distortion and rate vary)",
        note,
    )
    if bad:
        return bad
    why = f"rho = {_g(est.mean)} over {est.n} seeds, 95 % CI [{_g(est.low)}, {_g(est.high)}]{note}."
    return _verdict("C3", statement, test, est, _directional(est, 0.0, "below"), why)


def _lift_claim(claim, statement, what, member_of, ok, seeds, note, extra=None) -> Verdict:
    """C4/C5: per-seed lift of ``member_of(rows)`` in the top set, decided against 1."""
    f = rank.TOP_FRACTION
    test = (
        f"Per seed, the lift of {what} in the top {f:.0%} by test/distortion (share of the top set / share "
        f"of the ranked runs); mean over seeds with a 95 % t interval. Reproduced if the interval lies "
        f"entirely above 1, not reproduced if entirely at or below 1, else inconclusive. p: two-sided t-test of the per-seed values against 1."
    )
    ranked = ok[rank.ranked_mask(ok, "recon")]
    if not len(ranked):
        return _one_level(claim, statement, test, f"no ranked run (status ok with a test/distortion){note}")
    members = member_of(ranked)
    if not members.any():
        return _one_level(claim, statement, test, f"no ranked run has {what}: the factor has one level{note}")
    if members.all():
        return _one_level(
            claim, statement, test, f"every ranked run has {what}: the factor has one level{note}"
        )
    per_seed = {seed: _lift(g, member_of(g)) for seed, g in seeds}
    est = _across(per_seed, 1.0, (0.0, math.inf))
    extra_txt = extra(seeds) if extra else ""
    bad = _no_interval(claim, statement, test, est, "lift", f"{extra_txt}{note}")
    if bad:
        return bad
    why = (
        f"lift = {_g(est.mean)} over {est.n} seeds, 95 % CI [{_g(est.low)}, {_g(est.high)}]{extra_txt}{note}."
    )
    return _verdict(claim, statement, test, est, _directional(est, 1.0, "above"), why)


def _dense1(df: pd.DataFrame) -> pd.Series:
    if "family/encoder" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["family/encoder"].astype(str).eq("dense1")


def _deep_conv(df: pd.DataFrame) -> pd.Series:
    if "family/decoder" not in df.columns:
        return pd.Series(False, index=df.index)
    kind, depth = _kind_depth(df["family/decoder"])
    return kind.eq("conv") & (depth >= C5_MIN_DEPTH)


def _c5_gap(seeds) -> str:
    """Mean over seeds of (mean distortion of deep-conv decoders − mean distortion of the others)."""
    gaps = {}
    for seed, g in seeds:
        r = g[rank.ranked_mask(g, "recon")]
        deep, d = _deep_conv(r), _numeric(r, "test/distortion")
        if deep.any() and (~deep).any():
            gaps[seed] = d[deep].mean() - d[~deep].mean()
    est = _across(gaps, 0.0)
    ci = f", 95 % CI [{_g(est.low)}, {_g(est.high)}]" if est.low is not None else ""
    return f"; distortion of deep conv decoders minus the others: {_g(est.mean)} nats{ci}"


def _c6(ok: pd.DataFrame, seeds, note: str) -> Verdict:
    m, acc = C6_MODERATE_LATENT, C6_MIN_PROBE_ACC
    statement = "Larger latents degrade latent-space quality yet stay separable at moderate sizes."
    test = (
        f"Per seed, (a) Spearman rho(latent_dim, latent/linear_probe_acc) over ok runs and (b) the mean "
        f"probe accuracy of runs with latent_dim <= {m}; means over seeds with 95 % t intervals. "
        f"Reproduced if rho's interval lies entirely below 0 and (b)'s lower bound is >= {acc}; not "
        f"reproduced if rho's interval lies entirely at or above 0 or (b)'s upper bound is < {acc}; "
        f"else inconclusive. p: two-sided t-test of the per-seed values against 0 (for rho)."
    )
    latent = _numeric(ok, "latent_dim")
    if not len(ok):
        return _one_level("C6", statement, test, f"no ok run{note}")
    if latent.dropna().nunique() < 2:
        return _one_level(
            "C6", statement, test, f"a single latent size in the ok runs: the factor has one level{note}"
        )
    rho, moderate = {}, {}
    for seed, g in seeds:
        probe, size = _numeric(g, "latent/linear_probe_acc"), _numeric(g, "latent_dim")
        rho[seed] = _corr(size, probe, "spearman")
        sel = probe[(size <= m) & np.isfinite(probe)]
        moderate[seed] = sel.mean() if len(sel) else np.nan
    est, acc_est = _across(rho, 0.0, CORR), _across(moderate, acc, UNIT)
    acc_txt = (
        f"; probe accuracy at latent <= {m}: {_g(acc_est.mean)}"
        + (f", 95 % CI [{_g(acc_est.low)}, {_g(acc_est.high)}]" if acc_est.low is not None else "")
        + ("" if acc_est.n else f" (no run with latent <= {m})")
    )
    bad = _no_interval("C6", statement, test, est, "rho", f"{acc_txt}{note}")
    if bad:
        return bad
    degrade = _directional(est, 0.0, "below")
    if acc_est.low is None:
        separable = INCONCLUSIVE
    else:
        separable = (
            REPRODUCED if acc_est.low >= acc else NOT_REPRODUCED if acc_est.high < acc else INCONCLUSIVE
        )
    if NOT_REPRODUCED in (degrade, separable):
        verdict = NOT_REPRODUCED
    elif degrade == separable == REPRODUCED:
        verdict = REPRODUCED
    else:
        verdict = INCONCLUSIVE
    why = (
        f"rho = {_g(est.mean)} over {est.n} seeds, 95 % CI [{_g(est.low)}, {_g(est.high)}] "
        f"(degradation: {degrade}){acc_txt} (separability: {separable}){note}."
    )
    return _verdict("C6", statement, test, est, verdict, why)


def newcombe_interval(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """Newcombe's hybrid score 95 % interval of p1 − p2 from the Wilson intervals (l_i, u_i) of each:
    (d − √((p1−l1)² + (u2−p2)²), d + √((u1−p1)² + (p2−l2)²)), d = p1 − p2."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = collapse.wilson_interval(k1, n1)
    l2, u2 = collapse.wilson_interval(k2, n2)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def _ablation(ok: pd.DataFrame, note: str) -> Verdict:
    a, e = ABLATION_ALPHA, ABLATION_MIN_EFFECT
    statement = (
        "Collapse follows the loss normalisation: the paper's per-pixel-mean reduction (`paper`) "
        "collapses more runs than the per-image sum (`sum`)."
    )
    test = (
        f"Pooled over seeds and configurations (a 2x2 count): collapse rate (`collapsed`) under "
        f"loss.reduction=paper minus under sum, Newcombe 95 % interval, two-sided Fisher exact p. "
        f"Reproduced if p < {a} and the paper rate is higher; not reproduced if the interval's upper "
        f"bound is < {e}; else inconclusive."
    )
    flag, paper_flag = collapse.flag(ok, "collapsed"), collapse.flag(ok, "paper_collapsed")
    red = ok["loss.reduction"].astype(str)
    counts = {}
    for arm in ("paper", "sum"):
        v, pv = flag[red.eq(arm)].dropna(), paper_flag[red.eq(arm)].dropna()
        counts[arm] = (int(v.sum()), len(v), int(pv.sum()), len(pv))
    (kp, np_, pkp, pnp), (ks, ns, pks, pns) = counts["paper"], counts["sum"]
    if not np_ or not ns:
        arm = "paper" if not np_ else "sum"
        why = f"no evaluated ok run with loss.reduction={arm}{note}"
        return Verdict("ablation", statement, test, None, None, None, None, np_ + ns, INCONCLUSIVE, why)
    p = float(stats.fisher_exact([[kp, np_ - kp], [ks, ns - ks]]).pvalue)
    diff = kp / np_ - ks / ns
    low, high = newcombe_interval(kp, np_, ks, ns)
    if p < a and diff > 0:
        verdict = REPRODUCED
    elif high < e:
        verdict = NOT_REPRODUCED
    else:
        verdict = INCONCLUSIVE
    why = (
        f"collapsed {kp}/{np_} ({_g(kp / np_)}) under paper vs {ks}/{ns} ({_g(ks / ns)}) under sum, "
        f"difference {_g(diff)} [{_g(low)}, {_g(high)}], Fisher p = {_g(p)}; paper_collapsed "
        f"{pkp}/{pnp} vs {pks}/{pns}{note}."
    )
    return Verdict("ablation", statement, test, diff, low, high, p, np_ + ns, verdict, why)


def check_claims(runs: pd.DataFrame) -> list[Verdict]:
    """Verdicts on C1–C6, then the ``ablation`` verdict when ``loss.reduction`` takes both ``paper`` and
    ``sum`` in ``runs``. Never raises on empty tables, NaN metrics or non-ok runs."""
    status = runs["status"].astype(str) if "status" in runs.columns else pd.Series("ok", index=runs.index)
    ok = runs[status.eq("ok")]
    seeds = rank.seed_groups(ok) if len(ok) else []
    notes = []
    if (~status.eq("ok")).any():
        counts = status[~status.eq("ok")].value_counts().sort_index()
        notes.append("excluded " + ", ".join(f"{n} {s}" for s, n in counts.items()) + " runs")
    for col in rank.id_columns(ok):
        values = ", ".join(sorted(ok[col].astype(str).unique()))
        notes.append(f"pooled over {col} in {{{values}}}")
    note = "".join(f" ({n})" for n in notes)
    c4 = "a one-layer dense encoder (dense1)"
    c5 = f"a conv decoder of depth >= {C5_MIN_DEPTH}"
    verdicts = [
        _c1(ok, seeds, note),
        _c2(ok, seeds, note),
        _c3(ok, seeds, note),
        _lift_claim(
            "C4",
            "One-layer dense encoders are over-represented among the best.",
            c4,
            _dense1,
            ok,
            seeds,
            note,
        ),
        _lift_claim(
            "C5",
            "Conv decoders with several blocks decode best.",
            c5,
            _deep_conv,
            ok,
            seeds,
            note,
            extra=_c5_gap,
        ),
        _c6(ok, seeds, note),
    ]
    if "loss.reduction" in runs.columns and {"paper", "sum"} <= set(runs["loss.reduction"].astype(str)):
        verdicts.append(_ablation(ok, note))
    return verdicts


def verdicts_table(verdicts: list[Verdict]) -> pd.DataFrame:
    """One row per verdict, the ``Verdict`` fields as columns in their order."""
    return pd.DataFrame([asdict(v) for v in verdicts], columns=[f.name for f in fields(Verdict)])
