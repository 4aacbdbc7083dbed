"""The paper's Figures 1–7, redrawn from stored results: one function per figure, each
``fig_<name>(sweep_or_runs, out_dir) -> [png, pdf]`` (see ``analysis.plotting.figure``)."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis import rank  # noqa: E402
from analysis.collect import Sweep  # noqa: E402
from analysis.plotting import (  # noqa: E402
    DISTORTION_AXIS,
    FACTOR_NAMES,
    LABEL,
    N_DIGITS,
    PAGE_WIDTH,
    PCA_COLUMNS,
    PCA_FRACTIONS,
    PCA_PANEL,
    RATE_AXIS,
    RATE_FLOOR,
    STATE,
    STATES,
    evaluated,
    excluded_note,
    family_colours,
    figure,
    legend_below,
    log_axis,
    message_figure,
    note,
    ordered,
    prepare,
    rate_values,
    rows_figure,
    state_legend,
    threshold_lines,
    top,
)
from sweep.thresholds import COLLAPSE_RATE_THRESHOLD  # noqa: E402

# ---------------------------------------------------------------- the paper's figures


@figure("fig1_rate_sorted", palette=True)
def fig1_rate_sorted(data) -> Figure:
    """Fig. 1: the KL (rate) of every evaluated run, ascending, log scale, collapsed runs coloured."""
    runs = prepare(data)
    title = "Fig. 1: KL (rate) of every run, sorted"
    ev = evaluated(runs)
    if not len(ev):
        return message_figure(title, "No evaluated runs. " + excluded_note(runs))
    ev = ev.sort_values(["test/rate", "run_name"], kind="mergesort")
    fig, ax = rows_figure(len(ev))
    y, x = np.arange(len(ev)), rate_values(ev["test/rate"])
    colours = ev[STATE].map(STATES).to_list()
    ax.hlines(y, RATE_FLOOR, x, colors=colours, lw=1.5)
    ax.scatter(x, y, c=colours, s=14, zorder=3)
    ax.set_xscale("log")
    log_axis(ax.xaxis)
    ax.set_xlim(RATE_FLOOR / 2, max(x.max(), COLLAPSE_RATE_THRESHOLD) * 2)
    ax.set_yticks(y, ev[LABEL])
    ax.set_xlabel(RATE_AXIS)
    ax.tick_params(axis="x", top=True, labeltop=True)  # the scale stays in view on a tall figure
    ax.grid(axis="x", lw=0.3)
    lines = threshold_lines(ax)
    fig.suptitle(title)
    state_legend(ax, ev[STATE], lines)
    note(fig, excluded_note(runs))
    return fig


@figure("fig2_recon_sorted", palette=True)
def fig2_recon_sorted(data) -> Figure:
    """Fig. 2: reconstruction of every evaluated run, ascending; KL on a second (top, log) axis."""
    runs = prepare(data)
    title = "Fig. 2: reconstruction of every run, sorted, with its KL"
    ev = evaluated(runs)
    if not len(ev):
        return message_figure(title, "No evaluated runs. " + excluded_note(runs))
    ev = ev.sort_values(["test/distortion", "run_name"], kind="mergesort")
    fig, ax = rows_figure(len(ev))
    y = np.arange(len(ev))
    colours = ev[STATE].map(STATES).to_list()
    ax.barh(y, ev["test/distortion"], color=colours, height=0.7)
    lo, hi = ev["test/distortion"].min(), ev["test/distortion"].max()
    ax.set_xlim(max(0.0, lo - 0.15 * (hi - lo + 1e-9) - 1), hi + 0.05 * (hi - lo + 1e-9) + 1)
    ax.set_yticks(y, ev[LABEL])
    ax.set_xlabel(DISTORTION_AXIS + " (bars; axis does not start at 0)")
    ax.grid(axis="x", lw=0.3)
    kl = ax.twiny()
    kl.scatter(
        rate_values(ev["test/rate"]), y, marker="D", s=12, facecolor="white", edgecolor="black", zorder=3
    )
    kl.set_xscale("log")
    log_axis(kl.xaxis)
    kl.set_xlim(RATE_FLOOR / 2, max(rate_values(ev["test/rate"]).max(), COLLAPSE_RATE_THRESHOLD) * 2)
    kl.set_xlabel("◇ " + RATE_AXIS)
    kl_handle = Line2D([], [], ls="", marker="D", mfc="white", mec="black", label="KL (rate), top axis")
    fig.suptitle(title)
    state_legend(ax, ev[STATE], [kl_handle])
    note(fig, excluded_note(runs))
    return fig


@figure("fig3_top_recon_vs_kl")
def fig3_top_recon_vs_kl(data) -> Figure:
    """Fig. 3: within the top 25 % by reconstruction, reconstruction vs KL; colour = encoder family,
    marker = decoder family; Spearman's ρ in the title (the paper's C3 reads a negative trend here)."""
    runs = prepare(data)
    pct = f"{rank.TOP_FRACTION:.0%}"
    title = f"Fig. 3: top {pct} by reconstruction: reconstruction vs KL"
    best = top(runs) if len(runs) else runs
    if not len(best):
        return message_figure(title, "No evaluated runs. " + excluded_note(runs))
    colours = family_colours(runs)
    markers = dict(zip(ordered(best["family/decoder"], "family/"), "osD^vPX*ph<>", strict=False))
    fig = Figure(figsize=(PAGE_WIDTH, 5.0), layout="constrained")
    ax = fig.add_subplot()
    for (enc, dec), g in best.groupby(["family/encoder", "family/decoder"], sort=True):
        ax.scatter(
            g["test/distortion"], rate_values(g["test/rate"]), color=colours[enc], marker=markers[dec], s=40,
            edgecolor="black", linewidth=0.4, zorder=3,
        )  # fmt: skip
    ax.set_yscale("log")
    log_axis(ax.yaxis)
    ax.set_xlabel(DISTORTION_AXIS)
    ax.set_ylabel(RATE_AXIS.replace(", log scale", ",\nlog scale"))
    ax.grid(lw=0.3)
    enc_handles = [Patch(color=colours[e], label=e) for e in ordered(best["family/encoder"], "family/")]
    dec_handles = [
        Line2D([], [], ls="", marker=m, color="0.4", mec="black", mew=0.4, label=d)
        for d, m in markers.items()
    ]
    leg = ax.legend(handles=enc_handles, title="encoder (colour)", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.add_artist(leg)
    ax.legend(handles=dec_handles, title="decoder (marker)", loc="lower left", bbox_to_anchor=(1.01, 0))
    n_ranked = len(rank.ranking(runs, "recon"))
    rho = best["test/distortion"].corr(best["test/rate"], method="spearman") if len(best) > 2 else np.nan
    fig.suptitle(title)
    ax.set_title(
        f"{len(best)} of {n_ranked} ranked runs; Spearman ρ(reconstruction, KL) = {rho:.2f}"
        if np.isfinite(rho)
        else f"{len(best)} of {n_ranked} ranked runs"
    )
    note(fig, excluded_note(runs))
    return fig


@figure("fig4_top_counts")
def fig4_top_counts(data) -> Figure:
    """Fig. 4: top-25 % counts per latent size, encoder and decoder, each beside the count expected
    from its base rate (share of ranked runs × size of the top set) and the number trained."""
    runs = prepare(data)
    pct = f"{rank.TOP_FRACTION:.0%}"
    title = f"Fig. 4: top-{pct} runs per latent size, encoder and decoder, next to the base rate"
    best = top(runs) if len(runs) else runs
    if not len(best):
        return message_figure(title, "No evaluated runs. " + excluded_note(runs))
    fig = Figure(figsize=(PAGE_WIDTH, 7.5), layout="constrained")
    axes = fig.subplots(3, 1)
    for ax, by in zip(axes, rank.BASE_CONFIG, strict=True):
        table = rank.base_rates(runs, best, by).set_index(by)
        table = table.loc[ordered(table.index, by)]
        x = np.arange(len(table))
        expected = table["share_trained"] * len(best)
        ax.bar(x - 0.2, table["n_top"], 0.4, color="#2166ac", label=f"in the top {pct} (count)")
        ax.bar(x + 0.2, expected, 0.4, color="0.75", label="expected if it did not matter (base rate)")
        for xi, n in zip(x, table["n_top"], strict=True):
            ax.annotate(
                str(n),
                (xi - 0.2, n),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 1),
                textcoords="offset points",
            )
        ax.set_xticks(x, [f"{v}\n(n={n})" for v, n in zip(table.index, table["n_trained"], strict=True)])
        ax.set_ylabel("runs")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"by {FACTOR_NAMES[by]} (n = runs trained and ranked)", loc="left")
        ax.set_ylim(0, max(table["n_top"].max(), expected.max()) * 1.2 + 0.5)
    fig.suptitle(title)
    handles, labels = axes[0].get_legend_handles_labels()
    legend_below(axes[-1], handles, labels)
    note(
        fig,
        f"Top set: the best {len(best)} of {len(rank.ranking(runs))} ranked runs by reconstruction. "
        + excluded_note(runs),
    )
    return fig


@figure("fig5_top_by_latent")
def fig5_top_by_latent(data) -> Figure:
    """Fig. 5: top-25 % encoders (top panel) and decoders (bottom) per latent size, with the count each
    would have if membership followed the base rate within that latent size (black tick)."""
    runs = prepare(data)
    pct = f"{rank.TOP_FRACTION:.0%}"
    title = f"Fig. 5: top-{pct} encoders and decoders per latent size"
    best = top(runs) if len(runs) else runs
    if not len(best):
        return message_figure(title, "No evaluated runs. " + excluded_note(runs))
    colours = family_colours(runs)
    latents = ordered(rank.ranking(runs)["latent_dim"], "latent_dim")
    fig = Figure(figsize=(PAGE_WIDTH, 6.5), layout="constrained")
    axes = fig.subplots(2, 1)
    for ax, by in zip(axes, ("family/encoder", "family/decoder"), strict=True):
        fams = ordered(rank.ranking(runs)[by], by)
        width = 0.8 / max(len(fams), 1)
        for j, fam in enumerate(fams):
            counts, expected = [], []
            for latent in latents:
                sub_runs = runs[runs["latent_dim"] == latent]
                sub_top = best[best["latent_dim"] == latent]
                t = rank.base_rates(sub_runs, sub_top, by).set_index(by)
                counts.append(int(t["n_top"].get(fam, 0)))
                expected.append(float(t["share_trained"].get(fam, 0.0)) * len(sub_top))
            x = np.arange(len(latents)) - 0.4 + width * (j + 0.5)
            ax.bar(x, counts, width * 0.9, color=colours[fam], label=fam)
            ax.scatter(x, expected, marker="_", s=120, color="black", zorder=3, linewidths=1.5)
        ax.set_xticks(np.arange(len(latents)), [f"L = {v}" for v in latents])
        ax.set_ylabel(f"runs in the top {pct}")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{FACTOR_NAMES[by]}s", loc="left")
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], ls="", marker="_", ms=12, mew=1.5, color="black"))
        labels.append("expected from base rate")
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1), title=FACTOR_NAMES[by])
    fig.suptitle(title)
    note(fig, excluded_note(runs))
    return fig


def _pca_figure(data, fraction: float, title: str) -> Figure:
    runs = prepare(data)
    best = top(runs, fraction) if len(runs) else runs
    if not len(best):
        return message_figure(title, "No evaluated runs. " + excluded_note(runs))
    n = len(best)
    cols = min(PCA_COLUMNS, n)
    rows = -(-n // cols)
    width = min(PAGE_WIDTH, 0.6 + cols * (PCA_PANEL + 0.3))  # a few panels stay panel-sized
    fig = Figure(figsize=(max(width, 3.6), 1.2 + rows * (PCA_PANEL + 0.45)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    cmap = ListedColormap([colormaps["tab10"](i) for i in range(N_DIGITS)])
    norm = BoundaryNorm(np.arange(-0.5, N_DIGITS + 0.5), N_DIGITS)
    nonfinite = []  # runs whose stored μ are not all finite: named, never drawn as a misleading dot
    for ax, (_, r) in zip(axes, best.iterrows(), strict=False):
        got = data.projection(r["run_dir"]) if isinstance(data, Sweep) else None
        if got is not None and not got.all_finite:
            nonfinite.append(f"{r[LABEL]} ({(~got.finite).sum()} of {len(got.finite)} images)")
        _pca_panel(ax, r, got, cmap, norm)
    for ax in axes[n:]:
        ax.set_axis_off()
    # on top, so it is in view however many rows of panels follow
    bar = fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap), ax=axes.tolist(), ticks=range(N_DIGITS), location="top",
        shrink=0.6, aspect=40, fraction=0.4 / fig.get_figheight(), pad=0.15 / fig.get_figheight(),
    )  # fmt: skip
    bar.set_label("digit")
    n_ranked = len(rank.ranking(runs))
    sub = (
        f"{n} of {n_ranked} ranked runs, best first (#rank); test latent means μ, 2-D PCA, coloured by digit"
    )
    fig.suptitle(title + "\n" + textwrap.fill(sub, int(fig.get_figwidth() * 13)))
    if nonfinite:
        note(
            fig,
            "Not drawn: stored latent means μ not finite (beyond float16) for " + ", ".join(nonfinite) + ".",
        )
    return fig


def _pca_panel(ax, r, got, cmap, norm) -> None:
    """One run's panel (``r``: its row of the ranking): its projection ``got`` coloured by digit, or why
    there is none (no stored latents, or not all of them finite)."""
    ax.set_title(f"#{r['rank']} {r[LABEL]}", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_box_aspect(1)
    if got is None:
        ax.text(0.5, 0.5, "no stored\nlatents", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        return
    if not got.all_finite:
        ax.text(
            0.5, 0.5, "non-finite\nlatents", ha="center", va="center", transform=ax.transAxes,
            fontsize=8, color="#b2182b",
        )  # fmt: skip
        return
    xy, ratio, labels = got.xy, got.ratio, got.labels
    ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap=cmap, norm=norm, s=3, linewidths=0, rasterized=True)
    # the spread says how much signal there is: PCA rescales even a collapsed encoder's noise
    ax.set_xlabel(f"PC1 {ratio[0]:.0%}, sd {xy[:, 0].std():.2g}", fontsize=8, labelpad=1)
    ax.set_ylabel(f"PC2 {ratio[1]:.0%}, sd {xy[:, 1].std():.2g}", fontsize=8, labelpad=1)
    if r.get(STATE) in list(STATES)[:2]:
        ax.text(
            0.03, 0.97, "collapsed", transform=ax.transAxes, va="top", fontsize=8, color="#b2182b",
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1},
        )  # fmt: skip


@figure("fig6_pca_top25", palette=True)
def fig6_pca_top25(data) -> Figure:
    """Fig. 6: 2-D PCA of the stored test latent means of each top-25 % run, coloured by digit."""
    return _pca_figure(data, PCA_FRACTIONS["fig6_pca_top25"], "Fig. 6: latent projections of the top 25 %")


@figure("fig7_pca_top50", palette=True)
def fig7_pca_top50(data) -> Figure:
    """Fig. 7: as Fig. 6 for the top 50 %."""
    return _pca_figure(data, PCA_FRACTIONS["fig7_pca_top50"], "Fig. 7: latent projections of the top 50 %")
