"""Verdicts against the training budget: the ranking-based claims recomputed at every epoch.

A reviewer's first question about "simple encoders win" is whether simple encoders merely converge
faster. Every run stores its validation reconstruction and KL at each epoch (``epochs.parquet``, split
``val``); here the claims that need only those two numbers are decided again at each epoch 1…N exactly
as the claims check decides them at the end (``analysis.claims``, the same all-runs tests): C1 (the
share of runs whose validation KL is below the paper's floor, 1e-6 nats; the count below our collapse
threshold, 0.1 nats, beside it: the per-epoch record has no active-unit count, so that is the rate half
of our ``collapsed`` flag), C3 (rho of distortion and rate in the top 25 %), C4 (dense1 against each
encoder family: the smallest gap), C5a and C5b (the decoder contrasts), each by its deciding row. Per
epoch the Holm family is the budget claims' tests on the validation record (distortion and −ELBO =
recon + KL; IWAE and the latent measures exist only for the test split). The final row of each claim is the stored test-split evaluation (the best-by-validation
checkpoint), as in the claims check. Only runs whose status is ``ok`` enter, as there.

    from analysis import budget
    table = budget.budget_table(sweep)           # one row per claim × epoch (+ the test row)
    budget.settling(table)                        # {claim: one sentence}
"""

from __future__ import annotations

import itertools
import os
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis import claims, pc_probe, rank  # noqa: E402
from analysis.collect import Sweep, collect  # noqa: E402
from analysis.plotting import MAX_FIGURE_INCHES, PAGE_WIDTH, figure, message_figure, note  # noqa: E402
from sweep.thresholds import COLLAPSE_RATE_THRESHOLD, PAPER_COLLAPSE_THRESHOLD  # noqa: E402

BUDGET_CLAIMS = ("C1", "C3", "C4", "C5a", "C5b")
# a verdict settles only if it holds for at least the last HELD_EPOCHS epochs (the window in which
# analysis.convergence calls a run still improving), else it "does not settle within the budget"
HELD_EPOCHS = 3
SPLIT = "val"  # the split the per-epoch verdicts use (the test split is kept for the final evaluation)
COLUMNS = [
    "arm", "claim", "epoch", "split", "statistic", "ci_low", "ci_high", "p_value", "p_holm", "n_configs",
    "n_runs", "verdict", "seed_verdict", "n_paper_collapsed", "n_rate_collapsed",
]  # fmt: skip
# the claim's null value, drawn as a reference line
NULL = {"C1": None, "C3": 0.0, "C4": 0.0, "C5a": 0.0, "C5b": 0.0}
STAT_NAME = {
    "C1": "paper-collapsed fraction",
    "C3": "Spearman ρ, top 25\u00a0%",
    "C4": "smallest gap, other − dense1 (nats)",
    "C5a": "dense − conv decoders (nats)",
    "C5b": "conv1 − deep conv (nats)",
}
_CACHE: dict = {}  # one entry: (sweep, table), so the figure and the table compute it once


def epochs_of(sweep: Sweep) -> pd.DataFrame:
    """Every stored ``epochs.parquet`` row of the sweep, ``run_dir`` relative to ``sweep.root`` (as in
    ``sweep.runs``)."""
    parts = []
    for root in sweep.roots or [sweep.root]:
        got = collect(root, "epochs").to_pandas()
        if not len(got):
            continue
        prefix = os.path.relpath(Path(root).resolve(), sweep.root.resolve()) if sweep.roots else "."
        got["run_dir"] = [os.path.normpath(os.path.join(prefix, d)) for d in got["run_dir"]]
        parts.append(got)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def at_epoch(runs: pd.DataFrame, epochs: pd.DataFrame, epoch: int) -> pd.DataFrame:
    """A run table as the claims check reads it, from each ok run's validation record at ``epoch``:
    test/distortion := val recon, test/rate := val KL, paper_collapsed := KL < 1e-6 nats and
    collapsed := KL < 0.1 nats (the rate half of the flag). Runs without that epoch are left out."""
    rows = epochs[epochs["split"].astype(str).eq(SPLIT) & epochs["epoch"].eq(epoch)]
    rows = rows.drop_duplicates("run_dir", keep="last")[["run_dir", "recon", "kl"]]
    ok = runs[runs["status"].astype(str).eq("ok")] if "status" in runs.columns else runs
    drop = [c for c in ok.columns if c.startswith(("test/", "eval/")) or c in claims_flags()]
    out = ok.drop(columns=drop).merge(rows, on="run_dir", how="inner")
    kl = pd.to_numeric(out["kl"], errors="coerce")
    out["test/distortion"] = pd.to_numeric(out["recon"], errors="coerce")
    out["test/rate"] = kl
    out["test/neg_elbo"] = out["test/distortion"] + kl
    out["paper_collapsed"] = (kl < PAPER_COLLAPSE_THRESHOLD).astype("boolean").mask(kl.isna())
    out["collapsed"] = (kl < COLLAPSE_RATE_THRESHOLD).astype("boolean").mask(kl.isna())
    return out.drop(columns=["recon", "kl"])


