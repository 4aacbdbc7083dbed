"""Rankings, top sets, base-rate-normalised win rates and seed aggregates of a sweep's run table.

Every function takes ``Sweep.runs`` (``analysis.collect.load_sweep``): one row per run. Only runs with
``status == "ok"`` and a non-null metric are ranked; diverged/failed runs are left to the caller to
count (``collapse.collapse_table`` does). Rankings are ascending (every criterion is lower-is-better) with
ties broken by ``run_name``, so the output is deterministic for the same input.

    from analysis.collect import load_sweep
    from analysis import rank
    runs = load_sweep("results/sweeps/paper").runs
    top = rank.top_set(runs)                                   # the paper's top 25 % by reconstruction
    rank.base_rates(runs, top, "family/encoder")               # win rates next to how many were trained
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from sweep.keys import is_protocol

# The paper ranks by reconstruction loss; −ELBO, IWAE NLL (every normalised likelihood) and the FID of
# prior samples (sample quality, sweep/fid_kid.py) are ours.
CRITERIA = {
    "recon": "test/distortion",
    "neg_elbo": "test/neg_elbo",
    "iwae": "test/iwae_nll",
    "fid": "test/fid_prior",
}
TOP_FRACTION = 0.25  # the paper's "top 25 %"
CUTOFFS = (0.10, 0.25, 0.50)  # cut-offs of the top-set sensitivity table
CI_LEVEL = 0.95  # Student-t intervals over seeds

# A configuration is a latent size × encoder family × decoder family, plus any other config key that varies.
# Collapse tables, figures and the report group by the same three columns.
BASE_CONFIG = ("latent_dim", "family/encoder", "family/decoder")
PLAIN_CONFIG = ("epochs", "batch_size", "lr")  # config keys without a dot in their flattened name
# Keys that never change what a run learns or how it is scored (paths, logging, chunk sizes, threads),
# the seed (the replicate axis), and the kind/depth keys the families already spell.
BOOKKEEPING = {
    "seed",
    "results_dir",
    "sweep_name",
    "progress",
    "num_threads",
    "device.requested",
    "train.eval_test_each_epoch",
    "eval.iwae_image_chunk",
    "eval.iwae_sample_chunk",
    "eval.mi_chunk",
    "encoder.kind",
    "encoder.depth",
    "decoder.kind",
    "decoder.depth",
}


def protocol_columns(runs: pd.DataFrame) -> list[str]:
    """The protocol keys (:func:`sweep.keys.is_protocol`: dataset, epochs, loss, evaluation profile)
    that take more than one value in ``runs``, sorted: the columns of a protocol group. Runs that
    differ in one of them mean different things by the same number and are never ranked, counted or
    averaged together; none for a sweep of one protocol."""
    return sorted(c for c in runs.columns if is_protocol(c) and _varies(runs[c]))


def per_protocol(
    table: Callable[[pd.DataFrame], pd.DataFrame], runs: pd.DataFrame, across: tuple[str, ...] = ()
) -> pd.DataFrame:
    """``table`` computed on each protocol group of ``runs`` alone, the group's columns first, groups
    in order; ``table(runs)`` itself where the runs hold one group. ``across``: protocol columns the
    table compares (e.g. collapse by ``loss.reduction``), kept inside each group."""
    cols = [c for c in protocol_columns(runs) if c not in across]
    if not cols:
        return table(runs)
    parts = []
    for values, group in runs.groupby(cols, dropna=False, sort=True):
        part = table(group.reset_index(drop=True))
        part = part.drop(columns=[c for c in cols if c in part.columns])
        for i, (c, v) in enumerate(zip(cols, values, strict=True)):
            part.insert(i, c, v)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def metric_of(criterion: str) -> str:
    """The run-table column a criterion name ranks by; ValueError naming the valid ones."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion={criterion!r} is unknown; valid: {', '.join(CRITERIA)}")
    return CRITERIA[criterion]


def _varies(col: pd.Series) -> bool:
    return col.astype(str).nunique() > 1  # str: None and NaN count as one value, lists stay hashable


def config_columns(runs: pd.DataFrame) -> list[str]:
    """Columns that identify a configuration apart from the seed: ``latent_dim``, ``family/encoder``,
    ``family/decoder`` (those present), then every other flattened config key (a dotted name, or
    ``epochs``/``batch_size``/``lr``) that takes more than one value in ``runs``, sorted by name;
    bookkeeping keys (``BOOKKEEPING``) never count."""
    base = [c for c in BASE_CONFIG if c in runs.columns]
    extra = sorted(
        c
        for c in runs.columns
        if ("." in c or c in PLAIN_CONFIG) and c not in BOOKKEEPING and c not in base and _varies(runs[c])
    )
    return base + extra


