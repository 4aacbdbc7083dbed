"""What a launch wrote into its sweep directories before anything was submitted, put back where the
submission itself is refused (Slurm's ``sbatch``: :mod:`sweep.slurm`), so that a refused launch leaves
the tree as it found it, as every other refusal does.

A launch writes, after its grid check passed and before its launcher submits: ``grid.json`` (its grid and
settings, :mod:`sweep.grid`), the sweep's lock file, Hydra's ``multirun.yaml``, and, for Slurm,
``.submitit/`` (submitit's pickled calls). :func:`remember` records, per sweep directory, what those were
before (their bytes, or that they were absent, and the highest directory the launch would create);
:func:`undo` puts them back: the two files as they were (bytes, atomically, and times) or removed, the lock and the
``.submitit/`` entries the launch added removed, a sweep directory it created removed with the parents it
created. Nothing else is touched.

    from sweep import undo
    undo.remember([sweep_dir])   # the grid check, before grid.json is written
    undo.undo()                  # the launcher, when the submission is refused
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sweep.layout import GRID_FILE
from sweep.lock import GRID_LOCK_NAME
from sweep.results import atomic_write_bytes

RESTORED = (GRID_FILE, "multirun.yaml")  # rewritten by every launch: put back as they were
ADDED = (GRID_LOCK_NAME, ".submitit")  # created by a launch: removed where it created them
SUBMITIT = ".submitit"


@dataclass
class Before:
    """A sweep directory as the launch found it."""

    created: Path | None  # the highest directory the launch creates for it (None: it existed)
    files: dict[str, tuple[bytes, tuple[int, int]] | None]  # RESTORED: bytes and (atime, mtime) ns, or None
    names: set[str]  # its top-level entries
    submitit: set[str] | None  # the entries of its .submitit/ (None: absent)


_BEFORE: dict[Path, Before] = {}


def _highest_missing(path: Path) -> Path | None:
    """The highest ancestor of ``path`` (itself included) that does not exist; None if it exists."""
    path = path.absolute()
    if path.exists():
        return None
    top = path
    while not top.parent.exists():
        top = top.parent
    return top


def _read(path: Path) -> tuple[bytes, tuple[int, int]] | None:
    if not path.is_file():
        return None
    st = path.stat()
    return path.read_bytes(), (st.st_atime_ns, st.st_mtime_ns)


def remember(sweep_dirs) -> None:
    """Record what each of ``sweep_dirs`` holds now (forgetting any earlier launch's record)."""
    _BEFORE.clear()
    for d in dict.fromkeys(Path(x).absolute() for x in sweep_dirs):
        created = _highest_missing(d)
        if created is not None:
            _BEFORE[d] = Before(created, {}, set(), None)
            continue
        files = {n: _read(d / n) for n in RESTORED}
        sub = d / SUBMITIT
        _BEFORE[d] = Before(None, files, {p.name for p in d.iterdir()}, {p.name for p in sub.iterdir()} if sub.is_dir() else None)


def undo() -> list[Path]:
    """Put every remembered sweep directory back as :func:`remember` found it; returns the paths
    changed (removed or restored). Forgets the record."""
    changed: list[Path] = []
    for d, before in _BEFORE.items():
        if before.created is not None:
            if before.created.exists():
                shutil.rmtree(before.created, ignore_errors=True)
                changed.append(before.created)
            continue
        for name, was in before.files.items():
            path = d / name
            if _read(path) == was:
                continue
            if was is None:
                path.unlink(missing_ok=True)
            else:  # its bytes and times: the file as it was, for anything that compares either
                atomic_write_bytes(path, was[0])
                os.utime(path, ns=was[1])
            changed.append(path)
        for name in ADDED:
            path = d / name
            if name not in before.names and (path.exists() or path.is_symlink()):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                changed.append(path)
        sub = d / SUBMITIT
        if before.submitit is not None and sub.is_dir():  # keep what earlier launches left there
            for p in sub.iterdir():
                if p.name not in before.submitit:
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
                    changed.append(p)
    _BEFORE.clear()
    return changed
