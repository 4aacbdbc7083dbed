"""Regenerate the paper's figures (and ours), the analysis tables and the report from a stored sweep.

    python -m analysis.figures results/sweeps/paper                  # → results/sweeps/paper/figures/
    python -m analysis.figures results/sweeps/paper --out /tmp/report
    python -m analysis.figures results/sweeps/paper results/sweeps/paper_fashion_mnist   # both datasets

Reads only stored result files (``analysis.collect.load_sweep``); never trains or loads a model. Each
figure is one function ``fig_<name>(sweep_or_runs, out_dir) -> [png, pdf]``; each is headless (Agg),
deterministic (same inputs → same bytes) and writes its files atomically. A figure whose inputs are
empty still writes a file saying so. Runs that failed, diverged or were not evaluated are counted and
named in a note under each per-run figure, never dropped silently.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from analysis import convergence, coverage, pc_probe, rank, report  # noqa: E402
from analysis.budget import budget_table, fig_claims_budget  # noqa: E402
from analysis.collect import Sweep, load_sweep, only_runs, only_seeds  # noqa: E402
from analysis.own_figures import (  # noqa: E402
    fig_active_units,
    fig_collapse_by_factor,
    fig_fid_distortion,
    fig_iwae_heatmap,
    fig_rate_distortion,
)
from analysis.paper_figures import (  # noqa: E402
    fig1_rate_sorted,
    fig2_recon_sorted,
    fig3_top_recon_vs_kl,
    fig4_top_counts,
    fig5_top_by_latent,
    fig6_pca_top25,
    fig7_pca_top50,
)
from analysis.plotting import (  # noqa: E402
    RC,
    message_figure,
    save,
)
from analysis.search import search_outputs  # noqa: E402
from analysis.tables import build_tables  # noqa: E402
from sweep.paths import PathError, readable, writable  # noqa: E402
from sweep.results import atomic_write_bytes  # noqa: E402

FIGURES = (
    fig1_rate_sorted,
    fig2_recon_sorted,
    fig3_top_recon_vs_kl,
    fig4_top_counts,
    fig5_top_by_latent,
    fig6_pca_top25,
    fig7_pca_top50,
    fig_rate_distortion,
    fig_fid_distortion,
    fig_iwae_heatmap,
    fig_active_units,
    fig_collapse_by_factor,
    fig_claims_budget,
)


# Figures that rank, count or overlay runs without splitting them by protocol group (dataset, epochs,
# loss, evaluation profile: analysis.rank.protocol_columns): given several groups (two datasets side
# by side), each is drawn once per group, named and titled by it, never over the runs of all groups
# pooled (a top 25 % of two datasets is one dataset's best runs; one scatter mixes their scales).
PER_GROUP = {
    "fig1_rate_sorted", "fig2_recon_sorted", "fig3_top_recon_vs_kl", "fig4_top_counts",
    "fig5_top_by_latent", "fig6_pca_top25", "fig7_pca_top50", "rate_distortion", "active_units",
    "collapse_by_factor",
}  # fmt: skip
# protocol columns a figure compares rather than splits by: collapse by loss.reduction is the ablation's
# question (as the collapse tables keep it inside each group)
ACROSS = {"collapse_by_factor": ("loss.reduction",)}


def protocol_groups(sweep: Sweep, across: tuple[str, ...] = ()) -> list[tuple[str, str, Sweep]]:
    """(group name, file-name suffix, its runs alone) for each protocol group of the sweep's runs
    (:func:`analysis.rank.protocol_columns`, but ``across``), e.g. ``("data.name=mnist", "mnist", …)``;
    [] for one group."""
    cols = [c for c in rank.protocol_columns(sweep.runs) if c not in across] if len(sweep.runs) else []
    out = []
    for values, group in sweep.runs.groupby(cols, dropna=False, sort=True) if cols else []:
        values = values if isinstance(values, tuple) else (values,)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(map(str, values)))
        out.append((rank.arm_name(cols, values), slug, only_runs(sweep, sweep.runs.index.isin(group.index))))
    return out


def _draw(draw: Callable, sweep: Sweep, out_dir: Path) -> dict[str, Path]:
    """{figure name: PNG path} of one figure: itself, or, for a :data:`PER_GROUP` figure of runs of
    several protocol groups, one per group (``<name>__<suffix>``, titled with the group)."""
    name = draw.figure_name
    groups = protocol_groups(sweep, ACROSS.get(name, ())) if name in PER_GROUP else []
    if not groups:
        return {name: draw(sweep, out_dir)[0]}
    out = {}
    for arm, slug, part in groups:
        with matplotlib.rc_context(RC):
            fig = draw.__wrapped__(part)
            fig.suptitle(f"{fig.get_suptitle() or name}\n{arm} only")
            out[f"{name} ({arm})"] = save(fig, out_dir, f"{name}__{slug}", draw.palette)[0]
    return out


def _guarded(what: str, make: Callable, fallback: Callable[[str], object]):
    """``make()``, or, if it raises, one warning line and ``fallback(reason)``: one broken figure or
    table must not cost the rest of the report."""
    try:
        return make()
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        print(f"warning: could not make {what}: {reason}", file=sys.stderr)
        return fallback(reason)


# Present in an output directory while this command rewrites it (written before its first file, removed
# after report.md and report.html, its last): one left behind means a killed run, whose figures,
# tables and report may come from different sweeps; the next run rewrites them all and removes it.
IN_PROGRESS = "REPORT_IN_PROGRESS"
OUTPUT_SUFFIXES = (".png", ".pdf", ".csv", ".md", ".html")  # what it writes (not e.g. a sweep's grid.json)
_RERUN = "until this file is gone, its figures, tables and report may come from different runs: run it again"


def _begin(out_dir: Path) -> None:
    """Remove the temporary files a killed run of this command left (its own outputs' only: the
    directory may be a sweep's, where a launch writes its own files), then mark the directory."""
    for tmp in out_dir.glob(".*.tmp"):
        if tmp.name[1:].rsplit(".", 2)[0].endswith(OUTPUT_SUFFIXES):  # .<name>.<random>.tmp
            tmp.unlink(missing_ok=True)
    if (out_dir / IN_PROGRESS).exists():
        print(f"{out_dir}: a previous run was interrupted; rewriting every figure, table and the report")
    note = f"python -m analysis.figures is writing this directory (or was killed doing so); {_RERUN}\n"
    atomic_write_bytes(out_dir / IN_PROGRESS, note.encode())


def _remove_stale(out_dir: Path, written) -> None:
    """Remove each figure file an earlier run of this command left that this run did not write: a
    figure drawn once (``<name>.png``/``.pdf``) now drawn per protocol group (``<name>__<group>``), or
    the other way round, or a group that is gone. Only files named as a :data:`FIGURES` figure are
    touched (the directory may be a sweep's): a stale pooled figure beside per-group ones reads as
    this sweep's."""
    keep = {p.with_suffix(ext).name for p in written for ext in (".png", ".pdf")}
    for draw in FIGURES:
        for ext in ("png", "pdf"):
            for path in (out_dir / f"{draw.figure_name}.{ext}", *out_dir.glob(f"{draw.figure_name}__*.{ext}")):
                if path.name not in keep and path.is_file():
                    path.unlink()


def write_all(sweep: Sweep, out_dir: str | Path) -> tuple[dict[str, Path], dict[str, pd.DataFrame]]:
    """Every figure (PNG + PDF), every table (CSV + markdown) and the report into ``out_dir``, inside
    an :data:`IN_PROGRESS` marker; returns {figure name: PNG path} and {table name: table}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _begin(out_dir)
    figures = {}
    for draw in FIGURES:
        name = draw.figure_name

        def broken(reason, name=name) -> list[Path]:
            with matplotlib.rc_context(RC):
                return save(message_figure(name, f"This figure could not be drawn: {reason}"), out_dir, name)

        figures.update(
            _guarded(f"figure {name}", lambda draw=draw: _draw(draw, sweep, out_dir), lambda r, name=name: {name: broken(r)[0]})
        )
    _remove_stale(out_dir, figures.values())
    tables = {}
    made = build_tables(pc_probe.with_pc2_probe(sweep))
    made["claims_budget"] = lambda: budget_table(sweep)
    made["rank_stability"] = lambda: convergence.rank_stability(sweep)
    made["still_improving"] = lambda: convergence.still_improving(sweep)
    for name, make in made.items():
        df = _guarded(f"table {name}", make, lambda reason: pd.DataFrame({"error": [reason]}))
        atomic_write_bytes(out_dir / f"{name}.csv", df.to_csv(index=False).encode())
        atomic_write_bytes(out_dir / f"{name}.md", report.markdown_table(report.display(name, df)).encode())
        tables[name] = df
    search_figures, search_tables = _guarded(
        "the search figures",
        lambda: search_outputs(sweep.root, out_dir) if not sweep.roots else ({}, {}),
        lambda reason: ({}, {}),
    )
    figures.update(search_figures)
    for name, df in search_tables.items():
        atomic_write_bytes(out_dir / f"{name}.csv", df.to_csv(index=False).encode())
        atomic_write_bytes(out_dir / f"{name}.md", report.markdown_table(df).encode())
        tables[name] = df
    inputs = coverage.inputs_table(sweep)  # what conditions checks a claims table against
    atomic_write_bytes(out_dir / coverage.INPUTS, inputs.to_csv(index=False).encode())
    report.write_report(sweep, out_dir, figures, tables)
    (out_dir / IN_PROGRESS).unlink()
    return figures, tables


def _seed_list(text: str) -> list[int]:
    """``--seeds``: comma-separated seeds (non-negative integers)."""
    try:
        seeds = [int(x) for x in text.split(",")]
    except ValueError:
        seeds = [-1]
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of seeds; valid: e.g. 0 or 0,1,2")
    return seeds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.figures", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "sweep_dirs", type=Path, nargs="+", help="sweeps (or any results directories) to analyse together"
    )
    p.add_argument(
        "--out",
        type=Path,
        help="output directory (default: <sweep_dir>/figures; for several, <parent>/figures_<a>+<b>…)",
    )
    p.add_argument(
        "--seeds",
        type=_seed_list,
        help="analyse only the runs of these seeds, e.g. 0 or 0,1 (the reproduction's seed 0 alone: the "
        "baseline of a single-seed condition); default: every stored seed",
    )
    args = p.parse_args(argv)
    dirs = list(dict.fromkeys(args.sweep_dirs))
    try:  # what it reads and where it writes, before it reads or writes anything
        for d in dirs:
            if not readable(d, "sweep_dir").is_dir():
                raise PathError(f"sweep_dir={d} is not a directory; valid: a sweep or results directory")
        if args.out is not None or len(dirs) == 1:
            out = writable(args.out or dirs[0] / "figures", "--out")
        sweep = load_sweep(dirs[0] if len(dirs) == 1 else dirs)  # one warning line per skipped file
        if not len(sweep.runs):  # figures, tables and verdicts of nothing would read as a result
            skipped = f" ({len(sweep.skipped)} unreadable files skipped)" if sweep.skipped else ""
            raise PathError(
                f"sweep_dir={' '.join(map(str, dirs))} holds no run (no run.parquet below it{skipped}); "
                "valid: a sweep or results directory with at least one run, e.g. results/sweeps/<sweep_name>"
            )
        if args.seeds is not None:
            try:
                sweep = only_seeds(sweep, args.seeds)
            except ValueError as exc:
                raise PathError(str(exc)) from None
        if args.out is None and len(dirs) > 1:  # next to them: known once they are read
            out = writable(sweep.root / ("figures_" + "+".join(d.resolve().name for d in dirs)), "--out")
    except PathError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    figures, tables = write_all(sweep, out)
    short = "".join(
        f"; grid {g.where} incomplete: {g.present} of its {g.runs} runs"
        for g in coverage.of_sweep(sweep)
        if g.runs and not g.complete  # a grid with no run of the chosen seeds is no part of it
    )
    print(
        f"{len(sweep.runs)} runs, {len(sweep.skipped)} files skipped{short}; wrote {len(figures)} figures "
        f"(PNG + PDF), {len(tables)} tables (CSV + markdown) and report.md/report.html to {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
