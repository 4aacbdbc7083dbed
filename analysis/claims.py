"""The claims check (docs/protocol.md "Claims check"): a verdict on each claim C1–C6 and the loss ablation.

Design. **The experimental unit is the configuration** (``analysis.units``): the seeds of one
configuration nearly copy one another, so every test here runs on one row per configuration, the mean
over its seeds of each metric (a flag: the fraction of its seeds raising it); its n is configurations,
with the runs beside it. Each claim is tested as the paper states it:

* C1, C2: a band on a fraction / a correlation, decided by a percentile bootstrap interval over
  configurations (resampled within latent sizes; Efron & Tibshirani 1993).
* C3: Spearman rho of distortion and rate within the top 25 % of configurations by distortion, two-sided
  permutation test (distortion shuffled among the top set).
* C4 (dense1 against each encoder family, joint by intersection-union) and C5a/C5b (conv against dense
  decoders; deep conv against conv1), each on matched cells: :mod:`analysis.arch_claims`.
* C6 (the kNN accuracy against the latent size, with separability at moderate sizes):
  :mod:`analysis.latent_claims`.

Every contrast is tested on reconstruction (test/distortion, the paper's measure, which decides) and on
the likelihood (test/neg_elbo and test/iwae_nll, supporting rows). Every directional permutation test
(C3, C4, C5, C6; not C2's, decided by its interval) is one member of the claims family: two-sided
p-values (2 × the smaller tail), Holm-adjusted (``p_holm``), and each row's verdict is decided on its
adjusted p, the tail it came from and the statistic's side (reproduced if p_holm < ALPHA in the claimed
tail with the statistic on the claimed side, not reproduced if p_holm < ALPHA in the other tail with it on
the other side, else inconclusive: one error rate bounds a wrong verdict either way). p-values at the permutation floor are bounds
(``p_bound``). The per-seed Student-t interval (``seed_*``, the former decision) stays as a robustness
column. The ablation is a pooled 2 × 2 count (collapsed or not × reduction), decided by Fisher's exact
test with a Newcombe (Wilson-score) interval of the rate difference. Only runs with ``status == "ok"``
enter; others are counted in ``why``. The decision rules are the named constants below.

    from analysis import claims
    table = claims.verdicts_table(claims.check_claims(runs))
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, fields

import numpy as np
import pandas as pd
from scipy import stats

from analysis import arch_claims, collapse, contrasts, latent_claims, permutation, rank, units
from analysis.arch_claims import C5_MIN_DEPTH
from analysis.claim_stats import (
    ALPHA,
    CORR,
    INCONCLUSIVE,
    MC_SPAN,
    MIN_CORR_RUNS,
    MIN_SEEDS,
    NOT_REPRODUCED,
    REPRODUCED,
    UNIT,
    Verdict,
    across,
    as_float,
    band,
    by_test,
    corr,
    decide,
    design,
    directional,
    fmt3,
    n_runs,
    numeric,
    result,
    robust_columns,
    row,
    seed_text,
    strata,
)
from analysis.latent_claims import C6_MIN_KEPT, C6_MODERATE_LATENT, PIXEL_KNN

CLAIMS = ("C1", "C2", "C3", "C4", "C5a", "C5b", "C6")
ALIASES = {"C5": ("C5a", "C5b")}  # the paper's one C5 is tested as its two statements
C1_BAND = (0.30, 0.70)  # "nearly half": the paper_collapsed fraction's CI must lie inside
C2_WEAK_R = 0.30  # |r| below this is a weak correlation
REFINE = 10  # a verdict that rests on the permutations drawn is tested again with this many times the draws
MAX_DRAWS = 1_000_000  # ... up to this many (a 100-configuration lift: about 5 s)
ABLATION_ALPHA = 0.05  # Fisher exact test level
ABLATION_MIN_EFFECT = 0.10  # a collapse-rate increase below this is negligible
CONSTANTS = {
    "top_fraction": rank.TOP_FRACTION,
    "ci_level": rank.CI_LEVEL,
    "alpha": ALPHA,
    "n_perm": permutation.N_PERM,
    "refine": REFINE,
    "max_draws": MAX_DRAWS,
    "n_boot": permutation.N_BOOT,
    "rng_seed": permutation.RNG_SEED,
    "min_seeds": MIN_SEEDS,
    "min_corr_runs": MIN_CORR_RUNS,
    "c1_band_low": C1_BAND[0],
    "c1_band_high": C1_BAND[1],
    "c2_weak_r": C2_WEAK_R,
    "c5_min_depth": C5_MIN_DEPTH,
    "c6_moderate_latent": C6_MODERATE_LATENT,
    "c6_min_kept": C6_MIN_KEPT,
    **{f"c6_pixel_knn_{name}": acc for name, acc in PIXEL_KNN.items()},
    "ablation_alpha": ABLATION_ALPHA,
    "ablation_min_effect": ABLATION_MIN_EFFECT,
}


# ---------------------------------------------------------------------------------------------- claims
def _c1(ok, u, seeds, note: str) -> Verdict:
    lo, hi = C1_BAND
    statement = "Nearly half the runs collapse (KL at the numerical floor)."
    test = (
        f"The fraction of paper_collapsed (rate < 1e-6 nats) seeds, averaged over configurations. "
        f"Reproduced if the interval lies within [{lo}, {hi}], not reproduced if it lies entirely "
        f"outside, else inconclusive (no label to shuffle: no p)."
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
        f"{k}/{n} runs paper-collapsed, Wilson 95 % [{fmt3(w_lo)}, {fmt3(w_hi)}] (runs as units: a lower "
        f"bound on the width)"
        if n
        else "no evaluated ok run"
    )
    ours_txt = f"our `collapsed` flag (no active unit and rate < 0.1 nats): {fmt3(ours_est.mean)}"
    rate = numeric(u, "paper_collapsed")
    rows = u[np.isfinite(rate)]
    if not len(rows):
        why = f"{pooled_txt}{note}"
        return row(
            "C1", "collapsed fraction", "paper_collapsed", statement, test, why, decides=True, **robust
        )
    d = design(rows)
    res = permutation.mean(
        d["_seed"], numeric(d, "paper_collapsed"), d["_cluster"], d["_latent"], gen=permutation.rng()
    )
    why = (
        f"paper_collapsed fraction {fmt3(res.statistic)}, bootstrap 95 % CI [{fmt3(res.ci_low)}, "
        f"{fmt3(res.ci_high)}] over {len(rows)} configurations against the band [{lo}, {hi}]; "
        f"{seed_text(est, 'fraction')}; {ours_txt}; {pooled_txt}{note}."
    )
    verdict = band(res.ci_low, res.ci_high, lo, hi)
    return result(
        "C1", "collapsed fraction", "paper_collapsed", statement, test, res, verdict, why,
        n_runs=n_runs(rows), decides=True, **robust,
    )  # fmt: skip


def _c2(ok, u, seeds, note: str) -> Verdict:
    w = C2_WEAK_R
    statement = "Collapse correlates only weakly with poor reconstruction."
    test = (
        f"Pearson r between the collapsed fraction and the distortion of the configurations. Reproduced if "
        f"the interval lies within (-{w}, {w}), not reproduced if it lies entirely at or beyond +{w} or "
        f"-{w}, else inconclusive; p: two-sided permutation (r = 0), outside the family."
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
    rate, dist = numeric(u, "collapsed"), numeric(u, "test/distortion")
    rows = u[np.isfinite(rate) & np.isfinite(dist)]
    if not len(rows) or np.ptp(numeric(rows, "collapsed")) == 0:
        why = (
            f"{n_coll} of {len(ok)} ok runs collapsed: the collapsed fraction does not vary over the "
            f"configurations, so r is undefined{note}"
        )
        return row(
            "C2", "r(collapsed, distortion)", "collapsed", statement, test, why, decides=True, **robust
        )
    d = design(rows)
    res = permutation.correlation(
        d["_seed"], numeric(d, "collapsed"), numeric(d, "test/distortion"), strata(d, []), d["_cluster"],
        d["_latent"], method="pearson", side="two-sided", gen=permutation.rng(),
    )  # fmt: skip
    verdict = rule(res.ci_low, res.ci_high) if np.isfinite(res.ci_low) else INCONCLUSIVE
    why = f"r = {res.text()}; {seed_text(est, 'r')} ({n_coll} of {len(ok)} ok runs collapsed){note}."
    return result(
        "C2", "r(collapsed, distortion)", "collapsed", statement, test, res, verdict, why,
        n_runs=n_runs(rows), decides=True, **robust,
    )  # fmt: skip


def _c3(ok, u, seeds, note: str) -> Verdict:
    f = rank.TOP_FRACTION
    statement = "Within the top 25 % by reconstruction, lower reconstruction loss goes with higher KL."
    test = (
        f"Spearman rho(distortion, rate) within the top {f:.0%} of configurations by distortion; two-sided "
        f"permutation (distortion shuffled among the top set: rho = 0; the claim says rho < 0)."
    )
    per_seed = {}
    for seed, g in seeds:
        top = rank.top_set(g, "recon")
        per_seed[seed] = corr(numeric(top, "test/distortion"), numeric(top, "test/rate"), "spearman")
    est = across(per_seed, 0.0, CORR)
    robust = robust_columns(est, lambda a, b: directional(a, b, 0.0, "below"))
    ranked = u[rank.ranked_mask(u, "recon") & np.isfinite(numeric(u, "test/rate"))]
    top = rank.top_set(ranked, "recon") if len(ranked) else ranked
    if len(top) < MIN_CORR_RUNS:
        why = f"fewer than {MIN_CORR_RUNS} configurations in the top set{note}"
        return row(
            "C3",
            "rho in the top set",
            "test/rate",
            statement,
            test,
            why,
            null=0.0,
            side="below",
            decides=True,
            **robust,
        )
    res = top_correlation_test(ranked)
    why = f"rho = {res.text()}; {seed_text(est, 'rho')}{note}."
    return result(
        "C3", "rho in the top set", "test/rate", statement, test, res, by_test(res, 0.0, "below"), why,
        n_runs=n_runs(top), decides=True, in_family=True, null=0.0, side="below", **robust,
    )  # fmt: skip


def top_correlation_test(ranked: pd.DataFrame, **kw) -> permutation.Result:
    """C3's test on the configuration table ``ranked``: Spearman rho(distortion, rate) within the top
    ``TOP_FRACTION`` by distortion, distortion shuffled among the top set; the claim's side is rho < 0."""
    d = design(ranked)
    dist = numeric(d, "test/distortion")
    return permutation.correlation(
        d["_seed"], dist, numeric(d, "test/rate"), strata(d, []), d["_cluster"], d["_latent"],
        method="spearman", top_by=dist, fraction=rank.TOP_FRACTION, side="less",
        **{"gen": permutation.rng(), **kw},
    )  # fmt: skip


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
        f"Pooled over seeds and configurations (a 2x2 count of runs): collapse rate (`collapsed`) under "
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
    n_cfg = units.counts(ok)[0]
    part = "collapse rate, paper - sum"
    if not np_ or not ns:
        arm = "paper" if not np_ else "sum"
        why = f"no evaluated ok run with loss.reduction={arm}{note}"
        return row(
            "ablation",
            part,
            "collapsed",
            statement,
            test,
            why,
            n_configs=n_cfg,
            n_runs=np_ + ns,
            decides=True,
        )
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
    return row(
        "ablation", part, "collapsed", statement, test, why, statistic=diff, ci_low=low, ci_high=high,
        p_value=p, n_configs=n_cfg, n_runs=np_ + ns, verdict=verdict, decides=True,
    )  # fmt: skip


