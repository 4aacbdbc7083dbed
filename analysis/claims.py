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

from analysis import collapse, permutation, rank

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
CLAIMS = ("C1", "C2", "C3", "C4", "C5", "C6")
MIN_SEEDS = 2  # seeds needed for the per-seed (robustness) t interval
MIN_CORR_RUNS = 3  # runs a seed needs for a correlation to count
ALPHA = 0.05  # level of the one-sided permutation tests (C3, C4, C5, C6's degradation)
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
_FAMILY = re.compile(r"^([a-z]+)(\d+)$")
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


def _one_level(claim, statement, test, why: str) -> Verdict:
    return Verdict(claim, statement, test, None, None, None, None, 0, INCONCLUSIVE, why)


def _directional(low, high, null: float, side: str) -> str:
    """reproduced: the interval entirely on the claimed side of ``null`` (strictly); not reproduced:
    entirely at or beyond it on the other side; inconclusive: it contains ``null``."""
    if side == "below":
        return REPRODUCED if high < null else NOT_REPRODUCED if low >= null else INCONCLUSIVE
    return REPRODUCED if low > null else NOT_REPRODUCED if high <= null else INCONCLUSIVE


def _by_test(res: permutation.Result, null: float, side: str) -> str:
    """The verdict of a directional claim: reproduced when the one-sided permutation p < ALPHA; not
    reproduced when the bootstrap interval lies entirely at or beyond ``null`` on the other side
    (the statistic is plainly not on the claimed side); else inconclusive."""
    if res.p_value is not None and np.isfinite(res.p_value) and res.p_value < ALPHA:
        return REPRODUCED
    low, high = res.ci_low, res.ci_high
    if np.isfinite(low) and (high <= null if side == "above" else low >= null):
        return NOT_REPRODUCED
    return INCONCLUSIVE


def _band(low, high, lo, hi) -> str:
    """reproduced: [low, high] inside [lo, hi]; not reproduced: entirely outside; else inconclusive."""
    if low is None or not np.isfinite(low):
        return INCONCLUSIVE
    if lo <= low and high <= hi:
        return REPRODUCED
    return NOT_REPRODUCED if high < lo or low > hi else INCONCLUSIVE


def _robust(est: _Est, rule) -> dict:
    """The robustness columns: the per-seed t interval and the claim's rule applied to it."""
    verdict = rule(est.low, est.high) if est.low is not None else INCONCLUSIVE
    return {
        "n_seeds": est.n,
        "seed_ci_low": est.low,
        "seed_ci_high": est.high,
        "seed_p_value": est.p_value,
        "seed_verdict": verdict,
    }


def _seed_txt(est: _Est, what: str) -> str:
    if est.n == 0:
        return f"no seed gives a {what}"
    if est.low is None:
        seed, value = next(iter(est.per_seed.items()))
        return f"1 seed ({what} {_g(value)}): no interval across seeds"
    return f"per seed: mean {_g(est.mean)} over {est.n} seeds, t 95 % CI [{_g(est.low)}, {_g(est.high)}]"


def _scope(n_seeds: int) -> str:
    """What a verdict decided within one seed means; empty with several seeds."""
    if n_seeds != 1:
        return ""
    return "1 seed: the all-runs test generalises over this seed's configurations, not over seeds; "


def _result(claim, statement, test, res: permutation.Result, verdict, why, robust: dict) -> Verdict:
    return Verdict(
        claim, statement, test, _float(res.statistic), _float(res.ci_low), _float(res.ci_high),
        _float(res.p_value), res.n_runs, verdict, why, **robust,
    )  # fmt: skip


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


def _design(df: pd.DataFrame) -> pd.DataFrame:
    """The rows in tie-break order (run name) with the design columns the all-runs tests need:
    ``_seed``, ``_cluster`` (the configuration: every config column but the seed) and ``_latent``."""
    df = df.sort_values("run_name", kind="mergesort") if "run_name" in df.columns else df
    out = df.copy()
    out["_seed"] = permutation.codes(df, ["seed"])
    out["_cluster"] = permutation.codes(rank.with_config_id(df), ["config"]) if len(df) else []
    if len(df) and rank.with_config_id(df)["config"].eq("").all():  # no config columns: each run alone
        out["_cluster"] = np.arange(len(df))
    out["_latent"] = permutation.codes(df, ["latent_dim"])
    return out


