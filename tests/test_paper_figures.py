"""The figures at the scale of a real sweep: every figure within one page (``MAX_FIGURE_INCHES`` at
``PAGE_WIDTH``) at 300 runs and more, Figs. 1–2 per configuration past ``MAX_ROWS`` runs, Figs. 6–7
capped at the best ``PCA_MAX_PANELS`` configurations, one vocabulary (dense/conv; the paper's DNN/CNN
in one note line), and Fig. 3 printing claim C3's own statistic."""

from __future__ import annotations

import io
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from matplotlib.container import BarContainer
from synthetic import make_sweep

from analysis import claims, figures, notes, plotting
from analysis.collect import load_sweep
from analysis.plotting import MAX_FIGURE_INCHES, MAX_PIXELS, MAX_ROWS, PAPER_SPELLING, PCA_MAX_PANELS
from sweep.names import run_name

REPRODUCE = ROOT / "results" / "examples" / "reproduce"
FIVE = ("dense1", "dense4", "conv1", "conv2", "conv4")  # the reproduction's families
EIGHT = ("dense1", "dense4", "dense16", "conv1", "conv2", "conv3", "conv4", "conv5")  # experiment=full's
LATENTS = (25, 50, 100, 200)


def family(name: str) -> tuple[str, int]:
    kind = name.rstrip("0123456789")
    return kind, int(name[len(kind) :])