def claims_flags() -> tuple[str, ...]:
    return ("collapsed", "partial", "paper_collapsed")


def arms(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(arm name, its runs): one arm per dataset × ablation arm, as the claims table splits them."""
    keys = [k for k in ("data.name",) if k in runs.columns and runs[k].astype(str).nunique() > 1]
    keys += [k for k in rank.id_columns(runs) if k not in keys] if len(runs) else []  # each key once
    if not keys:
        return [("all", runs)]
    return [
        (
            " ".join(
                f"{k}={v}" for k, v in zip(keys, vals if isinstance(vals, tuple) else (vals,), strict=True)
            ),
            g,
        )
        for vals, g in runs.groupby(keys, sort=True)
    ]


def _rows(arm: str, verdicts, epoch, split, frame: pd.DataFrame) -> list[dict]:
    n_paper = int(pd.Series(frame.get("paper_collapsed", pd.Series(dtype="boolean"))).fillna(False).sum())
    n_rate = int(
        (
            pd.to_numeric(frame.get("test/rate", pd.Series(dtype=float)), errors="coerce")
            < COLLAPSE_RATE_THRESHOLD
        ).sum()
    )
    out = []
    for v in claims.deciding(verdicts):
        if v.claim not in BUDGET_CLAIMS:
            continue
        out.append({
            "arm": arm, "claim": v.claim, "epoch": epoch, "split": split, "statistic": v.statistic,
            "ci_low": v.ci_low, "ci_high": v.ci_high, "p_value": v.p_value, "p_holm": v.p_holm,
            "n_configs": v.n_configs, "n_runs": v.n_runs, "verdict": v.verdict, "seed_verdict": v.seed_verdict,
            "n_paper_collapsed": n_paper if v.claim == "C1" else None,
            "n_rate_collapsed": n_rate if v.claim == "C1" else None,
        })  # fmt: skip
    return out


def budget_table(sweep: Sweep) -> pd.DataFrame:
    """One row per arm × claim (``BUDGET_CLAIMS``) × epoch 1…N on the validation split, then one row per
    arm × claim with ``split == "test"`` at epoch N: the stored evaluation, as in the claims check.
    Columns ``COLUMNS``; n_configs and n_runs are those the claim's test used."""
    if _CACHE.get("sweep") is sweep:
        return _CACHE["table"]
    runs = sweep.runs
    epochs = epochs_of(sweep) if len(runs) else pd.DataFrame()
    probed = pc_probe.with_pc2_probe(sweep) if len(epochs) and "run_dir" in runs.columns else runs
    rows: list[dict] = []
    if len(epochs) and "run_dir" in runs.columns:
        last = int(epochs["epoch"].max())
        for arm, part in arms(runs):
            for e in range(1, last + 1):
                frame = at_epoch(part, epochs, e)
                if len(frame):
                    rows += _rows(arm, claims.check_claims(frame, only=BUDGET_CLAIMS), e, SPLIT, frame)
            ok = part[part["status"].astype(str).eq("ok")] if "status" in part.columns else part
            final = ok.assign(**{"test/rate": pd.to_numeric(ok.get("test/rate"), errors="coerce")})
            # the test split as the claims check decides it: the whole family (claims.csv's verdicts),
            # the 2-D PCA probe's row included, as analysis.figures gives the claims table
            rows += _rows(arm, claims.check_claims(probed.loc[part.index]), last, "test", final)
    table = pd.DataFrame(rows, columns=COLUMNS)
    _CACHE.clear()
    _CACHE.update(sweep=sweep, table=table)
    return table


def settling(table: pd.DataFrame) -> dict[str, str]:
    """{``arm claim``: one sentence}: the first epoch from which the validation verdict no longer
    changes up to the last epoch, whether the last epoch's validation verdict is the test verdict, or,
    where that verdict holds for fewer than the last ``HELD_EPOCHS`` epochs, that it does not settle
    within the budget (a verdict reached at epoch 29 of 30 has not shown that it holds)."""
    out = {}
    for (arm, claim), g in table.groupby(["arm", "claim"], sort=False):
        val = g[g["split"].eq(SPLIT)].sort_values("epoch")
        test = g[g["split"].eq("test")]
        name = claim if arm == "all" else f"{claim} ({arm})"
        if not len(val):
            out[name] = f"{name}: no validation record."
            continue
        if val["statistic"].isna().all():
            out[name] = f"{name}: not testable at any epoch (no configuration has what its test needs)."
            continue
        verdicts, epochs = val["verdict"].tolist(), val["epoch"].tolist()
        final = verdicts[-1]
        start = len(verdicts) - 1
        while start > 0 and verdicts[start - 1] == final:
            start -= 1
        test_txt = ""
        if len(test):
            same = test["verdict"].iloc[0] == final
            test_txt = f"; the test-split verdict is {'the same' if same else test['verdict'].iloc[0]}"
        held = len(verdicts) - start
        if start == 0 and held < HELD_EPOCHS:  # a budget shorter than the window: nothing can settle
            out[name] = (
                f"{name}: cannot settle within a budget of {held} epoch{'s' if held > 1 else ''} "
                f"(fewer than {HELD_EPOCHS}; {final} at every epoch){test_txt}."
            )
        elif held < HELD_EPOCHS:
            out[name] = (
                f"{name}: does not settle within the budget: {verdicts[start - 1]} at epoch "
                f"{epochs[start - 1]}, {final} only from epoch {epochs[start]} of {epochs[-1]} (held "
                f"{held} epoch{'s' if held > 1 else ''}, fewer than {HELD_EPOCHS}){test_txt}."
            )
        else:
            out[name] = (
                f"{name}: settles at epoch {epochs[start]} of {epochs[-1]} ({final} from then on){test_txt}."
            )
    return out


ARM_MARKERS = ("o", "s", "^", "D", "v", "P")  # one shape per arm when several share the panels


@figure("claims_budget")
def fig_claims_budget(data) -> Figure:
    """Each budget claim's statistic with its interval (the claims check's) against the epoch (validation split);
    the stored test-split value marked at the last epoch."""
    title = "Verdicts against the training budget (validation split per epoch; ★ test split)"
    if not isinstance(data, Sweep):
        return message_figure(
            title, "No per-epoch records: this figure needs a sweep directory (epochs.parquet)."
        )
    table = budget_table(data)
    if not len(table):
        return message_figure(title, "No per-epoch records (epochs.parquet) for any ok run.")
    arms = list(dict.fromkeys(table["arm"]))
    fig = Figure(
        figsize=(PAGE_WIDTH, min(MAX_FIGURE_INCHES, 2.0 + 1.6 * len(BUDGET_CLAIMS))), layout="constrained"
    )
    axes = fig.subplots(len(BUDGET_CLAIMS), 1, squeeze=False, sharex=True)[:, 0]
    colours = {"reproduced": "#1a9850", "not reproduced": "#d73027", "inconclusive": "#878787"}
    offsets = np.linspace(-0.15, 0.15, len(arms)) if len(arms) > 1 else [0.0]
    markers = dict(zip(arms, itertools.cycle(ARM_MARKERS)))  # colour is the verdict, shape the arm
    for ax, claim in zip(axes, BUDGET_CLAIMS, strict=True):
        for arm, dx in zip(arms, offsets, strict=True):
            g = table[table["arm"].eq(arm) & table["claim"].eq(claim)]
            val, test = g[g["split"].eq(SPLIT)], g[g["split"].eq("test")]
            x = val["epoch"].to_numpy(float) + dx
            y = val["statistic"].to_numpy(float)
            lo, hi = val["ci_low"].to_numpy(float), val["ci_high"].to_numpy(float)
            ax.plot(x, y, color="0.5", lw=0.8, zorder=1)
            ax.errorbar(x, y, yerr=[np.abs(y - lo), np.abs(hi - y)], fmt="none", ecolor="0.4", lw=0.8)
            ax.scatter(x, y, c=[colours.get(v, "black") for v in val["verdict"]], s=22, zorder=3,
                       marker=markers[arm], edgecolor="black", linewidth=0.3, label=None)  # fmt: skip
            for _, t in test.iterrows():
                ax.errorbar([t["epoch"] + dx + 0.3], [t["statistic"]], fmt="none", ecolor="black", lw=0.8,
                            yerr=[[abs(t["statistic"] - t["ci_low"])], [abs(t["ci_high"] - t["statistic"])]]
                            if np.isfinite(t["ci_low"] if t["ci_low"] is not None else np.nan) else None)  # fmt: skip
                ax.scatter([t["epoch"] + dx + 0.3], [t["statistic"]], marker="*", s=90, zorder=4,
                           color=colours.get(t["verdict"], "black"), edgecolor="black", linewidth=0.4)  # fmt: skip
        if NULL[claim] is not None:
            ax.axhline(NULL[claim], color="0.3", ls="--", lw=0.8)
        if claim == "C1":
            for b in claims.C1_BAND:
                ax.axhline(b, color="0.3", ls=":", lw=0.8)
        ax.set_ylabel("\n".join(textwrap.wrap(f"{claim}: {STAT_NAME[claim]}", 22)), fontsize=8)  # fits its panel
        ax.grid(lw=0.3)
    axes[-1].set_xlabel("epoch (training budget)")
    fig.suptitle(title)
    handles = [
        axes[0].scatter([], [], color=c, edgecolor="black", linewidth=0.3, label=v)
        for v, c in colours.items()
    ]
    axes[0].legend(handles=handles, loc="best", fontsize=7, title="verdict", title_fontsize=7)
    if len(arms) > 1:  # which points are which arm's (each arm's test-split value is its ★ right of them)
        shapes = [
            axes[-1].scatter(
                [], [], marker=markers[a], color="white", edgecolor="black", linewidth=0.5, label=a
            )
            for a in arms
        ]
        axes[-1].legend(handles=shapes, loc="best", fontsize=7, title="arm (left to right)", title_fontsize=7)
    note(fig, " ".join(settling(table).values()) + (f" Arms: {', '.join(arms)}." if len(arms) > 1 else ""))
    return fig