def _expand(only) -> tuple[str, ...]:
    wanted = []
    for c in only:
        wanted += ALIASES.get(c, (c,))
    unknown = sorted(set(wanted) - set(CLAIMS))
    if unknown:
        raise ValueError(f"claims {unknown} are unknown; valid: {', '.join(CLAIMS)} (C5 = C5a + C5b)")
    return tuple(c for c in CLAIMS if c in wanted)


def check_claims(runs: pd.DataFrame, only=CLAIMS) -> list[Verdict]:
    """The claims check on ``runs`` (one protocol group): the rows of the claims in ``only`` (default
    all; ``C5`` means C5a and C5b), then the ``ablation`` row when ``loss.reduction`` takes both
    ``paper`` and ``sum`` (and ``only`` is the default). Every test runs on the configuration table
    (``analysis.units.config_means``); the directional permutation tests form one family, two-sided and Holm-adjusted,
    and each row's verdict is decided on its adjusted p and its statistic's side. Never raises on empty tables, NaN metrics or non-ok runs."""
    wanted = _expand(only)
    status = runs["status"].astype(str) if "status" in runs.columns else pd.Series("ok", index=runs.index)
    ok = runs[status.eq("ok")]
    seeds = rank.seed_groups(ok) if len(ok) else []
    u = units.config_means(ok)
    notes = []
    if (~status.eq("ok")).any():
        counts = status[~status.eq("ok")].value_counts().sort_index()
        notes.append("excluded " + ", ".join(f"{n} {s}" for s, n in counts.items()) + " runs")
    for col in rank.id_columns(ok):
        values = ", ".join(sorted(ok[col].astype(str).unique()))
        notes.append(f"pooled over {col} in {{{values}}}")
    note = "".join(f" ({n})" for n in notes)
    # C5a and C5b share the decoder families: one computation per number of draws
    c5 = functools.cache(lambda draws: arch_claims.c5(u, seeds, note))
    make = {
        "C1": lambda: [_c1(ok, u, seeds, note)],
        "C2": lambda: [_c2(ok, u, seeds, note)],
        "C3": lambda: [_c3(ok, u, seeds, note)],
        "C4": lambda: arch_claims.c4(u, seeds, note),
        "C5a": lambda: [r for r in c5(permutation.draws()) if r.claim == "C5a"],
        "C5b": lambda: [r for r in c5(permutation.draws()) if r.claim == "C5b"],
        "C6": lambda: latent_claims.c6(u, seeds, note),
    }
    verdicts = _refined(wanted, make)
    if "C6" in wanted:
        latent_claims.decide(verdicts, u)
    both = "loss.reduction" in runs.columns and {"paper", "sum"} <= set(runs["loss.reduction"].astype(str))
    if both and wanted == CLAIMS:
        verdicts.append(_ablation(ok, note))
    return verdicts


