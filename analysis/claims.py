"""The claims check (docs/protocol.md "Claims check"): a verdict on each claim C1–C6 and the loss ablation.

Design. Each claim has one named statistic computed **per seed** (the paper ranks and correlates within
one seed's runs) and averaged over the seeds. The verdict is decided by a test that uses **every run**
and respects the design (``analysis.permutation``): a stratified permutation test (the claim's variable
shuffled within seeds, and within latent sizes or architecture cells where the null holds those fixed;
Good 2005, Pesarin & Salmaso 2010; p = (1 + #≥)/(1 + B), Phipson & Smyth 2010) for the directional
claims, and a percentile bootstrap interval resampling configurations within latent sizes (Efron &
Tibshirani 1993) for the size of each statistic and for the band/equivalence claims (C1, C2, C6's
separability). The former decision, a Student-t 95 % interval over the per-seed values
(``rank.t_interval``), is kept as a robustness column (``seed_*``): with 3 seeds it has 2 degrees of
freedom and ignores everything inside each seed. With one seed the permutation test still works (it
shuffles within that seed) and the verdict then speaks for that seed's configurations, not across
seeds. The ablation is a pooled 2 × 2 count (collapsed or not × reduction), decided by Fisher's exact
test with a Newcombe (Wilson-score) interval of the rate difference. Only runs with ``status == "ok"``
enter a statistic; diverged/failed runs are counted in ``why``. The decision rules are the named
constants below and each verdict's ``test`` text states them; ``CONSTANTS`` collects them for the report.
The statistics and decision rules the claims share, with ``ALPHA``, ``MIN_SEEDS`` and
``MIN_CORR_RUNS``, are in :mod:`analysis.claim_stats`.

    from analysis import claims
    table = claims.verdicts_table(claims.check_claims(runs))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
from scipy import stats

from analysis import collapse, permutation, rank
from analysis.claim_stats import (
    ALPHA,
    INCONCLUSIVE,
    MIN_CORR_RUNS,
    MIN_SEEDS,
    NOT_REPRODUCED,
    REPRODUCED,
    across,
    as_float,
    band,
    by_test,
    corr,
    design,
    directional,
    fmt3,
    kind_depth,
    lift,
    numeric,
    robust_columns,
    scope,
    seed_text,
    strata,
)

CLAIMS = ("C1", "C2", "C3", "C4", "C5", "C6")
C1_BAND = (0.30, 0.70)  # "nearly half": the paper_collapsed fraction's CI must lie inside
C2_WEAK_R = 0.30  # |r| below this is a weak correlation
C5_MIN_DEPTH = 2  # "several blocks"
C6_MODERATE_LATENT = 100  # latent sizes up to this are "moderate"
C6_MIN_PROBE_ACC = 0.90  # "separable": linear-probe accuracy at moderate sizes
ABLATION_ALPHA = 0.05  # Fisher exact test level
ABLATION_MIN_EFFECT = 0.10  # a collapse-rate increase below this is negligible
CONSTANTS = {
    "top_fraction": rank.TOP_FRACTION,
    "ci_level": rank.CI_LEVEL,
    "alpha": ALPHA,
    "n_perm": permutation.N_PERM,
    "n_boot": permutation.N_BOOT,
    "rng_seed": permutation.RNG_SEED,
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
PERM = (
    f"stratified (restricted) permutation test, {permutation.N_PERM} permutations, p = (1 + #≥)/(1 + B) "
    f"(Good 2005; Pesarin & Salmaso 2010; Phipson & Smyth 2010)"
)
BOOT = (
    f"percentile bootstrap 95 % interval, {permutation.N_BOOT} resamples of the configurations within each "
    f"latent size (for a lift: each latent size × family of the claim's factor, so every resample has the "
    f"design's composition), every seed of a drawn configuration kept (Efron & Tibshirani 1993)"
)
SEED_COLUMN = "Robustness column (seed_*): the mean over seeds with a 95 % Student-t interval, same rule."


@dataclass
class Verdict:
    claim: str  # "C1".."C6" or "ablation"
    statement: str  # the claim in one sentence
    test: str  # the statistic, the test and the decision rule in words
    statistic: float | None  # mean over seeds of the per-seed statistic (ablation: rate difference)
    ci_low: float | None  # the all-runs interval: percentile bootstrap (ablation: Newcombe)
    ci_high: float | None
    p_value: float | None  # the all-runs test: stratified permutation (ablation: Fisher exact)
    n: int  # runs the test used
    verdict: str  # reproduced | not reproduced | inconclusive
    why: str  # one sentence, always filled
    n_seeds: int = 0  # seeds with a per-seed value
    seed_ci_low: float | None = None  # robustness: Student-t 95 % interval of the per-seed values
    seed_ci_high: float | None = None
    seed_p_value: float | None = None  # two-sided one-sample t-test against the claim's null
    seed_verdict: str | None = None  # the same rule applied to the t interval (inconclusive with 1 seed)


def _one_level(claim, statement, test, why: str) -> Verdict:
    return Verdict(claim, statement, test, None, None, None, None, 0, INCONCLUSIVE, why)


def _result(claim, statement, test, res: permutation.Result, verdict, why, robust: dict) -> Verdict:
    return Verdict(
        claim, statement, test, as_float(res.statistic), as_float(res.ci_low), as_float(res.ci_high),
        as_float(res.p_value), res.n_runs, verdict, why, **robust,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- claims
def _c1(ok: pd.DataFrame, seeds, note: str) -> Verdict:
    lo, hi = C1_BAND
    statement = "Nearly half the runs collapse (KL at the numerical floor)."
    test = (
        f"The fraction of evaluated runs with paper_collapsed (rate < 1e-6 nats), per seed, mean over "
        f"seeds, with a {BOOT}. Reproduced if the interval lies within [{lo}, {hi}], not reproduced if it "
        f"lies entirely outside, else inconclusive (no permutation test: there is no label to shuffle). "
        f"{SEED_COLUMN}"
    )
    paper, ours = {}, {}
    for seed, g in seeds:
        pf, cf = collapse.flag(g, "paper_collapsed").dropna(), collapse.flag(g, "collapsed").dropna()
        if len(pf):
            paper[seed] = float(pf.astype(float).mean())
        if len(cf):
            ours[seed] = float(cf.astype(float).mean())
    est, ours_est = across(paper, 0.5, UNIT), across(ours, 0.5, UNIT)
    robust = robust_columns(est, lambda a, b: band(a, b, lo, hi))
    pooled = collapse.flag(ok, "paper_collapsed").dropna()
    k, n = int(pooled.astype(int).sum()), len(pooled)
    w_lo, w_hi = collapse.wilson_interval(k, n)
    pooled_txt = (
        f"pooled {k}/{n} paper-collapsed, Wilson 95 % [{fmt3(w_lo)}, {fmt3(w_hi)}]"
        if n
        else "no evaluated ok run"
    )
    ours_txt = f"our `collapsed` flag (no active unit and rate < 0.1 nats): {fmt3(ours_est.mean)}"
    if not n:
        return Verdict("C1", statement, test, None, None, None, None, 0, INCONCLUSIVE, f"{pooled_txt}{note}")
    d = design(ok.loc[pooled.index])
    flag = collapse.flag(d, "paper_collapsed").astype(float).to_numpy()
    res = permutation.mean(d["_seed"], flag, d["_cluster"], d["_latent"], gen=permutation.rng())
    verdict = band(res.ci_low, res.ci_high, lo, hi)
    why = (
        f"{scope(est.n)}paper_collapsed fraction {fmt3(res.statistic)}, bootstrap 95 % CI "
        f"[{fmt3(res.ci_low)}, {fmt3(res.ci_high)}] against the band [{lo}, {hi}]; {seed_text(est, 'fraction')}; "
        f"{ours_txt}; {pooled_txt}{note}."
    )
    return _result("C1", statement, test, res, verdict, why, robust)


def _c2(ok: pd.DataFrame, seeds, note: str) -> Verdict:
    w = C2_WEAK_R
    statement = "Collapse correlates only weakly with poor reconstruction."
    test = (
        f"The point-biserial (Pearson) r between `collapsed` (0/1) and test/distortion over evaluated runs, "
        f"per seed, mean over seeds, with a {BOOT}. Reproduced if the interval lies within (-{w}, {w}), not "
        f"reproduced if it lies entirely at or beyond +{w} or -{w} (a strong correlation), else "
        f"inconclusive. p: two-sided {PERM}, `collapsed` shuffled within seeds (r = 0). {SEED_COLUMN}"
    )
    per_seed = {}
    for seed, g in seeds:
        flag = collapse.flag(g, "collapsed")
        keep = flag.notna()
        per_seed[seed] = corr(flag[keep].astype(float), numeric(g, "test/distortion")[keep], "pearson")
    est = across(per_seed, 0.0, CORR)

    def rule(low, high) -> str:
        if -w < low and high < w:
            return REPRODUCED
        return NOT_REPRODUCED if low >= w or high <= -w else INCONCLUSIVE

    robust = robust_columns(est, rule)
    n_coll = int(collapse.flag(ok, "collapsed").fillna(False).sum())
    if est.n == 0:
        why = (
            f"no seed has both collapsed and non-collapsed runs with varying distortions "
            f"({n_coll} of {len(ok)} ok runs collapsed): r is undefined{note}"
        )
        return Verdict("C2", statement, test, None, None, None, None, 0, INCONCLUSIVE, why, **robust)
    flag = collapse.flag(ok, "collapsed")
    d = design(ok[flag.notna() & np.isfinite(numeric(ok, "test/distortion"))])
    res = permutation.correlation(
        d["_seed"], collapse.flag(d, "collapsed").astype(float), numeric(d, "test/distortion"),
        strata(d, []), d["_cluster"], d["_latent"], method="pearson", side="two-sided",
        gen=permutation.rng(),
    )  # fmt: skip
    verdict = rule(res.ci_low, res.ci_high) if np.isfinite(res.ci_low) else INCONCLUSIVE
    why = (
        f"{scope(est.n)}r = {fmt3(res.statistic)}, bootstrap 95 % CI [{fmt3(res.ci_low)}, {fmt3(res.ci_high)}], "
        f"permutation p = {fmt3(res.p_value)}; {seed_text(est, 'r')} ({n_coll} of {len(ok)} ok runs "
        f"collapsed){note}."
    )
    return _result("C2", statement, test, res, verdict, why, robust)


def _c3(ok: pd.DataFrame, seeds, note: str) -> Verdict:
    f = rank.TOP_FRACTION
    statement = "Within the top 25 % by reconstruction, lower reconstruction loss goes with higher KL."
    test = (
        f"Spearman rho(test/distortion, test/rate) within each seed's top {f:.0%} by test/distortion, mean "
        f"over seeds. Reproduced if a one-sided {PERM} (distortion shuffled among each seed's top set: "
        f"rho = 0 against rho < 0) gives p < {ALPHA}; not reproduced if the {BOOT} (top sets recomputed "
        f"on each resample) lies entirely at or above 0; else inconclusive. {SEED_COLUMN}"
    )
    per_seed = {}
    for seed, g in seeds:
        top = rank.top_set(g, "recon")
        per_seed[seed] = corr(numeric(top, "test/distortion"), numeric(top, "test/rate"), "spearman")
    est = across(per_seed, 0.0, CORR)
    robust = robust_columns(est, lambda a, b: directional(a, b, 0.0, "below"))
    if est.n == 0:
        why = f"no seed has a top set of at least {MIN_CORR_RUNS} runs whose distortion and rate vary{note}"
        return Verdict("C3", statement, test, None, None, None, None, 0, INCONCLUSIVE, why, **robust)
    ranked = ok[rank.ranked_mask(ok, "recon") & np.isfinite(numeric(ok, "test/rate"))]
    d = design(ranked)
    dist = numeric(d, "test/distortion")
    res = permutation.correlation(
        d["_seed"], dist, numeric(d, "test/rate"), strata(d, []), d["_cluster"], d["_latent"],
        method="spearman", top_by=dist, fraction=f, side="less", gen=permutation.rng(),
    )  # fmt: skip
    verdict = by_test(res, 0.0, "below")
    why = f"{scope(est.n)}rho = {res.text()}; {seed_text(est, 'rho')}{note}."
    return _result("C3", statement, test, res, verdict, why, robust)


def _lift_claim(claim, statement, what, member_of, factor, ok, seeds, note, extra=None) -> Verdict:
    """C4/C5: lift of ``member_of(rows)`` in the top set, decided against 1; ``factor`` is the family
    column the members are defined on (it stratifies the bootstrap)."""
    f = rank.TOP_FRACTION
    test = (
        f"The lift of {what} in each seed's top {f:.0%} by test/distortion (share of the top set / share of "
        f"the ranked runs), mean over seeds. Reproduced if a one-sided {PERM} (the architecture labels "
        f"shuffled within seed × latent size: lift = 1 against lift > 1) gives p < {ALPHA}; not reproduced "
        f"if the {BOOT} (top sets recomputed) lies entirely at or below 1; else inconclusive. {SEED_COLUMN}"
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
    per_seed = {seed: lift(g, member_of(g)) for seed, g in seeds}
    est = across(per_seed, 1.0, (0.0, math.inf))
    robust = robust_columns(est, lambda a, b: directional(a, b, 1.0, "above"))
    d = design(ranked)
    res = permutation.lift(
        d["_seed"], numeric(d, "test/distortion"), member_of(d).to_numpy(dtype=float),
        strata(d, ["latent_dim"]), d["_cluster"], permutation.codes(d, ["latent_dim", factor]),
        fraction=f, side="greater",
        gen=permutation.rng(),
    )  # fmt: skip
    verdict = by_test(res, 1.0, "above")
    extra_txt = extra(seeds) if extra else ""
    why = f"{scope(est.n)}lift = {res.text()}; {seed_text(est, 'lift')}{extra_txt}{note}."
    return _result(claim, statement, test, res, verdict, why, robust)


def _dense1(df: pd.DataFrame) -> pd.Series:
    if "family/encoder" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["family/encoder"].astype(str).eq("dense1")


def _deep_conv(df: pd.DataFrame) -> pd.Series:
    if "family/decoder" not in df.columns:
        return pd.Series(False, index=df.index)
    kind, depth = kind_depth(df["family/decoder"])
    return kind.eq("conv") & (depth >= C5_MIN_DEPTH)


def _c5_gap(seeds) -> str:
    """Mean over seeds of (mean distortion of deep-conv decoders − mean distortion of the others)."""
    gaps = {}
    for seed, g in seeds:
        r = g[rank.ranked_mask(g, "recon")]
        deep, d = _deep_conv(r), numeric(r, "test/distortion")
        if deep.any() and (~deep).any():
            gaps[seed] = d[deep].mean() - d[~deep].mean()
    est = across(gaps, 0.0)
    ci = f", 95 % CI [{fmt3(est.low)}, {fmt3(est.high)}]" if est.low is not None else ""
    return f"; distortion of deep conv decoders minus the others: {fmt3(est.mean)} nats{ci}"


def _c6(ok: pd.DataFrame, seeds, note: str) -> Verdict:
    m, acc = C6_MODERATE_LATENT, C6_MIN_PROBE_ACC
    statement = "Larger latents degrade latent-space quality yet stay separable at moderate sizes."
    test = (
        f"(a) Spearman rho(latent_dim, latent/linear_probe_acc) over each seed's ok runs and (b) the mean "
        f"probe accuracy of runs with latent_dim <= {m}, per seed, means over seeds. (a) degrades if a "
        f"one-sided {PERM} (latent sizes shuffled within seed × encoder × decoder: rho = 0 against "
        f"rho < 0) gives p < {ALPHA}, does not if the {BOOT} lies entirely at or above 0; (b) is separable "
        f"if its bootstrap interval's lower bound is >= {acc}, not if its upper bound is < {acc}. "
        f"Reproduced if both hold, not reproduced if either fails, else inconclusive. {SEED_COLUMN}"
    )
    latent = numeric(ok, "latent_dim")
    if not len(ok):
        return _one_level("C6", statement, test, f"no ok run{note}")
    if latent.dropna().nunique() < 2:
        return _one_level(
            "C6", statement, test, f"a single latent size in the ok runs: the factor has one level{note}"
        )
    rho, moderate = {}, {}
    for seed, g in seeds:
        probe, size = numeric(g, "latent/linear_probe_acc"), numeric(g, "latent_dim")
        rho[seed] = corr(size, probe, "spearman")
        sel = probe[(size <= m) & np.isfinite(probe)]
        moderate[seed] = sel.mean() if len(sel) else np.nan
    est, acc_est = across(rho, 0.0, CORR), across(moderate, acc, UNIT)
    seed_sep = _separable(acc_est.low, acc_est.high)
    robust = robust_columns(est, lambda a, b: _both(directional(a, b, 0.0, "below"), seed_sep))
    if est.n == 0:
        why = f"no seed gives rho (probe accuracies that vary over at least {MIN_CORR_RUNS} runs){note}"
        return Verdict("C6", statement, test, None, None, None, None, 0, INCONCLUSIVE, why, **robust)
    probe = numeric(ok, "latent/linear_probe_acc")
    d = design(ok[np.isfinite(probe) & np.isfinite(latent)])
    size, probe = numeric(d, "latent_dim"), numeric(d, "latent/linear_probe_acc")
    res = permutation.correlation(
        d["_seed"], size, probe, strata(d, ["family/encoder", "family/decoder"]), d["_cluster"],
        d["_latent"], method="spearman", side="less", gen=permutation.rng(),
    )  # fmt: skip
    degrade = by_test(res, 0.0, "below")
    mod = d[(size <= m).to_numpy()]
    if len(mod):
        sep = permutation.mean(
            mod["_seed"], numeric(mod, "latent/linear_probe_acc"), mod["_cluster"], mod["_latent"],
            gen=permutation.rng(),
        )  # fmt: skip
        separable = _separable(sep.ci_low, sep.ci_high)
        acc_txt = f"; probe accuracy at latent <= {m}: {fmt3(sep.statistic)}, bootstrap 95 % CI [{fmt3(sep.ci_low)}, {fmt3(sep.ci_high)}]"
    else:
        separable, acc_txt = INCONCLUSIVE, f"; no run with latent <= {m}"
    why = (
        f"{scope(est.n)}rho = {res.text()} (degradation: {degrade}){acc_txt} (separability: {separable}); "
        f"{seed_text(est, 'rho')}{note}."
    )
    return _result("C6", statement, test, res, _both(degrade, separable), why, robust)


def _separable(low, high) -> str:
    """C6's separability rule on an interval of the moderate-size probe accuracy."""
    if low is None or not np.isfinite(low):
        return INCONCLUSIVE
    acc = C6_MIN_PROBE_ACC
    return REPRODUCED if low >= acc else NOT_REPRODUCED if high < acc else INCONCLUSIVE


