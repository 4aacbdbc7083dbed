"""Where sweeps and runs lie on disk, for :mod:`sweep.status` and the commands that find a sweep: a
run's directory (what any started run writes first), a sweep's (a launch recorded its grid there:
``grid.json``, or Hydra's ``multirun.yaml`` before it existed), the grid of runs a sweep holds, the
protocol settings its launch recorded, and the walk that finds every sweep and loose run below a
directory. Torch- and Hydra-free (Hydra only for a sweep whose grid only ``multirun.yaml`` records).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from sweep import results
from sweep.keys import protocol

GRID_FILE = "grid.json"  # as sweep.grid writes it (that module imports Hydra: not imported here)


def runs_on_disk(sweep_dir: Path) -> list[str]:
    """Run directories below ``sweep_dir`` (one or two levels down: ablations nest them), by the
    config snapshot every started run writes first."""
    found = {
        p.parent.parent
        for pat in ("*/.hydra/config.yaml", "*/*/.hydra/config.yaml")
        for p in sweep_dir.glob(pat)
    }
    return sorted(str(p.relative_to(sweep_dir)) for p in found)


def grid_from_multirun(path: Path) -> tuple[list[str], str]:
    """(run directories, launch command) of the jobs of Hydra's ``multirun.yaml``, composed as the
    grid check composes them. Imports Hydra and torch (seconds): only for a sweep without grid.json."""
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from sweep.config import CONF_DIR
    from sweep.hydra_setup import register
    from sweep.jobs import job_config, job_overrides

    register()
    config = OmegaConf.load(path)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cache: dict = {}
        runs = [str(job_config(config, job, cache).hydra.sweep.subdir) for job in job_overrides(config)]
    args = [*config.hydra.overrides.hydra, *config.hydra.overrides.task]
    return runs, "python -m sweep.train " + shlex.join(str(a) for a in args)


def _grid_runs(record: Any) -> list[str]:
    """The run directories of a ``grid.json`` record: a list of relative paths inside the sweep
    directory (as :func:`sweep.grid.write_grid_file` writes them); anything else raises ValueError."""
    runs = record.get("runs") if isinstance(record, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, str) and r for r in runs):
        raise ValueError(f"'runs' is {runs!r:.60}, not a list of run directories")
    for r in runs:
        if Path(r).is_absolute() or ".." in Path(r).parts:
            raise ValueError(f"run {r!r} is outside the sweep directory")
    return runs


def read_settings(sweep_dir: Path) -> dict[str, Any] | None:
    """The protocol settings (:func:`sweep.keys.protocol`) every run of the sweep shares, as its
    ``grid.json`` records them; None where it records none (no file, or one written before)."""
    try:
        record = json.loads((Path(sweep_dir) / GRID_FILE).read_text())
    except (OSError, ValueError):
        return None
    settings = record.get("settings") if isinstance(record, dict) else None
    return protocol(settings) if isinstance(settings, dict) else None


def sweep_of(path: Path) -> Path | None:
    """The sweep directory (one with a ``grid.json``) that ``path`` lies in, or None."""
    return next((p for p in Path(path).resolve().parents if (p / GRID_FILE).is_file()), None)


ON_DISK = "the run directories on disk"  # how read_grid's source begins where no launch recorded the grid


def read_grid(sweep_dir: Path) -> tuple[list[str], str, str | None]:
    """(run directories, where they came from, launch command): ``grid.json``; for a sweep launched
    before it existed, Hydra's ``multirun.yaml``; else the run directories on disk."""
    path = sweep_dir / GRID_FILE
    try:
        record = json.loads(path.read_text())
        runs = _grid_runs(record)
        return runs, f"{GRID_FILE} of the launch at {record.get('launched_at', '?')}", record.get("command")
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"warning: {path} is unreadable ({exc}); using the run directories on disk", file=sys.stderr)
        return runs_on_disk(sweep_dir), f"{ON_DISK} ({GRID_FILE} is unreadable)", None
    multirun = sweep_dir / "multirun.yaml"
    if multirun.is_file():
        try:
            runs, command = grid_from_multirun(multirun)
            return runs, "Hydra's multirun.yaml of the last launch", command
        except Exception as exc:  # noqa: BLE001 - an old or foreign file: fall back, say why
            print(
                f"warning: cannot read the grid from {multirun} ({type(exc).__name__}: {exc})",
                file=sys.stderr,
            )
    return runs_on_disk(sweep_dir), f"{ON_DISK} (no {GRID_FILE} or multirun.yaml)", None


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is one run's directory (it holds what any started run writes first)."""
    return any((Path(path) / m).is_file() for m in results.RUN_MARKERS)


def check_sweep_dir(path: Path) -> None:
    """Refuse (``ValueError``, one line) a directory that holds no sweep: no ``grid.json``, no
    ``multirun.yaml`` and no run directory, where a table would report "0 runs" as if it were one."""
    path = Path(path)
    if is_run_dir(path) or (path / GRID_FILE).is_file() or (path / "multirun.yaml").is_file():
        return
    if not runs_on_disk(path):
        raise ValueError(
            f"sweep_dir={path} holds no sweep: no {GRID_FILE}, multirun.yaml or run directory "
            "(<run>/.hydra/config.yaml) in it; valid: a sweep directory, e.g. results/sweeps/<sweep_name>, "
            "or one run's directory"
        )


def is_sweep_dir(path: Path) -> bool:
    """Whether ``path`` is a sweep's directory: a launch recorded its grid there."""
    return (Path(path) / GRID_FILE).is_file() or (Path(path) / "multirun.yaml").is_file()


def sweeps_below(path: Path) -> tuple[list[Path], list[Path]]:
    """(sweeps, loose runs) to show for ``path``. A run directory: itself, alone. Else every sweep at
    or below it (``results/examples`` collects several; a sweep may hold another), each to be shown
    against its own grid (merged, their runs would read as one grid with one ETA), and the run
    directories below it that lie in none of them. Where there is no sweep: ``path`` itself, whose
    runs on disk are then its grid."""
    path = Path(path)
    if is_run_dir(path):
        return [path], []
    sweeps, runs = ([path] if is_sweep_dir(path) else []), []
    top = path.resolve()
    seen = {top}  # a linked directory is walked once; a link to the argument or above it, never
    for here, dirs, _ in os.walk(path, followlinks=True):
        keep = []
        for d in sorted(dirs):
            sub = Path(here) / d
            real = sub.resolve()
            if real in seen or top.is_relative_to(real):
                continue
            seen.add(real)
            try:
                run, sweep = is_run_dir(sub), is_sweep_dir(sub)
            except OSError as exc:  # e.g. no permission to look inside: named, not a traceback
                print(f"warning: {sub} cannot be read ({exc.strerror or exc}); skipped", file=sys.stderr)
                continue
            if run:  # a run holds no sweep: not walked
                runs.append(sub)
                continue
            if sweep:
                sweeps.append(sub)
            keep.append(d)
        dirs[:] = keep
    if not sweeps:
        return [path], []
    return sorted(sweeps), [r for r in runs if not any(r.is_relative_to(s) for s in sweeps)]
