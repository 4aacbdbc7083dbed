"""Figures, PCA projections and the ``python -m analysis.figures`` command, on small synthetic sweeps."""

from __future__ import annotations

import contextlib
import io
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest
from synthetic import corrupt, make_sweep

from analysis import figures, own_figures, pca, plotting, report
from analysis import tables as tables_mod
from analysis.collect import load_sweep

PNG, PDF = b"\x89PNG\r\n\x1a\n", b"%PDF"
SMALL = {"latents": (4, 8), "encoders": ("dense1", "conv2"), "decoders": ("dense1", "conv2")}
BAD = {"failed": ("L4_dense1_conv2_s0",), "diverged": ("L8_conv2_dense1_s1",)}


def texts(fig) -> str:
    """Every string drawn on a figure (titles, labels, notes), for asserting on content."""
    from matplotlib.text import Text

    return "\n".join(t.get_text() for t in fig.findobj(Text))


def assert_written(paths):
    png, pdf = paths
    assert png.suffix == ".png" and png.read_bytes().startswith(PNG) and png.stat().st_size > 1000
    assert pdf.suffix == ".pdf" and pdf.read_bytes().startswith(PDF) and pdf.stat().st_size > 1000


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """2 latents × 2 encoders × 2 decoders × 2 seeds, one failed, one diverged, ~40 % collapsed."""
    return make_sweep(tmp_path_factory.mktemp("sweep"), seeds=(0, 1), collapsed_fraction=0.4, **SMALL, **BAD)


@pytest.fixture(scope="module")
def sweep(sweep_dir):
    return load_sweep(sweep_dir)