def table(latents, families, seeds, failed=(), rng_seed=0) -> pd.DataFrame:
    """An evaluated run table of latents × families² × seeds: each configuration has its own distortion
    and rate, its seeds scatter around them (so seed means, minima and maxima differ); ``failed``: run
    names with status failed (no test metrics)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for latent in latents:
        for enc in families:
            for dec in families:
                distortion, rate = rng.normal(80.0, 8.0), rng.uniform(5.0, 30.0)
                for seed in seeds:
                    name = run_name(latent, *family(enc), *family(dec), seed)
                    bad = name in failed
                    rows.append({
                        "run_name": name, "status": "failed" if bad else "ok",
                        "eval/status": None if bad else "ok", "seed": seed, "latent_dim": latent,
                        "family/encoder": enc, "family/decoder": dec,
                        "test/distortion": np.nan if bad else distortion + rng.normal(0.0, 1.0),
                        "test/rate": np.nan if bad else rate * rng.uniform(0.8, 1.2),
                        "collapsed": False, "paper_collapsed": False, "partial": bool(rng.random() < 0.5),
                    })  # fmt: skip
    return pd.DataFrame(rows)


def draw(fig_fn, runs):
    with matplotlib.rc_context(plotting.RC):
        return fig_fn.__wrapped__(runs)


def png_size(fig) -> tuple[int, int]:
    from PIL import Image

    with matplotlib.rc_context(plotting.RC):
        return Image.open(io.BytesIO(plotting.render(fig, "png"))).size


def texts(fig) -> str:
    from matplotlib.text import Text

    return "\n".join(t.get_text() for t in fig.findobj(Text))


def config_of(runs: pd.DataFrame) -> pd.Series:
    return runs["run_name"].str.replace(r"_s\d+$", "", regex=True)


def row_axes(fig) -> list:
    """The axes that hold rows of runs or configurations, in drawing order: drawn (not the legend cell)
    with y tick labels shown (a KL twin axis shares them hidden)."""
    shown = [ax for ax in fig.axes if ax.axison and ax.yaxis.get_visible()]
    return [ax for ax in shown if any(t.get_text() for t in ax.get_yticklabels())]


# ---------------------------------------------------------------- Figs. 1 and 2: rows or configurations

# (case, run table, one row per run?, configurations per panel shown / of)
ROWS = [
    ("smoke-sized: 16 runs", lambda: table((4, 8), ("dense1", "conv2"), (0, 1)), True, None),
    ("MAX_ROWS runs", lambda: table((4, 8), ("dense1", "conv2", "conv4"), (0, 1, 2)).head(MAX_ROWS), True, None),
    ("MAX_ROWS + 1 runs", lambda: table((4, 8), ("dense1", "conv2", "conv4"), (0, 1, 2)).head(MAX_ROWS + 1),
     False, None),
    ("the reproduction's design: 300 runs", lambda: table(LATENTS, FIVE, (0, 1, 2)), False, (25, 25)),
    ("experiment=full's grid, one seed: 256 runs", lambda: table(LATENTS, EIGHT, (0,)), False, (25, 64)),
]  # fmt: skip


@pytest.mark.parametrize(
    "fig_fn", [figures.fig1_rate_sorted, figures.fig2_recon_sorted], ids=["fig1", "fig2"]
)
@pytest.mark.parametrize("case, make, per_run, per_panel", ROWS, ids=[r[0] for r in ROWS])
def test_figs_1_and_2_draw_one_row_per_run_up_to_max_rows_then_per_configuration(
    fig_fn, case, make, per_run, per_panel
):
    runs = make()
    fig = draw(fig_fn, runs)
    assert fig.get_figheight() <= MAX_FIGURE_INCHES and fig.get_figwidth() <= plotting.PAGE_WIDTH
    axes = row_axes(fig)
    labels = [t.get_text() for ax in axes for t in ax.get_yticklabels()]
    metric = "test/rate" if fig_fn is figures.fig1_rate_sorted else "test/distortion"
    if per_run:  # today's look: one panel, one row per run, ascending
        assert len(axes) == 1 and sorted(labels) == sorted(plotting.run_labels(runs))
        return
    runs = runs.assign(config=config_of(runs))
    stats = runs.groupby("config")[metric].agg(["mean", "min", "max"])
    assert len(axes) == runs["latent_dim"].nunique() and len(labels) == len(set(labels))
    shown_of = []
    for ax in axes:
        shown = [t.get_text() for t in ax.get_yticklabels()]
        latent = {int(s.split("_")[0][1:]) for s in shown}
        assert len(latent) == 1  # one latent size per panel
        mine = runs[runs["latent_dim"].eq(latent.pop())]
        best = mine.groupby("config")["test/distortion"].mean().sort_values()
        assert set(shown) == set(best.index[: len(shown)])  # all, or the best by mean distortion
        shown_of.append((len(shown), best.size))
        # the drawn value of each row is its configuration's seed mean, the whisker its min–max
        if fig_fn is figures.fig1_rate_sorted:
            x = ax.collections[-1].get_offsets()[:, 0]  # the dots, drawn after the whiskers
            segments = ax.collections[0].get_segments()
            whisker = np.array([[s[0][0], s[1][0]] for s in segments])
        else:
            x = np.array([p.get_width() for p in ax.patches])
            bars = next(c for c in ax.containers if isinstance(c, BarContainer))
            whisker = np.array([s[:, 0] for s in bars.errorbar.lines[2][0].get_segments()])
        np.testing.assert_allclose(x, stats.loc[shown, "mean"], rtol=1e-12)
        np.testing.assert_allclose(whisker, stats.loc[shown, ["min", "max"]], rtol=1e-12)
        assert list(x) == sorted(x)  # ascending within the panel
    if per_panel:
        assert set(shown_of) == {per_panel}
    shown = texts(fig).replace("\n", " ")
    assert f"one row per configuration (the mean over its {runs['seed'].nunique()} seeds" in shown
    assert "per latent size" in fig.get_suptitle()
    assert ("best 25 of 64 by distortion" in shown) == (per_panel == (25, 64))


@pytest.mark.parametrize(
    "fig_fn", [figures.fig1_rate_sorted, figures.fig2_recon_sorted], ids=["fig1", "fig2"]
)
def test_figs_1_and_2_at_300_runs_fit_one_page_in_pixels(fig_fn):
    width, height = png_size(draw(fig_fn, table(LATENTS, FIVE, (0, 1, 2))))
    assert width <= MAX_PIXELS[0] and height <= MAX_PIXELS[1]


# ---------------------------------------------------------------- Figs. 6 and 7: the best configurations

# (case, run table, figure, panels, words of the subtitle)
PCA = [
    ("16 runs, fig6", lambda: table((4, 8), ("dense1", "conv2"), (0, 1)), figures.fig6_pca_top25, 2,
     "the best 2 of 8 ranked configurations by mean distortion (the top 25 %)"),
    ("300 runs, fig6", lambda: table(LATENTS, FIVE, (0, 1, 2)), figures.fig6_pca_top25, 25,
     "the best 25 of 100 ranked configurations by mean distortion (the top 25 %)"),
    ("300 runs, fig7", lambda: table(LATENTS, FIVE, (0, 1, 2)), figures.fig7_pca_top50, PCA_MAX_PANELS,
     f"the best {PCA_MAX_PANELS} of the 50 configurations in the top 50 % (100 ranked"),
    ("256 configurations, fig6", lambda: table(LATENTS, EIGHT, (0,)), figures.fig6_pca_top25, PCA_MAX_PANELS,
     f"the best {PCA_MAX_PANELS} of the 64 configurations in the top 25 % (256 ranked"),
]  # fmt: skip


@pytest.mark.parametrize("case, make, fig_fn, n_panels, words", PCA, ids=[r[0] for r in PCA])
def test_pca_figures_draw_the_best_configurations_up_to_the_cap(case, make, fig_fn, n_panels, words):
    runs = make()
    fig = draw(fig_fn, runs)
    assert fig.get_figheight() <= MAX_FIGURE_INCHES
    titles = [ax.get_title() for ax in fig.axes if ax.get_title().startswith("#")]
    best = runs.assign(config=config_of(runs)).groupby("config")["test/distortion"].mean().sort_values()
    assert titles == [f"#{i + 1} {c}" for i, c in enumerate(best.index[:n_panels])]
    assert words in fig.get_suptitle().replace("\n", " ")


def test_a_pca_panel_draws_the_lowest_seed_with_a_ranked_run_and_says_which():
    runs = table((4,), ("dense1", "conv2"), (0, 1), failed=("L4_dense1_conv2_s0",))
    titles = {ax.get_title().split()[1] for ax in draw(figures.fig7_pca_top50, runs).axes if ax.get_title()}
    assert titles <= {"L4_dense1_dense1", "L4_conv2_dense1", "L4_conv2_conv2", "L4_dense1_conv2_s1"}
    assert "L4_dense1_conv2_s1" in titles or len(titles) == 2  # the failed seed's configuration, if shown
    only = draw(figures.fig6_pca_top25, runs[runs["run_name"].eq("L4_dense1_conv2_s1")])
    assert [ax.get_title() for ax in only.axes if ax.get_title()] == [
        "#1 L4_dense1_conv2"
    ]  # one seed: no suffix


# ---------------------------------------------------------------- Fig. 3: the claim's own statistic


def subtitle_numbers(fig) -> list[float]:
    text = [ax.get_title() for ax in fig.axes if "claim C3" in ax.get_title()]
    assert len(text) == 1, [ax.get_title() for ax in fig.axes]
    line = text[0].split("\n")[-1].replace("−", "-")
    return [float(x) for x in re.findall(r"-?\d+\.\d{3}", line)]


@pytest.mark.parametrize(
    "case, runs",
    [
        ("3 seeds", table(LATENTS, ("dense1", "conv2", "conv4"), (0, 1, 2))),
        ("1 seed", table(LATENTS, FIVE, (0,), rng_seed=1)),
        ("a failed run", table(LATENTS, FIVE, (0, 1), failed=("L25_dense1_conv2_s1",), rng_seed=2)),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_fig3_draws_configurations_and_prints_claim_c3s_statistic(case, runs):
    fig = draw(figures.fig3_top_recon_vs_kl, runs)
    c3 = next(v for v in claims.check_claims(runs, only=("C3",)) if v.decides)
    assert c3.statistic is not None
    assert subtitle_numbers(fig) == [round(x, 3) for x in (c3.statistic, c3.ci_low, c3.ci_high)]
    ok = runs[runs["status"].eq("ok")].assign(config=config_of)
    means = ok.groupby("config")[["test/distortion", "test/rate"]].mean().sort_values("test/distortion")
    drawn = np.concatenate([c.get_offsets() for c in fig.axes[0].collections])
    assert len(drawn) == c3.n_configs == -(-len(means) // 4)  # one point per top-25 % configuration
    np.testing.assert_allclose(
        np.sort(drawn[:, 0]), means["test/distortion"].head(len(drawn)).to_numpy(), rtol=1e-12
    )


# ---------------------------------------------------------------- one vocabulary


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    """2 latents × 2 encoders × 2 decoders × 2 seeds, one run failed (named in the notes)."""
    root = tmp_path_factory.mktemp("vocabulary")
    return load_sweep(
        make_sweep(root, seeds=(0, 1), latents=(4, 8), failed=("L4_dense1_conv2_s0",), collapsed_fraction=0.3)
    )


PAPER_WORDS = re.compile(r"DNN|CNN")


@pytest.mark.parametrize("fig_fn", figures.FIGURES, ids=[d.figure_name for d in figures.FIGURES])
def test_figures_say_dense_and_conv_and_name_the_papers_spelling_once(fig_fn, small_sweep):
    shown = texts(draw(fig_fn, small_sweep)).replace("\n", " ")
    paper = fig_fn.figure_name.startswith("fig")
    assert shown.count(PAPER_SPELLING) == int(paper)  # the paper's figures name its spelling, once
    assert not PAPER_WORDS.search(shown.replace(PAPER_SPELLING, ""))
    if fig_fn.figure_name in ("fig1_rate_sorted", "fig2_recon_sorted"):  # run labels, as run names
        assert "L4_dense1_conv2_s1" in shown and "L4_dense1_conv2_s0" in shown  # drawn, and named failed


@pytest.mark.parametrize("name", list(notes.FIGURE_NOTES))
def test_figure_notes_say_dense_and_conv(name):
    text = notes.note_for(name, notes.FIGURE_NOTES)
    assert text and not PAPER_WORDS.search(text.replace(PAPER_SPELLING, ""))


# ---------------------------------------------------------------- the committed 300-run reproduction


@pytest.fixture(scope="module")
def reproduction():
    if not (REPRODUCE / "grid.json").is_file():
        pytest.skip("no committed reproduction")
    return load_sweep(REPRODUCE)


ON_A_PAGE = list(figures.FIGURES)


@pytest.mark.slow  # reads 300 runs (~15 s) and draws every figure (~60 s, the budget figure half of it)
@pytest.mark.parametrize("fig_fn", ON_A_PAGE, ids=[d.figure_name for d in figures.FIGURES])
def test_every_figure_of_the_committed_reproduction_fits_one_page(fig_fn, reproduction):
    assert len(reproduction.runs) == 300
    width, height = png_size(draw(fig_fn, reproduction))
    assert width <= MAX_PIXELS[0] and height <= MAX_PIXELS[1], (width, height)