def _strata(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """Permutation strata: the seed × ``cols`` cell of each row (always nested in seeds)."""
    return permutation.codes(df, ["seed", *cols])


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
    est, ours_est = _across(paper, 0.5, UNIT), _across(ours, 0.5, UNIT)
    robust = _robust(est, lambda a, b: _band(a, b, lo, hi))
    pooled = collapse.flag(ok, "paper_collapsed").dropna()
    k, n = int(pooled.astype(int).sum()), len(pooled)
    w_lo, w_hi = collapse.wilson_interval(k, n)
    pooled_txt = (
        f"pooled {k}/{n} paper-collapsed, Wilson 95 % [{_g(w_lo)}, {_g(w_hi)}]"
        if n
        else "no evaluated ok run"
    )
    ours_txt = f"our `collapsed` flag (no active unit and rate < 0.1 nats): {_g(ours_est.mean)}"
    if not n:
        return Verdict("C1", statement, test, None, None, None, None, 0, INCONCLUSIVE, f"{pooled_txt}{note}")
    d = _design(ok.loc[pooled.index])
    flag = collapse.flag(d, "paper_collapsed").astype(float).to_numpy()
    res = permutation.mean(d["_seed"], flag, d["_cluster"], d["_latent"], gen=permutation.rng())
    verdict = _band(res.ci_low, res.ci_high, lo, hi)
    why = (
        f"{_scope(est.n)}paper_collapsed fraction {_g(res.statistic)}, bootstrap 95 % CI "
        f"[{_g(res.ci_low)}, {_g(res.ci_high)}] against the band [{lo}, {hi}]; {_seed_txt(est, 'fraction')}; "
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
        per_seed[seed] = _corr(flag[keep].astype(float), _numeric(g, "test/distortion")[keep], "pearson")
    est = _across(per_seed, 0.0, CORR)

    def rule(low, high) -> str:
        if -w < low and high < w:
            return REPRODUCED
        return NOT_REPRODUCED if low >= w or high <= -w else INCONCLUSIVE

    robust = _robust(est, rule)
    n_coll = int(collapse.flag(ok, "collapsed").fillna(False).sum())
    if est.n == 0:
        why = (
            f"no seed has both collapsed and non-collapsed runs with varying distortions "
            f"({n_coll} of {len(ok)} ok runs collapsed): r is undefined{note}"
        )
        return Verdict("C2", statement, test, None, None, None, None, 0, INCONCLUSIVE, why, **robust)
    flag = collapse.flag(ok, "collapsed")
    d = _design(ok[flag.notna() & np.isfinite(_numeric(ok, "test/distortion"))])
    res = permutation.correlation(
        d["_seed"], collapse.flag(d, "collapsed").astype(float), _numeric(d, "test/distortion"),
        _strata(d, []), d["_cluster"], d["_latent"], method="pearson", side="two-sided",
        gen=permutation.rng(),
    )  # fmt: skip
    verdict = rule(res.ci_low, res.ci_high) if np.isfinite(res.ci_low) else INCONCLUSIVE
    why = (
        f"{_scope(est.n)}r = {_g(res.statistic)}, bootstrap 95 % CI [{_g(res.ci_low)}, {_g(res.ci_high)}], "
        f"permutation p = {_g(res.p_value)}; {_seed_txt(est, 'r')} ({n_coll} of {len(ok)} ok runs "
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
        per_seed[seed] = _corr(_numeric(top, "test/distortion"), _numeric(top, "test/rate"), "spearman")
    est = _across(per_seed, 0.0, CORR)
    robust = _robust(est, lambda a, b: _directional(a, b, 0.0, "below"))
    if est.n == 0:
        why = f"no seed has a top set of at least {MIN_CORR_RUNS} runs whose distortion and rate vary{note}"
        return Verdict("C3", statement, test, None, None, None, None, 0, INCONCLUSIVE, why, **robust)
    ranked = ok[rank.ranked_mask(ok, "recon") & np.isfinite(_numeric(ok, "test/rate"))]
    d = _design(ranked)
    dist = _numeric(d, "test/distortion")
    res = permutation.correlation(
        d["_seed"], dist, _numeric(d, "test/rate"), _strata(d, []), d["_cluster"], d["_latent"],
        method="spearman", top_by=dist, fraction=f, side="less", gen=permutation.rng(),
    )  # fmt: skip
    verdict = _by_test(res, 0.0, "below")
    why = f"{_scope(est.n)}rho = {res.text()}; {_seed_txt(est, 'rho')}{note}."
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
    per_seed = {seed: _lift(g, member_of(g)) for seed, g in seeds}
    est = _across(per_seed, 1.0, (0.0, math.inf))
    robust = _robust(est, lambda a, b: _directional(a, b, 1.0, "above"))
    d = _design(ranked)
    res = permutation.lift(
        d["_seed"], _numeric(d, "test/distortion"), member_of(d).to_numpy(dtype=float),
        _strata(d, ["latent_dim"]), d["_cluster"], permutation.codes(d, ["latent_dim", factor]),
        fraction=f, side="greater",
        gen=permutation.rng(),
    )  # fmt: skip
    verdict = _by_test(res, 1.0, "above")
    extra_txt = extra(seeds) if extra else ""
    why = f"{_scope(est.n)}lift = {res.text()}; {_seed_txt(est, 'lift')}{extra_txt}{note}."
    return _result(claim, statement, test, res, verdict, why, robust)


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
        f"(a) Spearman rho(latent_dim, latent/linear_probe_acc) over each seed's ok runs and (b) the mean "
        f"probe accuracy of runs with latent_dim <= {m}, per seed, means over seeds. (a) degrades if a "
        f"one-sided {PERM} (latent sizes shuffled within seed × encoder × decoder: rho = 0 against "
        f"rho < 0) gives p < {ALPHA}, does not if the {BOOT} lies entirely at or above 0; (b) is separable "
        f"if its bootstrap interval's lower bound is >= {acc}, not if its upper bound is < {acc}. "
        f"Reproduced if both hold, not reproduced if either fails, else inconclusive. {SEED_COLUMN}"
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

    def combine(degrade: str, separable: str) -> str:
        if NOT_REPRODUCED in (degrade, separable):
            return NOT_REPRODUCED
        return REPRODUCED if degrade == separable == REPRODUCED else INCONCLUSIVE

    def sep_rule(low, high) -> str:
        if low is None or not np.isfinite(low):
            return INCONCLUSIVE
        return REPRODUCED if low >= acc else NOT_REPRODUCED if high < acc else INCONCLUSIVE

    seed_sep = sep_rule(acc_est.low, acc_est.high)
    robust = _robust(est, lambda a, b: combine(_directional(a, b, 0.0, "below"), seed_sep))
    if est.n == 0:
        why = f"no seed gives rho (probe accuracies that vary over at least {MIN_CORR_RUNS} runs){note}"
        return Verdict("C6", statement, test, None, None, None, None, 0, INCONCLUSIVE, why, **robust)
    probe = _numeric(ok, "latent/linear_probe_acc")
    d = _design(ok[np.isfinite(probe) & np.isfinite(latent)])
    size, probe = _numeric(d, "latent_dim"), _numeric(d, "latent/linear_probe_acc")
    res = permutation.correlation(
        d["_seed"], size, probe, _strata(d, ["family/encoder", "family/decoder"]), d["_cluster"],
        d["_latent"], method="spearman", side="less", gen=permutation.rng(),
    )  # fmt: skip
    degrade = _by_test(res, 0.0, "below")
    mod = d[(size <= m).to_numpy()]
    if len(mod):
        sep = permutation.mean(
            mod["_seed"], _numeric(mod, "latent/linear_probe_acc"), mod["_cluster"], mod["_latent"],
            gen=permutation.rng(),
        )  # fmt: skip
        separable = sep_rule(sep.ci_low, sep.ci_high)
        acc_txt = f"; probe accuracy at latent <= {m}: {_g(sep.statistic)}, bootstrap 95 % CI [{_g(sep.ci_low)}, {_g(sep.ci_high)}]"
    else:
        separable, acc_txt = INCONCLUSIVE, f"; no run with latent <= {m}"
    why = (
        f"{_scope(est.n)}rho = {res.text()} (degradation: {degrade}){acc_txt} (separability: {separable}); "
        f"{_seed_txt(est, 'rho')}{note}."
    )
    return _result("C6", statement, test, res, combine(degrade, separable), why, robust)


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
