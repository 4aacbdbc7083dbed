"""An analysis says how much of each launched grid it holds (analysis.coverage): a report of a sweep
still training says in bold that its verdicts are of a part of the grid, and README's conditions table
keeps such a condition pending."""

from __future__ import annotations

import json
import shutil

import pytest
from synthetic import make_sweep

from analysis import coverage, figures
from analysis.collect import load_sweep, only_seeds

ENCODERS = DECODERS = ("dense1", "conv2")


def sweep_with_grid(tmp_path, trained: int, listed: int, name="synthetic", failed=()):
    """A synthetic seed-0 sweep (latent 25, 50 × 2 × 2: 8 runs) whose grid.json lists ``listed`` run
    names, of which the first ``trained`` are on disk (the rest not started); ``failed``: run names
    that failed (no ``COMPLETE``: a relaunch retries them)."""
    sweep = make_sweep(
        tmp_path, seeds=(0,), encoders=ENCODERS, decoders=DECODERS, sweep_name=name, failed=failed
    )
    names = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    extra = [f"L100_{e}_{d}_s0" for e in ENCODERS for d in DECODERS]  # launched, not started
    grid = (names + extra)[:listed]
    for gone in names[trained:]:
        shutil.rmtree(sweep / gone)
    (sweep / "grid.json").write_text(json.dumps({"schema_version": 1, "runs": grid}))
    return sweep


def report_of(sweep, out):
    assert figures.main([str(sweep), "--out", str(out)]) == 0
    return (out / "report.md").read_text()


# (case, runs on disk, runs the grid lists, failed runs, runs present, grid size, runs beside the grid)
CASES = [
    ("complete", 8, 8, (), 8, 8, 0),
    ("still training", 5, 8, (), 5, 8, 0),
    ("launched beyond what is on disk", 8, 12, (), 8, 12, 0),
    ("a relaunch listing fewer runs", 8, 6, (), 6, 6, 2),
    ("a run failed: a hole in the grid", 8, 8, ("L25_dense1_conv2_s0",), 7, 8, 0),
]


@pytest.mark.parametrize(
    "case, trained, listed, failed, present, size, extra", CASES, ids=[c[0] for c in CASES]
)
def test_each_grid_is_counted_against_the_runs_the_analysis_holds(
    tmp_path, case, trained, listed, failed, present, size, extra
):
    sweep = sweep_with_grid(tmp_path, trained, listed, failed=failed)
    [got] = coverage.of_sweep(load_sweep(sweep))
    assert (got.present, got.runs, got.extra, got.complete) == (present, size, extra, present == size)
    assert len(got.missing) == size - present and got.where == "synthetic"


def test_a_report_of_a_grid_still_training_says_so_in_bold_and_a_complete_one_does_not(tmp_path, capsys):
    partial = sweep_with_grid(tmp_path / "a", trained=5, listed=8)
    text = report_of(partial, tmp_path / "out_a")
    assert (
        "- grid `synthetic` (its last launch's grid.json): 5 of its 8 runs complete in this analysis" in text
    )
    assert (
        "**Incomplete grid: `synthetic` holds 5 of its 8 runs complete.** Every table and verdict below"
        in text
    )
    assert "grid synthetic incomplete: 5 of its 8 runs;" in capsys.readouterr().out
    full = sweep_with_grid(tmp_path / "b", trained=8, listed=8)
    text = report_of(full, tmp_path / "out_b")
    assert "8 of its 8 runs complete in this analysis" in text and "Incomplete grid" not in text
    assert "incomplete" not in capsys.readouterr().out


def test_one_run_of_a_sweep_analysed_alone_is_a_part_of_its_grid(tmp_path):
    sweep = sweep_with_grid(tmp_path, trained=8, listed=8)
    one = next(p for p in sorted(sweep.iterdir()) if p.is_dir())
    [got] = coverage.of_sweep(load_sweep(one))
    assert (got.present, got.runs, got.where) == (1, 8, str(sweep.resolve()))


def test_a_copy_of_a_complete_sweep_analysed_beside_it_is_complete_too(tmp_path):
    sweep = sweep_with_grid(tmp_path, trained=8, listed=8)
    copy = shutil.copytree(sweep, tmp_path / "sweeps" / "copy")
    loaded = load_sweep([sweep, copy])
    assert len(loaded.runs) == 8 and len(loaded.same_as) == 8  # each model counted once
    got = coverage.of_sweep(loaded)
    assert [(g.where, g.present, g.runs) for g in got] == [("copy", 8, 8), ("synthetic", 8, 8)]


def test_a_directory_without_a_launched_grid_says_none_was_found(tmp_path):
    sweep = make_sweep(tmp_path, seeds=(0,), encoders=ENCODERS, decoders=DECODERS)
    assert coverage.of_sweep(load_sweep(sweep)) == []
    lines, warning = coverage.summary_lines([])
    assert lines[0].startswith("launched grids: none found") and warning is None


