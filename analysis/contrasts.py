"""Matched contrasts between architecture families, on the configuration table (``analysis.units``), and
the multiplicity adjustment of the claims family.

A contrast compares two groups of families of one factor (say encoders ``dense1`` against ``conv2``)
**matched on the cells** the claim holds fixed (say latent size × decoder): in each cell where both
groups are present, the difference ``mean(metric of the other group) − mean(metric of the claimed
group)``; the statistic is the mean of those cell differences, so a positive value (in nats, for a loss)
says the claimed group is better. Each cell is one matched pair of configurations (or a small block
when a group holds several families), so the design's other factors cancel inside it.

* **Test**: a stratified permutation test of "the group label does not matter within a cell": the labels
  are shuffled within each cell (for one family against one, a sign flip of the cell's difference: the
  paired permutation test; Good 2005, ch. 3), ``permutation.N_PERM`` draws from a fixed seed,
  p = (1 + #≥)/(1 + B) (Phipson & Smyth 2010) in each tail; the claims decide on the
  two-sided p, 2 × the smaller tail.
* **Interval**: percentile bootstrap over cells, resampled within latent sizes (every resample keeps the
  design's composition), ``permutation.N_BOOT`` resamples.
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


def paired(
    units: pd.DataFrame, metric: str, factor: str, claimed, other, cells: list[str], *,
    n_perm: int = permutation.N_PERM, n_boot: int = permutation.N_BOOT, gen: np.random.Generator | None = None,
) -> permutation.Result:  # fmt: skip
    """The matched contrast ``other − claimed`` of ``metric`` over ``cells`` (see the module docstring);
    ``claimed`` and ``other`` are sets of values of ``factor``. Rows outside both groups, with a
    non-finite metric, or in a cell that lacks either group are left out. ``n_runs`` of the result
    counts the configurations used; a contrast without a matched cell is NaN throughout."""
    rows = matched(units, metric, factor, claimed, other, cells)
    return paired_test(rows, metric, factor, other, cells, n_perm=n_perm, n_boot=n_boot, gen=gen)


def paired_test(
    rows: pd.DataFrame, metric: str, factor: str, other, cells: list[str], *,
    n_perm: int = permutation.N_PERM, n_boot: int = permutation.N_BOOT, gen: np.random.Generator | None = None,
) -> permutation.Result:  # fmt: skip
    """:func:`paired` on rows :func:`matched` already chose (a caller that also needs them)."""
    gen = gen or permutation.rng()
    if not len(rows):
        return _empty(n_perm, n_boot)
    label = rows[factor].astype(str).isin(set(other)).to_numpy(dtype=float)  # 1: other, 0: claimed
    x = numeric(rows, metric).to_numpy()
    cell = np.unique(permutation.codes(rows, cells), return_inverse=True)[1]
    # per-cell sums by np.add.reduceat over the rows grouped by cell, not a one-hot matrix product, whose
    # BLAS threads stall on a busy machine (a 100-configuration claims check: 8.8 s with it, 2.0 s)
    order = np.argsort(cell, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(cell[order]) != 0])
    size, xs = np.bincount(cell).astype(float), x[order]

    def diffs(lab: np.ndarray) -> np.ndarray:  # (B, n) labels -> (B, cells) other − claimed
        lab = lab[:, order]
        s1, c1 = np.add.reduceat(lab * xs, starts, axis=1), np.add.reduceat(lab, starts, axis=1)
        s0 = np.add.reduceat((1 - lab) * xs, starts, axis=1)
        return s1 / c1 - s0 / (size - c1)

    observed_cells = diffs(label[None, :])[0]
    observed = float(observed_cells.mean())
    perms = permutation.within(cell, n_perm, gen)
    null = np.concatenate(
        [diffs(label[perms[i : i + 2000]]).mean(axis=1) for i in range(0, n_perm, 2000)] or [np.array([])]
    )
    p, p_other = permutation.tails(observed, null, "greater")
    low = high = math.nan
    cell_latent = pd.Series(permutation.codes(rows, ["latent_dim"])).groupby(cell).first().to_numpy()
    ids = np.arange(len(observed_cells))
    if n_boot and permutation.resamplable(ids, cell_latent):
        w = permutation.cluster_weights(ids, cell_latent, n_boot, gen)
        low, high = permutation.percentile((w * observed_cells).sum(axis=1) / w.sum(axis=1))
    return permutation.Result(
        observed, p, low, high, len(rows), n_perm, n_boot, permutation.mc_se(p, n_perm), p_other
    )


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


def _empty(n_perm: int, n_boot: int) -> permutation.Result:
    return permutation.Result(math.nan, math.nan, math.nan, math.nan, 0, n_perm, n_boot, math.nan)


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
