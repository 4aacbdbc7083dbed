"""The experimental unit of the claims check: the **configuration** (latent size × encoder × decoder, and
any other config key that varies), not the run.

The seeds of one configuration train the same model from other initialisations; in the committed
reproduction they nearly copy one another (distortion ranks correlate 0.98 across seeds). Treating each
seed as new evidence understates every null spread (a per-seed shuffle of architecture labels assumes
three independent draws where there is about one). So every claim test here works on one row per
configuration: the mean over its seeds of each metric (a flag becomes the fraction of seeds that raise
it). Seeds are replicates inside the unit; a sweep of one seed is the same table with one replicate each.

    from analysis import units
    table = units.config_means(ok_runs)     # one row per configuration, ``n_seeds`` replicates each
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import rank

FLAGS = ("collapsed", "paper_collapsed", "partial")  # booleans averaged into a fraction of seeds
UNIT = "configuration"


def config_means(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration of ``runs`` (``rank.with_config_id``'s ``config``): the mean over its
    runs of every numeric column, the fraction of its runs raising each of ``FLAGS``, the first value of
    every other column (constant within a configuration: its labels and config keys), ``n_seeds`` (the
    runs averaged) and ``run_name`` set to the configuration (the tie-break order of the tests). The
    ``seed`` column is 0 for every row: the unit table is one replicate-free "seed" to the tests."""
    if not len(runs):
        return runs.assign(n_seeds=pd.Series(dtype=int), config=pd.Series(dtype=str))
    df = rank.with_config_id(runs)
    numeric = [
        c for c in df.columns
        if c not in ("seed", *FLAGS) and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]  # fmt: skip
    groups = df.groupby("config", sort=True, dropna=False)
    out = groups.first()
    out[numeric] = groups[numeric].mean()
    for flag in FLAGS:
        if flag in df.columns:
            values = df[flag].astype("boolean").astype("Float64").to_numpy(dtype=float, na_value=np.nan)
            out[flag] = pd.Series(values, index=df.index).groupby(df["config"]).mean()
    out["n_seeds"] = groups.size()
    out = out.reset_index()
    out["run_name"] = out["config"]
    out["seed"] = 0
    return out


def counts(runs: pd.DataFrame) -> tuple[int, int]:
    """(configurations, runs) in ``runs``."""
    if not len(runs):
        return 0, 0
    return int(rank.with_config_id(runs)["config"].nunique()), len(runs)
