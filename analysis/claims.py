"""The claims check (docs/protocol.md "Claims check"): a verdict on each claim C1–C6 and the loss ablation.

Design. **The experimental unit is the configuration** (``analysis.units``): the seeds of one
configuration nearly copy one another, so every test here runs on one row per configuration, the mean
over its seeds of each metric (a flag: the fraction of its seeds raising it); its n is configurations,
with the runs beside it. Each claim is tested as the paper states it:

* C1, C2: a band on a fraction / a correlation, decided by a percentile bootstrap interval over
  configurations (resampled within latent sizes; Efron & Tibshirani 1993).
* C3: Spearman rho of distortion and rate within the top 25 % of configurations by distortion, one-sided
  permutation test (distortion shuffled among the top set).
* C4 "one-layer dense encoders are over-represented among the best": dense1 against **each** other
  encoder family, matched on (latent, decoder) (``analysis.contrasts.paired``), decided jointly
  (intersection-union: dense1 must beat every family); the paper's top-25 % lift is kept as a
  supporting row.
* C5a "conv decoders beat dense ones": conv against dense decoders, matched on (latent, encoder); C5b
  "conv decoders benefit from several blocks": conv decoders of depth >= 2 against conv1, matched on
  (latent, encoder). The lift of deep conv decoders (the paper's figure) is a supporting row.
* C6 "larger latents degrade latent quality, separable at moderate sizes": decided on the kNN accuracy,
  whose capacity does not grow with the latent size (Spearman rho with the latent size, latent sizes
  shuffled within encoder × decoder); the linear probe on the full latent, the linear probe on the 2-D
  PCA projection and the PCA silhouette are supporting rows.

Every contrast is tested on reconstruction (test/distortion, the paper's measure, which decides) and on
the likelihood (test/neg_elbo and test/iwae_nll, supporting rows). Every one-sided permutation test is
one member of the claims family: Holm-adjusted p-values (``p_holm``), and each row's verdict is decided
on its adjusted p (reproduced if p_holm < ALPHA; not reproduced if the bootstrap interval lies entirely
on the other side of the null; else inconclusive). p-values at the permutation floor are bounds
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
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
from scipy import stats

from analysis import collapse, contrasts, permutation, rank, units
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
    decide,
    design,
    directional,
    fmt3,
    kind_depth,
    lift,
    numeric,
    robust_columns,
    seed_text,
    strata,
)

CLAIMS = ("C1", "C2", "C3", "C4", "C5a", "C5b", "C6")
ALIASES = {"C5": ("C5a", "C5b")}  # the paper's one C5 is tested as its two statements
C1_BAND = (0.30, 0.70)  # "nearly half": the paper_collapsed fraction's CI must lie inside
C2_WEAK_R = 0.30  # |r| below this is a weak correlation
C5_MIN_DEPTH = 2  # "several blocks"
C6_MODERATE_LATENT = 100  # latent sizes up to this are "moderate"
C6_MIN_ACC = 0.90  # "separable": kNN accuracy at moderate sizes
DECIDING_METRIC = "test/distortion"  # the paper ranks and compares by reconstruction
METRICS = {"test/distortion": "distortion", "test/neg_elbo": "-ELBO", "test/iwae_nll": "IWAE NLL"}
C6_DECIDING = "latent/knn_acc"  # a neighbourhood measure: its capacity does not grow with the latent size
C6_MEASURES = {
    "latent/knn_acc": "kNN accuracy",
    "latent/linear_probe_acc": "linear probe on the whole latent (input grows with the latent size)",
    "latent/pc2_probe_acc": "linear probe on the 2-D PCA projection",
    "latent/pca_silhouette": "silhouette of the 2-D PCA projection",
}
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
    "c6_min_acc": C6_MIN_ACC,
    "ablation_alpha": ABLATION_ALPHA,
    "ablation_min_effect": ABLATION_MIN_EFFECT,
}
UNIT, CORR = (0.0, 1.0), (-1.0, 1.0)  # ranges that intervals are clipped to


@dataclass
class Verdict:
    claim: str  # "C1".."C6" (C5 as C5a, C5b) or "ablation"
    part: str  # what this row tests, e.g. "dense1 vs conv2" or "lift in the top 25 %"
    metric: str  # the measure the row's statistic is computed from
    statement: str  # the claim in one sentence
    test: str  # the statistic and the decision rule in one or two sentences (the method: the report)
    statistic: float | None  # on the configuration table (ablation: rate difference)
    ci_low: float | None  # percentile bootstrap over configurations (ablation: Newcombe)
    ci_high: float | None
    p_value: float | None  # raw one-sided permutation p (C2: two-sided; ablation: Fisher exact)
    p_holm: float | None  # Holm-adjusted over the claims family (rows with in_family)
    p_bound: bool  # the raw p is at the permutation floor 1/(1 + B): a bound, p ≤ that
    n_configs: int  # configurations the test used: the experimental unit
    n_runs: int  # the runs behind them
    verdict: str  # reproduced | not reproduced | inconclusive
    decides: bool  # this row holds the claim's verdict (one row per claim)
    in_family: bool  # a member of the family Holm adjusts
    why: str  # one sentence, always filled
    null: float | None = None  # the claim's null value of the statistic
    side: str = ""  # "above" or "below": where the claim puts the statistic
    n_seeds: int = 0  # seeds with a per-seed value (robustness columns)
    seed_ci_low: float | None = None  # robustness: Student-t 95 % interval of the per-seed values
    seed_ci_high: float | None = None
    seed_p_value: float | None = None  # two-sided one-sample t-test against the claim's null
    seed_verdict: str | None = None  # the same rule applied to the t interval (inconclusive with 1 seed)


def _row(claim, part, metric, statement, test, why, **kw) -> Verdict:
    base = dict(
        statistic=None, ci_low=None, ci_high=None, p_value=None, p_holm=None, p_bound=False, n_configs=0,
        n_runs=0, verdict=INCONCLUSIVE, decides=False, in_family=False,
    )  # fmt: skip
    return Verdict(claim, part, metric, statement, test, why=why, **{**base, **kw})


def _result(claim, part, metric, statement, test, res: permutation.Result, verdict, why, **kw) -> Verdict:
    return _row(
        claim, part, metric, statement, test, why, statistic=as_float(res.statistic),
        ci_low=as_float(res.ci_low), ci_high=as_float(res.ci_high), p_value=as_float(res.p_value),
        p_bound=contrasts.at_floor(res.p_value, res.n_perm), n_configs=res.n_runs, verdict=verdict, **kw,
    )  # fmt: skip


def _n_runs(rows: pd.DataFrame) -> int:
    """The runs behind configuration rows (their ``n_seeds``)."""
    return int(rows["n_seeds"].sum()) if "n_seeds" in rows.columns else len(rows)


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
        return _row(
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
    return _result(
        "C1", "collapsed fraction", "paper_collapsed", statement, test, res, verdict, why,
        n_runs=_n_runs(rows), decides=True, **robust,
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
        return _row(
            "C2", "r(collapsed, distortion)", "collapsed", statement, test, why, decides=True, **robust
        )
    d = design(rows)
    res = permutation.correlation(
        d["_seed"], numeric(d, "collapsed"), numeric(d, "test/distortion"), strata(d, []), d["_cluster"],
        d["_latent"], method="pearson", side="two-sided", gen=permutation.rng(),
    )  # fmt: skip
    verdict = rule(res.ci_low, res.ci_high) if np.isfinite(res.ci_low) else INCONCLUSIVE
    why = f"r = {res.text()}; {seed_text(est, 'r')} ({n_coll} of {len(ok)} ok runs collapsed){note}."
    return _result(
        "C2", "r(collapsed, distortion)", "collapsed", statement, test, res, verdict, why,
        n_runs=_n_runs(rows), decides=True, **robust,
    )  # fmt: skip


def _c3(ok, u, seeds, note: str) -> Verdict:
    f = rank.TOP_FRACTION
    statement = "Within the top 25 % by reconstruction, lower reconstruction loss goes with higher KL."
    test = (
        f"Spearman rho(distortion, rate) within the top {f:.0%} of configurations by distortion; one-sided "
        f"permutation (distortion shuffled among the top set: rho = 0 against rho < 0)."
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
        return _row(
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
    return _result(
        "C3", "rho in the top set", "test/rate", statement, test, res, by_test(res, 0.0, "below"), why,
        n_runs=_n_runs(top), decides=True, in_family=True, null=0.0, side="below", **robust,
    )  # fmt: skip


def lift_test(ranked: pd.DataFrame, member_of, factor: str, **kw) -> permutation.Result:
    """The lift of ``member_of`` rows in the top ``TOP_FRACTION`` of the configuration table ``ranked``
    by distortion; labels shuffled within latent sizes, configurations resampled within latent size ×
    ``factor`` (``kw``: ``n_perm``, ``n_boot``, ``gen``)."""
    d = design(ranked)
    return permutation.lift(
        d["_seed"], numeric(d, "test/distortion"), member_of(d).to_numpy(dtype=float),
        strata(d, ["latent_dim"]), d["_cluster"], permutation.codes(d, ["latent_dim", factor]),
        fraction=rank.TOP_FRACTION, side="greater", **{"gen": permutation.rng(), **kw},
    )  # fmt: skip


def top_correlation_test(ranked: pd.DataFrame, **kw) -> permutation.Result:
    """C3's test on the configuration table ``ranked``: Spearman rho(distortion, rate) within the top
    ``TOP_FRACTION`` by distortion, distortion shuffled among the top set, one-sided (rho < 0)."""
    d = design(ranked)
    dist = numeric(d, "test/distortion")
    return permutation.correlation(
        d["_seed"], dist, numeric(d, "test/rate"), strata(d, []), d["_cluster"], d["_latent"],
        method="spearman", top_by=dist, fraction=rank.TOP_FRACTION, side="less",
        **{"gen": permutation.rng(), **kw},
    )  # fmt: skip


def _lift_row(claim, statement, what, member_of, factor, u, seeds, note) -> Verdict:
    """The paper's figure for C4/C5: the lift of ``member_of(rows)`` in the top 25 % of configurations,
    against 1 (a supporting row)."""
    f = rank.TOP_FRACTION
    part = f"lift in the top {f:.0%}"
    test = (
        f"The lift of {what} in the top {f:.0%} of configurations by distortion (share of the top set / "
        f"share of all); one-sided permutation (labels shuffled within latent sizes: lift = 1 against > 1)."
    )
    ranked = u[rank.ranked_mask(u, "recon")]
    members = member_of(ranked) if len(ranked) else pd.Series(dtype=bool)
    if not len(ranked) or not members.any() or members.all():
        why = f"{what}: the factor has one level among the ranked configurations{note}"
        return _row(claim, part, DECIDING_METRIC, statement, test, why, null=1.0, side="above")
    per_seed = {seed: lift(g, member_of(g)) for seed, g in seeds}
    est = across(per_seed, 1.0, (0.0, math.inf))
    robust = robust_columns(est, lambda a, b: directional(a, b, 1.0, "above"))
    res = lift_test(ranked, member_of, factor)
    why = f"lift = {res.text()}; {seed_text(est, 'lift')}{note}."
    return _result(
        claim, part, DECIDING_METRIC, statement, test, res, by_test(res, 1.0, "above"), why,
        n_runs=_n_runs(ranked), in_family=True, null=1.0, side="above", **robust,
    )  # fmt: skip


def _contrast_rows(claim, statement, factor, claimed, others, cells, u, note) -> list[Verdict]:
    """One matched contrast per (other group, metric): ``other − claimed`` over ``cells``, positive when
    the claimed families are better (lower loss); the deciding metric's rows first."""
    out = []
    for label, other in others.items():
        for metric, mname in METRICS.items():
            part = f"{'+'.join(sorted(claimed))} vs {label}"
            test = (
                f"Mean over matched ({', '.join(cells)}) cells of {mname}({label}) − "
                f"{mname}({'+'.join(sorted(claimed))}); one-sided permutation (labels shuffled within "
                f"cells: 0 against > 0)."
            )
            used = contrasts.matched(u, metric, factor, claimed, other, cells)  # the configurations it uses
            res = contrasts.paired_test(used, metric, factor, other, cells, gen=permutation.rng())
            if not res.n_runs:
                why = f"no ({', '.join(cells)}) cell holds both {part.replace(' vs ', ' and ')} with a {mname}{note}"
                out.append(_row(claim, part, metric, statement, test, why, null=0.0, side="above"))
                continue
            why = f"{mname} gap (nats) = {res.text()}{note}."
            out.append(_result(
                claim, part, metric, statement, test, res, by_test(res, 0.0, "above"), why,
                n_runs=_n_runs(used), in_family=True, null=0.0, side="above",
            ))  # fmt: skip
    return out