def _both(degrade: str, separable: str) -> str:
    """C6's verdict from its two parts: not reproduced if either fails, reproduced if both hold."""
    if NOT_REPRODUCED in (degrade, separable):
        return NOT_REPRODUCED
    return REPRODUCED if degrade == separable == REPRODUCED else INCONCLUSIVE


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
        f"collapsed {kp}/{np_} ({fmt3(kp / np_)}) under paper vs {ks}/{ns} ({fmt3(ks / ns)}) under sum, "
        f"difference {fmt3(diff)} [{fmt3(low)}, {fmt3(high)}], Fisher p = {fmt3(p)}; paper_collapsed "
        f"{pkp}/{pnp} vs {pks}/{pns}{note}."
    )
    return Verdict("ablation", statement, test, diff, low, high, p, np_ + ns, verdict, why)


def check_claims(runs: pd.DataFrame, only=CLAIMS) -> list[Verdict]:
    """Verdicts on the claims in ``only`` (default C1–C6), then the ``ablation`` verdict when
    ``loss.reduction`` takes both ``paper`` and ``sum`` in ``runs`` (and ``only`` is the default).
    Never raises on empty tables, NaN metrics or non-ok runs."""
    unknown = sorted(set(only) - set(CLAIMS))
    if unknown:
        raise ValueError(f"claims {unknown} are unknown; valid: {', '.join(CLAIMS)}")
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
    make = {
        "C1": lambda: _c1(ok, seeds, note),
        "C2": lambda: _c2(ok, seeds, note),
        "C3": lambda: _c3(ok, seeds, note),
        "C4": lambda: _lift_claim(
            "C4",
            "One-layer dense encoders are over-represented among the best.",
            c4,
            _dense1,
            "family/encoder",
            ok,
            seeds,
            note,
        ),
        "C5": lambda: _lift_claim(
            "C5",
            "Conv decoders with several blocks decode best.",
            c5,
            _deep_conv,
            "family/decoder",
            ok,
            seeds,
            note,
            extra=_c5_gap,
        ),  # fmt: skip
        "C6": lambda: _c6(ok, seeds, note),
    }
    verdicts = [make[c]() for c in CLAIMS if c in only]
    both = "loss.reduction" in runs.columns and {"paper", "sum"} <= set(runs["loss.reduction"].astype(str))
    if both and tuple(only) == CLAIMS:
        verdicts.append(_ablation(ok, note))
    return verdicts


def verdicts_table(verdicts: list[Verdict]) -> pd.DataFrame:
    """One row per verdict, the ``Verdict`` fields as columns in their order."""
    return pd.DataFrame([asdict(v) for v in verdicts], columns=[f.name for f in fields(Verdict)])
