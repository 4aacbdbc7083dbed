"""The statistics the claims check (:mod:`analysis.claims`) decides with: per-seed values summarised
across seeds (Student-t interval and t-test), the decision rules that turn an interval or a test into a
verdict word, the correlations and lifts computed within one seed's runs, and the design columns and
strata of the all-runs tests (:mod:`analysis.permutation`), and the row every claim test returns
(:class:`Verdict`, built with :func:`row` / :func:`result`). No claim is defined here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis import permutation, rank

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
MIN_SEEDS = 2  # seeds needed for the per-seed (robustness) t interval
MIN_CORR_RUNS = 3  # runs a seed needs for a correlation to count
ALPHA = 0.05  # family-wise level (Holm) of the two-sided permutation tests (C3, C4, C5, C6)
UNIT, CORR = (0.0, 1.0), (-1.0, 1.0)  # ranges that intervals are clipped to
_FAMILY = re.compile(r"^([a-z]+)(\d+)$")


@dataclass
class Est:
    """Per-seed values of a statistic and their summary across seeds."""

    per_seed: dict
    mean: float | None = None
    low: float | None = None
    high: float | None = None
    p_value: float | None = None

    @property
    def n(self) -> int:
        return len(self.per_seed)


def as_float(x) -> float | None:
    """A finite number as a float; None for None, NaN or ±inf (a column that stays empty)."""
    return None if x is None or not np.isfinite(x) else float(x)


def fmt3(x) -> str:
    """A number in a verdict's text: 3 significant digits, ``nan`` when not finite."""
    return "nan" if x is None or not np.isfinite(x) else f"{x:.3g}"


def across(per_seed: dict, null: float, bounds=(-math.inf, math.inf)) -> Est:
    """Mean, Student-t 95 % CI and two-sided t-test p-value (against ``null``) of the finite values.
    The interval is clipped to ``bounds``, the statistic's range (a correlation's CI stays in [-1, 1])."""
    per_seed = {s: float(v) for s, v in per_seed.items() if v is not None and np.isfinite(v)}
    est = Est(per_seed)
    mean, half, n = rank.t_interval(list(per_seed.values()))
    est.mean = as_float(mean)
    if n >= MIN_SEEDS and np.isfinite(half):
        est.low, est.high = max(bounds[0], mean - half), min(bounds[1], mean + half)
        values = np.array(list(per_seed.values()))
        if values.std() > 1e-12 * max(1.0, abs(mean)):  # identical values: the t statistic is undefined
            est.p_value = as_float(stats.ttest_1samp(values, null).pvalue)
    return est


def directional(low, high, null: float, side: str) -> str:
    """reproduced: the interval entirely on the claimed side of ``null`` (strictly); not reproduced:
    entirely at or beyond it on the other side; inconclusive: it contains ``null``."""
    if side == "below":
        return REPRODUCED if high < null else NOT_REPRODUCED if low >= null else INCONCLUSIVE
    return REPRODUCED if low > null else NOT_REPRODUCED if high <= null else INCONCLUSIVE


MC_SPAN = 2.0  # Monte Carlo standard errors each raw p is moved either way in the stability check


def decide(p, statistic, null: float, side: str, tail: str = "") -> str:
    """The verdict of a directional claim from its (adjusted) two-sided p-value, the tail that gave it
    (``tail``: "claimed" or "other"; "" where the test has one p only) and the statistic's side of
    ``null``: reproduced when p < ALPHA in the claimed tail with the statistic on the claimed side, not
    reproduced when p < ALPHA in the other tail with the statistic on the other side, else inconclusive
    (a permutation null need not centre on ``null``: a lift's does not where strata are unbalanced, so
    the tail and the statistic's side can disagree, and then nothing is decided). One test decides both
    directions, so one error rate (ALPHA, family-wise after Holm) bounds a wrong verdict either way
    (Shaffer 1980)."""
    if p is None or not np.isfinite(p) or p >= ALPHA or statistic is None or not np.isfinite(statistic):
        return INCONCLUSIVE
    if statistic == null:
        return INCONCLUSIVE
    claimed = (statistic > null) == (side == "above")
    if tail and (tail == "claimed") != claimed:
        return INCONCLUSIVE
    return REPRODUCED if claimed else NOT_REPRODUCED