def _refined(wanted: tuple[str, ...], make: dict) -> list[Verdict]:
    """The rows of the ``wanted`` claims (``make[claim]()`` computes one claim's), Holm-adjusted. A
    claim with a row whose verdict rests on the permutations drawn (``mc_stable`` false: it differs
    between the family's raw p moved ``MC_SPAN`` Monte Carlo SE down and up) is computed again with
    ``REFINE`` times the draws (:func:`permutation.more_draws`), the family adjusted again, until no
    verdict rests on the draws or a test would draw more than ``MAX_DRAWS``. The claims drawn again
    are those whose family rows carry Monte Carlo error (an exact p, such as a contrast's, has none and
    is kept); each row says its draws (``p_draws``)."""
    rows = {c: make[c]() for c in wanted}
    n = permutation.draws()
    while True:
        verdicts = [r for c in wanted for r in rows[c]]
        _adjust(verdicts)
        if all(v.mc_stable is not False for v in verdicts) or n * REFINE > MAX_DRAWS:
            return verdicts
        # Holm couples the family: a row is shaky through any row's Monte Carlo error, its own or
        # another's, so the claims drawn again are those whose family rows carry that error
        noisy = [c for c in wanted if any(r.in_family and (r.p_mc_se or 0) > 0 for r in rows[c])]
        n *= REFINE
        with permutation.more_draws(n):
            rows.update({c: make[c]() for c in noisy})


