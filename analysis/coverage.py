"""How much of each launched grid an analysis holds.

A sweep's launch records its grid (``grid.json``: :func:`sweep.status.read_grid`). An analysis of a
sweep that is still training decides its claims on the runs trained so far: a verdict of 52 of 100
configurations, whose matched contrasts pair only the cells already present, is not the grid's
verdict, and nothing in the tables themselves says so. :func:`grids` compares each grid that lies at,
below or above the analysed directories with the runs the analysis counted; the report says, in its
summary, how many runs of each grid it holds, and in bold where a grid is incomplete
(:func:`summary_lines`); ``python -m analysis.conditions`` keeps a condition whose grid is incomplete
pending, and refuses a ``claims.csv`` made from other runs than its grid's complete runs as they are now (:func:`done`, :func:`inputs_differ`).

A run of the grid counts as present if it is complete (its ``COMPLETE`` marker: ok, diverged or
pruned; a failed run is a hole in the grid as one not trained is) and the analysis holds it, or holds
the same model stored elsewhere (counted once: :attr:`analysis.collect.Sweep.same_as`). Runs the
analysis holds below a grid's directory that its last launch did not list (an earlier launch with
other seeds, a rerun beside it) are counted apart. With chosen seeds (``analysis.figures --seeds``),
each grid counts its runs of those seeds only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.collect import Sweep, seed_of
from sweep.keys import flatten, protocol, protocol_diff, shown
from sweep.results import is_complete, read_complete
from sweep.status import GRID_FILE, ON_DISK, read_grid, sweep_of


@dataclass(frozen=True)
class Grid:
    """One launched grid against an analysis: ``where`` (the sweep directory as the analysis names
    it), the grid's runs, those the analysis holds, the names of the rest, and the runs the analysis
    holds below ``where`` that the grid does not list."""

    where: str
    runs: int
    present: int
    missing: tuple[str, ...]
    extra: int

    @property
    def complete(self) -> bool:
        return 0 < self.present == self.runs


def of_sweep(sweep: Sweep) -> list[Grid]:
    """:func:`grids` of a loaded sweep."""
    runs = list(sweep.runs["run_dir"]) if len(sweep.runs) else []
    return grids(
        sweep.roots or [sweep.root],
        [sweep.root / d for d in runs],
        [sweep.root / d for d in sweep.same_as],
        sweep.seeds,
    )


def of_seeds(names: Sequence[str], seeds: Sequence[int] | None) -> list[str]:
    """The run names (or paths) of ``names`` whose seed suffix ``_s<seed>`` is one of ``seeds`` (all of
    them where ``seeds`` is None)."""
    if seeds is None:
        return list(names)
    return [n for n in names if seed_of(Path(n).name) in seeds]


def grids(
    roots: Sequence[Path],
    run_dirs: Sequence[Path],
    same_as: Sequence[Path] = (),
    seeds: Sequence[int] | None = None,
) -> list[Grid]:
    """Each grid at, below or above ``roots`` (the directories analysed) against ``run_dirs`` (the
    runs the analysis counted) and ``same_as`` (runs it counted once under another directory); with
    ``seeds``, each grid's runs of those seeds only (an analysis of chosen seeds)."""
    held = {Path(d).resolve() for d in [*run_dirs, *same_as]}
    sweeps: set[Path] = set()
    for root in roots:
        root = Path(root).resolve()
        sweeps |= {p.parent for p in root.rglob(GRID_FILE)}
        if (above := sweep_of(root)) is not None:
            sweeps.add(above)
    out = []
    for sweep in sorted(sweeps):
        names, _, _ = read_grid(sweep)
        listed = {(sweep / n).resolve() for n in of_seeds(names, seeds)}
        present = {d for d in listed & held if is_complete(d)}  # a failed run is a hole, as one not trained
        below = {d for d in held if d.is_relative_to(sweep)}
        out.append(
            Grid(
                where=_shown(sweep, roots),
                runs=len(listed),
                present=len(present),
                missing=tuple(sorted(str(d.relative_to(sweep)) for d in listed - present)),
                extra=len(below - listed),
            )
        )
    return out


def _shown(sweep: Path, roots: Sequence[Path]) -> str:
    """``sweep`` as the analysed directory it lies in names it (that directory's name first), or its
    path where it lies above them."""
    for root in roots:
        root = Path(root).resolve()
        if sweep.is_relative_to(root):
            return str(Path(root.name) / sweep.relative_to(root))
    return str(sweep)


