"""Convergence: are the models trained to convergence, and do their rankings survive longer training?

A sweep of N epochs is a sample of one training budget. Two questions decide whether its rankings are
those of the architectures or of how fast each one learns, both read from the per-epoch validation
record (``epochs.parquet``, split ``val``) of every ok run:

* **Rank stability** (:func:`rank_stability`): Spearman's ρ between each configuration's validation
  distortion (the paper's ranking criterion), and its validation −ELBO = recon + KL, at a reference
  epoch (``REFERENCE_EPOCH``, the reproduction's budget) and at the sweep's last epoch, over
  configurations (the unit: seed means, ``analysis.units``), overall and within each encoder and each
  decoder family, with a 95 % percentile bootstrap over configurations within latent sizes
  (``analysis.permutation``, as the claims check resamples). A sweep that ends at or before the
  reference epoch gets one row per criterion that says so in ``note``.
* **Still improving** (:func:`still_improving`): per configuration, the epoch of its lowest validation
  −ELBO (the checkpoint criterion; each run's stored ``best/epoch`` beside it) and the validation −ELBO
  gained over its last ``LAST_EPOCHS`` epochs; flagged when the best epoch is one of those epochs or the
  gain exceeds ``MIN_GAIN`` nats.

Both are computed per arm (dataset × ablation arm, ``analysis.budget.arms``), never pooled across arms.

    from analysis import convergence
    stability = convergence.rank_stability(sweep)     # criterion × group rows: rho [ci], n
    improving = convergence.still_improving(sweep)    # one row per configuration
    convergence.summary(stability, improving)         # the report's sentences
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import budget, permutation, rank, units
from analysis.collect import Sweep

REFERENCE_EPOCH = 10  # the reproduction's budget: do its rankings hold at the sweep's last epoch?
LAST_EPOCHS = 3  # a run whose best epoch is one of its last LAST_EPOCHS epochs is still improving
MIN_GAIN = 0.1  # nats of validation -ELBO gained over the last LAST_EPOCHS epochs that count as improving
MAX_NAMES = 10  # the summary names the flagged configurations when there are at most this many
CRITERIA = {"distortion": "test/distortion", "neg_elbo": "test/neg_elbo"}  # budget.at_epoch's columns
GROUPS = ("family/encoder", "family/decoder")  # rank stability within each family of either role
MIN_N = permutation.MIN_CORR_WEIGHT  # configurations a correlation needs
# configurations a bootstrap interval of rho needs: below, resamples of a few points repeat the same
# ranks (n = 3 gives 4 possible values; a monotone set's every resample has rho = 1): an interval of
# [1, 1] that would claim a certainty it does not have
MIN_CI_N = 10
STABILITY_COLUMNS = [
    "arm", "criterion", "group", "family", "reference_epoch", "last_epoch", "rho", "ci_low", "ci_high",
    "n_configs", "n_runs", "note",
]  # fmt: skip
IMPROVING_COLUMNS = [
    "arm", "config", "latent_dim", "family/encoder", "family/decoder", "n_seeds", "last_epoch",
    "best_epoch", "stored_best_epochs", "val_neg_elbo", "gain", "still_improving", "reason",
]  # fmt: skip


def _ok_runs_and_epochs(sweep: Sweep) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ok runs (with ``config``) and the validation rows of their ``epochs.parquet`` (runs still
    training have no run row and are left out)."""
    runs = sweep.runs
    if not len(runs) or "run_dir" not in runs.columns:
        return runs, pd.DataFrame()
    ok = runs[runs["status"].astype(str).eq("ok")] if "status" in runs.columns else runs
    epochs = budget.epochs_of(sweep)
    if not len(epochs):
        return ok, epochs
    epochs = epochs[epochs["split"].astype(str).eq(budget.SPLIT) & epochs["run_dir"].isin(set(ok["run_dir"]))]
    return ok, epochs


# ---------------------------------------------------------------------------------- rank stability
def spearman(both: pd.DataFrame, ref: str, last: str) -> tuple[float, float, float]:
    """Spearman's ρ of two columns over configurations (rows, with ``latent_dim``), with the percentile
    bootstrap interval over configurations within latent sizes (also ``analysis.transfer``'s); NaN where fewer than 3 configurations define it, the
    interval NaN where fewer than ``MIN_CI_N`` do."""
    if len(both) < MIN_N:
        return math.nan, math.nan, math.nan
    res = permutation.correlation(
        np.zeros(len(both)), both[ref].to_numpy(float), both[last].to_numpy(float),
        np.zeros(len(both)), np.arange(len(both)), permutation.codes(both, ["latent_dim"]),
        method="spearman", n_perm=0,
    )  # fmt: skip
    if len(both) < MIN_CI_N:
        return res.statistic, math.nan, math.nan
    return res.statistic, res.ci_low, res.ci_high


