"""analysis.design_sensitivity on synthetic ``experiment=design`` grids with planted truth: an effect every
cell carries keeps its verdict in every drop, its estimate inside its interval; an effect one cell carries
is found out (dropping that cell gives the range's end, near the truth), and every configuration named as
changing a verdict does change it when left out alone; a sweep without the design axes gives an empty
table; the report says it in one line per arm."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from synthetic import make_sweep, planted_design

from analysis import design, design_sensitivity, rank, report
from analysis.claim_stats import fmt3
from analysis.collect import load_sweep
from analysis.tables import build_tables

NUISANCE = {"decoder": {"dense1": 10.0}, "norm": {"layer": 8.0, "batch": -3.0}, "enc_dec_sd": 2.0}
BATCH = "decoder gap conv2 − dense1, batch − none"


def _row(table: pd.DataFrame, part: str) -> pd.Series:
    (i,) = table.index[table["part"].eq(part)]
    return table.loc[i]


def test_an_effect_every_cell_carries_keeps_its_verdict_in_every_drop():
    """The dense1 decoder's penalty grows 2 nats per norm step (the conv2 − dense1 decoder gap changes by
    −2 at batch; noise sd 0.3): shown in the full grid and with any one of the 27 configurations left out,
    every drop's estimate inside the full grid's 95 % interval."""
    runs = planted_design(np.random.default_rng(1), dec_norm=2.0, noise=0.3, **NUISANCE)
    full = _row(design.design_table(runs).query("decides"), BATCH)
    r = _row(design_sensitivity.leave_one_out(runs), BATCH)
    assert full["verdict"] == r["verdict"] == design.SHOWN and r["statistic"] == full["statistic"]
    assert r["drops"] == r["kept"] == 27 and r["changed_by"] == ""
    assert full["ci_low"] < r["drop_low"] <= r["statistic"] <= r["drop_high"] < full["ci_high"]


def test_an_effect_one_cell_carries_is_found_out_and_each_named_drop_changes_its_verdict():
    """No planted change, then 3 nats added to one cell (dense1 encoder × conv2 decoder at batch norm): the
    batch change of the decoder gap is pulled up by a third of it in expectation. Leaving that cell out gives the
    range's low end, the estimate without it (near the truth, 0); every configuration ``changed_by``
    names does change the row's verdict when left out alone, and ``kept`` counts the rest."""
    runs = planted_design(np.random.default_rng(2), noise=0.3, **NUISANCE)
    spike = (
        runs["family/encoder"].eq("dense1") & runs["family/decoder"].eq("conv2") & runs["encoder.norm"].eq("batch")
    )
    runs.loc[spike, "test/distortion"] += 3.0
    table = design_sensitivity.leave_one_out(runs)
    r = _row(table, BATCH)
    without = _row(design.design_table(runs[~spike]).query("decides"), BATCH)
    assert r["drop_low"] == pytest.approx(without["statistic"], rel=1e-9, abs=1e-9)
    # the spike pulls the full grid's estimate up by 3/3 = 1 nat in expectation; without it, nearer 0
    assert abs(without["statistic"]) < abs(r["statistic"]) and r["statistic"] - without["statistic"] > 0.5
    assert list(table["part"]) == list(design.design_table(runs).query("decides")["part"])
    config, flipped = rank.with_config_id(runs)["config"], 0
    for _, row in table.iterrows():
        named = [n.split(": ") for n in row["changed_by"].split(", ")] if row["changed_by"] else []
        assert row["kept"] + len(named) == row["drops"] == 27
        for name, verdict in named:
            alone = design.design_table(runs[config.ne(name)]).query("decides")
            assert verdict == _row(alone, row["part"])["verdict"] != row["verdict"], (row["part"], name)
            flipped += 1
    assert flipped  # the planted spike changes some verdict when its neighbours are left out


def test_a_sweep_without_the_design_axes_has_no_table(tmp_path):
    runs = load_sweep(make_sweep(tmp_path, seeds=(0,), latents=(4,))).runs
    table = design_sensitivity.leave_one_out(runs)
    assert table.empty and list(table.columns) == design_sensitivity.COLUMNS
    assert "design_sensitivity" not in build_tables(runs)
    assert design_sensitivity.summary(table) == []


def test_the_report_says_each_rows_drops_in_one_line(tmp_path):
    """The report's design section gives each deciding row's verdict, drops kept and estimate range, from
    the table (made here by hand: 15 of 27 drops keep the batch change of the decoder gap)."""
    runs = planted_design(np.random.default_rng(1), dec_norm=2.0, noise=0.3, **NUISANCE)
    made = design.design_table(runs)
    fam = made[made["decides"]]
    drops = pd.DataFrame({
        "arm": fam["arm"], "part": fam["part"], "verdict": fam["verdict"], "statistic": fam["statistic"],
        "drop_low": fam["statistic"] - 0.25, "drop_high": fam["statistic"] + 0.5, "drops": 27,
        "kept": np.where(fam["part"].eq(BATCH), 15, 27), "changed_by": "", "note": "descriptive",
    })[design_sensitivity.COLUMNS]  # fmt: skip
    sweep = load_sweep(make_sweep(tmp_path / "s", seeds=(0,), latents=(4,)))
    tables = {"design": made, "design_sensitivity": drops}
    md = report.write_report(sweep, tmp_path, {}, tables)[0].read_text()
    section = md.split("## Design choices\n")[1].split("\n## ")[0]
    (line,) = [x for x in section.splitlines() if x.startswith("- Leave one configuration out")]
    r = _row(drops, BATCH)
    lo, hi = (fmt3(r[c]) for c in ("drop_low", "drop_high"))
    assert f"{BATCH} (shown, {fmt3(r['statistic'])}): kept in 15 of 27, estimate {lo} to {hi}" in line
    assert line.count("kept in 27 of 27") == 9 and "design_sensitivity.csv" in line
    assert "design_sensitivity" in build_tables(runs)  # the table is made for a design sweep
