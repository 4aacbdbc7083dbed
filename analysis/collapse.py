"""Posterior-collapse counts and rates of a sweep's run table, by configuration and by factor.

The flags come from evaluation (``sweep/metrics.py``, docs/protocol.md "Collapse flags"): ``collapsed`` (no
active unit and rate < 0.1 nats), ``partial`` (some but not all units active), ``paper_collapsed``
(rate < 1e-6 nats, the paper's floor). A run is *evaluated* when its status is ``ok`` and its flag is
not null; every other run (diverged, failed, not yet evaluated) is counted as not evaluated, never
dropped silently.

    from analysis import collapse
    collapse.collapse_table(runs)                    # latent size × encoder × decoder counts
    collapse.collapse_by_factor(runs, "loss.reduction")
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.rank import BASE_CONFIG

FLAGS = ("collapsed", "partial", "paper_collapsed")
Z95 = 1.959963984540054  # standard-normal 97.5 % quantile: two-sided 95 % Wilson intervals


def flag(runs: pd.DataFrame, name: str) -> pd.Series:
    """Flag ``name`` as a nullable boolean: null where the run is not ok or was not evaluated."""
    if name not in runs.columns:
        return pd.Series(pd.NA, index=runs.index, dtype="boolean")
    values = runs[name].astype("boolean")
    if "status" in runs.columns:
        values = values.mask(~runs["status"].astype(str).eq("ok"))
    return values


def evaluated(runs: pd.DataFrame) -> pd.Series:
    """Status ok and every collapse flag present in the table non-null."""
    present = [f for f in FLAGS if f in runs.columns] or list(FLAGS)
    mask = pd.Series(True, index=runs.index)
    for f in present:
        mask &= flag(runs, f).notna()
    return mask


def collapse_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Counts per latent size × encoder family × decoder family: ``n`` (runs of any status),
    ``n_collapsed``, ``n_partial``, ``n_paper_collapsed`` (flag true among evaluated runs) and
    ``n_not_evaluated`` (status not ok, or a flag null). Sorted by the three keys."""
    cols = [*BASE_CONFIG, "n", *(f"n_{f}" for f in FLAGS), "n_not_evaluated"]
    keys = [k for k in BASE_CONFIG if k in runs.columns]
    if not len(runs) or len(keys) < len(BASE_CONFIG):
        return pd.DataFrame(columns=cols)
    ev = evaluated(runs)
    df = pd.DataFrame({k: runs[k] for k in keys})
    df["n"] = 1
    for f in FLAGS:
        df[f"n_{f}"] = (flag(runs, f).fillna(False) & ev).astype(int)
    df["n_not_evaluated"] = (~ev).astype(int)
    out = df.groupby(keys, dropna=False, sort=True).sum().reset_index()
    return out[cols]


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion: centre (p + z²/2n) / (1 + z²/n), half-width
    z √(p(1−p)/n + z²/4n²) / (1 + z²/n). (NaN, NaN) when n = 0."""
    if n <= 0:
        return np.nan, np.nan
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 (k = n) the bound is exactly 0 (1); say so rather than leave rounding noise
    return (0.0 if successes == 0 else centre - half), (1.0 if successes == n else centre + half)


def collapse_by_factor(runs: pd.DataFrame, factor: str, flag_name: str = "collapsed") -> pd.DataFrame:
    """Per value of ``factor``: ``n`` (runs), ``n_evaluated``, ``n_collapsed`` (``flag_name`` true),
    ``rate`` = n_collapsed / n_evaluated and its Wilson 95 % interval ``ci_low``/``ci_high``, and
    ``n_not_evaluated``; ``flag`` names the flag used. Sorted by the factor."""
    cols = [factor, "flag", "n", "n_evaluated", "n_collapsed", "rate", "ci_low", "ci_high", "n_not_evaluated"]
    if flag_name not in FLAGS:
        raise ValueError(f"flag_name={flag_name!r} is unknown; valid: {', '.join(FLAGS)}")
    if not len(runs) or factor not in runs.columns:
        return pd.DataFrame(columns=cols)
    values = flag(runs, flag_name)
    rows = []
    for value, group in runs.groupby(factor, dropna=False, sort=True):
        v = values[group.index]
        n_eval, n_coll = int(v.notna().sum()), int(v.fillna(False).sum())
        low, high = wilson_interval(n_coll, n_eval)
        rate = n_coll / n_eval if n_eval else np.nan
        rows.append((value, flag_name, len(group), n_eval, n_coll, rate, low, high, len(group) - n_eval))
    return pd.DataFrame(rows, columns=cols)
