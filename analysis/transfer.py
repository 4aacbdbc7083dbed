"""Does the configurations' ranking carry over between conditions? README's table says whether each
claim's *verdict* holds in every condition; this says whether the *ranking* of the configurations
does, the finer question a verdict can hide (two conditions may both reproduce C5a with their best
configurations in different places).

Against a baseline condition (README: the reproduction's seed 0, from which each seed-0 condition
differs in one factor), per condition:

* **ρ**: Spearman's correlation between each configuration's test value in the condition and in the
  baseline, over the configurations (latent size × encoder family × decoder family: the unit, its ok
  runs' mean) that both hold with a finite value, by distortion (the paper's ranking criterion) and by
  −ELBO, with the 95 % percentile bootstrap over configurations within latent sizes
  (``analysis.permutation``, as every interval of the claims check resamples);
* **top 25 % kept**: how many of the baseline's best quarter by distortion (``ceil(0.25 n)``
  configurations, ties by configuration name, as ``analysis.rank.top_set``) are in the condition's
  best quarter; with no relation, k²/n would be kept by chance (the hypergeometric mean).

The ceiling: another seed of the baseline's own condition (``replicate``) is two trainings of the same
configurations, so its ρ is what a condition that changed nothing would reach.

    from analysis import transfer
    base = transfer.config_values(runs_of_the_baseline)          # one row per configuration
    rows = transfer.table(base, [("Fashion-MNIST", config_values(fm_runs), False)])
    transfer.markdown(rows, "MNIST, 10 epochs, seed 0")          # README's lines
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import convergence
from analysis.claim_stats import fmt3
from analysis.rank import BASE_CONFIG, TOP_FRACTION

CRITERIA = {"distortion": "test/distortion", "−ELBO": "test/neg_elbo"}  # the first also picks the top set
TOP_CRITERION = "distortion"
MIN_N, MIN_CI_N = convergence.MIN_N, convergence.MIN_CI_N  # configurations a ρ, and its interval, need
COLUMNS = ["condition", "replicate", "criterion", "rho", "ci_low", "ci_high", "n_configs", "top_k", "top_kept", "chance"]


def config_values(runs: pd.DataFrame, seeds=None) -> pd.DataFrame:
    """One row per configuration (``BASE_CONFIG``, as the index) of ``runs`` (a report's ``runs.csv``):
    the mean of each criterion over its ok runs (of ``seeds`` where given)."""
    ok = runs[runs["status"].astype(str).eq("ok")] if "status" in runs.columns else runs
    if seeds is not None:
        ok = ok[ok["seed"].isin(list(seeds))]
    cols = [c for c in CRITERIA.values() if c in ok.columns]
    values = ok[[*BASE_CONFIG, *cols]].copy()
    values[cols] = values[cols].apply(pd.to_numeric, errors="coerce")
    return values.groupby(list(BASE_CONFIG), sort=True)[cols].mean()


def _label(index: pd.Index) -> pd.Series:
    """Each configuration's name (``L50_conv2_dense1``): the tie-break of a ranking."""
    return pd.Series([f"L{int(lat)}_{e}_{d}" for lat, e, d in index], index=index)


def _top(values: pd.Series) -> set:
    """The configurations of ``values``' best quarter: ascending, ties by name (``rank.top_set``)."""
    order = pd.DataFrame({"v": values, "name": _label(values.index)}).sort_values(["v", "name"], kind="mergesort")
    k = math.ceil(round(TOP_FRACTION * len(order), 9))  # round first: rank.top_set's floating-point guard
    return set(order.index[:k])


def compare(base: pd.DataFrame, other: pd.DataFrame, metric: str) -> dict:
    """ρ [interval] and n of ``metric`` over the configurations both hold with a finite value, and the
    top-quarter overlap of those configurations by the same metric."""
    both = pd.concat([base[metric].rename("base"), other[metric].rename("other")], axis=1, join="inner")
    both = both[np.isfinite(both["base"]) & np.isfinite(both["other"])]
    n = len(both)
    rho, low, high = convergence.spearman(both.reset_index(), "base", "other")
    out = {"rho": rho, "ci_low": low, "ci_high": high, "n_configs": n}
    top_base, top_other = _top(both["base"]), _top(both["other"])
    k = len(top_base)
    out |= {"top_k": k, "top_kept": len(top_base & top_other), "chance": k * k / n if n else math.nan}
    return out


def table(base: pd.DataFrame, conditions: list[tuple[str, pd.DataFrame | None, bool]]) -> pd.DataFrame:
    """One row per condition × criterion (``CRITERIA``) against ``base``; ``conditions``: (label, its
    :func:`config_values` or None where it is not decided yet, whether it is a replicate of the
    baseline's condition). A condition not decided has one row with n 0 and no numbers."""
    rows = []
    for label, values, replicate in conditions:
        for crit, metric in CRITERIA.items():
            if values is None or metric not in values.columns or metric not in base.columns:
                row = {"rho": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n_configs": 0,
                       "top_k": 0, "top_kept": 0, "chance": math.nan}  # fmt: skip
            else:
                row = compare(base, values, metric)
            rows.append({"condition": label, "replicate": replicate, "criterion": crit, **row})
    return pd.DataFrame(rows, columns=COLUMNS)


def _num(x) -> str:
    return fmt3(x).replace("-", "−")


def _rho(row: pd.Series) -> str:
    if not np.isfinite(row["rho"]):
        return f"undefined (n = {int(row['n_configs'])} < {MIN_N})"
    if not np.isfinite(row["ci_low"]):
        return f"{_num(row['rho'])} [no interval: n = {int(row['n_configs'])} < {MIN_CI_N}]"
    return f"{_num(row['rho'])} [{_num(row['ci_low'])}, {_num(row['ci_high'])}]"


def markdown(rows: pd.DataFrame, baseline: str, pending: str = "pending") -> list[str]:
    """README's lines: a sentence saying what the numbers are, then one table row per condition."""
    crits = list(CRITERIA)
    lines = [
        f"How far the configurations' ranking carries over (analysis/transfer.py): Spearman's ρ between "
        f"each configuration's test value in a condition and in {baseline}, over the configurations both "
        "hold, with its 95 % bootstrap interval over configurations within latent sizes; a replicate (another "
        "seed of the same condition: two trainings of the same configurations) shows the ceiling a condition "
        f"that changed nothing would reach. Top 25 % kept: how many of {baseline}'s best quarter by "
        f"{TOP_CRITERION} are in the condition's best quarter (by chance: k²/n).",
        "",
        f"| against {baseline} | configurations | " + " | ".join(f"ρ by {c} [95 %]" for c in crits)
        + f" | top 25 % by {TOP_CRITERION} kept |",
        "| --- | --- | " + " | ".join("---" for _ in crits) + " | --- |",
    ]
    for label, part in rows.groupby("condition", sort=False):
        first = part.iloc[0]
        name = f"{label} (replicate)" if bool(first["replicate"]) else label
        if int(part["n_configs"].max()) == 0:
            lines.append(f"| {name} | {pending} | " + " | ".join(pending for _ in crits) + f" | {pending} |")
            continue
        by = {r["criterion"]: r for _, r in part.iterrows()}
        top = by[TOP_CRITERION]
        kept = f"{int(top['top_kept'])} of {int(top['top_k'])} (chance {_num(top['chance'])})"
        n = part["n_configs"].astype(int)  # one number, or each criterion's where they differ
        n_text = str(n.iloc[0]) if n.nunique() == 1 else ", ".join(f"{c}: {int(by[c]['n_configs'])}" for c in crits)
        lines.append(f"| {name} | {n_text} | " + " | ".join(_rho(by[c]) for c in crits) + f" | {kept} |")
    return lines