@pytest.fixture(scope="module")
def main_out(sweep_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert figures.main([str(sweep_dir), "--out", str(out)]) == 0
    assert "warning" not in err.getvalue()  # no figure or table fell back to its error placeholder
    return out


# ---------------------------------------------------------------- PCA


def test_project_known_answer_and_sign():
    # points on the line t·(1, 2) plus a small orthogonal wiggle: PC1 is ±(1, 2)/√5, flipped positive
    t = np.linspace(-2, 2, 9)
    wiggle = 0.1 * (t**2 - (t**2).mean())  # zero mean, uncorrelated with t
    mu = np.outer(t, [1.0, 2.0]) / np.sqrt(5) + np.outer(wiggle, [-2.0, 1.0]) / np.sqrt(5)
    xy, ratio = pca.project(mu)
    np.testing.assert_allclose(xy[:, 0], t - t.mean(), atol=1e-9)
    np.testing.assert_allclose(np.abs(xy[:, 1]), np.abs(wiggle - wiggle.mean()), atol=1e-9)
    np.testing.assert_allclose(ratio, np.array([t.var(), wiggle.var()]) / (t.var() + wiggle.var()))
    # negating μ gives the same picture: signs are fixed by the loadings, not by the SVD
    np.testing.assert_allclose(pca.project(-mu)[0], -xy, atol=1e-9)


def test_project_edge_cases():
    rng = np.random.default_rng(0)
    xy, ratio = pca.project(rng.normal(size=(20, 1)))  # L = 1: one component
    assert xy.shape == (20, 2) and np.all(xy[:, 1] == 0) and ratio.tolist() == [1.0, 0.0]
    xy, ratio = pca.project(np.ones((5, 3), np.float32))  # fully collapsed: no variance at all
    assert np.all(xy == 0) and np.all(ratio == 0)
    assert pca.project(np.zeros((0, 4)))[0].shape == (0, 2)
    with pytest.raises(ValueError, match="shape"):
        pca.project(np.zeros(4))


# ---------------------------------------------------------------- every figure function


def test_every_figure_writes_png_and_pdf(sweep, main_out, tmp_path):
    assert len(sweep.runs) == 16 and sweep.runs["collapsed"].fillna(False).any()
    assert len(figures.FIGURES) == 13
    for draw in figures.FIGURES:  # the command called every figure function on this sweep
        assert_written([main_out / f"{draw.figure_name}.png", main_out / f"{draw.figure_name}.pdf"])
    paths = figures.fig1_rate_sorted(sweep, tmp_path)
    assert paths == [tmp_path / "fig1_rate_sorted.png", tmp_path / "fig1_rate_sorted.pdf"]
    assert_written(paths)


def test_the_growing_figures_store_a_palette_png_close_to_the_full_colour_rendering(sweep, main_out):
    from PIL import Image

    palette = {"fig1_rate_sorted", "fig2_recon_sorted", "fig6_pca_top25", "fig7_pca_top50"}
    for draw in figures.FIGURES:
        assert (Image.open(main_out / f"{draw.figure_name}.png").mode == "P") == (draw.figure_name in palette)
    with matplotlib.rc_context(plotting.RC):  # the same drawing, full colour vs its stored palette PNG
        png = plotting.render(figures.fig6_pca_top25.__wrapped__(sweep), "png")
    full = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
    stored = np.asarray(Image.open(main_out / "fig6_pca_top25.png").convert("RGB"), dtype=int)
    assert stored.shape == full.shape
    error = np.abs(stored - full).max(axis=-1)  # per pixel, in 0-255 levels
    white, black = (full == 255).all(axis=-1), (full == 0).all(axis=-1)
    assert white.mean() > 0.3 and black.any()
    assert (error[white] == 0).all() and (error[black] == 0).all()  # the background and text stay exact
    # only anti-aliased blends move, a little: this sweep 98.6 % exact, mean 0.07 levels; the floor is what the
    # largest real figure keeps (the 300-run Fig. 7 of 2026-12-04: 82.6 % exact, mean 0.72 levels)
    assert (error == 0).mean() > 0.8 and error.mean() < 3
    # a transparent PNG is not flattened: it comes back as it was
    rgba = io.BytesIO()
    Image.new("RGBA", (8, 8), (255, 0, 0, 128)).save(rgba, format="PNG")
    assert plotting.palette_png(rgba.getvalue()) == rgba.getvalue()


def test_failed_and_diverged_runs_are_named_not_dropped(sweep):
    fig = figures.fig1_rate_sorted.__wrapped__(sweep)
    shown = texts(fig).replace("\n", " ")  # the note wraps where its words fall
    assert "1 failed: L4_dense1_conv2_s0" in shown and "1 diverged: L8_conv2_dense1_s1" in shown
    ev = plotting.evaluated_mask(sweep.runs)
    assert ev.sum() == 14  # every other run is drawn: one tick label per evaluated run
    labels = {t.get_text() for t in fig.axes[0].get_yticklabels()}
    assert len(labels) == 14 and "L4_dense1_dense1_s0" in labels  # several seeds: labels carry _s{seed}
    assert any(s.startswith("collapsed") for s in texts(fig).split("\n"))  # collapsed runs in the legend


def test_figures_from_a_run_table_and_from_nothing(sweep, tmp_path):
    # a bare run table works too: the PCA panels then say that there are no stored latents
    assert_written(figures.fig6_pca_top25(sweep.runs, tmp_path / "table"))
    assert "no stored\nlatents" in texts(figures.fig6_pca_top25.__wrapped__(sweep.runs))
    empty = pd.DataFrame()
    for draw in figures.FIGURES:
        assert_written(draw(empty, tmp_path / "empty"))
        assert "No " in texts(draw.__wrapped__(empty))


def test_all_runs_failed_still_draws_every_figure(tmp_path):
    names = tuple(f"L4_{e}_{d}_s0" for e in ("dense1", "conv2") for d in ("dense1", "conv2"))
    sw = load_sweep(make_sweep(tmp_path, seeds=(0,), latents=(4,), failed=names))
    for draw in figures.FIGURES:
        assert_written(draw(sw, tmp_path / "out"))
    assert "4 failed" in texts(figures.fig2_recon_sorted.__wrapped__(sw))


def test_bce_sweep_heatmap_says_why_it_is_empty(tmp_path):
    sw = load_sweep(make_sweep(tmp_path, seeds=(0,), latents=(4,), likelihood="bce"))
    assert sw.runs["test/iwae_nll"].isna().all()
    assert_written(figures.fig_iwae_heatmap(sw, tmp_path / "out"))
    shown = texts(figures.fig_iwae_heatmap.__wrapped__(sw))
    assert "No IWAE NLL values" in shown and "bce likelihood" in shown


def test_heatmap_cells_never_pool_configurations_of_other_arms_as_seeds(tmp_path):
    """One seed at three norms: each cell is one run, in a panel per (latent size, arm), not the mean of
    three configurations called "n = 3 seeds"."""
    sw = load_sweep(make_sweep(tmp_path, seeds=(0,), latents=(4,), norms=("none", "batch", "layer")))
    shown = texts(figures.fig_iwae_heatmap.__wrapped__(sw))
    assert "n = 1 seed(s)" in shown and "n = 3" not in shown and "n=3" not in shown
    for norm in ("none", "batch", "layer"):
        assert f"encoder.norm={norm}" in shown, shown
    runs = sw.runs[sw.runs["encoder.norm"].eq("batch")]
    one = runs[runs["family/encoder"].eq("dense1") & runs["family/decoder"].eq("conv2")]["test/iwae_nll"]
    assert f"{float(one.iloc[0]):.1f}" in shown


def test_fig3_prints_c3_per_arm_as_the_claims_table_decides_it(tmp_path):
    """With arms (here three norms), the claims check decides C3 within each arm on its own top set:
    Fig. 3 prints each arm's statistic, the claims table's number, not one pooled over the arms."""
    fams = ("dense1", "conv2", "res2")
    sw = load_sweep(
        make_sweep(
            tmp_path,
            seeds=(0,),
            latents=(4, 8),
            encoders=fams,
            decoders=fams,
            norms=("none", "batch", "layer"),
        )
    )
    shown = texts(figures.fig3_top_recon_vs_kl.__wrapped__(sw))
    table = tables_mod.claims_table(sw.runs)
    c3 = table[table["claim"].eq("C3") & table["decides"]].set_index("arm")["statistic"]
    assert len(c3) == 3 and "pooled over decoder.norm, encoder.norm" in shown
    for arm, rho in c3.items():
        assert f"({arm}, its own top " in shown, shown
        assert f"ρ(distortion, KL) = {rho:.3f}".replace("-", "−") in shown, (arm, rho, shown)


def test_labels_have_no_seed_suffix_with_one_seed(tmp_path):
    sw = load_sweep(make_sweep(tmp_path, seeds=(3,), latents=(4,)))
    assert set(plotting.run_labels(sw.runs)) == set(sw.runs["run_name"].str.removesuffix("_s3"))


# ---------------------------------------------------------------- the command


def test_main_writes_figures_tables_and_report(main_out):
    for name in ("runs", "ranking_recon", "ranking_neg_elbo", "ranking_iwae", "seed_aggregates", "claims"):
        assert (main_out / f"{name}.csv").stat().st_size > 0 and (main_out / f"{name}.md").stat().st_size > 0
    for name in ("win_rates_encoder", "collapse_counts", "collapse_by_latent", "cutoff_sensitivity_encoder"):
        assert (main_out / f"{name}.csv").is_file()
    runs = pd.read_csv(main_out / "runs.csv")
    assert len(runs) == 16 and set(runs["status"]) == {"ok", "failed", "diverged"}
    cut = pd.read_csv(main_out / "cutoff_sensitivity_encoder.csv")
    assert sorted(cut["cutoff"].unique()) == [0.1, 0.25, 0.5]
    assert (main_out / "report.md").is_file() and (main_out / "report.html").is_file()
    budget = pd.read_csv(main_out / "claims_budget.csv")
    assert set(budget["split"]) == {"val", "test"} and sorted(budget["epoch"].unique()) == [1, 2]
    section = (main_out / "report.md").read_text().split("### Verdicts against the training budget")[1]
    assert "C4: cannot settle within a budget of 2 epochs" in section.split("###")[0]  # 2 < HELD_EPOCHS
    # convergence: a 2-epoch sweep has no epoch after the reference one, and says so; the block follows
    stability = pd.read_csv(main_out / "rank_stability.csv")
    assert len(stability) and stability["note"].str.startswith("no later epoch").all()
    improving = pd.read_csv(main_out / "still_improving.csv")
    assert set(improving["last_epoch"]) == {2} and improving["still_improving"].all()
    after = section.split("###")[1]
    assert after.startswith(" Convergence\n") and "Still improving at epoch 2" in after


@pytest.mark.slow  # a second full draw of every figure
def test_main_is_deterministic(sweep_dir, main_out, tmp_path):
    assert figures.main([str(sweep_dir), "--out", str(tmp_path)]) == 0
    for name in ["report.md", "report.html", "claims.csv", "runs.md"] + [
        f"{d.figure_name}.{ext}" for d in figures.FIGURES for ext in ("png", "pdf")
    ]:
        assert (tmp_path / name).read_bytes() == (main_out / name).read_bytes(), name


@pytest.fixture(scope="module")
def single_seed_corrupt(tmp_path_factory):
    """One seed, 4 runs, one of them with a torn run.parquet; analysed by the command."""
    root = tmp_path_factory.mktemp("single")
    sweep_dir = make_sweep(root, seeds=(0,), latents=(4,))
    bad = corrupt(sweep_dir / "L4_conv2_conv2_s0" / "run.parquet")
    return sweep_dir, bad


@pytest.mark.slow  # a second full draw (test_main_writes_figures_tables_and_report draws in the default tier)
def test_single_seed_and_corrupted_file(single_seed_corrupt, capsys):
    sweep_dir, bad = single_seed_corrupt
    assert figures.main([str(sweep_dir)]) == 0  # default output: <sweep dir>/figures
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert warnings == [warnings[0]] and str(bad) in warnings[0] and "skipped" in warnings[0]
    out = sweep_dir / "figures"
    assert str(out) in captured.out.strip().splitlines()[-1]
    for draw in figures.FIGURES:
        assert_written([out / f"{draw.figure_name}.png", out / f"{draw.figure_name}.pdf"])
    report = (out / "report.md").read_text()
    assert "This sweep has a single seed" in report and "configuration as the unit" in report
    assert "L4_conv2_conv2_s0/run.parquet" in report.split("## Skipped files")[1]
    assert "runs: 3 (3 ok)" in report


def test_labels_name_an_ablation_pooled_with_its_baseline(sweep):
    runs = sweep.runs.copy()
    runs["loss.reduction"] = np.where(runs.index % 2 == 0, "paper", "sum")
    labels = plotting.run_labels(runs)
    assert labels.is_unique
    assert labels.iloc[0].endswith(" loss.reduction=paper") and "_s" in labels.iloc[0]


def test_two_datasets_get_their_own_claims_side_by_side_an_fid_ranking_and_figure(tmp_path):
    both = [
        make_sweep(tmp_path, seeds=(0, 1), sweep_name="syn", **SMALL),
        make_sweep(
            tmp_path,
            seeds=(0, 1),
            sweep_name="syn_fashion_mnist",
            dataset="fashion_mnist",
            rng_seed=1,
            **SMALL,
        ),
    ]
    sweep = load_sweep(both)
    assert sweep.root == tmp_path / "sweeps" and sweep.name == "syn + syn_fashion_mnist"
    assert sorted(sweep.runs["data.name"].unique()) == ["fashion_mnist", "mnist"] and len(sweep.runs) == 32
    out = tmp_path / "out"
    made = tables_mod.build_tables(sweep.runs)
    tables = {k: made[k]() for k in ("claims", "claims_by_dataset", "ranking_fid")}
    figs = {"fid_distortion": own_figures.fig_fid_distortion(sweep, out)[0]}
    report.write_report(sweep, out, figs, tables)
    claims = tables["claims"]
    for name in ("mnist", "fashion_mnist"):  # each dataset checked on its own runs, as if alone
        alone = tables_mod.claims_table(sweep.runs[sweep.runs["data.name"].eq(name)])
        mine = claims[claims["arm"].eq(f"data.name={name}")]
        assert mine["verdict"].tolist() == alone["verdict"].tolist() and mine["decides"].sum() == 7
    side = tables["claims_by_dataset"]
    assert side.columns.tolist() == ["claim", "arm", "fashion_mnist", "mnist"]
    assert side["claim"].tolist() == ["C1", "C2", "C3", "C4", "C5a", "C5b", "C6"]
    for name in ("mnist", "fashion_mnist"):  # the deciding row's verdict, not a supporting row's
        deciding = claims[claims["arm"].eq(f"data.name={name}") & claims["decides"]]
        assert side[name].tolist() == deciding["verdict"].tolist()
    text = (out / "report.md").read_text()
    assert "### Verdicts by dataset" in text and "not comparable with Inception-based FIDs" in text
    ranked = tables["ranking_fid"]
    assert len(ranked) == 32 and ranked.columns[0] == "data.name"  # one ranking per dataset, never pooled
    for _, one in ranked.groupby("data.name"):
        assert one["test/fid_prior"].is_monotonic_increasing and one["rank"].tolist() == list(range(1, 17))
    assert_written([figs["fid_distortion"], figs["fid_distortion"].with_suffix(".pdf")])
    assert "mnist (16 runs)" in texts(own_figures.fig_fid_distortion.__wrapped__(sweep))


def test_heatmap_gives_each_likelihood_its_own_colour_scale_and_panels(tmp_path):
    """A Gaussian's density and a Bernoulli's mass, both in nats, are not one quantity: runs of two
    likelihoods are never drawn on one colour scale, nor in one panel (here the same configurations
    under both, the Gaussian's NLL planted far below the Bernoulli's)."""
    sw = load_sweep(make_sweep(tmp_path, seeds=(0,), latents=(4,)))
    bern = sw.runs.assign(**{"data.likelihood": "bernoulli"})
    gauss = bern.assign(**{"data.likelihood": "gaussian", "test/iwae_nll": bern["test/iwae_nll"] - 900.0})
    fig = figures.fig_iwae_heatmap.__wrapped__(pd.concat([bern, gauss], ignore_index=True))
    bars = [ax for ax in fig.axes if "IWAE NLL, nats per image" in ax.get_ylabel()]
    assert sorted(ax.get_ylabel().split("\n")[-1] for ax in bars) == [
        "data.likelihood=bernoulli",
        "data.likelihood=gaussian",
    ]
    for ax in bars:
        lo, hi = sorted(ax.get_ylim())
        mine = gauss if ax.get_ylabel().endswith("gaussian") else bern
        assert lo == pytest.approx(mine["test/iwae_nll"].min()) and hi == pytest.approx(
            mine["test/iwae_nll"].max()
        )
    titles = [ax.get_title() for ax in fig.axes if ax.get_title().startswith("L = ")]
    assert len(titles) == 2 and all(t.count("data.likelihood=") == 1 for t in titles), titles


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory):
    """Seed-0 sweeps of both datasets, the Fashion runs planted 300 nats worse: a top set pooled over
    both would hold MNIST runs only."""
    root = tmp_path_factory.mktemp("two")
    mnist = make_sweep(root, seeds=(0,), sweep_name="syn", **SMALL)
    fashion = make_sweep(
        root, seeds=(0,), sweep_name="syn_fashion_mnist", dataset="fashion_mnist", rng_seed=1, **SMALL
    )
    sweep = load_sweep([mnist, fashion])
    sweep.runs.loc[sweep.runs["data.name"].eq("fashion_mnist"), "test/distortion"] += 300.0
    return sweep