def _labels(runs: pd.DataFrame) -> pd.Series:
    """The paper label of each row (``label``), or ``L{latent}_{encoder}_{decoder}`` from the families."""
    if "label" in runs.columns:
        return runs["label"].astype(str)
    if all(c in runs.columns for c in BASE_CONFIG):
        enc, dec = runs["family/encoder"].astype(str), runs["family/decoder"].astype(str)
        return "L" + runs["latent_dim"].astype(str) + "_" + enc + "_" + dec
    return pd.Series("", index=runs.index, dtype=str)


def id_columns(runs: pd.DataFrame) -> list[str]:
    """The varying extra config keys that tell apart runs sharing a label (e.g. ``loss.reduction`` in
    the ablation); keys the label already determines (``encoder.width`` per kind) are left out."""
    extra = config_columns(runs)[len([c for c in BASE_CONFIG if c in runs.columns]) :]
    if not extra or not len(runs):
        return []
    labels = _labels(runs)
    return [c for c in extra if (runs[c].astype(str).groupby(labels).nunique() > 1).any()]


def arm_name(keys: list[str], values) -> str:
    """An arm's name, as every table and figure spells it: ``key=value`` for each of ``keys`` (a
    groupby key: a tuple, or one value for one key), e.g. ``encoder.norm=batch loss.reduction=sum``."""
    values = values if isinstance(values, tuple) else (values,)
    return " ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True))


