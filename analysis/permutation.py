"""Tests that use every run of a sweep and respect its design: stratified permutation tests and a
stratified cluster bootstrap, for the claims check (``analysis.claims``).

Design. A sweep trains each configuration (latent size × encoder × decoder) once per seed. A statistic
is computed per seed (the paper ranks and correlates within one seed's runs) and averaged over the
seeds; what these tests add is how its uncertainty is assessed from all the runs:

* **Stratified (restricted) permutation test** (Good, *Permutation, Parametric and Bootstrap Tests of
  Hypotheses*, 3rd ed., 2005, ch. 5; Pesarin & Salmaso, *Permutation Tests for Complex Data*, 2010):
  one variable (an architecture label, a latent size, a collapse flag, a rate) is shuffled only within
  strata (always within a seed, and within whatever else the null hypothesis holds fixed), so each
  permuted data set has the design of the real one. ``N_PERM`` permutations from a
  ``numpy.random.Generator`` with a fixed seed, so verdicts are deterministic; the p-value is
  (1 + #{T_perm ≥ T_obs}) / (1 + B), exact in level for any B (Phipson & Smyth, *Stat. Appl. Genet. Mol.
  Biol.* 9:39, 2010), with Monte Carlo standard error √(p(1−p)/B) (0.0022 at p = 0.05, B = 10,000).
* **Percentile bootstrap interval** (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993,
  ch. 13), resampling *configurations* (clusters: all seeds of a drawn configuration come together,
  since one configuration's seeds are not independent) with replacement within strata (latent sizes,
  and for a lift the claim's architecture family too, so that every resample has the design's
  composition: resampling within latent sizes only lets the member count vary and over-covers),
  ``N_BOOT`` resamples; the statistic is recomputed on each resample, ranking and top set included.

Every statistic is vectorised over the B permutations or resamples (``(B, n)`` arrays), so a test of
300 runs takes well under a second.

    from analysis import permutation
    got = permutation.lift(seed, distortion, member, perm_strata, clusters, boot_strata)
    got.statistic, got.p_value, got.ci_low, got.ci_high
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

N_PERM = 10_000  # permutations per test: Monte Carlo SE of p 0.0022 at p = 0.05
N_BOOT = 2_000  # bootstrap resamples per interval (Efron & Tibshirani 1993 ask for >= 1,000 for percentiles)
RNG_SEED = 20  # every test draws from its own Generator(PCG64(RNG_SEED)): deterministic, order-free
# (a test's bootstrap draws from a generator spawned from it, so an interval does not move with the
# number of permutations drawn before it: the refinement's extra draws leave the intervals as they were)
CI_LEVEL = 0.95
MIN_FINITE = 0.5  # a bootstrap interval needs at least this share of resamples with a defined statistic
MIN_CORR_WEIGHT = 3  # a correlation needs at least this many runs (counted with multiplicity)
SIDES = ("greater", "less", "two-sided")
CHUNK = 2_000  # permutations built at a time (memory: CHUNK × n indices)
_DRAWS = contextvars.ContextVar("permutation_draws", default=N_PERM)


def draws() -> int:
    """Permutations a test draws where its caller names none: ``N_PERM``, or what :func:`more_draws`
    set around the call."""
    return _DRAWS.get()


@contextlib.contextmanager
def more_draws(n_perm: int) -> Iterator[None]:
    """Every test called inside draws ``n_perm`` permutations (the claims check's refinement of a
    verdict that rests on the draws)."""
    token = _DRAWS.set(int(n_perm))
    try:
        yield
    finally:
        _DRAWS.reset(token)


@dataclass
class Result:
    """The outcome of one all-runs test."""

    statistic: float  # mean over seeds of the per-seed statistic, on the real data
    p_value: float  # stratified permutation p-value, (1 + #≥) / (1 + n_perm)
    ci_low: float  # the interval (``interval``; NaN when too few resamples or permutations define it)
    ci_high: float
    n_runs: int  # runs the statistic used
    n_perm: int
    n_boot: int
    mc_se: float  # Monte Carlo standard error of ``p_value``
    p_other: float = math.nan  # a one-sided test's other tail from the same null, (1 + #≤) / (1 + n_perm)
    interval: str = "bootstrap"  # how ci_low, ci_high were made: "bootstrap" (percentile), or another method's name
    exact: bool = False  # the null is every arrangement once (complete enumeration): p exact, never a bound

    @property
    def p_two_sided(self) -> float:
        """The two-sided p of a one-sided test, 2 × the smaller tail, at most 1 (a directional decision
        rests on it and the statistic's sign); ``p_value`` itself where there is no other tail."""
        if not np.isfinite(self.p_other):
            return self.p_value
        return float(min(1.0, 2 * min(self.p_value, self.p_other)))

    @property
    def two_sided_bound(self) -> bool:
        """Whether :attr:`p_two_sided` rests on the permutation floor (no permutation reached the
        statistic in its tail): then it is a bound, p ≤ 2/(1 + B)."""
        tail = min(self.p_value, self.p_other) if np.isfinite(self.p_other) else self.p_value
        return not self.exact and at_floor(tail, self.n_perm)

    @property
    def mc_se_two_sided(self) -> float:
        """Monte Carlo standard error of :attr:`p_two_sided`: twice the smaller tail's."""
        if self.exact or not np.isfinite(self.p_other):
            return self.mc_se
        return 2 * mc_se(min(self.p_value, self.p_other), self.n_perm)

    def text(self) -> str:
        if np.isfinite(self.p_other):
            bound = self.two_sided_bound
            p = f"two-sided p {'≤ ' + ceil_text(self.p_two_sided) if bound else f'= {self.p_two_sided:.3g}'}"
        else:
            p = p_text(self.p_value, self.n_perm)
        if np.isfinite(self.ci_low) and np.isfinite(self.ci_high):
            ci = f"{self.interval} 95 % CI [{_g(self.ci_low)}, {_g(self.ci_high)}]"
        else:  # too few arrangements or resamples define a bound: say so, never "[nan, nan]"
            why = f"its {self.n_perm + 1} arrangements cannot reject any shift" if self.exact else "too few units"
            ci = f"no {self.interval} 95 % CI ({why})"
        return (
            f"{_g(self.statistic)}, {ci}, permutation "
            f"{p} ({'exact' if self.exact else f'MC SE {_g(self.mc_se_two_sided)}'}; "
            f"{f'all {self.n_perm + 1} arrangements' if self.exact else f'{self.n_perm} permutations'}, "
            f"{f'{self.n_boot} resamples, ' if self.n_boot else ''}{self.n_runs} units)"
        )


def ceil_text(x: float, digits: int = 2) -> str:
    """``x`` rounded *up* to ``digits`` significant digits, for a bound (``≤ 1e-04``, never below x)."""
    if x <= 0 or not np.isfinite(x):
        return f"{x:g}"
    scale = 10.0 ** (math.floor(math.log10(x)) - digits + 1)
    return f"{math.ceil(round(x / scale, 9)) * scale:.{digits}g}"


def p_text(p: float | None, n_perm: int, name: str = "p") -> str:
    """``p = 0.0123``, or ``p ≤ 1e-04`` at the floor 1/(1 + B) of B permutations: no permutation reached
    the observed statistic, so the p-value is only bounded (Phipson & Smyth 2010)."""
    if p is None or not np.isfinite(p):
        return f"{name} = nan"
    floor = 1 / (1 + n_perm) if n_perm else 0.0
    if n_perm and p <= floor * (1 + 1e-9):
        return f"{name} ≤ {ceil_text(floor)}"
    return f"{name} = {p:.3g}"


def _g(x) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.3g}"


def rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


def codes(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """Integer code of each row's combination of ``cols`` (those present); all zeros when none is."""
    cols = [c for c in cols if c in df.columns]
    if not cols or not len(df):
        return np.zeros(len(df), dtype=np.int64)
    keys = df[cols].astype(str)  # str: None, NaN and mixed types each make one level
    return keys.groupby(cols, sort=True).ngroup().to_numpy(dtype=np.int64)


# ---------------------------------------------------------------------------------- resampling plans
def within(strata: np.ndarray, n_perm: int, gen: np.random.Generator) -> np.ndarray:
    """(n_perm, n) indices: row i of permutation b takes the value of row ``out[b, i]``, always a row of
    the same stratum (uniform over the within-stratum permutations). The blocks of :func:`within_blocks`
    stacked: the same draws."""
    strata = np.asarray(strata, dtype=np.int64)
    if not len(strata) or not n_perm:
        return np.zeros((n_perm, len(strata)), dtype=np.int64)
    return np.concatenate(list(within_blocks(strata, n_perm, gen)))


def within_blocks(
    strata: np.ndarray, n_perm: int, gen: np.random.Generator, chunk: int = CHUNK
) -> Iterator[np.ndarray]:
    """:func:`within`'s permutations ``chunk`` at a time, drawn from ``gen`` in the same order (their
    concatenation is :func:`within`'s array): a test of many draws (the refinement goes to
    ``MAX_DRAWS``-scale counts) holds chunk × n indices, not n_perm × n (1,000,000 draws of 300 runs were
    three 2.4 GB arrays)."""
    strata = np.asarray(strata, dtype=np.int64)
    slots = np.argsort(strata, kind="stable")  # rows grouped by stratum, each in its own order
    for start in range(0, n_perm, chunk):
        # random keys in [0, 1) offset by the stratum: sorting groups rows by stratum, shuffled inside each
        keys = gen.random((min(chunk, n_perm - start), len(strata))) + strata[None, :]
        shuffled = np.argsort(keys, axis=1, kind="stable")
        out = np.empty_like(shuffled)
        out[:, slots] = shuffled
        yield out


def cluster_weights(clusters: np.ndarray, strata: np.ndarray, n_boot: int, gen: np.random.Generator):
    """(n_boot, n) multiplicities: each resample draws, within each stratum, as many clusters as it has,
    with replacement; every row of a drawn cluster counts once per draw. ``strata[i]`` must be the same
    for every row of a cluster."""
    clusters, strata = np.asarray(clusters), np.asarray(strata)
    ids, row_cluster = np.unique(clusters, return_inverse=True)
    cluster_stratum = np.zeros(len(ids), dtype=np.int64)
    cluster_stratum[row_cluster] = strata
    counts = np.zeros((n_boot, len(ids)))
    for s in np.unique(cluster_stratum):
        members = np.flatnonzero(cluster_stratum == s)
        c = len(members)
        draws = gen.integers(0, c, size=(n_boot, c)) + c * np.arange(n_boot)[:, None]
        counts[:, members] = np.bincount(draws.ravel(), minlength=n_boot * c).reshape(n_boot, c)
    return counts[:, row_cluster]


def resamplable(clusters, strata) -> bool:
    """Whether some stratum holds at least two clusters: otherwise every resample is the data itself
    and a bootstrap interval would have zero width without saying anything."""
    pairs = pd.DataFrame({"c": np.asarray(clusters), "s": np.asarray(strata)}).drop_duplicates()
    return bool(len(pairs) and pairs.groupby("s")["c"].nunique().max() >= 2)


def _interval(stat, clusters, strata, n_boot, gen) -> tuple[float, float]:
    """The percentile interval of ``stat(weights)`` over the cluster resamples; NaNs if none varies
    (or ``n_boot`` is 0: a caller that needs only the p-value). The resamples come from the test's
    generator's first spawned child (``gen.spawn``), which depends on the generator's seed and not on
    what it has drawn: the interval does not move with the number of permutations drawn before it."""
    if not n_boot or not resamplable(clusters, strata):
        return math.nan, math.nan
    return percentile(stat(cluster_weights(clusters, strata, n_boot, gen.spawn(1)[0])))


def p_value(observed: float, null: np.ndarray, side: str) -> float:
    """(1 + #{null at least as extreme as observed}) / (1 + B); ``side`` in SIDES. A small tolerance
    counts floating-point ties (the same statistic summed in another order) as ties."""
    if side not in SIDES:
        raise ValueError(f"side={side!r} is unknown; valid: {', '.join(SIDES)}")
    null = np.asarray(null, dtype=float)
    null = null[np.isfinite(null)]
    if not np.isfinite(observed) or not len(null):
        return math.nan
    tol = 1e-9 * max(1.0, abs(observed))
    if side == "greater":
        hits = null >= observed - tol
    elif side == "less":
        hits = null <= observed + tol
    else:
        hits = np.abs(null) >= abs(observed) - tol
    return float((1 + hits.sum()) / (1 + len(null)))


def tails(observed: float, null: np.ndarray, side: str) -> tuple[float, float]:
    """The p-value on ``side`` ("greater" or "less") and the other tail's, from one null."""
    other = {"greater": "less", "less": "greater"}[side]
    return p_value(observed, null, side), p_value(observed, null, other)


def mc_se(p: float, n: int) -> float:
    """Monte Carlo standard error of a permutation p-value estimated from ``n`` permutations."""
    return math.sqrt(p * (1 - p) / n) if np.isfinite(p) and n else math.nan


def percentile(values: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile interval of the finite bootstrap values; NaNs when fewer than MIN_FINITE are finite."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if not len(values) or len(finite) < MIN_FINITE * len(values):
        return math.nan, math.nan
    low, high = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


# ------------------------------------------------------------------------------ weighted statistics
def weighted_ranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B, n) mid-ranks of the fixed values ``x`` (n,) when row i counts ``w[b, i]`` times: the ranks
    that ``scipy.stats.rankdata`` gives the data set with each row repeated that often (ties share the
    mean rank). Rows of weight 0 get a rank that no weighted sum uses."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # first row of each group of tied values
    group = np.cumsum(np.r_[True, xs[1:] != xs[:-1]]) - 1
    totals = np.add.reduceat(ws, starts, axis=1)  # (B, groups)
    before = np.cumsum(totals, axis=1) - totals
    mid = before + (totals + 1) / 2
    out = np.empty_like(ws, dtype=float)
    out[:, order] = mid[:, group]
    return out


def weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B,) Pearson r of x and y ((n,) or (B, n)) with row weights ``w`` (B, n); NaN where the total
    weight is below MIN_CORR_WEIGHT or either variable does not vary."""
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (w * x).sum(axis=1) / total
        my = (w * y).sum(axis=1) / total
        dx, dy = x - mx[:, None], y - my[:, None]
        sxx, syy, sxy = (w * dx * dx).sum(axis=1), (w * dy * dy).sum(axis=1), (w * dx * dy).sum(axis=1)
        scale = np.maximum(np.abs(mx), np.abs(my)) ** 2 + 1.0
        ok = (total >= MIN_CORR_WEIGHT) & (sxx > 1e-18 * scale * total) & (syy > 1e-18 * scale * total)
        r = sxy / np.sqrt(sxx * syy)
    return np.where(ok, np.clip(r, -1.0, 1.0), np.nan)


def top_weights(w: np.ndarray, fraction: float) -> np.ndarray:
    """(B, n) weights of the rows inside the top ``fraction`` of one seed, rows already in rank order
    (best first): the top set holds ceil(fraction × Σw) runs, as ``rank.top_set`` on the resample."""
    cum = np.cumsum(w, axis=1)
    k = np.ceil(np.round(fraction * cum[:, -1:], 9))
    return np.clip(k - (cum - w), 0.0, w)


def _seed_mean(per_seed: list[np.ndarray]) -> np.ndarray:
    """Mean over seeds of per-seed (B,) statistics, ignoring seeds where one is undefined."""
    stacked = np.vstack(per_seed)
    with warnings.catch_warnings():  # a column with no defined seed is NaN, which is what we want
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stacked, axis=0)


# ----------------------------------------------------------------------------------------- the tests
def lift(
    seed, distortion, member, perm_strata, clusters, boot_strata, *, fraction: float,
    n_perm: int | None = None, n_boot: int = N_BOOT, side: str = "greater", gen: np.random.Generator | None = None,
) -> Result:  # fmt: skip
    """Lift of ``member`` rows in each seed's top ``fraction`` by ``distortion`` (share of the top set /
    share of the seed's runs), mean over seeds. Rows must be ranked runs in tie-break order (the caller
    sorts by run name), so a stable sort by distortion gives ``rank.ranking``'s order.

    Permutation: ``member`` (0 or 1) is shuffled within ``perm_strata`` (which must nest in seeds); the
    top sets stay. A shuffle moves a seed's lift only through how many members land in its top set, and
    in each stratum that count is hypergeometric (its members, its other rows, its rows in the top set),
    independently between strata: :func:`_lift_null` draws those counts, the same null as shuffling
    the labels ``n_perm`` times without building the (n_perm, n) permutations (~40 times faster on
    300 runs, and 1,000,000 draws fit in memory). Bootstrap: clusters resampled within
    ``boot_strata``, top sets recomputed. ``n_perm``: :func:`draws` where None."""
    gen = gen or rng()
    n_perm = draws() if n_perm is None else n_perm
    seed, d = np.asarray(seed), np.asarray(distortion, dtype=float)
    m = np.asarray(member, dtype=float)
    if not np.isin(m, (0.0, 1.0)).all():
        raise ValueError(f"member must be 0 or 1 (a label the test shuffles); got {sorted(set(m.tolist()) - {0.0, 1.0})[:3]}")
    order = np.lexsort((d, seed))  # by seed, then distortion (stable: the caller's tie-break order)
    seed, d, m = seed[order], d[order], m[order]
    perm_strata, clusters = np.asarray(perm_strata)[order], np.asarray(clusters)[order]
    boot_strata = np.asarray(boot_strata)[order]
    groups = [np.flatnonzero(seed == s) for s in np.unique(seed)]

    def stat(weights: np.ndarray, labels: np.ndarray) -> np.ndarray:
        out = []
        for g in groups:
            w, lab = weights[:, g], labels[:, g] if labels.ndim == 2 else labels[g]
            top = top_weights(w, fraction)
            with np.errstate(invalid="ignore", divide="ignore"):
                share_top = (top * lab).sum(axis=1) / top.sum(axis=1)
                share_all = (w * lab).sum(axis=1) / w.sum(axis=1)
                out.append(np.where(share_all > 0, share_top / share_all, np.nan))
        return _seed_mean(out)

    ones = np.ones((1, len(d)))
    observed = float(stat(ones, m)[0])
    in_top = np.zeros(len(d))
    for g in groups:
        in_top[g] = top_weights(ones[:, g], fraction)[0]
    null = _lift_null(m, in_top, np.asarray(perm_strata), groups, n_perm, gen)
    low, high = _interval(lambda w: stat(w, m), clusters, boot_strata, n_boot, gen)
    p, other = _sides(observed, null, side)
    return Result(observed, p, low, high, len(d), n_perm, n_boot, mc_se(p, n_perm), other)


def _lift_null(
    member: np.ndarray, in_top: np.ndarray, strata: np.ndarray, groups: list[np.ndarray], n_perm: int,
    gen: np.random.Generator,
) -> np.ndarray:  # fmt: skip
    """(n_perm,) lifts, mean over seeds (``groups``: each seed's rows), under shuffles of the 0/1
    ``member`` labels within ``strata`` with the top set (``in_top``, 0/1) fixed: in each stratum the
    number of members that land in the top set is drawn from its hypergeometric distribution
    (``Generator.hypergeometric``: the stratum's members, its other rows, its top rows), which is what
    a uniform shuffle of its labels gives; a seed's share of its runs that are members does not move."""
    out = []
    for g in groups:
        _, stratum = np.unique(strata[g], return_inverse=True)
        rows = np.bincount(stratum)
        members = np.bincount(stratum, weights=member[g]).round().astype(np.int64)
        top = np.bincount(stratum, weights=in_top[g]).round().astype(np.int64)
        landed = gen.hypergeometric(members, rows - members, top, size=(n_perm, len(rows))).sum(axis=1)
        share_all = members.sum() / len(g)
        with np.errstate(invalid="ignore", divide="ignore"):
            share_top = landed / float(top.sum())
            out.append(share_top / share_all if share_all > 0 else np.full(n_perm, np.nan))
    return _seed_mean(out)


def correlation(
    seed, x, y, perm_strata, clusters, boot_strata, *, method: str = "pearson", top_by=None,
    fraction: float = 1.0, n_perm: int | None = None, n_boot: int = N_BOOT, side: str = "two-sided",
    gen: np.random.Generator | None = None,
) -> Result:  # fmt: skip
    """Pearson or Spearman correlation of x and y within each seed, mean over seeds. With ``top_by``,
    only each seed's top ``fraction`` of rows ranked by ``top_by`` (ascending; rows in tie-break order)
    enter, as claim C3 asks.

    Permutation: ``x`` is shuffled within ``perm_strata`` (nested in seeds) among the rows that enter;
    the null is "x and y unrelated within strata". Bootstrap: clusters resampled within
    ``boot_strata``; top sets and ranks recomputed on each resample. ``n_perm``: :func:`draws` where None."""
    n_perm = draws() if n_perm is None else n_perm
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method={method!r} is unknown; valid: pearson, spearman")
    gen = gen or rng()
    seed = np.asarray(seed)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    key = np.zeros(len(x)) if top_by is None else np.asarray(top_by, dtype=float)
    order = np.lexsort((key, seed))
    seed, x, y, key = seed[order], x[order], y[order], key[order]
    perm_strata, clusters = np.asarray(perm_strata)[order], np.asarray(clusters)[order]
    boot_strata = np.asarray(boot_strata)[order]
    groups = [np.flatnonzero(seed == s) for s in np.unique(seed)]
    spearman = method == "spearman"

    def stat(weights: np.ndarray) -> np.ndarray:
        out = []
        for g in groups:
            w = weights[:, g]
            if top_by is not None:
                w = top_weights(w, fraction)
            xs, ys = (weighted_ranks(x[g], w), weighted_ranks(y[g], w)) if spearman else (x[g], y[g])
            out.append(weighted_pearson(xs, ys, w))
        return _seed_mean(out)

    ones = np.ones((1, len(x)))
    observed = float(stat(ones)[0])
    # the rows that enter on the real data (the permuted variable never changes which rows those are)
    inside = np.zeros(len(x), dtype=bool)
    for g in groups:
        inside[g] = top_weights(ones[:, g], fraction)[0] > 0 if top_by is not None else True
    rows = np.flatnonzero(inside)
    sub_seed = seed[rows]
    xr, yr = x[rows].copy(), y[rows].copy()
    sub_groups = [np.flatnonzero(sub_seed == s) for s in np.unique(sub_seed)]
    if spearman:  # ranks within each seed's rows, once: shuffling values shuffles their ranks
        for g in sub_groups:
            xr[g], yr[g] = stats.rankdata(xr[g]), stats.rankdata(yr[g])
    def null_of(idx: np.ndarray) -> np.ndarray:
        w = np.ones(idx.shape)
        return _seed_mean([weighted_pearson(xr[idx[:, g]], yr[g], w[:, g]) for g in sub_groups])

    null = _chunked(null_of, within_blocks(perm_strata[rows], n_perm, gen))
    low, high = _interval(stat, clusters, boot_strata, n_boot, gen)
    p, other = _sides(observed, null, side)
    return Result(observed, p, low, high, int(inside.sum()), n_perm, n_boot, mc_se(p, n_perm), other)


def mean(seed, value, clusters, boot_strata, *, n_boot: int = N_BOOT, gen=None) -> Result:
    """Mean over seeds of the per-seed mean of ``value``, with the cluster bootstrap interval; no
    permutation (there is no label to shuffle): ``p_value`` is NaN."""
    gen = gen or rng()
    seed, v = np.asarray(seed), np.asarray(value, dtype=float)
    groups = [np.flatnonzero(seed == s) for s in np.unique(seed)]

    def stat(weights: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return _seed_mean([(weights[:, g] * v[g]).sum(1) / weights[:, g].sum(1) for g in groups])

    observed = float(stat(np.ones((1, len(v))))[0])
    low, high = _interval(stat, clusters, boot_strata, n_boot, gen)
    return Result(observed, math.nan, low, high, len(v), 0, n_boot, math.nan)


def _sides(observed: float, null: np.ndarray, side: str) -> tuple[float, float]:
    """(p on ``side``, the other tail's p, NaN for a two-sided test)."""
    return tails(observed, null, side) if side != "two-sided" else (p_value(observed, null, side), math.nan)


def _chunked(stat, blocks: Iterator[np.ndarray]) -> np.ndarray:
    """``stat`` over the permutations block by block (:func:`within_blocks`), to bound memory."""
    return np.concatenate([stat(idx) for idx in blocks] or [np.array([])])


def at_floor(p: float, n_perm: int) -> bool:
    """Whether a permutation p-value is the smallest its B permutations can give, 1/(1 + B): no
    permutation reached the observed statistic, so the p-value is only a bound, p ≤ 1/(1 + B)."""
    return bool(n_perm and np.isfinite(p) and p <= (1 + 1e-9) / (1 + n_perm))