def _adjust(verdicts: list[Verdict]) -> None:
    """Holm over the family (``in_family`` rows), each such row's verdict decided on its adjusted p,
    then C4's joint row from its distortion contrasts."""
    family = [v for v in verdicts if v.in_family]
    raw = np.array([np.nan if v.p_value is None else v.p_value for v in family], dtype=float)
    se = np.array([0.0 if v.p_mc_se is None or not np.isfinite(v.p_mc_se) else v.p_mc_se for v in family])
    low = contrasts.holm(np.clip(raw - MC_SPAN * se, 0.0, 1.0))
    high = contrasts.holm(np.clip(raw + MC_SPAN * se, 0.0, 1.0))
    for v, p, lo, hi in zip(family, contrasts.holm(raw), low, high, strict=True):
        v.p_holm, v.p_holm_mc_low, v.p_holm_mc_high = as_float(p), as_float(lo), as_float(hi)
        rule = functools.partial(decide, statistic=v.statistic, null=v.null, side=v.side, tail=v.tail)
        v.verdict = rule(p) if v.statistic is not None else INCONCLUSIVE
        # Holm's p rises with every raw p, so these two bound it over the box: the verdict rests on
        # Monte Carlo noise where they disagree
        v.mc_stable = v.statistic is None or rule(lo) == rule(hi)
    arch_claims.decide_joint(verdicts)


def deciding(verdicts: list[Verdict]) -> list[Verdict]:
    """The one row per claim that holds its verdict."""
    return [v for v in verdicts if v.decides]


def verdicts_table(verdicts: list[Verdict]) -> pd.DataFrame:
    """One row per verdict, the ``Verdict`` fields as columns in their order."""
    return pd.DataFrame([asdict(v) for v in verdicts], columns=[f.name for f in fields(Verdict)])
