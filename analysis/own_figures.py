"""Our own figures, beyond the paper's: the rate–distortion plane, IWAE NLL heat-maps, active units
against latent size, and collapse rates by factor with Wilson intervals."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from analysis import collapse, rank  # noqa: E402
from analysis.plotting import (  # noqa: E402
    DISTORTION_AXIS,
    FACTOR_NAMES,
    HEAT_CELL,
    LABEL,
    PAGE_WIDTH,
    RATE_AXIS,
    RATE_FLOOR,
    STATE,
    STATES,
    collapse_factors,
    evaluated,
    excluded_note,
    family_colours,
    figure,
    log_axis,
    message_figure,
    note,
    ordered,
    prepare,
    rate_values,
    state_legend,
    threshold_lines,
)
from sweep.thresholds import COLLAPSE_RATE_THRESHOLD  # noqa: E402

# What an NLL is of: runs that differ in these never share a colour scale (nor a panel) in the heatmap
SCALE_KEYS = ("data.name", "data.likelihood")

# ---------------------------------------------------------------- our figures


def scatter_by_state(ax, runs, x, y) -> None:
    """One scatter per collapse state of ``runs`` (``x(g)``, ``y(g)`` of each state's rows), in its colour."""
    for state, colour in STATES.items():
        g = runs[runs[STATE] == state]
        if len(g):
            ax.scatter(x(g), y(g), color=colour, s=22, edgecolor="black", linewidth=0.3, zorder=3)


@figure("rate_distortion")
def fig_rate_distortion(data) -> Figure:
    """Rate–distortion plane: every evaluated run's KL (log) against its reconstruction."""
    runs = prepare(data)
    title = "Rate–distortion plane of every run"
    ev = evaluated(runs)
    if not len(ev):
        return message_figure(title, "No evaluated runs. " + excluded_note(runs))
    fig = Figure(figsize=(PAGE_WIDTH, 5.0), layout="constrained")
    ax = fig.add_subplot()
    scatter_by_state(ax, ev, lambda g: rate_values(g["test/rate"]), lambda g: g["test/distortion"])
    ax.set_xscale("log")
    log_axis(ax.xaxis)
    ax.set_xlim(RATE_FLOOR / 2, max(rate_values(ev["test/rate"]).max(), COLLAPSE_RATE_THRESHOLD) * 2)
    ax.set_xlabel(RATE_AXIS)
    ax.set_ylabel(DISTORTION_AXIS)
    ax.grid(lw=0.3)
    lines = threshold_lines(ax)
    fig.suptitle(f"{title} ({len(ev)} evaluated)")
    state_legend(ax, ev[STATE], lines)
    note(fig, excluded_note(runs))
    return fig


@figure("fid_distortion")
def fig_fid_distortion(data) -> Figure:
    """FID of prior samples (log) against distortion, one panel per dataset, coloured by collapse state."""
    runs = prepare(data)
    title = "Sample quality (FID of prior samples) against reconstruction"
    ev = evaluated(runs)
    if len(ev) and "test/fid_prior" in ev.columns:
        ev = ev[np.isfinite(pd.to_numeric(ev["test/fid_prior"], errors="coerce").astype(float))]
    else:
        ev = ev.iloc[:0]
    if not len(ev):
        return message_figure(title, "No evaluated run has an FID. " + excluded_note(runs))
    # one panel per dataset, and per feature classifier where several scored them (not one quantity)
    panel = ev["data.name"].astype(str) if "data.name" in ev.columns else pd.Series("all", index=ev.index)
    if rank.several_classifiers(ev):
        panel = panel + ", classifier " + ev[rank.FID_CLASSIFIER].astype(str).str[:12] + "…"
    ev = ev.assign(_panel=panel)
    names = sorted(ev["_panel"].unique())
    fig = Figure(figsize=(PAGE_WIDTH, 4.2), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        g = ev[ev["_panel"].eq(name)]
        scatter_by_state(ax, g, lambda h: h["test/distortion"], lambda h: h["test/fid_prior"].astype(float))
        ax.set_yscale("log")
        log_axis(ax.yaxis)
        ax.set_xlabel(DISTORTION_AXIS)
        ax.set_ylabel("FID of prior samples (classifier features), log scale")
        ax.set_title(f"{name} ({len(g)} runs)")
        ax.grid(lw=0.3)
    fig.suptitle(title)
    state_legend(axes[0], ev[STATE])
    note(fig, excluded_note(runs))
    return fig


@figure("iwae_heatmap")
def fig_iwae_heatmap(data) -> Figure:
    """IWAE NLL, mean over seeds, encoder × decoder, one panel per latent size and arm. Runs of several
    likelihoods or datasets get one colour scale each (a Gaussian's density and a Bernoulli's mass, in
    nats, are not one quantity, nor is one dataset's NLL another's), and no panel mixes them."""
    runs = prepare(data)
    title = "IWAE NLL (nats per image), mean over seeds: encoder × decoder per latent size (and arm)"
    ev = evaluated(runs)
    nonfinite: list[str] = []  # an IWAE NLL that was computed but is not finite: named in the note
    if len(ev) and "test/iwae_nll" in ev.columns:
        nll = ev["test/iwae_nll"].astype(float)
        nonfinite = sorted(ev.loc[nll.notna() & ~np.isfinite(nll), LABEL].astype(str))
        ev = ev[np.isfinite(nll)]
    else:
        ev = ev.iloc[0:0]
    if not len(ev):
        reasons = sorted(set(runs.get("test/iwae_null_reason", pd.Series(dtype=object)).dropna().astype(str)))
        why = f" Reason stored with the runs: {'; '.join(reasons)}." if reasons else ""
        return message_figure(
            title,
            "No IWAE NLL values in this sweep (it is computed for every normalised likelihood, not for "
            "bce on continuous pixels)."
            + why
            + (f" Not finite in: {', '.join(nonfinite)}." if nonfinite else ""),
        )
    # one panel per latent size and arm (the other config keys that tell configurations of one label
    # apart: a norm, a loss reduction), so a cell never pools two configurations as if they were seeds
    # and one colour scale per dataset and likelihood present, whose keys are then part of every arm
    scales = [c for c in SCALE_KEYS if c in ev.columns and ev[c].astype(str).nunique() > 1]
    keys = scales + [k for k in rank.id_columns(ev) if k not in scales]
    named = lambda cols: (  # noqa: E731
        [rank.arm_name(cols, tuple(r)) for r in ev[cols].astype(str).itertuples(index=False)] if cols else ""
    )
    ev = ev.assign(_arm=named(keys), _scale=named(scales))
    panels = [
        (latent, arm)
        for latent in ordered(ev["latent_dim"], "latent_dim")
        for arm in sorted(ev.loc[ev["latent_dim"].eq(latent), "_arm"].unique())
    ]
    encs, decs = ordered(ev["family/encoder"], "family/"), ordered(ev["family/decoder"], "family/")
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    # cells big enough for a value at 8 pt; the figure only as wide as its panels need
    width = min(PAGE_WIDTH, 1.4 + cols * (1.1 + HEAT_CELL * len(decs)))
    fig = Figure(figsize=(width, 1.3 + rows * (1.2 + 0.75 * HEAT_CELL * len(encs))), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    mean = ev.groupby(["latent_dim", "_arm", "family/encoder", "family/decoder"])["test/iwae_nll"].agg(
        ["mean", "count"]
    )
    scale_of = ev.groupby("_arm")["_scale"].first()  # an arm names its scale's keys: one scale each
    norms = {}
    for scale in sorted(scale_of.unique()):
        m = mean.loc[mean.index.get_level_values("_arm").isin(scale_of.index[scale_of.eq(scale)]), "mean"]
        norms[scale] = Normalize(m.min(), m.max() if m.max() > m.min() else m.min() + 1)
    cmap = colormaps["viridis_r"].with_extremes(bad="0.9")
    modal_n = int(mean["count"].mode().iloc[0])
    for ax, (latent, arm) in zip(axes, panels, strict=False):
        _heat_panel(ax, mean, (latent, arm), encs, decs, norms[scale_of[arm]], cmap, modal_n)
        ax.set_title(f"L = {latent}" + (f"\n{arm}" if arm else ""), fontsize=9 if arm else None)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    for scale, norm in norms.items():
        mine = [ax for ax, (_, arm) in zip(axes, panels, strict=False) if scale_of[arm] == scale]
        mine = mine if len(norms) > 1 else axes.tolist()  # one scale: the whole grid, as it always was
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=mine, shrink=0.8)
        bar.set_label("IWAE NLL, nats per image (lower is better)" + (f"\n{scale}" if scale else ""))
    fig.suptitle(f"{title}\ncells: mean of n = {modal_n} seed(s) unless marked; n/a: no run with a value")
    skipped = f"Not shown (IWAE NLL not finite): {', '.join(nonfinite)}. " if nonfinite else ""
    note(fig, skipped + excluded_note(runs))
    return fig


def _heat_panel(
    ax, mean: pd.DataFrame, panel: tuple, encs: list, decs: list, norm, cmap, modal_n: int
) -> None:
    """The encoder × decoder cells of one panel, (latent size, arm): ``mean`` holds the (mean, count) of
    every (latent_dim, arm, encoder, decoder); a count other than the modal one is written in the cell."""
    grid = np.full((len(encs), len(decs)), np.nan)
    counts = np.zeros_like(grid, dtype=int)
    for (lat, arm, e, d), r in mean.iterrows():
        if (lat, arm) == panel:
            grid[encs.index(e), decs.index(d)] = r["mean"]
            counts[encs.index(e), decs.index(d)] = r["count"]
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
    for i in range(len(encs)):
        for j in range(len(decs)):
            v = grid[i, j]
            text = (
                "n/a"
                if np.isnan(v)
                else f"{v:.1f}" + ("" if counts[i, j] == modal_n else f"\nn={counts[i, j]}")
            )
            dark = not np.isnan(v) and norm(v) > 0.5  # viridis_r: high values are dark
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(decs)), decs, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(encs)), encs)
    ax.set_xlabel("decoder")
    ax.set_ylabel("encoder")