def rank_stability(sweep: Sweep) -> pd.DataFrame:
    """One row per arm × criterion (``CRITERIA``) × group (all configurations, then each encoder and
    each decoder family): Spearman's ρ of the configurations' validation values at ``REFERENCE_EPOCH``
    and at the last epoch, its 95 % bootstrap interval, n configurations (and runs) present at both.
    Where the last epoch is not after the reference epoch, one row per criterion with ``note`` saying
    so and no ρ. Columns ``STABILITY_COLUMNS``."""
    ok, epochs = _ok_runs_and_epochs(sweep)
    rows: list[dict] = []
    for arm, part in budget.arms(ok) if len(epochs) else []:
        ep = epochs[epochs["run_dir"].isin(set(part["run_dir"]))]
        if not len(ep):
            continue
        last = int(ep["epoch"].max())
        base = {"arm": arm, "reference_epoch": REFERENCE_EPOCH, "last_epoch": last}
        if last <= REFERENCE_EPOCH:
            note = (
                f"no later epoch: the sweep's last epoch ({last}) is not after the reference epoch "
                f"({REFERENCE_EPOCH})"
            )
            n_configs, n_runs = units.counts(part)
            for crit in CRITERIA:
                rows.append({**base, "criterion": crit, "group": "all", "family": "all", "rho": math.nan,
                             "ci_low": math.nan, "ci_high": math.nan, "n_configs": n_configs,
                             "n_runs": n_runs, "note": note})  # fmt: skip
            continue
        # the configuration is the unit: seed means at each epoch, of the runs that reached both epochs
        both_runs = set(ep.loc[ep["epoch"].eq(REFERENCE_EPOCH), "run_dir"]) & set(
            ep.loc[ep["epoch"].eq(last), "run_dir"]
        )
        part = rank.with_config_id(part[part["run_dir"].isin(both_runs)])
        at = {
            e: units.config_means(budget.at_epoch(part, ep, e)).set_index("config")
            for e in (REFERENCE_EPOCH, last)
        }
        for crit, col in CRITERIA.items():
            both = at[REFERENCE_EPOCH][["latent_dim", *GROUPS, "n_seeds"]].assign(
                ref=at[REFERENCE_EPOCH][col].astype(float)
            )
            both = both.join(at[last][col].astype(float).rename("last"), how="inner")
            both = both[np.isfinite(both["ref"]) & np.isfinite(both["last"])]
            groups = [("all", "all", both)] + [
                (g, str(v), sub) for g in GROUPS for v, sub in both.groupby(g, sort=True)
            ]
            for group, family, sub in groups:
                rho, lo, hi = spearman(sub, "ref", "last")
                n = len(sub)
                rows.append({
                    **base, "criterion": crit, "group": group, "family": family, "rho": rho, "ci_low": lo,
                    "ci_high": hi, "n_configs": n, "n_runs": int(sub["n_seeds"].sum()),
                    "note": (
                        "" if n >= MIN_CI_N
                        else f"no interval: too few configurations (n = {n} < {MIN_CI_N})" if n >= MIN_N
                        else f"too few configurations (n = {n} < {MIN_N})"
                    ),
                })  # fmt: skip
    return pd.DataFrame(rows, columns=STABILITY_COLUMNS)


