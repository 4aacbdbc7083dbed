"""The analysis report: table formatting, and report.md / report.html contents on a synthetic sweep."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from synthetic import corrupt, make_sweep

from analysis import figures, notes, report, tables
from analysis.collect import load_sweep


def test_markdown_table_formats_cells():
    df = pd.DataFrame(
        {"a": [1.23456789, np.nan, 3.0], "b": ["x|y", None, "two\nlines"], "c": [True, False, None]}
    )
    lines = report.markdown_table(df).splitlines()
    assert lines[0] == "| a | b | c |" and lines[1] == "| --- | --- | --- |"
    assert lines[2] == "| 1.235 | x\\|y | True |"
    assert lines[3] == "|  |  | False |"
    assert lines[4] == "| 3 | two lines |  |"
    assert "(no rows)" in report.markdown_table(pd.DataFrame(columns=["a"]))
    assert "(no rows)" in report.markdown_table(pd.DataFrame())


def test_seed_aggregates_shown_as_mean_ci_n():
    df = pd.DataFrame(
        {
            "config": ["A", "B", "C"],
            "m/mean": [91.234, 80.0, np.nan],
            "m/ci95": [1.27, np.nan, np.nan],
            "m/n": [3, 1, 0],
        }
    )
    shown = report.display("seed_aggregates", df)
    assert list(shown.columns) == ["config", "m"]
    assert shown["m"].tolist() == ["91.23 ± 1.27 (n=3)", "80 (n=1)", ""]


def test_notes_carry_the_constants():
    assert "25%" in notes.note_for("win_rates_encoder", notes.TABLE_NOTES)
    assert "10%, 25%, 50%" in notes.note_for("cutoff_sensitivity_latent", notes.TABLE_NOTES)
    assert "rate < 0.1 nats" in notes.note_for("collapse_by_loss_reduction", notes.TABLE_NOTES)
    assert "1e-08" in notes.note_for("fig1_rate_sorted", notes.FIGURE_NOTES)
    # every figure has a note, and every note belongs to a figure (the search figure only shows for searches)
    assert set(notes.FIGURE_NOTES) == {d.figure_name for d in figures.FIGURES} | {"search_front"}


def test_the_summary_counts_the_runs_of_each_device_and_torch_version():
    runs = pd.DataFrame(
        {"device": ["cuda", "cpu", "cpu", None], "torch_version": ["2.11.0", "2.14.1", "2.14.1", "2.14.1"]}
    )
    assert report._tally(runs, "device") == "cpu (2), cuda (1)"
    assert report._tally(runs, "torch_version") == "2.11.0 (1), 2.14.1 (3)"
    assert report._tally(runs, "hostname") == "n/a"


def test_a_single_seed_sweep_says_it_has_no_intervals_and_names_the_file_it_skipped(tmp_path):
    """The summary and skipped-files blocks of a one-seed sweep with a torn run.parquet (the command on
    such a sweep: test_figures' slow test_single_seed_and_corrupted_file)."""
    sweep_dir = make_sweep(tmp_path, seeds=(0,), latents=(4,))
    corrupt(sweep_dir / "L4_conv2_conv2_s0" / "run.parquet")
    sweep = load_sweep(sweep_dir)
    summary = report._summary_blocks(sweep)
    assert summary[1][1][0].startswith("runs: 3 (3 ok)")
    assert any("single seed" in str(block) and "configuration as the unit" in str(block) for block in summary)
    (skipped,) = report._skipped_blocks(sweep)[1][1]
    assert skipped.startswith("`L4_conv2_conv2_s0/run.parquet`: ")


def test_a_claim_not_tested_here_says_why_where_the_method_names_each_test(tmp_path):
    """One latent size: C6 (which needs several) has no test; its line in the method list says why
    instead of standing empty."""
    sweep = load_sweep(make_sweep(tmp_path, seeds=(0,), latents=(4,)))
    blocks = report._claims_blocks({"claims": tables.build_tables(sweep.runs)["claims"]()})
    (items,) = [b[1] for b in blocks if b[0] == "ul" and any(str(i).startswith("**C1**") for i in b[1])]
    (c6,) = [i for i in items if i.startswith("**C6**")]
    assert c6 == "**C6**: not tested here: fewer than two latent sizes among the ok configurations: the factor has one level"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("rep")
    sweep = load_sweep(
        make_sweep(root, seeds=(0, 1), latents=(4,), failed=("L4_dense1_conv2_s1",), collapsed_fraction=0.5)
    )
    buf = io.BytesIO()
    Figure(figsize=(1, 1)).savefig(buf, format="png")
    out = root / "out"
    out.mkdir()
    pngs = {}
    for d in figures.FIGURES:  # stand-in pictures: the report only embeds and links them
        pngs[d.figure_name] = out / f"{d.figure_name}.png"
        pngs[d.figure_name].write_bytes(buf.getvalue())
    tables = {name: make() for name, make in figures.build_tables(sweep.runs).items()}
    paths = report.write_report(sweep, out, pngs, tables)
    return sweep, out, pngs, tables, paths


def test_report_has_everything(written):
    sweep, out, pngs, tables, paths = written
    assert paths == [out / "report.md", out / "report.html"]
    md = paths[0].read_text()
    for name in pngs:
        assert f"### {name}\n" in md and f"]({name}.png)" in md
    for name in tables:
        assert f"### {name}\n" in md
    claims = md.split("## Claims check")[1].split("## Figures")[0]
    # one table of the verdicts opens the section: one row per claim, with raw and Holm p and n configurations
    assert claims.lstrip().startswith(
        "| claim | the paper says | test | statistic [95 % CI] | p | Holm p | verdict | n configs (runs) |"
    )
    verdicts = claims.split("\n\n")[1]
    for c in ("C1", "C2", "C3", "C4", "C5a", "C5b", "C6"):
        assert verdicts.count(f"\n| {c} |") == 1, c
    # the method once, below it, with its references; each claim's test in one line; supporting tests after
    assert claims.count("The experimental unit is the configuration") == 1
    assert (
        "Pesarin & Salmaso" in claims and "Phipson & Smyth 2010" in claims and "Efron & Tibshirani" in claims
    )
    assert "Holm" in claims and "n_perm = 10000" in claims and "`seed_verdict`" in claims
    assert "**C5b**: " in claims and "### Supporting tests" in claims
    cap = claims.split("### Architecture or capacity?")[1]
    assert "C(encoder family)" in cap and "C4 (test/distortion): " in cap and "C5 (test/neg_elbo): " in cap
    assert "runs: 8 (1 failed, 7 ok)" in md
    assert "trained on (runs per value, as each run recorded it): device cpu (8); torch n/a" in md
    assert "`L4_dense1_conv2_s1`: failed" in md.split("## Runs without test metrics")[1]
    assert "This sweep has a single seed" not in md  # two seeds
    assert "collapse_rate_threshold = 0.1" in md and "rank.TOP_FRACTION = 0.25" in md


def test_html_is_self_contained_and_deterministic(written):
    sweep, out, pngs, tables, paths = written
    page = paths[1].read_text()
    assert page.count('src="data:image/png;base64,') == len(pngs)
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert page.count("<table") >= len(tables)
    before = [p.read_bytes() for p in paths]
    report.write_report(sweep, out, pngs, tables)
    assert [p.read_bytes() for p in paths] == before


def test_verdicts_on_each_seed_alone_show_a_verdict_one_seed_turns():
    # seeds 0 and 1: conv2 encoders beat dense1 (C4 not reproduced); seed 2 alone: dense1 planted best
    # (C4 reproduced on it), too weak to turn the mean over the three seeds
    import pandas as pd
    from test_conditions import ENC, runs

    from analysis import tables
    from analysis.report import _seed_summary

    three = pd.concat(
        [runs().assign(seed=0), runs().assign(seed=1), runs(enc={**ENC, "dense1": -5.0}).assign(seed=2)],
        ignore_index=True,
    )
    built = tables.build_tables(three)
    by_seed = built["claims_by_seed"]().set_index("claim")
    c4 = by_seed.loc["C4"]
    assert (c4["all seeds"], c4["seed 0"], c4["seed 1"], c4["seed 2"], c4["same_on"]) == (
        "not reproduced", "not reproduced", "not reproduced", "reproduced", "2 of 3"
    )
    assert c4["seed 2 statistic"] > 0 > c4["all seeds statistic"]
    lines = _seed_summary(by_seed.reset_index())
    assert "C4: not reproduced on all seeds together, but reproduced on seed 2 alone." in lines
    assert "claims_by_seed" not in tables.build_tables(three[three["seed"].eq(0)])  # one seed: no table


def test_verdicts_on_each_seed_alone_keep_their_arm_when_a_seed_lacks_one_and_skip_a_seed_without_ok_runs():
    import pandas as pd
    from test_conditions import runs

    from analysis import tables
    from analysis.report import _seed_summary

    # arms sum (seeds 0, 1, 2) and paper (seeds 0, 1): seed 2 alone has no paper run; seed 3 only failed
    sums = [runs().assign(seed=s) for s in (0, 1, 2)]
    papers = [runs().assign(seed=s, **{"loss.reduction": "paper"}) for s in (0, 1)]
    failed = runs().assign(seed=3, status="failed")
    by_seed = tables.build_tables(pd.concat([*sums, *papers, failed], ignore_index=True))["claims_by_seed"]()
    assert "seed 3" not in by_seed.columns  # no ok run: no verdict to show
    rows = by_seed.set_index(["claim", "arm"])
    assert rows.loc[("C4", "loss.reduction=sum"), "seed 2"] == "not reproduced"  # its own arm, not "all"
    assert rows.loc[("C4", "loss.reduction=paper"), "seed 2"] == tables.NO_RUNS
    assert rows.loc[("C4", "loss.reduction=paper"), "same_on"] == "2 of 2"
    assert rows.loc[("C4", "loss.reduction=sum"), "same_on"] == "3 of 3"
    [line] = _seed_summary(by_seed)
    assert "C4 (loss.reduction=paper)" in line and "C4 (loss.reduction=sum)" in line