# the figures that rank runs (a top set) or overlay them on one scale: never of two datasets pooled
RANK_OR_OVERLAY = (
    "fig1_rate_sorted", "fig2_recon_sorted", "fig3_top_recon_vs_kl", "fig4_top_counts",
    "fig5_top_by_latent", "fig6_pca_top25", "fig7_pca_top50", "rate_distortion", "active_units",
    "collapse_by_factor",
)  # fmt: skip


@pytest.mark.parametrize("draw", [d for d in figures.FIGURES if d.figure_name in RANK_OR_OVERLAY])
def test_a_figure_that_ranks_or_overlays_runs_is_drawn_per_dataset_never_pooled(two_datasets, tmp_path, draw):
    name = draw.figure_name
    made = figures._draw(draw, two_datasets, tmp_path)
    assert sorted(made) == [f"{name} (data.name=fashion_mnist)", f"{name} (data.name=mnist)"]
    assert sorted(p.name for p in made.values()) == [f"{name}__fashion_mnist.png", f"{name}__mnist.png"]
    assert all(p.is_file() and p.with_suffix(".pdf").is_file() for p in made.values())
    assert not (tmp_path / f"{name}.png").exists()  # no figure of both pooled
    if draw.palette:  # the large figures keep their 256-colour PNGs
        from PIL import Image

        assert {Image.open(p).mode for p in made.values()} == {"P"}