def by_test(res: permutation.Result, null: float, side: str) -> str:
    """:func:`decide` on a test's raw two-sided p-value and statistic."""
    return decide(res.p_two_sided, res.statistic, null, side, tail_of(res))


def tail_of(res: permutation.Result) -> str:
    """The smaller tail of a one-sided test (its ``p_value`` is the claimed side's): "claimed" or
    "other"; "" for a test without the other tail or with both equal."""
    if not (np.isfinite(res.p_value) and np.isfinite(res.p_other)) or res.p_value == res.p_other:
        return ""
    return "claimed" if res.p_value < res.p_other else "other"


def band(low, high, lo, hi) -> str:
    """reproduced: [low, high] inside [lo, hi]; not reproduced: entirely outside; else inconclusive."""
    if low is None or not np.isfinite(low):
        return INCONCLUSIVE
    if lo <= low and high <= hi:
        return REPRODUCED
    return NOT_REPRODUCED if high < lo or low > hi else INCONCLUSIVE


def robust_columns(est: Est, rule) -> dict:
    """The robustness columns: the per-seed t interval and the claim's rule applied to it."""
    verdict = rule(est.low, est.high) if est.low is not None else INCONCLUSIVE
    return {
        "n_seeds": est.n,
        "seed_ci_low": est.low,
        "seed_ci_high": est.high,
        "seed_p_value": est.p_value,
        "seed_verdict": verdict,
    }


def seed_text(est: Est, what: str) -> str:
    if est.n == 0:
        return f"no seed gives a {what}"
    if est.low is None:
        seed, value = next(iter(est.per_seed.items()))
        return f"1 seed ({what} {fmt3(value)}): no interval across seeds"
    return (
        f"per seed: mean {fmt3(est.mean)} over {est.n} seeds, t 95 % CI [{fmt3(est.low)}, {fmt3(est.high)}]"
    )


def scope(n_seeds: int) -> str:
    """What a verdict decided within one seed means; empty with several seeds."""
    if n_seeds != 1:
        return ""
    return "1 seed: the all-runs test generalises over this seed's configurations, not over seeds; "