def _families(u: pd.DataFrame, col: str) -> list[str]:
    return sorted(u[col].astype(str).unique()) if col in u.columns and len(u) else []


def _c4(u, seeds, note) -> list[Verdict]:
    statement = (
        "One-layer dense encoders are over-represented among the best (small dense encoders encode best)."
    )
    fams = _families(u, "family/encoder")
    others = {f: {f} for f in fams if f != "dense1"}
    rows = [_lift_row("C4", statement, "dense1 encoders", _dense1, "family/encoder", u, seeds, note)]
    if "dense1" not in fams or not others:
        why = f"the encoder families present ({', '.join(fams) or 'none'}) do not include dense1 and another{note}"
        return [
            *rows,
            _row("C4", "dense1 vs every family", DECIDING_METRIC, statement, "", why, decides=True),
        ]
    rows += _contrast_rows(
        "C4", statement, "family/encoder", {"dense1"}, others, ["latent_dim", "family/decoder"], u, note
    )
    test = (
        "Intersection-union over the distortion contrasts dense1 vs each other encoder family: reproduced "
        "if every one is (Holm p < alpha), not reproduced if any is not, else inconclusive; statistic: the "
        "smallest gap, p: the largest."
    )
    rows.append(
        _row(
            "C4",
            "dense1 vs every family",
            DECIDING_METRIC,
            statement,
            test,
            note,  # the notes on excluded and pooled runs; _adjust puts the contrasts before them
            decides=True,
            null=0.0,
            side="above",
        )
    )
    return rows