def summary_lines(found: list[Grid]) -> tuple[list[str], str | None]:
    """(one summary line per grid, and a warning paragraph where any is incomplete, else None)."""
    if not found:
        return ["launched grids: none found (no grid.json at, below or above this directory)"], None
    lines = []
    for g in found:
        if not g.runs:  # chosen seeds it has no run of: no part of this analysis
            lines.append(
                f"grid `{g.where}` (its last launch's {GRID_FILE}): none of its runs is of the chosen seeds"
            )
            continue
        line = (
            f"grid `{g.where}` (its last launch's {GRID_FILE}): {g.present} of its {g.runs} runs complete "
            "in this analysis"
        )
        if g.extra:
            line += f"; {g.extra} more runs below it that this grid does not list"
        lines.append(line)
    short = [g for g in found if g.runs and not g.complete]
    if not short:
        return lines, None
    parts = "; ".join(f"`{g.where}` holds {g.present} of its {g.runs} runs complete" for g in short)
    return lines, (
        f"**Incomplete grid: {parts}.** Every table and verdict below is of its complete runs only, not "
        "of the grid (the rest failed or are not trained yet; a matched contrast pairs only the cells "
        "whose runs are all there); `python -m sweep.status <sweep>` names them and the command that "
        "trains them."
    )


@dataclass(frozen=True)
class Done:
    """How far a sweep directory's grid (its runs of chosen seeds) got: its runs, the complete ones,
    and those of them that finished ``ok`` (the runs a claims table is decided on); ``names``: the
    complete runs' directories (relative to the sweep); ``source``: where the grid was read from
    (:func:`sweep.status.read_grid`; ``launched``: from a launch's record, not the directories on disk)."""

    runs: int
    complete: int
    ok: int
    names: tuple[str, ...] = ()
    source: str = ""

    @property
    def launched(self) -> bool:
        return not self.source.startswith(ON_DISK)


def done(sweep_dir: Path, seeds: Sequence[int] | None = None) -> Done:
    """:class:`Done` of the grid launched in ``sweep_dir`` (its run directories on disk where no grid
    was launched there), restricted to ``seeds`` where given."""
    sweep_dir = Path(sweep_dir)
    listed, source, _ = read_grid(sweep_dir)
    names = of_seeds(listed, seeds)
    complete = [n for n in names if is_complete(sweep_dir / n)]
    ok = sum(_status(sweep_dir / n) == "ok" for n in complete)
    return Done(len(names), len(complete), ok, tuple(sorted(complete)), source)


# An analysis's record of the run files it read (``analysis.figures`` writes it beside claims.csv): one
# row per run, its directory and a digest of its result tables (:func:`run_digest`), so that a claims table whose runs were
# since re-evaluated, retrained or swapped for another sweep's is found (``analysis.conditions``).
INPUTS = "inputs.csv"


# The tables an analysis reads a run's numbers from. Its latent projection (``latents.parquet``, or the
# ``pca.parquet`` that ``sweep.slim`` keeps of it) is left out: one evaluation writes it with
# ``eval.parquet``, whose digest a re-evaluation changes.
DIGESTED = ("run.parquet", "eval.parquet", "epochs.parquet", "dims.parquet")


def run_digest(run_dir: Path) -> str:
    """SHA-256 over the values of a run's :data:`DIGESTED` tables (those it has), each with its name, in
    that order: each table's columns by name with their values as JSON (floats as Python writes them,
    exactly), so neither rewriting a file with the same values (``sweep.slim`` drops column statistics)
    nor another pyarrow version changes it."""
    h = hashlib.sha256()
    for name in DIGESTED:
        path = Path(run_dir) / name
        if not path.is_file():
            continue
        try:
            table = pq.read_table(path)
            columns = [[c, table.column(c).to_pylist()] for c in table.column_names]
            data = json.dumps(columns, default=str).encode()
        except (OSError, pa.ArrowException):  # unreadable: its bytes, so a change still shows
            data = b"unreadable\0" + path.read_bytes()
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def inputs_table(sweep: Sweep) -> pd.DataFrame:
    """The :data:`INPUTS` table of an analysis: each run it counted whole (``run_dir`` relative to its
    root; not a run one of whose files it skipped, unreadable: its numbers are not all there) and
    :func:`run_digest` of its files, in ``run_dir`` order."""
    dirs = sorted(map(str, sweep.runs["run_dir"])) if len(sweep.runs) else []
    skipped = [Path(p).resolve() for p, _ in sweep.skipped]
    dirs = [d for d in dirs if not any(p.is_relative_to((sweep.root / d).resolve()) for p in skipped)]
    return pd.DataFrame({"run_dir": dirs, "sha256": [run_digest(sweep.root / d) for d in dirs]})


