"""The paper's Figures 1–7, redrawn from stored results: one function per figure, each
``fig_<name>(sweep_or_runs, out_dir) -> [png, pdf]`` (see ``analysis.plotting.figure``)."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis import claims, rank, units  # noqa: E402
from analysis.claim_stats import MIN_CORR_RUNS, numeric  # noqa: E402
from analysis.collect import Sweep  # noqa: E402
from analysis.plotting import (  # noqa: E402
    CONFIG,
    DISTORTION_AXIS,
    FACET_COLUMNS,
    FACTOR_NAMES,
    LABEL,
    MAX_ROWS,
    N_DIGITS,
    PAGE_WIDTH,
    PAPER_SPELLING,
    PCA_COLUMNS,
    PCA_EXTRA,
    PCA_FRACTIONS,
    PCA_MAX_PANELS,
    PCA_PANEL,
    PCA_PANEL_EXTRA,
    RATE_AXIS,
    RATE_FLOOR,
    STATE,
    STATES,
    config_labels,
    evaluated,
    excluded_note,
    facet_capacity,
    facet_figure,
    family_colours,
    figure,
    legend_below,
    log_axis,
    message_figure,
    note,
    ordered,
    per_config,
    prepare,
    rate_values,
    rows_figure,
    state_legend,
    threshold_lines,
    top,
)
from sweep.thresholds import COLLAPSE_RATE_THRESHOLD  # noqa: E402

RUN = "fig/run"  # the label of the run a PCA panel draws (its seed named), for the note
KL_HANDLE = Line2D([], [], ls="", marker="D", mfc="white", mec="black", label="KL (rate), top axis")

# ---------------------------------------------------------------- the paper's figures


@figure("fig1_rate_sorted", palette=True)
def fig1_rate_sorted(data) -> Figure:
    """Fig. 1: the KL (rate) of every evaluated run, ascending, log scale, collapsed runs coloured; past
    ``MAX_ROWS`` runs, of every configuration (``_fig1_configs``)."""
    runs = prepare(data)
    title = "Fig. 1: KL (rate) of every run, sorted"
    ev = evaluated(runs)
    if not len(ev):
        return message_figure(title, "No evaluated runs. " + excluded_note(runs))
    if len(ev) > MAX_ROWS:
        return _fig1_configs(runs, ev)
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
    note(fig, _joined(excluded_note(runs), PAPER_SPELLING))
    return fig


def _fig1_configs(runs: pd.DataFrame, ev: pd.DataFrame) -> Figure:
    """Fig. 1 past ``MAX_ROWS`` runs: one row per configuration (dot: the mean KL over its seeds, line:
    their min–max), sorted, one panel per latent size."""
    panels, cap = _config_panels(ev)
    fig, axes, cell = facet_figure(len(panels), max(len(g) for _, g, _ in panels))
    top_x = max(rate_values(ev["test/rate"]).max(), COLLAPSE_RATE_THRESHOLD) * 2
    for i, (ax, (latent, g, n)) in enumerate(zip(axes, panels, strict=True)):
        g = g.sort_values(["test/rate", CONFIG], kind="mergesort")
        y, colours = np.arange(len(g)), g[STATE].map(STATES).to_list()
        ax.hlines(y, rate_values(g["test/rate/min"]), rate_values(g["test/rate/max"]), colors=colours, lw=1.2)
        ax.scatter(rate_values(g["test/rate"]), y, c=colours, s=14, zorder=3)
        ax.set_xscale("log")
        log_axis(ax.xaxis)
        ax.set_xlim(RATE_FLOOR / 2, top_x)
        ax.set_yticks(y, g[LABEL])
        ax.grid(axis="x", lw=0.3)
        lines = threshold_lines(ax)
        ax.set_title(_panel_title(latent, len(g), n), loc="left")
        if i >= len(panels) - FACET_COLUMNS:
            ax.set_xlabel("KL (rate), nats per image, log scale")
    fig.suptitle("Fig. 1: KL (rate) of every configuration, sorted, one panel per latent size")
    spread = Line2D([], [], color="0.3", marker="o", ms=4, lw=1.2, label="mean over seeds, line: min–max")
    _facet_legend(cell, ev, [spread, *lines])
    note(fig, _joined(_configs_note(ev, cap, panels), excluded_note(runs), PAPER_SPELLING))
    return fig


@figure("fig2_recon_sorted", palette=True)
def fig2_recon_sorted(data) -> Figure:
    """Fig. 2: reconstruction of every evaluated run, ascending; KL on a second (top, log) axis; past
    ``MAX_ROWS`` runs, of every configuration (``_fig2_configs``)."""
    runs = prepare(data)
    title = "Fig. 2: reconstruction of every run, sorted, with its KL"
    ev = evaluated(runs)
    if not len(ev):
        return message_figure(title, "No evaluated runs. " + excluded_note(runs))
    if len(ev) > MAX_ROWS:
        return _fig2_configs(runs, ev)
    ev = ev.sort_values(["test/distortion", "run_name"], kind="mergesort")
    fig, ax = rows_figure(len(ev))
    y = np.arange(len(ev))
    colours = ev[STATE].map(STATES).to_list()
    ax.barh(y, ev["test/distortion"], color=colours, height=0.7)
    ax.set_xlim(*_distortion_limits(ev["test/distortion"]))
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
    fig.suptitle(title)
    state_legend(ax, ev[STATE], [KL_HANDLE])
    note(fig, _joined(excluded_note(runs), PAPER_SPELLING))
    return fig


def _fig2_configs(runs: pd.DataFrame, ev: pd.DataFrame) -> Figure:
    """Fig. 2 past ``MAX_ROWS`` runs: one row per configuration (bar: the mean distortion over its
    seeds, whisker: their min–max; diamond: the mean KL on the top axis), sorted, one panel per latent
    size."""
    panels, cap = _config_panels(ev)
    fig, axes, cell = facet_figure(len(panels), max(len(g) for _, g, _ in panels))
    limits = _distortion_limits(ev["test/distortion"])
    top_x = max(rate_values(ev["test/rate"]).max(), COLLAPSE_RATE_THRESHOLD) * 2
    for i, (ax, (latent, g, n)) in enumerate(zip(axes, panels, strict=True)):
        g = g.sort_values(["test/distortion", CONFIG], kind="mergesort")
        y, mean = np.arange(len(g)), g["test/distortion"].to_numpy(dtype=float)
        err = np.vstack([mean - g["test/distortion/min"], g["test/distortion/max"] - mean])
        ax.barh(
            y, mean, color=g[STATE].map(STATES).to_list(), height=0.7, xerr=err,
            error_kw={"ecolor": "0.2", "elinewidth": 0.8, "capsize": 0},
        )  # fmt: skip
        ax.set_xlim(*limits)
        ax.set_yticks(y, g[LABEL])
        ax.grid(axis="x", lw=0.3)
        ax.set_title(_panel_title(latent, len(g), n), loc="left")
        kl = ax.twiny()
        kl.scatter(
            rate_values(g["test/rate"]), y, marker="D", s=12, facecolor="white", edgecolor="black", zorder=3
        )
        kl.set_xscale("log")
        log_axis(kl.xaxis)
        kl.set_xlim(RATE_FLOOR / 2, top_x)
        if i < FACET_COLUMNS:
            kl.set_xlabel("◇ KL (rate), nats per image, log scale")
        if i >= len(panels) - FACET_COLUMNS:
            ax.set_xlabel("distortion, nats per image (bars)")
    fig.suptitle(
        "Fig. 2: reconstruction of every configuration, sorted, with its KL, one panel per latent size"
    )
    spread = Line2D([], [], color="0.2", lw=0.8, label="bar: mean over seeds, whisker: min–max")
    _facet_legend(cell, ev, [spread, KL_HANDLE])
    where = "The distortion axes do not start at 0."
    note(fig, _joined(_configs_note(ev, cap, panels), where, excluded_note(runs), PAPER_SPELLING))
    return fig


def _distortion_limits(values: pd.Series) -> tuple[float, float]:
    """x limits of distortion bars of ``values``: not from 0, a margin left of the lowest."""
    lo, hi = float(values.min()), float(values.max())
    return max(0.0, lo - 0.15 * (hi - lo + 1e-9) - 1), hi + 0.05 * (hi - lo + 1e-9) + 1


def _config_panels(ev: pd.DataFrame) -> tuple[list[tuple[object, pd.DataFrame, int]], int]:
    """The per-configuration rows of ``ev`` (``per_config``) as (latent size, rows, configurations of
    that latent size), one per latent size, and the panel capacity (``facet_capacity``): a latent size
    with more configurations keeps the best of them (lowest mean distortion, ties by configuration)."""
    table = per_config(ev)
    latent = table["latent_dim"] if "latent_dim" in table.columns else pd.Series("all", index=table.index)
    latents = ordered(latent, "latent_dim")
    cap = facet_capacity(len(latents))
    panels = []
    for value in latents:
        g = table[latent.eq(value)]
        panels.append((value, g.sort_values(["test/distortion", CONFIG], kind="mergesort").head(cap), len(g)))
    return panels, cap


def _panel_title(latent, shown: int, n: int) -> str:
    name = f"L = {latent:g}" if isinstance(latent, int | float | np.number) else str(latent)
    if shown < n:
        return f"{name}: best {shown} of {n} by distortion"
    return f"{name} ({n} configurations)"


def _configs_note(ev: pd.DataFrame, cap: int, panels) -> str:
    seeds = sorted(units.config_means(ev)["n_seeds"].unique())
    n_seeds = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
    text = (
        f"{len(ev)} runs are more rows than the {MAX_ROWS} one page holds: one row per configuration (the "
        f"mean over its {n_seeds} seeds, with their min–max), one panel per latent size; colour: the most "
        "collapsed state among its seeds."
    )
    if any(len(g) < n for _, g, n in panels):
        text += f" A panel holds at most {cap} configurations: the best by mean distortion."
    return text


def _facet_legend(cell, ev: pd.DataFrame, extra: list) -> None:
    """The collapse states drawn and ``extra`` handles, in the legend cell under the panels."""
    handles = [Patch(color=STATES[s], label=s) for s in STATES if s in set(ev[STATE])]
    cell.legend(handles=[*handles, *extra], loc="center", ncol=2, frameon=False)


def _joined(*parts: str) -> str:
    return " ".join(p for p in parts if p)


@figure("fig3_top_recon_vs_kl")
def fig3_top_recon_vs_kl(data) -> Figure:
    """Fig. 3: within the top 25 % of configurations by reconstruction (each the mean over its seeds:
    the claims check's unit), reconstruction vs KL; colour = encoder family, marker = decoder family;
    claim C3's own statistic in the subtitle (``claims.top_correlation_test`` on these configurations)."""
    runs = prepare(data)
    pct = f"{rank.TOP_FRACTION:.0%}"
    title = f"Fig. 3: top {pct} of configurations by reconstruction: reconstruction vs KL"
    ranked = c3_configs(runs)
    best = rank.top_set(ranked, "recon") if len(ranked) else ranked
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
    ax.set_xlabel(DISTORTION_AXIS + ", mean over seeds")
    ax.set_ylabel(RATE_AXIS.replace(", log scale", ",\nmean over seeds, log scale"))
    ax.grid(lw=0.3)
    enc_handles = [Patch(color=colours[e], label=e) for e in ordered(best["family/encoder"], "family/")]
    dec_handles = [
        Line2D([], [], ls="", marker=m, color="0.4", mec="black", mew=0.4, label=d)
        for d, m in markers.items()
    ]
    leg = ax.legend(handles=enc_handles, title="encoder (colour)", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.add_artist(leg)
    ax.legend(handles=dec_handles, title="decoder (marker)", loc="lower left", bbox_to_anchor=(1.01, 0))
    fig.suptitle(title)
    sub = f"{len(best)} of {len(ranked)} ranked configurations, each the mean over its seeds"
    arms = rank.id_columns(ranked)
    if arms:  # the claims check decides C3 within each arm, on the arm's own top set: print those
        sub += f", pooled over {', '.join(arms)}"
        parts = [(rank.arm_name(arms, key), g) for key, g in ranked.groupby(arms, sort=True)]
    else:
        parts = [("", ranked)]
    for arm, part in parts:
        top = rank.top_set(part, "recon")
        where = f" ({arm}, its own top {len(top)})" if arm else ""
        if len(top) >= MIN_CORR_RUNS:
            res = claims.top_correlation_test(part)
            sub += (
                f"\nclaim C3's statistic{where}: Spearman ρ(distortion, KL) = {_signed(res.statistic)}, "
                f"95 % bootstrap interval [{_signed(res.ci_low)}, {_signed(res.ci_high)}]"
            )
        else:
            sub += f"\nclaim C3's statistic{where} needs {MIN_CORR_RUNS} configurations in the top set"
    ax.set_title(sub)
    note(fig, _joined(excluded_note(runs), PAPER_SPELLING))
    return fig


def c3_configs(runs: pd.DataFrame) -> pd.DataFrame:
    """The configurations claim C3 is tested on (``analysis.claims``): the seed means of the ok runs
    (``units.config_means``) with a finite distortion and rate."""
    if not len(runs):
        return runs
    ok = runs[runs["status"].astype(str).eq("ok")] if "status" in runs.columns else runs
    u = units.config_means(ok)
    return u[rank.ranked_mask(u, "recon") & np.isfinite(numeric(u, "test/rate"))] if len(u) else u


def _signed(x: float) -> str:
    """``x`` to 3 decimals with a typographic minus, as the report prints statistics."""
    return f"{x:.3f}".replace("-", "−") if np.isfinite(x) else "undefined"


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
    top_set = f"Top set: the best {len(best)} of {len(rank.ranking(runs))} ranked runs by reconstruction."
    note(fig, _joined(top_set, excluded_note(runs), PAPER_SPELLING))
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
    note(fig, _joined(excluded_note(runs), PAPER_SPELLING))
    return fig


def _pca_figure(data, fraction: float, title: str) -> Figure:
    """The PCA small multiples of the top ``fraction`` of configurations by mean distortion, at most
    ``PCA_MAX_PANELS`` of them (the best), one panel each: the projection of its lowest seed's run."""
    runs = prepare(data)
    shown, n_top, n_ranked = _pca_runs(runs, fraction)
    if not len(shown):
        return message_figure(title, "No evaluated runs. " + excluded_note(runs))
    n = len(shown)
    cols = min(PCA_COLUMNS, n)
    rows = -(-n // cols)
    width = min(PAGE_WIDTH, 0.6 + cols * (PCA_PANEL + 0.3))  # a few panels stay panel-sized
    fig = Figure(
        figsize=(max(width, 3.6), PCA_EXTRA + rows * (PCA_PANEL + PCA_PANEL_EXTRA)), layout="constrained"
    )
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    cmap = ListedColormap([colormaps["tab10"](i) for i in range(N_DIGITS)])
    norm = BoundaryNorm(np.arange(-0.5, N_DIGITS + 0.5), N_DIGITS)
    nonfinite = []  # runs whose stored μ are not all finite: named, never drawn as a misleading dot
    for ax, (_, r) in zip(axes, shown.iterrows(), strict=False):
        got = data.projection(r["run_dir"]) if isinstance(data, Sweep) and "run_dir" in r else None
        if got is not None and not got.all_finite:
            nonfinite.append(f"{r[RUN]} ({(~got.finite).sum()} of {len(got.finite)} images)")
        _pca_panel(ax, r, got, cmap, norm)
    for ax in axes[n:]:
        ax.set_axis_off()
    # on top, so it is in view however many rows of panels follow
    bar = fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap), ax=axes.tolist(), ticks=range(N_DIGITS), location="top",
        shrink=0.6, aspect=40, fraction=0.4 / fig.get_figheight(), pad=0.15 / fig.get_figheight(),
    )  # fmt: skip
    bar.set_label(class_label(runs))
    pct, seed = f"{fraction * 100:g} %", _first_seed(runs)
    which = (
        f"the best {n} of {n_ranked} ranked configurations by mean distortion (the top {pct})"
        if n == n_top
        else f"the best {n} of the {n_top} configurations in the top {pct} ({n_ranked} ranked by mean "
        f"distortion; {PCA_MAX_PANELS} panels fill a page)"
    )
    sub = f"{which}, best first (#rank); each panel: the test latent means μ of its {seed}run, 2-D PCA"
    fig.suptitle(title + "\n" + textwrap.fill(sub, int(fig.get_figwidth() * 13)))
    bad = f"Not drawn: stored latent means μ not finite (beyond float16) for {', '.join(nonfinite)}."
    note(fig, _joined(bad if nonfinite else "", PAPER_SPELLING))
    return fig


def _first_seed(runs: pd.DataFrame) -> str:
    """``"seed-0 "`` (the sweep's first seed) where runs have several seeds, else ``""``: the seed a PCA
    panel draws unless its label says another (its configuration has no ranked run of that seed)."""
    seeds = runs["seed"].dropna() if "seed" in runs.columns else pd.Series(dtype=float)
    return f"seed-{seeds.min():g} " if seeds.nunique() > 1 else ""


def _pca_runs(runs: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, int, int]:
    """The runs the PCA figure draws, best first: for each of the best ``PCA_MAX_PANELS`` configurations
    of the top ``fraction`` by mean distortion (``units.config_means`` of the ranked runs, ties by
    configuration), its ranked run of the lowest seed, with the configuration's ``rank``; and the sizes
    of the top set and of the ranking."""
    ranked = runs[rank.ranked_mask(runs, "recon")] if len(runs) else runs
    if not len(ranked):
        return ranked, 0, 0
    configs = rank.ranking(units.config_means(ranked), "recon")
    n_top = len(rank.top_set(configs, "recon", fraction))
    best = configs.head(min(n_top, PCA_MAX_PANELS))
    ids = rank.with_config_id(ranked)
    order = ["seed", "run_name"] if "seed" in ids.columns else ["run_name"]
    first = ids.sort_values(order, kind="mergesort").groupby(CONFIG, sort=False).head(1).set_index(CONFIG)
    shown = first.loc[best[CONFIG]].reset_index()
    shown["rank"] = best["rank"].to_numpy()
    # the configuration's label; the seed only where it is not the sweep's first (named in the subtitle)
    other = (
        shown["seed"].ne(ids["seed"].min())
        if "seed" in shown.columns
        else pd.Series(False, index=shown.index)
    )
    shown[RUN] = shown[LABEL]
    shown[LABEL] = config_labels(shown).where(~other, shown[LABEL])
    return shown, n_top, len(configs)


# what a label is in each dataset (data/fashion_mnist/README.md), for the PCA panels' colour bar
CLASS_LABELS = {
    "mnist": "digit",
    "fashion_mnist": "class: 0 T-shirt/top, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt, "
    "7 sneaker, 8 bag, 9 ankle boot",
}


def class_label(runs: pd.DataFrame) -> str:
    """What the colours of the PCA panels are: the runs' dataset's classes ("digit" for MNIST; a run
    stored before ``data.name`` existed is MNIST), or "class label" for runs of several datasets."""
    names = set(runs["data.name"].astype(str)) if "data.name" in runs.columns and len(runs) else {"mnist"}
    return CLASS_LABELS.get(names.pop(), "class label") if len(names) == 1 else "class label"


def _pca_panel(ax, r, got, cmap, norm) -> None:
    """One run's panel (``r``: its row of the ranking): its projection ``got`` coloured by class, or why
    there is none (no stored latents, or not all of them finite)."""
    ax.set_title(f"#{r['rank']} {r[LABEL]}", fontsize=8)  # the configuration's rank, the run drawn
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
    """Fig. 6: 2-D PCA of the stored test latent means of each top-25 % configuration (its lowest seed's
    run; at most ``PCA_MAX_PANELS``, the best), coloured by class (digit, garment)."""
    return _pca_figure(
        data, PCA_FRACTIONS["fig6_pca_top25"], "Fig. 6: latent projections of the top 25 % of configurations"
    )


@figure("fig7_pca_top50", palette=True)
def fig7_pca_top50(data) -> Figure:
    """Fig. 7: as Fig. 6 for the top 50 %."""
    return _pca_figure(
        data, PCA_FRACTIONS["fig7_pca_top50"], "Fig. 7: latent projections of the top 50 % of configurations"
    )