def test_each_dataset_group_holds_its_own_runs_and_ranks_them_alone(two_datasets):
    groups = figures.protocol_groups(two_datasets)
    assert [(arm, slug) for arm, slug, _ in groups] == [
        ("data.name=fashion_mnist", "fashion_mnist"),
        ("data.name=mnist", "mnist"),
    ]
    for arm, _, part in groups:
        assert set(part.runs["data.name"]) == {arm.split("=")[1]} and len(part.runs) == 8
        assert set(part.dims["run_dir"]) == set(part.runs["run_dir"])
        shown = texts(figures.fig4_top_counts.__wrapped__(part)).replace("\n", " ")
        assert "the best 2 of 8 ranked runs" in shown, shown  # a quarter of its own 8, not of all 16
    assert figures.protocol_groups(load_sweep(two_datasets.roots[0])) == []  # one dataset: one group


def test_the_pca_colours_are_named_by_the_datasets_classes(two_datasets):
    labels = {}
    for arm, _, part in figures.protocol_groups(two_datasets):
        fig = figures.fig6_pca_top25.__wrapped__(part)
        labels[arm] = [
            ax.get_xlabel() for ax in fig.axes if "digit" in ax.get_xlabel() or "class" in ax.get_xlabel()
        ]
    assert labels["data.name=mnist"] == ["digit"]
    (fashion,) = labels["data.name=fashion_mnist"]
    assert fashion.startswith("class: 0 T-shirt/top") and fashion.endswith("9 ankle boot")