def _c5(u, seeds, note) -> list[Verdict]:
    fams = _families(u, "family/decoder")
    kind, depth = kind_depth(pd.Series(fams, dtype=object))
    conv = {f for f, k in zip(fams, kind, strict=True) if k == "conv"}
    dense = {f for f, k in zip(fams, kind, strict=True) if k == "dense"}
    deep = {f for f, k, n in zip(fams, kind, depth, strict=True) if k == "conv" and n >= C5_MIN_DEPTH}
    cells = ["latent_dim", "family/encoder"]
    a = "Conv decoders decode better than dense decoders."
    b = "Conv decoders benefit from several convolutional blocks (depth >= 2 against one)."
    rows = [_lift_row(
        "C5b", b, f"conv decoders of depth >= {C5_MIN_DEPTH}", _deep_conv, "family/decoder", u, seeds, note,
    )]  # fmt: skip
    rows += _contrast_rows(
        "C5a", a, "family/decoder", conv or {"conv"}, {"dense": dense or {"dense"}}, cells, u, note
    )
    rows += _contrast_rows(
        "C5b", b, "family/decoder", deep or {"conv2"}, {"conv1": {"conv1"}}, cells, u, note
    )
    for r in rows:  # the distortion contrast decides each
        r.decides = r.part != rows[0].part and r.metric == DECIDING_METRIC
    return rows