def test_chosen_seeds_are_analysed_alone_and_counted_against_the_grid_s_runs_of_those_seeds(tmp_path, capsys):
    sweep = make_sweep(tmp_path, seeds=(0, 1), encoders=ENCODERS, decoders=DECODERS)
    names = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    (sweep / "grid.json").write_text(json.dumps({"schema_version": 1, "runs": names}))
    text = report_of_seeds(sweep, tmp_path / "out", "0")
    assert text.startswith("# Analysis of sweep `synthetic` (seed 0 alone)")
    assert "- seeds: 0 (chosen: `--seeds 0`)" in text and "runs: 8 (8 ok)" in text
    assert "8 of its 8 runs complete in this analysis" in text and "Incomplete grid" not in text
    assert "**This analysis has a single seed.**" in text
    assert figures.main([str(sweep), "--seeds", "3", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: --seeds 3: no run of that seed below {sweep}; valid: 0, 1"
    assert not (tmp_path / "none").exists()


def report_of_seeds(sweep, out, seeds):
    assert figures.main([str(sweep), "--seeds", seeds, "--out", str(out)]) == 0
    return (out / "report.md").read_text()


def test_chosen_seeds_count_only_their_own_copies_and_a_seed_the_grid_lacks_is_no_complete_grid(tmp_path):
    sweep = make_sweep(tmp_path, seeds=(0, 1), encoders=ENCODERS, decoders=DECODERS)
    names = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    (sweep / "grid.json").write_text(json.dumps({"schema_version": 1, "runs": names}))
    copy = shutil.copytree(sweep, tmp_path / "sweeps" / "copy")
    both = load_sweep([sweep, copy])
    got = coverage.of_sweep(only_seeds(both, [0]))
    # the copies of seed 1's runs are not this analysis's: nothing counted beside the grid
    assert [(g.where, g.present, g.runs, g.extra) for g in got] == [("copy", 8, 8, 0), ("synthetic", 8, 8, 0)]
    [none] = coverage.grids([sweep], [], seeds=[7])
    assert (none.present, none.runs, none.complete) == (0, 0, False)
    counts = lambda d: (d.runs, d.complete, d.ok, len(d.names))  # noqa: E731
    assert counts(coverage.done(sweep, [7])) == (0, 0, 0, 0) and counts(coverage.done(sweep, [1])) == (
        8,
        8,
        8,
        8,
    )
    assert all(n.endswith("_s1") for n in coverage.done(sweep, [1]).names)


def test_the_report_records_the_run_files_it_read_and_a_changed_run_is_found(tmp_path):
    sweep = sweep_with_grid(tmp_path, 8, 8)
    out = tmp_path / "report"
    report_of(sweep, out)
    names = coverage.done(sweep).names
    recorded = (out / coverage.INPUTS).read_text().splitlines()
    assert recorded[0] == "run_dir,sha256" and [r.split(",")[0] for r in recorded[1:]] == list(names)
    assert coverage.inputs_differ(sweep, names, out / coverage.INPUTS) is None
    # a re-evaluation rewrites a run's eval.parquet: the record no longer describes it
    (sweep / names[2] / "eval.parquet").write_bytes((sweep / names[3] / "eval.parquet").read_bytes())
    assert coverage.inputs_differ(sweep, names, out / coverage.INPUTS) == (
        f"read files that changed since: 1 ({names[2]})"
    )
    # regenerated, the report skips that file (another run's: its identity stamp) and so lacks the run;
    # its record is byte for byte the same each time
    report_of(sweep, out)
    first = (out / coverage.INPUTS).read_bytes()
    report_of(sweep, out)
    assert (out / coverage.INPUTS).read_bytes() == first
    assert coverage.inputs_differ(sweep, names, out / coverage.INPUTS) == f"lacks: 1 ({names[2]})"


def test_a_run_whose_file_the_analysis_skipped_is_not_in_its_record(tmp_path):
    sweep = sweep_with_grid(tmp_path, 8, 8)
    names = coverage.done(sweep).names
    (sweep / names[5] / "eval.parquet").write_bytes(b"not parquet")  # a torn copy: skipped, with a warning
    out = tmp_path / "report"
    report_of(sweep, out)
    recorded = (out / coverage.INPUTS).read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in recorded] == [n for n in names if n != names[5]]
    # so README's conditions table finds the report was not made from every run of its grid
    assert coverage.inputs_differ(sweep, names, out / coverage.INPUTS) == f"lacks: 1 ({names[5]})"


def test_a_grid_without_a_run_of_the_chosen_seeds_is_named_but_not_called_incomplete(tmp_path, capsys):
    seeded = make_sweep(tmp_path, seeds=(0, 1), encoders=ENCODERS, decoders=DECODERS, sweep_name="both")
    (seeded / "grid.json").write_text(
        json.dumps({"schema_version": 1, "runs": sorted(p.name for p in seeded.iterdir() if p.is_dir())})
    )
    only0 = sweep_with_grid(tmp_path / "zero", 8, 8, name="zero")
    out = tmp_path / "out"
    assert figures.main([str(seeded), str(only0), "--seeds", "1", "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "grid `zero` (its last launch's grid.json): none of its runs is of the chosen seeds" in text
    assert "Incomplete grid" not in text and "incomplete" not in capsys.readouterr().out