@figure("active_units")
def fig_active_units(data) -> Figure:
    """Active units against latent size: one point per run (colour = encoder family), the mean per
    latent size (black bar), and the line y = x (every unit active)."""
    runs = prepare(data)
    title = "Active units vs latent size"
    ev = evaluated(runs)
    if len(ev) and "test/active_units" in ev.columns:
        ev = ev[ev["test/active_units"].notna()]
    if not len(ev):
        return message_figure(title, "No evaluated runs with active-unit counts. " + excluded_note(runs))
    colours = family_colours(runs)
    fig = Figure(figsize=(PAGE_WIDTH, 4.8), layout="constrained")
    ax = fig.add_subplot()
    latents = ordered(ev["latent_dim"], "latent_dim")
    span = max(latents) - min(latents) or max(latents)
    for latent in latents:
        g = ev[ev["latent_dim"] == latent].sort_values("run_name")
        # deterministic jitter so runs with equal counts do not hide each other
        jitter = (np.linspace(-1, 1, len(g)) if len(g) > 1 else np.zeros(1)) * 0.025 * span
        ax.scatter(
            latent + jitter, g["test/active_units"], color=[colours[e] for e in g["family/encoder"]], s=20,
            edgecolor="black", linewidth=0.3, zorder=3,
        )  # fmt: skip
        ax.plot(
            [latent - 0.05 * span, latent + 0.05 * span],
            [g["test/active_units"].mean()] * 2,
            color="black",
            lw=2,
        )
    top_x = max(latents) * 1.05
    ax.plot([0, top_x], [0, top_x], color="0.4", ls="--", lw=0.8)
    ax.set_xlim(0, top_x + 0.05 * span)
    ax.set_ylim(-0.03 * top_x, top_x)
    ax.set_xticks(latents)
    ax.set_xlabel("latent size L")
    ax.set_ylabel("active units (Var_x μ_d > threshold)")
    ax.grid(lw=0.3)
    handles = [Patch(color=colours[e], label=e) for e in ordered(ev["family/encoder"], "family/")]
    handles += [
        Line2D([], [], color="black", lw=2, label="mean per latent size"),
        Line2D([], [], color="0.4", ls="--", lw=0.8, label="y = x (all units active)"),
    ]
    ax.legend(handles=handles, title="encoder", loc="upper left", bbox_to_anchor=(1.01, 1))
    threshold = ev["active_unit_threshold"].iloc[0] if "active_unit_threshold" in ev.columns else None
    fig.suptitle(title + (f" (active: Var_x(μ_d) > {threshold:g})" if threshold is not None else ""))
    note(fig, excluded_note(runs))
    return fig


