"""Shared plotting conventions for the analysis figures: sizes, fonts, colours, run labels and
collapse states, notes for excluded runs, and the ``@figure`` decorator that renders a drawing to PNG
and PDF atomically and deterministically. Used by ``analysis.figures`` and ``analysis.own_figures``."""

from __future__ import annotations

import functools
import io
import textwrap
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation  # noqa: E402
from matplotlib.transforms import offset_copy  # noqa: E402

from analysis import rank, units  # noqa: E402
from analysis.collect import Sweep  # noqa: E402
from sweep.results import atomic_write_bytes  # noqa: E402
from sweep.thresholds import COLLAPSE_RATE_THRESHOLD, PAPER_COLLAPSE_THRESHOLD  # noqa: E402

DPI = 150
PAGE_WIDTH = 7.5  # inches: a figure at page width is printed at 100 %, so font sizes are what they say
# The tallest figure: one printed page at PAGE_WIDTH, or one screen at DPI (1,650 px + the margins).
# Every figure of a sweep stays within PAGE_WIDTH × MAX_FIGURE_INCHES, whatever its run count.
MAX_FIGURE_INCHES = 11.0
PAD_INCHES = 0.1  # the margin ``render`` leaves around a figure's tight bounding box
# The largest PNG (width, height) in pixels: 1155 × 1680 at 150 dpi
MAX_PIXELS = tuple(round((inches + 2 * PAD_INCHES) * DPI) for inches in (PAGE_WIDTH, MAX_FIGURE_INCHES))
ROW_HEIGHT = 0.19  # inches per run in one-run-per-row figures (8 pt labels are 0.11 in tall)
ROWS_EXTRA = 2.2  # inches of a one-row-per-run figure beside its rows: title, axis labels, legend
NOTE_ROOM = 0.9  # inches kept for a figure's note (up to five lines of 8 pt)
# The most runs a one-row-per-run figure draws (41: 2.2 + 41 × 0.19 = 10.0 in, plus a note): past it,
# Figs. 1 and 2 draw one row per configuration, one panel per latent size (``facet_figure``).
MAX_ROWS = int((MAX_FIGURE_INCHES - NOTE_ROOM - ROWS_EXTRA) / ROW_HEIGHT)
FACET_COLUMNS = 2  # panels side by side in the per-configuration figures
FACET_ROW_HEIGHT = 0.15  # inches per configuration in a panel (8 pt labels, 0.04 in apart)
FACET_EXTRA = 1.4  # inches of a faceted figure beside its panels: its title, legend and x label
FACET_LEGEND = 0.4  # inches of the legend cell under the panels (two rows of 8 pt entries)
FACET_PANEL_EXTRA = 0.55  # inches of each row of panels beside its rows: the panel's title and x axis
RATE_FLOOR = (
    1e-8  # nats; a rate at or below this (0, or slightly negative numerically) is drawn here on log axes
)
PCA_FRACTIONS = {"fig6_pca_top25": 0.25, "fig7_pca_top50": 0.50}
PCA_COLUMNS = 5  # panels per row in the PCA small multiples (a run label at 8 pt fits the width)
PCA_PANEL = 1.05  # inches per PCA panel
PCA_EXTRA = 1.2  # inches of a PCA figure beside its panels: the title, subtitle and colour bar
PCA_PANEL_EXTRA = 0.45  # inches of each row of panels beside the panels: the panel's title and labels
PCA_NOTE_ROOM = 0.5  # inches kept for a PCA figure's note (two lines)
# The most panels (configurations) a PCA figure draws: the rows of panels that fit MAX_FIGURE_INCHES
# (6 rows of 5: 1.2 + 6 × 1.5 + 0.5 = 10.7 in); past it the figure shows "the best 30 of n".
PCA_MAX_PANELS = PCA_COLUMNS * int(
    (MAX_FIGURE_INCHES - PCA_EXTRA - PCA_NOTE_ROOM) / (PCA_PANEL + PCA_PANEL_EXTRA)
)
N_DIGITS = 10
HEAT_CELL = 0.55  # inches per heat-map column
LEGEND_DROP = 38  # points from an axes' bottom edge to a legend under its tick labels and x label
MAX_NAMED = 15  # runs named per status in a figure's note; the report lists them all
ABLATION_FACTORS = (
    "data.name",
    "loss.reduction",
    "data.likelihood",
    "loss.beta",
    "loss.warmup_epochs",
    "loss.free_bits",
)
RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 11,
    "svg.hashsalt": "vae-sweep",  # fixed ids, so an SVG export would be reproducible too
    "pdf.compression": 6,
}
# Collapse state of an evaluated run (sweep/thresholds.py), in drawing order, with its colour.
STATES = {
    f"collapsed, rate < {PAPER_COLLAPSE_THRESHOLD:g} (paper's floor)": "#b2182b",
    f"collapsed (no active unit, rate < {COLLAPSE_RATE_THRESHOLD:g})": "#ef8a62",
    "some units inactive": "#67a9cf",
    "all units active": "#2166ac",
}
LABEL = "fig/label"
STATE = "fig/state"
CONFIG = "config"  # a configuration's id (``rank.with_config_id``), the key of the per-configuration rows
# Figures spell families as run names do (dense1, conv4: ``L25_dense1_conv4``); the paper's spelling is
# named once, in the note of each of its figures.
PAPER_SPELLING = "The paper writes DNN for dense and CNN for conv (its L25_DNN1_CNN4 is L25_dense1_conv4)."