def test_fids_of_two_classifiers_are_never_drawn_in_one_panel(sweep):
    runs = sweep.runs.copy()
    runs["test/fid_classifier"] = np.where(runs.index % 2 == 0, "a" * 64, "b" * 64)
    shown = texts(own_figures.fig_fid_distortion.__wrapped__(runs))
    n = int(plotting.evaluated_mask(runs).sum())
    assert (
        re.search(r"mnist, classifier a{12}… \((\d+) runs\)", shown) and "classifier bbbbbbbbbbbb…" in shown
    )
    counts = [int(x) for x in re.findall(r"classifier [ab]{12}… \((\d+) runs\)", shown)]
    assert len(counts) == 2 and sum(counts) == n


def test_the_collapse_figure_of_an_ablation_compares_its_arms_in_one_figure(tmp_path):
    """loss.reduction is the ablation's question: collapse by it stays one figure (as the tables keep
    it inside each group), while a figure that ranks runs is drawn per arm."""
    arms = [
        make_sweep(tmp_path, seeds=(0,), sweep_name=f"abl_{r}", loss_reduction=r, **SMALL)
        for r in ("sum", "paper")
    ]
    sweep = load_sweep(arms)
    assert list(figures._draw(figures.fig_collapse_by_factor, sweep, tmp_path)) == ["collapse_by_factor"]
    assert len(figures._draw(figures.fig4_top_counts, sweep, tmp_path)) == 2