def with_config_id(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``runs`` with ``config``: the paper label plus ``key=value`` for each of ``id_columns``,
    e.g. ``L25_DNN1_CNN4 loss.reduction=paper``; the same for every seed of a configuration."""
    out = runs.copy()
    config = _labels(runs)
    for c in id_columns(runs):
        config = config + f" {c}=" + runs[c].astype(str)
    out["config"] = config
    return out


def _ok(runs: pd.DataFrame) -> pd.Series:
    if "status" not in runs.columns:
        return pd.Series(True, index=runs.index)
    return runs["status"].astype(str).eq("ok")


def ranked_mask(runs: pd.DataFrame, criterion: str = "recon") -> pd.Series:
    """Rows that a ranking by ``criterion`` uses: status ok with a finite metric."""
    metric = metric_of(criterion)
    if metric not in runs.columns:
        return pd.Series(False, index=runs.index)
    values = pd.to_numeric(runs[metric], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return _ok(runs) & pd.Series(np.isfinite(values), index=runs.index)


FID_CLASSIFIER = "test/fid_classifier"  # the checksum of the feature classifier an FID was computed with


def several_classifiers(runs: pd.DataFrame) -> bool:
    """Whether ``runs`` hold FIDs of more than one feature classifier (different quantities)."""
    return FID_CLASSIFIER in runs.columns and runs[FID_CLASSIFIER].dropna().astype(str).nunique() > 1


def ranking(runs: pd.DataFrame, criterion: str = "recon") -> pd.DataFrame:
    """Ok runs with a finite metric, ascending by the criterion's metric (ties by ``run_name``), with
    ``rank`` (1-based, consecutive) and ``criterion`` (the name, e.g. ``recon``) columns. By FID, runs
    scored with different feature classifiers (``test/fid_classifier``) are ranked apart, each from 1:
    their FIDs are not one quantity."""
    metric = metric_of(criterion)
    out = runs[ranked_mask(runs, criterion)].copy()
    apart = criterion == "fid" and several_classifiers(out)
    if len(out):
        keys = ([FID_CLASSIFIER] if apart else []) + [metric] + (["run_name"] if "run_name" in out.columns else [])
        out = out.sort_values(keys, kind="mergesort").reset_index(drop=True)
    else:
        out = out.reset_index(drop=True)
    out["rank"] = (
        out.groupby(FID_CLASSIFIER, dropna=False).cumcount().to_numpy() + 1 if apart else np.arange(1, len(out) + 1)
    )  # a run without a recorded classifier: a group of its own
    out["criterion"] = criterion
    return out


def top_set(runs: pd.DataFrame, criterion: str = "recon", fraction: float = TOP_FRACTION) -> pd.DataFrame:
    """The first ``ceil(fraction × n_ranked)`` rows of ``ranking(runs, criterion)``; fraction in (0, 1]."""
    if not (isinstance(fraction, int | float) and 0 < fraction <= 1):
        raise ValueError(f"fraction={fraction!r} is out of range; valid: 0 < fraction <= 1")
    ranked = ranking(runs, criterion)
    if criterion == "fid" and several_classifiers(ranked):
        raise ValueError("a top set by FID of several feature classifiers: their FIDs are not one quantity")
    # round first: 0.1 × 30 is 3.0000000000000004 in floating point, whose ceil would be 4
    k = math.ceil(round(fraction * len(ranked), 9))
    return ranked.head(k).reset_index(drop=True)


def base_rates(runs: pd.DataFrame, top: pd.DataFrame, by: str, criterion: str | None = None) -> pd.DataFrame:
    """Win rates of each value of column ``by`` normalised by how often it was trained.

    Per value: ``n_trained`` (ranked runs of ``runs``: status ok with the metric of ``criterion``, taken
    from ``top["criterion"]`` when not given, else ``recon``), ``n_top`` (rows of ``top``), ``share_top``
    = n_top / len(top), ``share_trained`` = n_trained / n_ranked, ``lift`` = share_top / share_trained
    (1 = as often as chance predicts), and ``p_value``: one-sided hypergeometric P(X ≥ n_top) for drawing
    len(top) of n_ranked runs without replacement, n_trained of them of this value (over-representation).
    Every value that was ranked appears (n_top may be 0). Sorted by ``by``."""
    if criterion is None:
        has = "criterion" in top.columns and len(top)
        criterion = str(top["criterion"].iloc[0]) if has else "recon"
    pool = runs[ranked_mask(runs, criterion)]
    cols = [by, "n_trained", "n_top", "share_top", "share_trained", "lift", "p_value"]
    if not len(pool) or by not in pool.columns:
        return pd.DataFrame(columns=cols)
    trained = pool[by].value_counts(dropna=False)
    in_top = top[by].value_counts(dropna=False) if by in top.columns else pd.Series(dtype=int)
    n_pool, n_draw = len(pool), len(top)
    rows = []
    for value, n_trained in trained.items():
        n_top = int(in_top.get(value, 0))
        share_top = n_top / n_draw if n_draw else np.nan
        share_trained = n_trained / n_pool
        p = float(stats.hypergeom.sf(n_top - 1, n_pool, n_trained, n_draw)) if n_draw else np.nan
        rows.append((value, int(n_trained), n_top, share_top, share_trained, share_top / share_trained, p))
    return pd.DataFrame(rows, columns=cols).sort_values(by, kind="mergesort").reset_index(drop=True)


def t_interval(values) -> tuple[float, float, int]:
    """(mean, 95 % Student-t half-width, n) of the finite values; half-width NaN when n < 2.
    half-width = t_{0.975, n−1} · s / √n with s the sample (ddof = 1) standard deviation."""
    x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return np.nan, np.nan, 0
    if n < 2:
        return float(x.mean()), np.nan, 1
    half = stats.t.ppf(0.5 + CI_LEVEL / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return float(x.mean()), float(half), n


def aggregate_seeds(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per configuration (``config_columns``, plus its ``config`` id): for each metric
    ``<metric>/mean``, ``<metric>/ci95`` (Student-t half-width over the seeds, NaN when n < 2) and
    ``<metric>/n`` (ok runs with a finite value); ``n_runs`` counts the configuration's runs of any
    status, ``n_ok`` those with status ok. Metrics of runs that are not ok are never averaged."""
    keys = config_columns(runs)
    cols = [*keys, "config", "n_runs", "n_ok"] + [f"{m}/{s}" for m in metrics for s in ("mean", "ci95", "n")]
    if not len(runs) or not keys:
        return pd.DataFrame(columns=cols)
    df = with_config_id(runs)
    ok = _ok(df)
    rows = []
    for key, group in df.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = [*key, group["config"].iloc[0], len(group), int(ok[group.index].sum())]
        good = group[ok[group.index]]
        for m in metrics:
            row.extend(t_interval(good[m]) if m in good.columns else (np.nan, np.nan, 0))
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def cutoff_sensitivity(
    runs: pd.DataFrame, criterion: str = "recon", by: str = "family/encoder", cutoffs=CUTOFFS
) -> pd.DataFrame:
    """``base_rates`` of the top set at each cut-off, long format: a ``cutoff`` column (the fraction)
    and ``n_top_set`` (size of that top set) before the base-rate columns."""
    parts = []
    for cutoff in cutoffs:
        top = top_set(runs, criterion, cutoff)
        table = base_rates(runs, top, by, criterion)
        table.insert(0, "n_top_set", len(top))
        table.insert(0, "cutoff", float(cutoff))
        parts.append(table)
    if not parts:
        return pd.DataFrame(columns=["cutoff", "n_top_set", by])
    return pd.concat(parts, ignore_index=True)


def seed_groups(runs: pd.DataFrame) -> list[tuple[object, pd.DataFrame]]:
    """(seed, that seed's rows) in seed order; a table without ``seed`` is one group, seed 0."""
    if "seed" not in runs.columns:
        return [(0, runs)]
    return [(s, g) for s, g in runs.groupby("seed", sort=True, dropna=False)]