def inputs_differ(sweep_dir: Path, names: Sequence[str], inputs: Path) -> str | None:
    """Why the analysis recorded in ``inputs`` did not read exactly the runs ``names`` of ``sweep_dir``
    as they are now (None where it did): runs it lacks, runs it read that are not these, runs whose files
    changed since."""
    if not Path(inputs).is_file():
        return f"it has no {INPUTS} (the record of the run files it read)"
    got = pd.read_csv(inputs, dtype=str)
    had = dict(zip(got["run_dir"], got["sha256"], strict=True))
    now = {n: run_digest(Path(sweep_dir) / n) for n in names}
    reasons = []
    for what, which in (
        ("lacks", sorted(set(now) - set(had))),
        ("read runs its grid does not hold complete", sorted(set(had) - set(now))),
        ("read files that changed since", sorted(n for n in set(now) & set(had) if now[n] != had[n])),
    ):
        if which:
            reasons.append(f"{what}: {len(which)} ({', '.join(which[:3])}{', …' if len(which) > 3 else ''})")
    return "; ".join(reasons) or None


def run_protocol(run_dir: Path) -> dict:
    """The run's protocol keys (:func:`sweep.keys.protocol`: dataset, epochs, loss, evaluation profile)
    as it was trained and evaluated: its ``run.parquet`` row, the ``eval.*`` keys from ``eval.parquet``'s
    ``eval/profile`` where it records one (a re-evaluation changes them, not the row)."""
    row = pq.read_table(Path(run_dir) / "run.parquet").to_pylist()[0]
    try:  # an unreadable evaluation leaves the run out of its analysis (inputs.csv then lacks it)
        t = pq.read_table(Path(run_dir) / "eval.parquet", columns=["eval/profile"])
        text = t.column("eval/profile").to_pylist()[0]
    except (OSError, KeyError, IndexError, pa.ArrowException):
        text = None
    if isinstance(text, str):
        row.update({f"eval.{k}": v for k, v in json.loads(text).items()})
    return protocol(row)


def protocol_differs(sweep_dir: Path, names: Sequence[str], expected: dict[str, dict]) -> str | None:
    """Where a run of ``names`` in ``sweep_dir`` was not trained or evaluated with the protocol
    (:func:`sweep.keys.protocol`) of its ``expected`` config (:func:`expected_configs`): the first such
    run and the keys that differ; None where every run was."""
    for name in names:
        try:
            want = protocol(flatten(expected[name]))
            diff = protocol_diff(want, run_protocol(Path(sweep_dir) / name))
        except (OSError, IndexError, pa.ArrowException) as exc:
            return f"{name}'s run.parquet cannot be read ({type(exc).__name__})"
        if diff:
            keys = "; ".join(f"{k}={shown(got)}, not {shown(want)}" for k, want, got in diff[:4])
            more = f" (and {len(diff) - 4} more keys)" if len(diff) > 4 else ""
            return f"{name} has {keys}{more}"
    return None


def expected_configs(experiment: str, names: Sequence[str]) -> dict[str, dict]:
    """{run directory: the config ``experiment=<experiment>`` composes its run name to}, composed once
    per group choice (encoder, decoder) with the name's other keys set on top, as the grid check
    composes a grid (:func:`sweep.jobs.job_config`, which needs a launch's config)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from sweep.config import CONF_DIR, to_plain
    from sweep.hydra_setup import register
    from sweep.names import parse_run_name

    register()
    composed: dict[tuple[str, ...], object] = {}
    out = {}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for name in names:
            overrides = parse_run_name(Path(name).name).overrides()
            groups = tuple(o for o in overrides if o.split("=")[0] in ("encoder", "decoder"))
            if groups not in composed:
                composed[groups] = compose("config", overrides=[f"experiment={experiment}", *groups])
            cfg = composed[groups].copy()
            for o in OverridesParser.create().parse_overrides([o for o in overrides if o not in groups]):
                OmegaConf.update(cfg, o.key_or_group, o.value())
            out[name] = to_plain(cfg)
    return out


def config_differs(sweep_dir: Path, expected: dict[str, dict]) -> str | None:
    """Where a run of ``sweep_dir`` did not train its ``expected`` config (:func:`expected_configs`;
    :func:`sweep.keys.config_diff`: every key that makes what a run trains, widths included, which the
    protocol leaves out: default widths in the capacity-matched folder): the first such run and its
    differing keys; None where every run did."""
    from sweep.config import config_diff
    from sweep.results import read_stored_config

    for name, want in expected.items():
        diff = config_diff(read_stored_config(Path(sweep_dir) / name) or {}, want)
        if diff:
            return f"{name}: {'; '.join(diff[:4])}" + (f" (and {len(diff) - 4} more)" if len(diff) > 4 else "")
    return None


def _status(run_dir: Path) -> str | None:
    try:
        return read_complete(run_dir).get("status")
    except (OSError, ValueError, AttributeError):
        return None