def test_a_rerun_into_the_same_directory_removes_the_figures_it_no_longer_draws(
    two_datasets, tmp_path, monkeypatch
):
    """Two datasets drawn per group, then one dataset into the same directory: the per-group files of
    the first run are gone (a stale figure of another sweep would read as this one's), and back;
    files not named as a figure stay."""
    monkeypatch.setattr(figures, "FIGURES", (figures.fig4_top_counts, figures.fig_rate_distortion))
    monkeypatch.setattr(figures, "build_tables", lambda sweep: {})
    out = tmp_path / "out"
    out.mkdir()
    others = ["grid.json", "fig4_top_counts_notes.txt", "fig4_top_countsX.png", "fig4_top_counts_mnist.png"]
    for name in others:
        (out / name).write_text("not this command's figure\n")

    def pngs() -> set[str]:
        return {p.name for p in out.iterdir() if p.suffix in (".png", ".pdf")} - set(others)

    per_group = {
        f"{n}__{g}.{e}"
        for n in ("fig4_top_counts", "rate_distortion")
        for g in ("mnist", "fashion_mnist")
        for e in ("png", "pdf")
    }
    pooled = {f"{n}.{e}" for n in ("fig4_top_counts", "rate_distortion") for e in ("png", "pdf")}
    figures.write_all(two_datasets, out)
    assert per_group <= pngs() and not pooled & pngs()
    figures.write_all(load_sweep(two_datasets.roots[0]), out)
    assert pooled <= pngs() and not per_group & pngs()
    figures.write_all(two_datasets, out)
    assert per_group <= pngs() and not pooled & pngs()
    assert all((out / name).read_text() == "not this command's figure\n" for name in others)