# ---------------------------------------------------------------------------------- still improving
def still_improving(sweep: Sweep) -> pd.DataFrame:
    """One row per arm × configuration: on the seed-mean validation −ELBO curve (epochs every seed
    reached), the last epoch, the best epoch (the lowest −ELBO, first on ties: the checkpoint
    criterion; for one seed the run's own checkpoint) with the runs' stored ``best/epoch`` beside it,
    the −ELBO at the last epoch and the ``gain`` since ``LAST_EPOCHS`` epochs before it (NaN when the
    record is shorter), and ``still_improving`` = best epoch >= last − (LAST_EPOCHS − 1) or gain >
    ``MIN_GAIN``, with the reason. Columns ``IMPROVING_COLUMNS``."""
    ok, epochs = _ok_runs_and_epochs(sweep)
    rows: list[dict] = []
    for arm, part in budget.arms(ok) if len(epochs) else []:
        part = rank.with_config_id(part).set_index("run_dir")
        ep = epochs[epochs["run_dir"].isin(set(part.index))].drop_duplicates(
            ["run_dir", "epoch"], keep="last"
        )
        curves = ep.pivot(index="run_dir", columns="epoch", values="neg_elbo").astype(float)
        for config, runs in part.loc[part.index.isin(curves.index)].groupby("config", sort=True):
            mean = curves.loc[runs.index].mean(axis=0, skipna=False).dropna()  # epochs every seed reached
            if not len(mean):
                continue
            last, best = int(mean.index.max()), int(mean.idxmin())
            before = last - LAST_EPOCHS
            gain = float(mean[before] - mean[last]) if before in mean.index else math.nan
            reasons = []
            if best >= last - (LAST_EPOCHS - 1):
                reasons.append(f"best epoch {best} of {last}")
            if gain > MIN_GAIN:
                reasons.append(f"gained {gain:.3g} nats over epochs {before}–{last}")
            stored = pd.to_numeric(
                runs.get("best/epoch", pd.Series(np.nan, index=runs.index)), errors="coerce"
            )
            first = runs.iloc[0]
            rows.append({
                "arm": arm, "config": config, "latent_dim": first.get("latent_dim"),
                "family/encoder": first.get("family/encoder"), "family/decoder": first.get("family/decoder"),
                "n_seeds": len(runs), "last_epoch": last, "best_epoch": best,
                "stored_best_epochs": ", ".join(str(int(v)) if np.isfinite(v) else "n/a" for v in stored),
                "val_neg_elbo": float(mean[last]), "gain": gain, "still_improving": bool(reasons),
                "reason": "; ".join(reasons),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=IMPROVING_COLUMNS)


# ---------------------------------------------------------------------------------- the report's words
def _num(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _stability_line(rows: pd.DataFrame) -> str:
    """One sentence per arm × criterion: the overall ρ with its interval and n, and the range of the
    per-family ρ."""
    top = rows[rows["group"].eq("all")].iloc[0]
    arm = "" if top["arm"] == "all" else f" ({top['arm']})"
    what = "distortion" if top["criterion"] == "distortion" else "−ELBO"
    head = f"Rank stability by validation {what}{arm}"
    if top["note"] and not np.isfinite(top["rho"]):
        return f"{head}: {top['note']}."
    head += f", epoch {top['reference_epoch']} against {top['last_epoch']}"
    text = (
        f"{head}: ρ = {_num(top['rho'])} [{_num(top['ci_low'])}, {_num(top['ci_high'])}], "
        f"n = {top['n_configs']} configurations ({top['n_runs']} runs)"
    )
    for group in GROUPS:
        sub = rows[rows["group"].eq(group)]
        rho = sub["rho"].astype(float)
        if rho.notna().any():
            text += (
                f"; within {group.split('/')[1]} families {_num(rho.min())} to {_num(rho.max())} "
                f"({rho.notna().sum()} of {len(sub)} families with n ≥ {MIN_N})"
            )
    return text + "."


def _improving_line(rows: pd.DataFrame) -> str:
    """How many configurations of an arm are still improving, and which (names, or counts by family)."""
    arm = "" if rows["arm"].iloc[0] == "all" else f" ({rows['arm'].iloc[0]})"
    lasts = sorted(set(rows["last_epoch"].astype(int)))
    at = f"epoch {lasts[0]}" if len(lasts) == 1 else "their last epoch"
    flagged = rows[rows["still_improving"].astype(bool)]
    by_best = rows["best_epoch"].astype(int) >= rows["last_epoch"].astype(int) - (LAST_EPOCHS - 1)
    gain = rows["gain"].astype(float)
    text = (
        f"Still improving at {at}{arm} (best validation −ELBO in the last {LAST_EPOCHS} epochs, or more "
        f"than {MIN_GAIN:g} nats gained over them): {len(flagged)} of {len(rows)} configurations"
    )
    # which rule flags them: a late best epoch on a curve that no longer falls is noise, not progress
    rules = (
        f" Flagged by the best epoch: {int(by_best.sum())}, by the gain: {int((gain > MIN_GAIN).sum())}; "
        f"with a late best epoch but no gain over the last {LAST_EPOCHS} epochs: "
        f"{int((by_best & (gain <= 0)).sum())}."  # an undefined gain (a record too short) is not "no gain"
        if len(flagged)
        else ""
    )
    if 0 < len(flagged) <= MAX_NAMES:
        return text + ": " + ", ".join(flagged["config"]) + "." + rules
    if len(flagged):
        parts = []
        for group in ("family/encoder", "family/decoder"):
            counts = rows.groupby(group, sort=True)["still_improving"].agg(["sum", "size"])
            parts.append(
                f"by {group.split('/')[1]} "
                + ", ".join(f"{f} {int(c['sum'])}/{int(c['size'])}" for f, c in counts.iterrows())
            )
        return text + " (" + "; ".join(parts) + ")." + rules
    return text + "."


def summary(stability: pd.DataFrame, improving: pd.DataFrame) -> list[str]:
    """The report's sentences: rank stability per arm × criterion, then the still-improving count per
    arm."""
    lines = [_stability_line(g) for _, g in stability.groupby(["arm", "criterion"], sort=False) if len(g)]
    lines += [_improving_line(g) for _, g in improving.groupby("arm", sort=False) if len(g)]
    return lines or ["No per-epoch validation records (epochs.parquet) for any ok run."]