def numeric(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return pd.Series(values, index=df.index)


def kind_depth(families: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(kind, depth) parsed from ``family/...`` values such as ``conv4``."""
    parts = families.astype(str).str.extract(_FAMILY)
    return parts[0], pd.to_numeric(parts[1], errors="coerce")


def corr(x: pd.Series, y: pd.Series, method: str) -> float:
    """Pearson or Spearman correlation of the rows finite in both; NaN below MIN_CORR_RUNS rows or when
    either side is constant."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep].to_numpy(), y[keep].to_numpy()
    if len(x) < MIN_CORR_RUNS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    f = stats.pearsonr if method == "pearson" else stats.spearmanr
    return float(f(x, y)[0])


def lift(seed_runs: pd.DataFrame, member: pd.Series) -> float:
    """Lift of the rows in ``member`` in the seed's top TOP_FRACTION by reconstruction: share of the top
    set over share of the ranked runs; NaN when the seed ranks no member."""
    marked = seed_runs.assign(_member=member.astype(bool))
    ranked, top = rank.ranking(marked, "recon"), rank.top_set(marked, "recon")
    n_member = int(ranked["_member"].sum())
    if not n_member or not len(top):
        return np.nan
    return (int(top["_member"].sum()) / len(top)) / (n_member / len(ranked))


def design(df: pd.DataFrame) -> pd.DataFrame:
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


def strata(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """Permutation strata: the seed × ``cols`` cell of each row (always nested in seeds)."""
    return permutation.codes(df, ["seed", *cols])


@dataclass
class Verdict:
    claim: str  # "C1".."C6" (C5 as C5a, C5b) or "ablation"
    part: str  # what this row tests, e.g. "dense1 vs conv2" or "lift in the top 25 %"
    metric: str  # the measure the row's statistic is computed from
    statement: str  # the claim in one sentence
    test: str  # the statistic and the decision rule in one or two sentences (the method: the report)
    statistic: float | None  # on the configuration table (ablation: rate difference)
    ci_low: float | None  # percentile bootstrap over configurations (contrasts: the sign-flip test inverted; ablation: Newcombe)
    ci_high: float | None
    p_value: float | None  # raw two-sided permutation (contrasts: sign-flip) p (ablation: Fisher exact)
    p_holm: float | None  # Holm-adjusted over the claims family (rows with in_family)
    p_bound: bool  # the raw p rests on the permutation floor (2/(1 + B) two-sided): a bound, p ≤ that
    n_configs: int  # configurations the test used: the experimental unit
    n_runs: int  # the runs behind them
    verdict: str  # reproduced | not reproduced | inconclusive
    decides: bool  # this row holds the claim's verdict (one row per claim)
    in_family: bool  # a member of the family Holm adjusts
    why: str  # one sentence, always filled
    null: float | None = None  # the claim's null value of the statistic
    side: str = ""  # "above" or "below": where the claim puts the statistic
    tail: str = ""  # the permutation test's smaller tail: "claimed" or "other" ("" without a one-sided test)
    n_seeds: int = 0  # seeds with a per-seed value (robustness columns)
    seed_ci_low: float | None = None  # robustness: Student-t 95 % interval of the per-seed values
    seed_ci_high: float | None = None
    seed_p_value: float | None = None  # two-sided one-sample t-test against the claim's null
    seed_verdict: str | None = None  # the same rule applied to the t interval (inconclusive with 1 seed)
    p_mc_se: float | None = None  # Monte Carlo standard error of p_value (0: exact; None: not a permutation p)
    p_draws: int | None = None  # permutations (or, exact, sign patterns) behind p_value; more where refined
    p_holm_mc_low: float | None = None  # Holm p with every raw p of the family 2 MC SE lower (MC_SPAN)
    p_holm_mc_high: float | None = None  # ... and 2 MC SE higher: Holm p is monotone in each raw p
    mc_stable: bool | None = None  # the verdict is the same at both: it does not rest on Monte Carlo noise


def row(claim, part, metric, statement, test, why, **kw) -> Verdict:
    base = dict(
        statistic=None, ci_low=None, ci_high=None, p_value=None, p_holm=None, p_bound=False, n_configs=0,
        n_runs=0, verdict=INCONCLUSIVE, decides=False, in_family=False,
    )  # fmt: skip
    return Verdict(claim, part, metric, statement, test, why=why, **{**base, **kw})


def result(claim, part, metric, statement, test, res: permutation.Result, verdict, why, **kw) -> Verdict:
    return row(
        claim, part, metric, statement, test, why, statistic=as_float(res.statistic),
        ci_low=as_float(res.ci_low), ci_high=as_float(res.ci_high), p_value=as_float(res.p_two_sided),
        p_bound=res.two_sided_bound, n_configs=res.n_runs, verdict=verdict, tail=tail_of(res),
        p_mc_se=as_float(res.mc_se_two_sided), p_draws=int(res.n_perm) if res.n_perm else None, **kw,
    )  # fmt: skip


def n_runs(rows: pd.DataFrame) -> int:
    """The runs behind configuration rows (their ``n_seeds``)."""
    return int(rows["n_seeds"].sum()) if "n_seeds" in rows.columns else len(rows)


def p_fmt(p: float | None, bound: bool) -> str:
    """``= 0.0123``, or ``≤ 0.0025`` where the p-value rests on a permutation floor (a bound)."""
    if p is None or not np.isfinite(p):
        return "= nan"
    return f"≤ {permutation.ceil_text(p)}" if bound else f"= {p:.3g}"