# ---------------------------------------------------------------- run-table helpers


def runs_of(data: Sweep | pd.DataFrame) -> pd.DataFrame:
    return data.runs if isinstance(data, Sweep) else data


def config_labels(runs: pd.DataFrame) -> pd.Series:
    """The configuration of each row spelled as run names spell it (``L25_dense1_conv4``), with
    `` key=value`` for each other config key that tells configurations of one label apart (an ablation
    pooled with its baseline, e.g. ``loss.reduction=paper``); the run name where the table has no
    families."""
    return _labels(runs, seeds=False)


def run_labels(runs: pd.DataFrame) -> pd.Series:
    """Each run's label: its configuration (``config_labels``) with ``_s{seed}`` before any ``key=value``
    when the table has several seeds (``L25_dense1_conv4_s0 loss.reduction=paper``)."""
    return _labels(runs, seeds=True)


def _labels(runs: pd.DataFrame, seeds: bool) -> pd.Series:
    if not len(runs):
        return pd.Series([], dtype=str)
    if not all(c in runs.columns for c in rank.BASE_CONFIG):
        return runs["run_name"].astype(str)
    latent = runs["latent_dim"].map(lambda v: f"{int(v)}" if pd.notna(v) else "?")
    enc, dec = runs["family/encoder"].astype(str), runs["family/decoder"].astype(str)
    labels = "L" + latent + "_" + enc + "_" + dec
    if seeds and "seed" in runs.columns and runs["seed"].nunique() > 1:
        labels = labels + "_s" + runs["seed"].astype(str)
    for col in rank.id_columns(runs):
        labels = labels + f" {col}=" + runs[col].astype(str)
    return labels


def state_of(runs: pd.DataFrame) -> pd.Series:
    """The collapse state (a key of ``STATES``) of each evaluated run."""
    names = list(STATES)

    def true(v) -> bool:  # null (NaN, None, NA) counts as not flagged
        return isinstance(v, bool | np.bool_) and bool(v)

    def one(r) -> str:
        if true(r.get("paper_collapsed")):
            return names[0]
        if true(r.get("collapsed")):
            return names[1]
        if true(r.get("partial")):
            return names[2]
        return names[3]

    return pd.Series([one(r) for _, r in runs.iterrows()], index=runs.index, dtype=object)


def prepare(data: Sweep | pd.DataFrame) -> pd.DataFrame:
    """The run table with ``fig/label`` and, for evaluated runs, ``fig/state``."""
    runs = runs_of(data).copy()
    if not len(runs):
        return runs
    runs[LABEL] = run_labels(runs)
    runs[STATE] = None
    ev = evaluated_mask(runs)
    runs.loc[ev, STATE] = state_of(runs[ev])
    return runs


