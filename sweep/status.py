"""Where a sweep stands: one table of its runs against the grid it was launched with.

    python -m sweep.status results/sweeps/paper            # the table once
    python -m sweep.status results/sweeps/paper --watch    # refreshed until no run is left to train
    python -m sweep.status results/examples                # each sweep below it, against its own grid

Each run of the grid (``grid.json``, written by the launch's grid check; for a sweep launched before
that file existed, the jobs of Hydra's ``multirun.yaml``, or else the run directories found on disk)
(or, given one run's directory, that run) is one of: ``ok``, ``diverged``, ``pruned`` (complete: its ``COMPLETE`` marker), ``failed`` (``run.parquet`` says so; a relaunch retries it),
``training`` (a live process holds its lock: host, pid and epoch from the holder note),
``interrupted`` (started, no live holder: a relaunch resumes it), ``not started``, ``unreadable``
(a file that cannot be parsed; named), or ``mismatched``: its row (or stored config) differs from the
protocol settings ``grid.json`` records for the sweep (dataset, epochs, loss, evaluation profile:
:func:`sweep.keys.protocol`), each differing key named; it counts as neither complete nor failed. Below the counts: the median wall seconds of the runs that
finished ok and an ETA for what is left at the current number of runs training at once, each failed
or diverged run with the first line of its error, and the commands that retry the failed runs and
resume the rest.

A directory that holds several sweeps (``results/examples``; or a sweep with one inside it) shows each
against its own grid, one table each (never one grid of all their runs), then the run directories
that lie in none, by state; it exits 0 when every run of them all is complete.

It only reads: files that are written atomically (``COMPLETE``, ``run.parquet``, ``grid.json``), the
holder note (one fixed-size record, :func:`sweep.lock.note_holder`) and ``/proc/locks``; it never
takes a lock, so it is safe beside running launches. A holder on this machine is live if the kernel
lists its lock; a holder on another machine (a Slurm node, shared filesystem) is live while its note,
rewritten after every epoch, is younger than ``--stale-after`` seconds. Exit code 0 when every run of
the grid is complete (``ok``, ``diverged`` or ``pruned``: a single run that diverged exits 0 too), 1
otherwise (a multirun whose runs failed exits 1 as well), 2 on bad usage or a directory that holds
no sweep (no grid, no run); with ``--watch`` it returns once nothing is
training or left to train, so a script can wait on it, or once nothing has trained for
``--idle-after`` seconds (default 30 minutes) with runs left: no launch is training them (exit 1). It imports neither torch nor Hydra, so it
answers in well under a second (``bench/status.py``).

:class:`sweep.grid.SweepProgress` shows the same counts as one progress line while a multirun trains.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from sweep import results
from sweep.keys import flatten, is_protocol, protocol_diff, shown
from sweep.layout import (  # noqa: F401 - where sweeps and runs lie, re-exported: their users import them here
    GRID_FILE,
    ON_DISK,
    check_sweep_dir,
    is_run_dir,
    is_sweep_dir,
    read_grid,
    read_settings,
    runs_on_disk,
    sweep_of,
    sweeps_below,
)
from sweep.lock import LOCK_NAME, local_locks, read_note
from sweep.paths import PathError, readable

COMPLETE_STATES = ("ok", "diverged", "pruned")
SINGLE = "the single run directory"  # a Status's source where the directory shown is one run's
# what makes a sweep, and the multirun that trained it, exit 1; "mismatched": a run whose protocol
# (sweep.keys.protocol) is not the sweep's settings in grid.json
FAILED_STATES = ("failed", "unreadable", "mismatched")
STALE_AFTER = 1800.0  # seconds without a heartbeat before a holder on another machine counts as gone
SHOW_TRAINING = 20  # training runs listed by name; the rest are counted


@dataclass
class Run:
    """One run of the grid as the files say it is now."""

    name: str  # its directory relative to the sweep directory
    state: str
    detail: str | None = None  # first line of the error / who holds it / what is unreadable
    seconds: float | None = None  # wall seconds (finished runs)
    epoch: int | None = None
    epochs: int | None = None


@dataclass
class Status:
    sweep_dir: Path
    runs: list[Run]
    source: str  # where the grid came from
    command: str | None = None  # the launch command, when grid.json has it
    outside: list[str] = field(default_factory=list)  # run directories on disk not in the grid

    def count(self, *states: str) -> int:
        return sum(r.state in states for r in self.runs)

    def of(self, state: str) -> list[Run]:
        return [r for r in self.runs if r.state == state]

    @property
    def all_ok(self) -> bool:
        return bool(self.runs) and self.count("ok") == len(self.runs)

    @property
    def finished(self) -> bool:
        """Every run of the grid has its result (ok, diverged or pruned: a relaunch keeps each), as
        when a single run exits 0; a failed or unreadable run, or one left to train, is not."""
        return bool(self.runs) and self.count(*COMPLETE_STATES) == len(self.runs)

    @property
    def settled(self) -> bool:
        """Nothing is training and nothing is left that a launch would still train by itself."""
        return self.count("training", "interrupted", "not started") == 0

    def median_seconds(self) -> float | None:
        done = [r.seconds for r in self.of("ok") if r.seconds is not None]
        return statistics.median(done) if done else None

    def eta_seconds(self) -> float | None:
        """Seconds until the runs training, interrupted or not started are done, at the median
        seconds per run with as many runs at once as are training now (None if none is)."""
        median, training = self.median_seconds(), self.of("training")
        if median is None or not training:
            return None
        left = self.count("interrupted", "not started")
        for r in training:
            left += 1 - (r.epoch or 0) / r.epochs if r.epochs else 1
        return median * left / len(training)


def _first_line(text: Any) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return None
    return text.strip().splitlines()[0]


def _read_row(run_dir: Path) -> dict[str, Any]:
    """The columns of ``run.parquet`` the table uses, each of the type it must have: a file that holds
    anything else (no row, a status not in ``results.STATUSES``, wall seconds that are not a number)
    raises ``ValueError`` naming it, so the run is reported unreadable instead of breaking the table."""
    cols = ["status", "error", "wall_seconds"]  # ParquetFile: a tenth of read_table's cost per file
    with pq.ParquetFile(run_dir / "run.parquet") as f:
        cols += [n for n in f.schema_arrow.names if is_protocol(n)]  # compared with grid.json's settings
        rows = f.read(columns=cols).to_pylist()
    if len(rows) != 1:
        raise ValueError(f"{len(rows)} rows where a run has exactly one")
    row = rows[0]
    if row["status"] not in results.STATUSES:
        raise ValueError(f"status={row['status']!r}; valid: {', '.join(results.STATUSES)}")
    seconds = row["wall_seconds"]
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)):
        raise ValueError(f"wall_seconds={seconds!r} is not a number")
    if row["error"] is not None and not isinstance(row["error"], str):
        raise ValueError(f"error={row['error']!r} is not text")
    return row


def _holder_live(run_dir: Path, note: dict | None, locks: set[int] | None, now: float, stale_after: float):
    """Whether a live process holds the run's lock (see the module docstring)."""
    try:
        lock = os.stat(run_dir / LOCK_NAME)
    except OSError:
        return False
    if locks is not None and lock.st_ino in locks:  # held by a process on this machine
        return True
    if note is None:
        return False
    if note["host"] == socket.gethostname():
        if locks is not None:
            return False
        try:  # no /proc/locks (not Linux): is the pid alive?
            os.kill(note["pid"], 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return now - lock.st_mtime < stale_after  # another machine: its heartbeat


def scan_run(
    sweep_dir: Path,
    name: str,
    locks: set[int] | None,
    now: float,
    stale_after: float = STALE_AFTER,
    settings: dict[str, Any] | None = None,
) -> Run:
    """The state of run ``name`` (a directory relative to ``sweep_dir``): ``mismatched`` where its
    row (or, before it has one, its stored config) differs from the sweep's ``settings``."""
    run = _scan_run(sweep_dir, name, locks, now, stale_after)
    if settings and run.state != "unreadable" and (diff := _differs(sweep_dir / name, settings)):
        return Run(name, "mismatched", diff, run.seconds)
    return run


def _differs(run_dir: Path, settings: dict[str, Any]) -> str | None:
    """How the run in ``run_dir`` differs from its sweep's ``settings`` (``key=value where grid.json
    has value``), or None; a run with neither a readable row nor a stored config is not compared."""
    try:
        flat = _read_row(run_dir) if (run_dir / "run.parquet").is_file() else None
    except Exception:  # noqa: BLE001 - reported as unreadable by the scan itself
        flat = None
    if flat is None:
        try:
            stored = results.read_stored_config(run_dir)
        except (results.StoredConfigError, OSError):
            stored = None
        if stored is None:
            return None
        flat = flatten(stored)
    diff = protocol_diff(settings, flat)
    return "; ".join(f"{k}={shown(got)} where {GRID_FILE} has {shown(want)}" for k, want, got in diff) or None


def _scan_run(sweep_dir: Path, name: str, locks: set[int] | None, now: float, stale_after: float) -> Run:
    run_dir = sweep_dir / name
    try:
        if results.is_complete(run_dir):
            try:
                marker = results.read_complete(run_dir)
                state = marker["status"]
            except (ValueError, KeyError, TypeError) as exc:
                return Run(name, "unreadable", f"COMPLETE: {type(exc).__name__}: {exc}")
            if state not in COMPLETE_STATES:
                return Run(name, "unreadable", f"COMPLETE: unknown status {state!r}")
            try:
                row = _read_row(run_dir)
            except Exception as exc:  # noqa: BLE001 - any parse error: the run is reported, not fatal
                return Run(name, "unreadable", f"run.parquet: {type(exc).__name__}: {_first_line(str(exc))}")
            return Run(name, state, _first_line(row["error"]) if state != "ok" else None, row["wall_seconds"])
        note = read_note(run_dir)
        if _holder_live(run_dir, note, locks, now, stale_after):
            if note is None:  # held, but the note is being written or is garbled
                return Run(name, "training", "holder unknown")
            return Run(
                name,
                "training",
                f"{note['host']} pid {note['pid']}",
                epoch=note["epoch"],
                epochs=note["epochs"],
            )
        if (run_dir / "run.parquet").is_file():
            try:
                row = _read_row(run_dir)
            except Exception as exc:  # noqa: BLE001
                return Run(name, "unreadable", f"run.parquet: {type(exc).__name__}: {_first_line(str(exc))}")
            if row["status"] == "failed":
                return Run(
                    name, "failed", _first_line(row["error"]) or "(no error recorded)", row["wall_seconds"]
                )
        started = any((run_dir / f).exists() for f in ("last.pt", "epochs.parquet", ".hydra/config.yaml"))
        if started:
            was = f"last held by {note['host']} pid {note['pid']}, not running" if note else None
            return Run(name, "interrupted", was, epoch=note and note["epoch"], epochs=note and note["epochs"])
        return Run(name, "not started")
    except OSError as exc:
        return Run(name, "unreadable", f"{type(exc).__name__}: {exc}")


class Scanner:
    """Scans a sweep again and again; complete runs are final, so each is read once. Given one run's
    directory, it scans that run alone (as the one run of its parent directory)."""

    def __init__(self, sweep_dir: str | Path, stale_after: float = STALE_AFTER):
        self.sweep_dir, self.stale_after = Path(sweep_dir), stale_after
        self.single: str | None = None
        if is_run_dir(self.sweep_dir):
            self.single = self.sweep_dir.resolve().name
            self.sweep_dir = self.sweep_dir.resolve().parent
        self._final: dict[str, Run] = {}

    def scan(self) -> Status:
        if self.single is not None:
            names, source, command = [self.single], f"{SINGLE} {self.single}", None
        else:
            names, source, command = read_grid(self.sweep_dir)
        settings = read_settings(self.sweep_dir)
        locks, now = local_locks(), time.time()
        runs = []
        for name in names:
            run = self._final.get(name) or scan_run(
                self.sweep_dir, name, locks, now, self.stale_after, settings
            )
            if run.state in COMPLETE_STATES:
                self._final[name] = run
            runs.append(run)
        outside = []
        if self.single is None and not source.startswith(ON_DISK):
            grid = set(names)
            outside = [n for n in runs_on_disk(self.sweep_dir) if n not in grid]
        return Status(self.sweep_dir, runs, source, command, outside)


def scan(sweep_dir: str | Path, stale_after: float = STALE_AFTER) -> Status:
    return Scanner(sweep_dir, stale_after).scan()


def show_progress(setting: Any) -> bool:
    """Whether to draw progress bars (a run's, and the sweep's line) for the config value ``progress``:
    ``auto`` draws them on a terminal outside CI, so logs and CI output stay free of them."""
    if setting == "auto":
        return sys.stderr.isatty() and not os.environ.get("CI")
    return bool(setting)


def hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _epoch(r: Run) -> str:
    return f"epoch {r.epoch if r.epoch is not None else '?'}/{r.epochs if r.epochs is not None else '?'}"


def render(st: Status) -> str:
    """The status table as text."""
    n = len(st.runs)
    if st.source.startswith(SINGLE) and n == 1:  # one run's directory, named as itself
        lines = [f"run {st.sweep_dir / st.runs[0].name}: one run directory, shown alone"]
    else:
        lines = [f"sweep {st.sweep_dir}: {n} run{'' if n == 1 else 's'} in the grid (from {st.source})"]
    if st.command:
        lines.append(f"  launched with: {st.command}")
    complete = st.count(*COMPLETE_STATES)
    parts = " · ".join(f"{s} {st.count(s)}" for s in COMPLETE_STATES)
    rows = [
        ("complete", complete, parts),
        ("failed", st.count("failed"), "a relaunch retries them"),
        ("training now", st.count("training"), ""),
        ("interrupted", st.count("interrupted"), "a relaunch resumes them"),
        ("not started", st.count("not started"), ""),
    ]
    if st.count("unreadable"):
        rows.append(("unreadable", st.count("unreadable"), "named below"))
    if st.count("mismatched"):
        rows.append(
            ("mismatched", st.count("mismatched"), f"not the sweep's settings ({GRID_FILE}): named below")
        )
    for label, count, note in rows:
        lines.append(f"  {label:<13}{count:>6}   {note}".rstrip())
    median, eta = st.median_seconds(), st.eta_seconds()
    timing = (
        f"median {median:.1f} s per ok run ({_runs(st.count('ok'))})"
        if median is not None
        else "no run finished ok yet"
    )
    if eta is not None:
        timing += f" · ETA {hms(eta)} at {_runs(st.count('training'))} at a time"
    elif st.count("interrupted", "not started") and not st.count("training"):
        timing += " · no run is training now: no ETA"
    lines.append(timing)
    training = st.of("training")
    listed = training[:SHOW_TRAINING] + [
        r for s in ("failed", "diverged", "unreadable", "mismatched") for r in st.of(s)
    ]
    width = max((len(r.name) for r in listed), default=0)
    for r in listed:
        detail = f"({r.detail}, {_epoch(r)})" if r.state == "training" else r.detail or ""
        lines.append(f"  {r.state:<11}{r.name:<{width}}  {detail}".rstrip())
        if len(training) > SHOW_TRAINING and r is training[SHOW_TRAINING - 1]:
            lines.append(f"  {'training':<11}… and {len(training) - SHOW_TRAINING} more")
    if st.outside:
        n = len(st.outside)
        lines.append(
            f"{n} run director{'ies' if n != 1 else 'y'} on disk {'are' if n != 1 else 'is'} not in this grid "
            "(earlier launches)"
        )
    if st.count("failed"):
        lines.append(
            f"retry only the failed runs: python -m sweep.rerun --failed {shlex.quote(str(st.sweep_dir))}"
        )
    if st.command and st.count("interrupted", "not started"):
        lines.append(f"train the rest (skips complete runs, resumes interrupted ones): {st.command}")
    return "\n".join(lines)


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds > 0 (argparse names the flag and exits 2)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds; valid: a finite number > 0")
    return value


def usage_error(message: str) -> None:
    """argparse's refusal as one ``error:`` line (its usage is what ``--help`` prints), status 2."""
    print(f"error: {message}; see --help", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sweep.status", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "sweep_dir", type=Path, help="a sweep directory, e.g. results/sweeps/paper, or one run's directory"
    )
    p.add_argument("--watch", action="store_true", help="refresh until nothing is left to train")
    p.add_argument("--interval", type=seconds, default=10.0, help="seconds between refreshes (--watch)")
    p.add_argument(
        "--stale-after",
        type=seconds,
        default=STALE_AFTER,
        help="seconds without a heartbeat after which a holder on another machine counts as gone",
    )
    p.add_argument(
        "--idle-after",
        type=seconds,
        default=STALE_AFTER,
        help="--watch: seconds with nothing training, runs left, after which it returns (the launch is gone)",
    )
    p.error = usage_error
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:  # a refused argument (status 2) or --help (0): returned like the rest
        return int(exc.code or 0)
    try:
        if not readable(args.sweep_dir, "sweep_dir").is_dir():
            print(f"error: {args.sweep_dir} is not a directory", file=sys.stderr)
            return 2
        check_sweep_dir(args.sweep_dir)
    except (PathError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sweeps, loose = sweeps_below(args.sweep_dir)
    scanners = [Scanner(d, args.stale_after) for d in sweeps]
    loose_scanners = [Scanner(r, args.stale_after) for r in loose]
    clear = "\033[H\033[J" if sys.stdout.isatty() else ""
    idle_since = time.monotonic()
    try:
        while True:
            states = [s.scan() for s in scanners]
            text = "\n\n".join(map(render, states))
            if sweeps != [args.sweep_dir] or loose:
                text = f"{args.sweep_dir}: {len(sweeps)} sweeps, each shown against its own grid\n\n{text}"
            if loose:
                alone = [s.scan() for s in loose_scanners]
                text += "\n\n" + render_loose(Path(args.sweep_dir), alone)
                states += alone
            print(clear + text, flush=True)
            if not args.watch or all(st.settled for st in states):
                break
            if any(st.count("training") for st in states):
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= args.idle_after:
                print(
                    f"nothing has trained for {args.idle_after:g} s with runs left: no launch is training "
                    "them; relaunch the sweep's command (above) to train the rest",
                    flush=True,
                )
                break
            time.sleep(args.interval)
            if not clear:
                print()
    except KeyboardInterrupt:
        pass
    return 0 if all(st.finished for st in states) else 1


def _runs(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


def render_loose(path: Path, alone: list[Status]) -> str:
    """The run directories below ``path`` that lie in no sweep: their count by state, and each that is
    not complete by name and state."""
    runs = [r for st in alone for r in st.runs]
    states = (*COMPLETE_STATES, "failed", "training", "interrupted", "not started", "unreadable")
    counts = " · ".join(f"{s} {n}" for s in states if (n := sum(r.state == s for r in runs)))
    n = len(runs)
    lines = [f"{n} run director{'ies' if n != 1 else 'y'} below {path} li{'e' if n != 1 else 'es'} in no sweep: {counts}"]
    for st in alone:
        for r in st.runs:
            if r.state not in COMPLETE_STATES:
                lines.append(f"  {r.state:<12}{st.sweep_dir / r.name}  {r.detail or ''}".rstrip())
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