def _dense1(df: pd.DataFrame) -> pd.Series:
    if "family/encoder" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["family/encoder"].astype(str).eq("dense1")


def _deep_conv(df: pd.DataFrame) -> pd.Series:
    if "family/decoder" not in df.columns:
        return pd.Series(False, index=df.index)
    kind, depth = kind_depth(df["family/decoder"])
    return kind.eq("conv") & (depth >= C5_MIN_DEPTH)


def _c6(u, seeds, note: str) -> list[Verdict]:
    statement = "Larger latents degrade latent-space quality yet stay separable at moderate sizes."
    latent = numeric(u, "latent_dim")
    if not len(u) or latent.dropna().nunique() < 2:
        why = f"fewer than two latent sizes among the ok configurations: the factor has one level{note}"
        return [_row("C6", C6_MEASURES[C6_DECIDING], C6_DECIDING, statement, "", why, decides=True)]
    rows = []
    for col, name in C6_MEASURES.items():
        test = (
            f"Spearman rho(latent size, {name}) over the configurations; one-sided permutation (latent sizes "
            f"shuffled within encoder × decoder: rho = 0 against rho < 0)."
        )
        if col == C6_DECIDING:
            test += (
                f" Decides C6 with the separability of its mean at latent <= {C6_MODERATE_LATENT} (bootstrap "
                f"interval at or above {C6_MIN_ACC}): reproduced if both hold, not reproduced if either fails."
            )
        per_seed = {seed: corr(numeric(g, "latent_dim"), numeric(g, col), "spearman") for seed, g in seeds}
        est = across(per_seed, 0.0, CORR)
        robust = robust_columns(est, lambda a, b: directional(a, b, 0.0, "below"))
        keep = u[np.isfinite(numeric(u, col)) & np.isfinite(latent)]
        if len(keep) < MIN_CORR_RUNS or numeric(keep, "latent_dim").nunique() < 2:
            why = f"{name}: not stored for enough configurations of two latent sizes{note}"
            rows.append(_row("C6", name, col, statement, test, why, null=0.0, side="below", **robust))
            continue
        d = design(keep)
        res = permutation.correlation(
            d["_seed"], numeric(d, "latent_dim"), numeric(d, col), strata(d, ["family/encoder", "family/decoder"]),
            d["_cluster"], d["_latent"], method="spearman", side="less", gen=permutation.rng(),
        )  # fmt: skip
        why = f"rho = {res.text()}; {seed_text(est, 'rho')}{note}."
        rows.append(_result(
            "C6", name, col, statement, test, res, by_test(res, 0.0, "below"), why, n_runs=_n_runs(keep),
            in_family=True, null=0.0, side="below", **robust,
        ))  # fmt: skip
    return rows