def evaluated_mask(runs: pd.DataFrame) -> pd.Series:
    """Status ok, evaluation ok, finite distortion and rate: the runs with test metrics to draw."""
    need = ("status", "eval/status", "test/distortion", "test/rate")
    if not len(runs) or any(c not in runs.columns for c in need):
        return pd.Series(False, index=runs.index)
    finite = np.isfinite(runs["test/distortion"].astype(float)) & np.isfinite(runs["test/rate"].astype(float))
    return runs["status"].eq("ok") & runs["eval/status"].eq("ok") & finite


def evaluated(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`evaluated_mask` (``runs`` itself when it is empty)."""
    return runs[evaluated_mask(runs)] if len(runs) else runs


def excluded(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Runs without test metrics, grouped by why: their status (``failed``, ``diverged``),
    ``non-finite test metrics`` (evaluated, but rate or distortion is not finite) or ``not evaluated``
    (status ok but no evaluation), names sorted."""
    if not len(runs):
        return {}
    out: dict[str, list[str]] = {}
    for _, r in runs[~evaluated_mask(runs)].sort_values("run_name").iterrows():
        why = r["status"] if r.get("status") in ("failed", "diverged") else "not evaluated"
        if why == "not evaluated" and r.get("eval/status") == "ok":
            why = "non-finite test metrics"
        out.setdefault(why, []).append(str(r.get(LABEL, r["run_name"])))
    return out


def excluded_note(runs: pd.DataFrame) -> str:
    parts = []
    for why, names in excluded(runs).items():
        shown = ", ".join(names[:MAX_NAMED]) + (
            f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
        )
        parts.append(f"{len(names)} {why}: {shown}")
    return ("Not shown (no test metrics): " + "; ".join(parts) + ".") if parts else ""


def family_key(name: str) -> tuple[int, int, str]:
    """Sort key of a family name: dense before conv, then depth (dense4 before dense16)."""
    name = str(name)
    kind = name.rstrip("0123456789")
    depth = name[len(kind) :]
    return ({"dense": 0, "conv": 1}.get(kind, 2), int(depth) if depth else 0, name)


def ordered(values, by: str) -> list:
    values = list(dict.fromkeys(values))
    if by.startswith("family/"):
        return sorted(values, key=family_key)
    return sorted(values, key=lambda v: (str(type(v)), v))


def family_colours(runs: pd.DataFrame) -> dict[str, tuple]:
    """One colour per encoder/decoder family of the sweep, the same in every figure."""
    fams = []
    for c in ("family/encoder", "family/decoder"):
        if c in runs.columns:
            fams.extend(runs[c].dropna().astype(str))
    cmap = colormaps["tab10"]
    return {f: cmap(i % 10) for i, f in enumerate(ordered(fams, "family/"))}


def top(runs: pd.DataFrame, fraction: float = rank.TOP_FRACTION, criterion: str = "recon") -> pd.DataFrame:
    """``rank.top_set`` with this module's label and state columns kept."""
    got = rank.top_set(runs, criterion, fraction)
    for c in (LABEL, STATE):
        if c not in got.columns and c in runs.columns:
            got[c] = got["run_name"].map(runs.set_index("run_name")[c])
    return got


# ---------------------------------------------------------------- drawing helpers


def note(fig: Figure, text: str) -> None:
    """A wrapped note at the bottom of a constrained-layout figure; the figure grows to make room."""
    if not text:
        return
    text = textwrap.fill(text, int(fig.get_figwidth() * 16))  # about 16 characters of 8 pt per inch
    height = (text.count("\n") + 1) * 8 * 1.4 / 72 + 0.1  # inches
    fig.set_figheight(fig.get_figheight() + height)
    frac = height / fig.get_figheight()
    fig.get_layout_engine().set(rect=(0, frac, 1, 1 - frac))
    fig.text(0.01, frac, text, va="top", ha="left", fontsize=8)


def message_figure(title: str, message: str) -> Figure:
    """A figure that only says why there is nothing to draw."""
    fig = Figure(figsize=(PAGE_WIDTH, 1.6))
    fig.suptitle(title)
    fig.text(0.5, 0.45, textwrap.fill(message, 100), ha="center", va="center", fontsize=9)
    return fig


def save(fig: Figure, out_dir: Path, name: str, palette: bool = False) -> list[Path]:
    """``fig`` → ``<name>.png`` and ``<name>.pdf`` in ``out_dir``, each rendered in memory, then written
    atomically. The PDF has no creation date, so identical inputs give identical bytes. ``palette``: the
    PNG is stored with 256 colours (``palette_png``)."""
    paths = []
    for ext in ("png", "pdf"):
        data = render(fig, ext)
        data = palette_png(data) if palette and ext == "png" else data
        path = Path(out_dir) / f"{name}.{ext}"
        atomic_write_bytes(path, data)
        paths.append(path)
    return paths


def render(fig: Figure, ext: str) -> bytes:
    """``fig`` as the full-colour ``png`` (at ``DPI``) or ``pdf`` (no creation date) bytes ``save`` stores."""
    kw = {"dpi": DPI} if ext == "png" else {"metadata": {"CreationDate": None}}
    buf = io.BytesIO()
    fig.savefig(buf, format=ext, bbox_inches="tight", pad_inches=PAD_INCHES, **kw)
    return buf.getvalue()


def palette_png(png: bytes) -> bytes:
    """An opaque PNG re-encoded with a 256-colour palette (median cut, no dithering), or ``png`` as it
    was if any pixel is transparent. For figures of a few flat colours and their anti-aliased edges
    (scatter small multiples, one row per run) this keeps ≥ 80 % of pixels exact and stores a third to
    a quarter of the bytes; the PDF beside it keeps every colour."""
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    if image.mode not in ("RGB", "RGBA") or (image.mode == "RGBA" and image.getextrema()[3][0] < 255):
        return png
    quantized = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    quantized.save(out, format="PNG", optimize=True)
    return out.getvalue()


def figure(name: str, palette: bool = False) -> Callable:
    """Turn ``draw(data) -> Figure`` into ``fig_<name>(data, out_dir) -> [png, pdf]`` under ``RC``;
    ``palette``: its PNG is stored with 256 colours (for the figures that grow with the run count)."""

    def wrap(draw: Callable[[Sweep | pd.DataFrame], Figure]) -> Callable:
        @functools.wraps(draw)
        def write(data: Sweep | pd.DataFrame, out_dir: str | Path) -> list[Path]:
            with matplotlib.rc_context(RC):
                return save(draw(data), Path(out_dir), name, palette)

        write.figure_name = name
        write.palette = palette
        return write

    return wrap


def legend_below(ax, handles, labels=None) -> None:
    """A legend under an axes' tick labels and x label (constrained layout makes room for it)."""
    below = offset_copy(ax.transAxes, fig=ax.figure, y=-LEGEND_DROP, units="points")
    kw = {"handles": handles} if labels is None else {"handles": handles, "labels": labels}
    ax.legend(**kw, loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=below, ncol=2, frameon=False)


def state_legend(ax, states, extra=()) -> None:
    handles = [Patch(color=STATES[s], label=s) for s in STATES if s in set(states)]
    legend_below(ax, [*handles, *extra])


def threshold_lines(ax, vertical: bool = True) -> list[Line2D]:
    line = ax.axvline if vertical else ax.axhline
    a = line(COLLAPSE_RATE_THRESHOLD, color="0.3", ls="--", lw=0.8)
    b = line(PAPER_COLLAPSE_THRESHOLD, color="0.3", ls=":", lw=0.8)
    a.set_label(f"collapse threshold, rate = {COLLAPSE_RATE_THRESHOLD:g} nats")
    b.set_label(f"paper's floor, rate = {PAPER_COLLAPSE_THRESHOLD:g} nats")
    return [a, b]


class PlainLog(LogFormatterSciNotation):
    """Log-axis labels as plain numbers (``20``, ``0.5``) between 1e-3 and 1e4, as powers of ten
    outside; labels the same ticks as matplotlib's default (so minor ticks only on short spans)."""

    def __call__(self, x, pos=None):
        s = super().__call__(x, pos)
        return f"{x:g}" if s and 1e-3 <= abs(x) < 1e4 else s


def log_axis(axis) -> None:
    axis.set_major_formatter(PlainLog())
    axis.set_minor_formatter(PlainLog(labelOnlyBase=False))


def rate_values(values: pd.Series) -> np.ndarray:
    return np.maximum(values.astype(float).to_numpy(), RATE_FLOOR)


RATE_AXIS = f"KL (rate), nats per image, log scale (values ≤ {RATE_FLOOR:g} drawn at {RATE_FLOOR:g})"
DISTORTION_AXIS = "reconstruction (distortion), nats per image"


def rows_figure(n: int) -> tuple[Figure, object]:
    fig = Figure(figsize=(PAGE_WIDTH, ROWS_EXTRA + ROW_HEIGHT * n), layout="constrained")
    ax = fig.add_subplot()
    ax.set_ylim(n - 0.5, -0.5)  # first run at the top
    ax.margins(y=0)
    return fig, ax


def per_config(ev: pd.DataFrame, metrics=("test/distortion", "test/rate")) -> pd.DataFrame:
    """One row per configuration of the evaluated runs ``ev`` (``units.config_means``: the mean over its
    seeds of every metric, ``n_seeds``), with ``<metric>/min`` and ``<metric>/max`` over its seeds for
    each of ``metrics``, its label (``config_labels``) and its state: the most collapsed state among its
    seeds (``STATES`` is in that order)."""
    u = units.config_means(ev)
    ids = rank.with_config_id(ev)
    spread = ids.groupby(CONFIG)[list(metrics)].agg(["min", "max"])
    spread.columns = [f"{m}/{s}" for m, s in spread.columns]
    worst = ids[STATE].map({s: i for i, s in enumerate(STATES)}).groupby(ids[CONFIG]).min()
    u = u.join(spread, on=CONFIG)
    u[STATE] = u[CONFIG].map(worst.map(dict(enumerate(STATES))))
    u[LABEL] = config_labels(u)
    return u


def facet_capacity(n_panels: int) -> int:
    """The most configurations one panel of ``facet_figure(n_panels, ...)`` holds with the figure
    within ``MAX_FIGURE_INCHES`` (25 with 4 panels)."""
    rows = -(-n_panels // FACET_COLUMNS)
    room = MAX_FIGURE_INCHES - NOTE_ROOM - FACET_EXTRA - rows * FACET_PANEL_EXTRA
    return max(1, int(room / rows / FACET_ROW_HEIGHT))


def facet_figure(n_panels: int, n_rows: int) -> tuple[Figure, list, object]:
    """A page-wide figure of ``n_panels`` panels, ``FACET_COLUMNS`` to a row, each ``n_rows`` rows tall
    (first row at the top, every panel with the same spacing), and under them one page-wide cell for a
    legend (its axes hidden); returns (figure, panels, legend cell)."""
    cols = min(FACET_COLUMNS, n_panels)
    rows = -(-n_panels // cols)
    panel = FACET_PANEL_EXTRA + FACET_ROW_HEIGHT * n_rows
    fig = Figure(figsize=(PAGE_WIDTH, FACET_EXTRA + rows * panel), layout="constrained")
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[panel] * rows + [FACET_LEGEND])
    axes = [fig.add_subplot(grid[i // cols, i % cols]) for i in range(n_panels)]
    for ax in axes:
        ax.set_ylim(n_rows - 0.5, -0.5)
        ax.margins(y=0)
    legend = fig.add_subplot(grid[rows, :])
    legend.set_axis_off()
    return fig, axes, legend


FACTOR_NAMES = {"latent_dim": "latent size", "family/encoder": "encoder", "family/decoder": "decoder"}


def collapse_factors(runs: pd.DataFrame) -> list[str]:
    """The factors the collapse figure and tables break down by: latent, encoder, decoder, and any
    ablation key (``loss.reduction``, likelihood, β, warm-up, free bits) that varies in the sweep."""
    extra = [f for f in ABLATION_FACTORS if f in runs.columns and runs[f].astype(str).nunique() > 1]
    return [f for f in rank.BASE_CONFIG if f in runs.columns] + extra