@figure("collapse_by_factor")
def fig_collapse_by_factor(data) -> Figure:
    """Share of evaluated runs flagged ``collapsed`` per value of each factor, with 95 % Wilson intervals."""
    runs = prepare(data)
    title = (
        "Collapse rate by factor (collapsed: no active unit and rate < "
        + f"{COLLAPSE_RATE_THRESHOLD:g} nats)"
    )
    factors = collapse_factors(runs) if len(runs) else []
    tables = {f: collapse.collapse_by_factor(runs, f) for f in factors}
    tables = {f: t[t["n_evaluated"] > 0] for f, t in tables.items()}
    tables = {f: t for f, t in tables.items() if len(t)}
    if not tables:
        return message_figure(title, "No evaluated runs. " + excluded_note(runs))
    fig = Figure(figsize=(PAGE_WIDTH, 1.0 + 2.3 * len(tables)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(tables), 1, squeeze=False)).ravel()
    for ax, (factor, t) in zip(axes, tables.items(), strict=True):
        t = t.set_index(factor).loc[ordered(t[factor], factor)]
        x = np.arange(len(t))
        err = np.vstack([t["rate"] - t["ci_low"], t["ci_high"] - t["rate"]])
        ax.errorbar(x, t["rate"], yerr=err, fmt="o", color="#b2182b", ecolor="0.3", capsize=4, ms=6)
        ax.set_xticks(
            x,
            [f"{v}\n({c}/{n})" for v, c, n in zip(t.index, t["n_collapsed"], t["n_evaluated"], strict=True)],
        )
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("collapsed share")
        ax.set_title(f"by {FACTOR_NAMES.get(factor, factor)} (collapsed / evaluated)", loc="left")
        ax.grid(axis="y", lw=0.3)
        ax.set_xlim(-0.5, len(t) - 0.5)
    fig.suptitle(title + "\npoints: share of evaluated runs; bars: 95 % Wilson intervals")
    note(fig, excluded_note(runs))
    return fig
