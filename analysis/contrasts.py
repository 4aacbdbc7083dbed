"""Matched contrasts between architecture families, on the configuration table (``analysis.units``), and
the multiplicity adjustment of the claims family.

A contrast compares two groups of families of one factor (say encoders ``dense1`` against ``conv2``)
**matched on the cells** the claim holds fixed (say latent size × decoder): in each cell where both
groups are present, the difference ``mean(metric of the other group) − mean(metric of the claimed
group)``; the statistic is the mean of those cell differences, so a positive value (in nats, for a loss)
says the claimed group is better. Each cell is one matched pair of configurations (or a small block
when a group holds several families), so the design's other factors cancel inside it.

* **Test**: a sign-flip (randomisation) test of the cell gaps (Fisher 1935; Good 2005, ch. 3): each
  cell's gap keeps or flips its sign: where k <= ``EXACT_CELLS`` (20, the G0 grid's cells) every one of
  the 2^k − 1 patterns but the identity once (:func:`every_pattern`, meet in the middle), an exact p
  (``exact``), (1 + #≥)/2^k in each tail; beyond, each sign drawn with probability 1/2, independently,
  ``permutation.draws()`` draws from a fixed seed, p = (1 + #≥)/(1 + B) (Phipson & Smyth 2010); the
  claims decide on the two-sided p, 2 × the smaller tail. (Until the afternoon of 2026-12-06 the enumeration stopped at
  2^k − 1 <= 10,000, k <= 13, so the grid's contrasts carried Monte Carlo error and a floor of 2e-4.) Its null hypothesis is the
  claim's: each cell's gap is symmetric about 0 (the groups' means do not differ), whatever the
  families inside one group do; where the gap differs between cells it is conservative. For one family
  against one it is the within-cell label shuffle it replaced (each cell's two labels swapped or not);
  for groups of several families (C5a: 2 dense against 3 conv decoders; C5b: conv1 against conv2 and
  conv4) the label shuffle tested that *every* family of the cell is exchangeable, so its size hung on
  how the families of one group differ: with a mean gap of 0 it rejected in 0.175 of synthetic grids
  where the cells' gaps vary and in none where the deep conv families differ from each other
  (tests/test_unit_level.py), and on the reproduction gave C5b p = 0.40 where the sign flip gives 0.24.
* **Interval**: the test inverted (:func:`inverted_interval`): the shifts δ of the other group that the
  two-sided test does not reject at 0.05, computed exactly from the same sign draws, so the interval
  excludes 0 exactly where the two-sided p is at most 0.05, and its coverage is the test's level under
  the shift model (tests/test_unit_level.py: 0.95–0.96 on planted gaps; conservative, as the test is,
  where the gap differs between cells). It replaced a percentile bootstrap over cells within latent
  sizes, which with the grid's 5 cells per latent size covered the same planted gaps in 0.90–0.93 of
  draws, and could exclude 0 beside a two-sided p of 0.26.
* **Multiplicity**: :func:`holm` adjusts the family of tests the verdicts rest on (Holm 1979; equal to
  ``statsmodels``'); each verdict is decided on its adjusted p and the statistic's side.

    from analysis import contrasts
    res = contrasts.paired(units, "test/distortion", "family/encoder", {"dense1"}, {"conv2"},
                           ["latent_dim", "family/decoder"])
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import permutation
from analysis.claim_stats import numeric

INTERVAL = "inverted sign-flip test"  # how a contrast's interval is made (permutation.Result.interval)
EXACT_CELLS = 20  # up to this many cells every sign pattern is counted (2^20 − 1 = 1,048,575; ~0.05 s)


def paired(
    units: pd.DataFrame, metric: str, factor: str, claimed, other, cells: list[str], *,
    n_perm: int | None = None, gen: np.random.Generator | None = None,
) -> permutation.Result:  # fmt: skip
    """The matched contrast ``other − claimed`` of ``metric`` over ``cells`` (see the module docstring);
    ``claimed`` and ``other`` are sets of values of ``factor``. Rows outside both groups, with a
    non-finite metric, or in a cell that lacks either group are left out. ``n_runs`` of the result
    counts the configurations used; a contrast without a matched cell is NaN throughout."""
    rows = matched(units, metric, factor, claimed, other, cells)
    return paired_test(rows, metric, factor, other, cells, n_perm=n_perm, gen=gen)


def paired_test(
    rows: pd.DataFrame, metric: str, factor: str, other, cells: list[str], *,
    n_perm: int | None = None, gen: np.random.Generator | None = None,
) -> permutation.Result:  # fmt: skip
    """:func:`paired` on rows :func:`matched` already chose (a caller that also needs them). ``n_perm``
    None (the claims): exact up to ``EXACT_CELLS`` cells, :func:`permutation.draws` random patterns
    beyond; a number: that many random patterns, exact only where 2^k − 1 <= n_perm."""
    gaps = cell_gaps(rows, metric, factor, other, cells) if len(rows) else []
    return sign_flip(gaps, len(rows), n_perm=n_perm, gen=gen)


def sign_flip(
    gaps, n_units: int, *, side: str = "greater", n_perm: int | None = None,
    gen: np.random.Generator | None = None,
) -> permutation.Result:  # fmt: skip
    """The sign-flip test of the mean of ``gaps`` (one value per cell, each symmetric about 0 under the
    null) and its inverted interval, as the module docstring says; ``p_value`` is ``side``'s tail
    ("greater" or "less") and ``p_other`` the other; ``n_units``: the configurations behind the gaps.
    ``n_perm`` as in :func:`paired_test`."""
    gen = gen or permutation.rng()
    chosen, n_perm = n_perm is not None, permutation.draws() if n_perm is None else n_perm
    gaps = np.asarray(gaps, dtype=float)
    if not len(gaps):
        return _empty(n_perm)
    observed, k = float(gaps.mean()), len(gaps)
    # the claims' rule: every pattern up to EXACT_CELLS cells; a caller naming n_perm (a simulation of
    # the test, drawn thousands of times) gets n_perm random patterns unless those would cover them all
    exact = 2**k - 1 <= n_perm or (not chosen and k <= EXACT_CELLS)
    if exact:  # every sign pattern once, the identity (all kept) left out: (1 + #≥)/2^k is the exact p
        null, slope = every_pattern(gaps)
    else:  # each cell's gap keeps or flips its sign, independently, with probability 1/2
        signs = 1.0 - 2.0 * gen.integers(0, 2, size=(n_perm, k))
        null, slope = signs @ gaps / k, signs.mean(axis=1)  # a shift δ moves draw b's statistic by −δ·slope
    p, p_other = permutation.tails(observed, null, side)
    low, high = inverted_interval(observed, null, slope)
    return permutation.Result(
        observed, p, low, high, n_units, len(null), 0, 0.0 if exact else permutation.mc_se(p, len(null)),
        p_other, interval=INTERVAL, exact=exact,
    )  # fmt: skip


def every_pattern(gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sign-flip statistic (mean of the signed gaps) and its slope (mean of the signs: a shift δ of
    the other group moves a pattern's statistic by −δ·slope) under each of the 2^k − 1 sign patterns but
    the identity. Meet in the middle: the signed sums of the first half of the cells and of the second,
    2^(k/2) each, added in every pair, so k = 20 costs two 1,024-vectors and one outer sum (8 MiB), not a
    2^20 × 20 sign matrix. Pattern b flips cell j where bit j of b is set: pattern 0 is the identity."""
    gaps = np.asarray(gaps, dtype=float)
    k = len(gaps)
    half = k // 2

    def signed(part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        signs = 1.0 - 2.0 * ((np.arange(2 ** len(part))[:, None] >> np.arange(len(part))) & 1)
        return signs @ part, signs.sum(axis=1)

    (low_sum, low_count), (high_sum, high_count) = signed(gaps[:half]), signed(gaps[half:])
    null = (high_sum[:, None] + low_sum[None, :]).ravel()[1:] / k
    slope = (high_count[:, None] + low_count[None, :]).ravel()[1:] / k
    return null, slope


def inverted_interval(
    observed: float, null: np.ndarray, slope: np.ndarray, level: float = permutation.CI_LEVEL
) -> tuple[float, float]:
    """The shifts δ that the two-sided randomisation test does not reject at ``1 − level``: the
    confidence set of the shift model "the other group is the claimed one plus δ in every cell"
    (Lehmann 1975 ch. 1; Ernst, *Statist. Sci.* 19:676, 2004), from the test's own draws (``null``: each
    draw's statistic), so the interval excludes 0 exactly where the two-sided p (2 × the smaller tail)
    is at most ``1 − level``.

    Subtracting δ from the other group moves the observed statistic T by −δ and draw b's T_b by
    −δ·k_b (``slope``; for the sign flip, the mean of b's signs, 1 where no cell flips), so b counts in
    the upper tail iff δ ≥ t_b = (T − T_b)/(1 − k_b) and in the lower one iff δ ≤ t_b (a draw with
    k_b = 1 counts in both, always). Each tail's p rises above (1 − level)/2 past an order statistic of
    the t_b: the bounds are those. NaNs where a bound does not exist (too few cells to reject any δ)."""
    null, slope = np.asarray(null, dtype=float), np.asarray(slope, dtype=float)
    if not np.isfinite(observed) or not len(null):
        return math.nan, math.nan
    moving = slope < 1 - 1e-9
    t = (observed - null[moving]) / (1 - slope[moving])
    ties = len(null) - len(t)  # permutations in both tails at every δ
    # a tail's p = (1 + ties + count)/(1 + B) must exceed (1 − level)/2: count >= m
    m = math.floor((1 - level) / 2 * (1 + len(null)) - 1 - ties) + 1
    if m <= 0 or m > len(t):
        return math.nan, math.nan
    t = np.partition(t, [m - 1, len(t) - m])  # the two order statistics, without sorting 2^20 values
    # a bound that is 0 in exact arithmetic (gaps on a lattice, as rank correlations are) comes out as
    # rounding error, 1e-16, beside a p just above 0.05: it is 0, and the interval then holds 0
    tiny = 1e-12 * max(abs(observed), float(np.abs(null).max()))
    return tuple(0.0 if abs(b) <= tiny else float(b) for b in (t[m - 1], t[len(t) - m]))


def cell_gaps(rows: pd.DataFrame, metric: str, factor: str, other, cells: list[str]) -> np.ndarray:
    """Each cell's gap, ``mean(metric of the other group) − mean(metric of the claimed group)``, in
    the order of the cells' codes; ``rows`` as :func:`matched` returns them (every cell holds both)."""
    frame = pd.DataFrame({
        "cell": permutation.codes(rows, cells), "other": rows[factor].astype(str).isin(set(other)).to_numpy(),
        "x": numeric(rows, metric).to_numpy(),
    })  # fmt: skip
    means = frame.groupby(["cell", "other"])["x"].mean().unstack("other")
    return (means[True] - means[False]).to_numpy(dtype=float)


def matched(units: pd.DataFrame, metric: str, factor: str, claimed, other, cells: list[str]) -> pd.DataFrame:
    """The configurations a contrast uses: rows of either group with a finite ``metric``, in a cell of
    ``cells`` that holds both groups (empty when there is none)."""
    claimed, other = set(claimed), set(other)
    if factor not in units.columns or not len(units):
        return units.iloc[:0]
    fam = units[factor].astype(str)
    rows = units[(fam.isin(claimed) | fam.isin(other)) & np.isfinite(numeric(units, metric))]
    if not len(rows):
        return rows
    label = rows[factor].astype(str).isin(other).to_numpy(dtype=float)
    cell = permutation.codes(rows, cells)
    both = pd.Series(label).groupby(cell).agg(lambda s: 0 < s.sum() < len(s)).to_numpy()
    return rows[both[cell]]


def _empty(n_perm: int) -> permutation.Result:
    return permutation.Result(math.nan, math.nan, math.nan, math.nan, 0, n_perm, 0, math.nan, interval=INTERVAL)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values of one family (NaN entries stay NaN and are not counted):
    the k-th smallest p times (m − k + 1), made monotone, at most 1. This is
    ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]`` (the tests compare the two), written
    out because that function runs ``gc.collect()`` on every call, 0.1–0.5 s in a process holding a
    sweep's tables, and the budget analysis calls it once per epoch and arm."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    out[order] = np.minimum(np.maximum.accumulate(p[order] * np.arange(m, 0, -1)), 1.0)
    return out
