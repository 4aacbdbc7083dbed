"""The mutual information beside its ceiling: the aggregate-posterior estimate
(``sweep.metrics.mutual_information``, ``test/mutual_information``) is at most log N, N the test images
pooled into the aggregate posterior, and an estimate at that ceiling says how many images were pooled,
not how much the code carries. Every run gets its ceiling (recorded, or for runs stored before it was,
derived from the test images they recorded) and a flag when its estimate is within
:data:`MI_CEILING_TOLERANCE` of it; the report and its tables show both beside the estimate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MI = "test/mutual_information"
CEILING = "test/mutual_information_ceiling"
AT_CEILING = "test/mutual_information_at_ceiling"
N_TEST = "test/fid_real"  # the test images of the evaluation (FID's real side): the N of the ceiling
FLAG = "at the ceiling: uninformative"
# Nats. Each term of the estimate is log N + log p(n | z_n), where p(n | z_n) = 1 / (1 + r_n) is the
# share of the aggregate posterior's density at z_n held by z_n's own image and r_n that of the N − 1
# others, so log N − MI = δ = E[log(1 + r_n)]. If the others overlap z_n in proportion to their number
# (r_n ∝ N − 1), d MI / d log N = 1 − E[r_n / (1 + r_n)] ≥ 1 − δ (as r/(1 + r) ≤ log(1 + r)): within
# 0.1 nats of the ceiling at least 90 % of a change in N passes into the estimate (doubling the test set
# adds ≥ 0.62 nats), and each code points back to its own image with a geometric-mean probability
# e^−δ ≥ 0.90. Such an estimate measures the test set's size, not the encoder.
MI_CEILING_TOLERANCE = 0.1


def with_ceiling(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with :data:`CEILING` (log N: the recorded value, else log of :data:`N_TEST` for runs
    stored before it was recorded; null where neither is known) and :data:`AT_CEILING` (the estimate
    within :data:`MI_CEILING_TOLERANCE` of it; null where either is null). A table without the
    estimate is returned as it is."""
    if MI not in runs.columns:
        return runs
    out = runs.copy()
    recorded, n = (_floats(out, c) for c in (CEILING, N_TEST))
    out[CEILING] = recorded.fillna(np.log(n.where(n >= 1)))
    out[AT_CEILING] = at_ceiling(out[MI], out[CEILING])
    return out


def _floats(runs: pd.DataFrame, column: str) -> pd.Series:
    """``column`` as float64, NaN where a value is missing or not a number (all NaN without the column)."""
    if column not in runs.columns:
        return pd.Series(np.nan, index=runs.index)
    return pd.to_numeric(runs[column], errors="coerce").astype("float64")


def at_ceiling(mi: pd.Series, ceiling: pd.Series) -> pd.Series:
    """Whether each estimate lies within :data:`MI_CEILING_TOLERANCE` of its ceiling (nullable
    boolean: null where the estimate or the ceiling is missing)."""
    mi, ceiling = (pd.to_numeric(s, errors="coerce").astype("float64") for s in (mi, ceiling))
    flag = (ceiling - mi <= MI_CEILING_TOLERANCE).astype("boolean")
    return flag.mask(mi.isna() | ceiling.isna())


def flag_words(flag: pd.Series) -> pd.Series:
    """:data:`AT_CEILING` as the tables show it: :data:`FLAG`, ``below`` or empty (unknown)."""
    return flag.map(lambda f: "" if pd.isna(f) else FLAG if f else "below").astype(object)


def flag_aggregates(table: pd.DataFrame) -> pd.DataFrame:
    """A seed-aggregate table (``<metric>/mean`` columns) with :data:`AT_CEILING` placed after the
    ceiling's columns: the configuration's mean estimate within the tolerance of its mean ceiling."""
    if f"{MI}/mean" not in table.columns or f"{CEILING}/mean" not in table.columns:
        return table
    out = table.copy()
    at = list(out.columns).index(f"{CEILING}/n") + 1
    out.insert(at, AT_CEILING, at_ceiling(out[f"{MI}/mean"], out[f"{CEILING}/mean"]))
    return out


def summary(runs: pd.DataFrame) -> str | None:
    """The report's line on the estimate: its ceiling(s) and how many evaluated runs sit at it; None
    where no run has an estimate."""
    if AT_CEILING not in runs.columns:
        return None
    known = runs[runs[AT_CEILING].notna()]
    if not len(known):
        return None
    ceilings = ", ".join(f"{c:.3f}" for c in sorted(known[CEILING].unique()))
    n_at = int(known[AT_CEILING].astype(bool).sum())
    return (
        f"mutual information ({MI}): at most its ceiling log N ({ceilings} nats, N the test images); "
        f"{n_at} of {len(known)} runs with an estimate are within {MI_CEILING_TOLERANCE:g} nats of it, "
        f"{FLAG} (read the rate and the active units there instead)"
    )
