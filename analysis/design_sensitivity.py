"""Leave one configuration out: does a verdict of the design grid (analysis/design.py) rest on one cell?

With one seed per cell and 8 error df, a referee asks of every deciding row whether a single
configuration carries it. For each configuration of an arm in turn, the design analysis is run again
without it (its cell's mean then the model's prediction, the error one df smaller) and each deciding
row's estimate and verdict are set beside the full grid's. Per deciding row: the range of its estimate
over the drops (does one cell drive the effect?), in how many drops its verdict stays, and the
configurations whose drop changes it.

The two reasons a verdict can change are told apart by the range: an estimate that barely moves while the
verdict flips is a verdict at the margin of its Holm threshold (one error df and a Holm rank less); an
estimate that moves by its own size is carried by the cell dropped. Descriptive, never deciding: the drops
are not independent tests and no correction applies.

    from analysis import design_sensitivity
    table = design_sensitivity.leave_one_out(runs)   # design_sensitivity.csv; empty without design axes
"""

from __future__ import annotations

import math

import pandas as pd

from analysis import design, rank
from analysis.claim_stats import fmt3

COLUMNS = [
    "arm", "part", "verdict", "statistic", "drop_low", "drop_high", "drops", "kept", "changed_by", "note",
]  # fmt: skip
DESCRIPTIVE = "Descriptive, never deciding: the drops are not independent tests and no correction applies."


def _deciding(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["decides"].astype(bool)].set_index("part")


def leave_one_out(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per deciding row of :func:`design.design_table` (``COLUMNS``): its full-grid ``verdict``
    and ``statistic``; ``drop_low``/``drop_high`` the least and greatest estimate with one configuration
    of its arm left out (all of that configuration's seeds); ``drops`` the configurations tried,
    ``kept`` the drops that leave the verdict as it is; ``changed_by`` the others (``config: verdict``,
    the configuration as :func:`rank.with_config_id` names it).
    Empty (with the columns) where ``runs`` hold no design axis."""
    full = design.design_table(runs)
    if not len(full):
        return pd.DataFrame(columns=COLUMNS)
    rows = []
    for arm, part in design.arms(runs):  # the arms design_table decides, each alone
        base = _deciding(full[full["arm"].eq(arm)])
        if not len(base):
            continue
        config = rank.with_config_id(part)["config"]
        estimates: dict[str, list[float]] = {p: [] for p in base.index}
        changed: dict[str, list[str]] = {p: [] for p in base.index}
        names = sorted(config.unique())
        for name in names:
            dropped = _deciding(design.design_table(part[config.ne(name)]))
            for p, r in base.iterrows():
                d = dropped.loc[p] if p in dropped.index else None
                if d is not None and math.isfinite(d["statistic"]):
                    estimates[p].append(float(d["statistic"]))
                verdict = d["verdict"] if d is not None else "not tested"
                if verdict != r["verdict"]:
                    changed[p].append(f"{name}: {verdict}")
        for p, r in base.iterrows():
            est, moved = estimates[p], changed[p]
            rows.append({
                "arm": arm, "part": p, "verdict": r["verdict"], "statistic": float(r["statistic"]),
                "drop_low": min(est, default=math.nan), "drop_high": max(est, default=math.nan),
                "drops": len(names), "kept": len(names) - len(moved), "changed_by": ", ".join(moved),
                "note": "descriptive" + ("" if len(est) == len(names) else
                                         f"; {len(names) - len(est)} drops leave it not estimable"),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def summary(table: pd.DataFrame) -> list[str]:
    """One line per arm: each deciding row's verdict kept in k of n drops, with its estimate's range."""
    out = []
    for arm, g in table.groupby("arm", sort=False):
        where = "" if table["arm"].nunique() == 1 else f" ({arm})"
        parts = "; ".join(
            f"{r['part']} ({r['verdict']}, {fmt3(r['statistic'])}): kept in {int(r['kept'])} of {int(r['drops'])}, "
            f"estimate {fmt3(r['drop_low'])} to {fmt3(r['drop_high'])} nats"
            for _, r in g.iterrows()
        )
        out.append(
            f"Leave one configuration out{where} (descriptive; each drop leaves the error one df smaller): "
            f"{parts}. The drops that change a verdict: `design_sensitivity.csv`."
        )
    return out