def _separability(u) -> tuple[str, str]:
    """C6's second half on the deciding measure: (verdict, text) of its mean at moderate latent sizes."""
    m, acc = C6_MODERATE_LATENT, C6_MIN_ACC
    mod = u[(numeric(u, "latent_dim") <= m) & np.isfinite(numeric(u, C6_DECIDING))]
    if not len(mod):
        return INCONCLUSIVE, f"no configuration with latent <= {m}"
    d = design(mod)
    sep = permutation.mean(
        d["_seed"], numeric(d, C6_DECIDING), d["_cluster"], d["_latent"], gen=permutation.rng()
    )
    verdict = _separable(sep.ci_low, sep.ci_high)
    text = (
        f"{C6_MEASURES[C6_DECIDING]} at latent <= {m}: {fmt3(sep.statistic)}, bootstrap 95 % CI "
        f"[{fmt3(sep.ci_low)}, {fmt3(sep.ci_high)}] against {acc} (separability: {verdict})"
    )
    return verdict, text


def _separable(low, high) -> str:
    """C6's separability rule on an interval of the moderate-size accuracy."""
    if low is None or not np.isfinite(low):
        return INCONCLUSIVE
    acc = C6_MIN_ACC
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
        return _row(
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
    return _row(
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
    (``analysis.units.config_means``); the one-sided tests form one family, Holm-adjusted, and each row's
    verdict is decided on its adjusted p. Never raises on empty tables, NaN metrics or non-ok runs."""
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
    c5 = functools.cache(lambda: _c5(u, seeds, note))  # C5a and C5b share the decoder families
    make = {
        "C1": lambda: [_c1(ok, u, seeds, note)],
        "C2": lambda: [_c2(ok, u, seeds, note)],
        "C3": lambda: [_c3(ok, u, seeds, note)],
        "C4": lambda: _c4(u, seeds, note),
        "C5a": lambda: [r for r in c5() if r.claim == "C5a"],
        "C5b": lambda: [r for r in c5() if r.claim == "C5b"],
        "C6": lambda: _c6(u, seeds, note),
    }
    verdicts = [r for c in wanted for r in make[c]()]
    _adjust(verdicts)
    if "C6" in wanted:
        _decide_c6(verdicts, u)
    both = "loss.reduction" in runs.columns and {"paper", "sum"} <= set(runs["loss.reduction"].astype(str))
    if both and wanted == CLAIMS:
        verdicts.append(_ablation(ok, note))
    return verdicts


def _adjust(verdicts: list[Verdict]) -> None:
    """Holm over the family (``in_family`` rows), each such row's verdict decided on its adjusted p,
    then C4's joint row from its distortion contrasts."""
    family = [v for v in verdicts if v.in_family]
    for v, p in zip(
        family, contrasts.holm([np.nan if v.p_value is None else v.p_value for v in family]), strict=True
    ):
        v.p_holm = as_float(p)
        v.verdict = decide(p, v.ci_low, v.ci_high, v.null, v.side) if v.statistic is not None else INCONCLUSIVE
    for joint in [v for v in verdicts if v.claim == "C4" and v.decides]:
        parts = [  # every family's contrast, defined or not: an undefined one leaves a family untested
            v
            for v in verdicts
            if v.claim == "C4" and not v.decides and v.metric == DECIDING_METRIC and " vs " in v.part
        ]
        defined = [v for v in parts if v.statistic is not None]
        if not parts:  # no dense1 encoder or no other family: _c4 wrote why
            continue
        if len(defined) < len(parts):
            missing = ", ".join(v.part for v in parts if v.statistic is None)
            joint.why = f"{missing}: no matched cell, dense1 is not compared with every family{joint.why}."
            continue
        worst = min(defined, key=lambda v: v.statistic)
        verdicts_ = [v.verdict for v in defined]
        joint.verdict = (
            NOT_REPRODUCED if NOT_REPRODUCED in verdicts_
            else REPRODUCED if all(x == REPRODUCED for x in verdicts_) else INCONCLUSIVE
        )  # fmt: skip
        joint.statistic, joint.ci_low, joint.ci_high = worst.statistic, worst.ci_low, worst.ci_high
        joint.p_value = max(v.p_value for v in defined)
        joint.p_holm = max(v.p_holm for v in defined)
        joint.p_bound = all(v.p_bound for v in defined)
        joint.n_configs, joint.n_runs = max(v.n_configs for v in defined), max(v.n_runs for v in defined)
        joint.why = (
            "; ".join(
                f"{v.part}: {fmt3(v.statistic)} [{fmt3(v.ci_low)}, {fmt3(v.ci_high)}] nats, Holm p "
                f"{p_fmt(v.p_holm, v.p_bound)} ({v.verdict})"
                for v in defined
            )
            + f"{joint.why}."
        )


def _decide_c6(verdicts: list[Verdict], u: pd.DataFrame) -> None:
    """C6's deciding row: the kNN degradation (Holm-decided) and its separability at moderate sizes."""
    for v in verdicts:
        if v.claim == "C6" and v.metric == C6_DECIDING:
            v.decides = True
            if v.statistic is None:
                continue
            sep, text = _separability(u)
            v.why = f"{v.why.rstrip('.')}; {text}."
            v.verdict = _both(v.verdict, sep)


def p_fmt(p: float | None, bound: bool) -> str:
    """``= 0.0123``, or ``≤ 0.0025`` where the p-value rests on a permutation floor (a bound)."""
    if p is None or not np.isfinite(p):
        return "= nan"
    return f"≤ {permutation.ceil_text(p)}" if bound else f"= {p:.3g}"


def deciding(verdicts: list[Verdict]) -> list[Verdict]:
    """The one row per claim that holds its verdict."""
    return [v for v in verdicts if v.decides]


def verdicts_table(verdicts: list[Verdict]) -> pd.DataFrame:
    """One row per verdict, the ``Verdict`` fields as columns in their order."""
    return pd.DataFrame([asdict(v) for v in verdicts], columns=[f.name for f in fields(Verdict)])
