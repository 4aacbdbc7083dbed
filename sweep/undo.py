"""What a launch wrote into its sweep directories before anything was submitted, put back where the
submission itself is refused (Slurm's ``sbatch``: :mod:`sweep.slurm`), so that a refused launch leaves
the tree as it found it, as every other refusal does.

A launch writes, after its grid check passed and before its launcher submits: ``grid.json`` (its grid and
settings, :mod:`sweep.grid`), the sweep's lock file, Hydra's ``multirun.yaml``, and, for Slurm,
submitit's files in its folder (``.submitit/``). The grid check calls :func:`remember` (what the sweep
directories held before), the launcher :func:`wrote` (what this launch wrote there) and
:func:`submitting` (submitit's folder before the submission); :func:`undo` then puts back only what is
still this launch's:

* ``grid.json`` and ``multirun.yaml`` as they were (bytes and times), but only where they still hold what
  this launch wrote: another launch that wrote them since keeps its record;
* the entries submitit made in its folder during this submission, by name (before against after);
* the lock file, where this launch created it, only if no one holds it;
* directories the launch created, only once empty (``rmdir``, never a recursive delete).

Once a submission of this process went through (a sweep in several batches), :func:`forget` drops the
record: a later refused batch removes its own submitit files, nothing of the tasks that run. The
directories are changed under the sweep's lock.

    from sweep import undo
    undo.remember([sweep_dir])   # the grid check, before grid.json is written
    undo.wrote()                 # the launcher, before it submits
    undo.submitting(folder)      # ... and submitit's folder just before the submission
    undo.undo()                  # the launcher, when the submission is refused
"""

from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sweep.layout import GRID_FILE
from sweep.lock import GRID_LOCK_NAME, sweep_lock
from sweep.results import atomic_write_bytes

RESTORED = (GRID_FILE, "multirun.yaml")  # rewritten by every launch: put back as they were
Stamp = tuple[bytes, tuple[int, int]]  # a file's bytes and (atime, mtime) in ns


@dataclass
class Before:
    """A sweep directory as the launch found it, and what the launch wrote there."""

    created: Path | None  # the highest directory the launch creates for it (None: it existed)
    files: dict[str, Stamp | None]  # RESTORED names as they were (None: absent)
    names: set[str]  # its top-level entries
    mine: dict[str, Stamp | None] = field(default_factory=dict)  # RESTORED as this launch wrote them


_BEFORE: dict[Path, Before] = {}
_SUBMITIT: list = []  # [folder, its entry names before the submission or None where it was absent]
_STATE = {"submitted": False}  # a submission of this process went through


def _read(path: Path) -> Stamp | None:
    if not path.is_file():
        return None
    st = path.stat()
    return path.read_bytes(), (st.st_atime_ns, st.st_mtime_ns)


def _same(a: Stamp | None, b: Stamp | None) -> bool:
    """The same file content and modification time (reading a file moves its access time)."""
    return a == b if a is None or b is None else (a[0], a[1][1]) == (b[0], b[1][1])


def _highest_missing(path: Path) -> Path | None:
    """The highest ancestor of ``path`` (itself included) that does not exist; None if it exists."""
    if path.exists():
        return None
    top = path
    while not top.parent.exists():
        top = top.parent
    return top


def remember(sweep_dirs) -> None:
    """Record what each of ``sweep_dirs`` holds now (forgetting any earlier launch's record)."""
    _BEFORE.clear()
    _SUBMITIT.clear()
    _STATE["submitted"] = False
    for d in dict.fromkeys(Path(x).absolute() for x in sweep_dirs):
        created = _highest_missing(d)
        if created is not None:
            _BEFORE[d] = Before(created, dict.fromkeys(RESTORED), set())
        else:
            _BEFORE[d] = Before(None, {n: _read(d / n) for n in RESTORED}, {p.name for p in d.iterdir()})


def wrote() -> None:
    """Record what this launch wrote into its sweep directories (their ``RESTORED`` files now)."""
    for d, before in _BEFORE.items():
        before.mine = {n: _read(d / n) for n in RESTORED}


def submitting(folder: str | Path) -> None:
    """Record submitit's ``folder`` (the part of ``submitit_folder`` before ``%j``) just before submitting."""
    folder = Path(folder).absolute()
    _SUBMITIT[:] = [folder, {p.name for p in folder.iterdir()} if folder.is_dir() else None]


def forget() -> None:
    """A submission went through: nothing of the launch is undone any more but a later batch's files."""
    _BEFORE.clear()
    _SUBMITIT.clear()
    _STATE["submitted"] = True


def submitted() -> bool:
    """Whether a submission of this process went through (an earlier batch of the sweep)."""
    return _STATE["submitted"]


def _remove_unheld_lock(path: Path) -> bool:
    """Remove the lock file ``path`` if no process holds it (taken without waiting, then unlinked)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        path.unlink(missing_ok=True)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return True


def _rmdir_up(path: Path, top: Path) -> list[Path]:
    """``rmdir`` ``path`` and its parents up to ``top`` while each is empty."""
    out = []
    while True:
        try:
            path.rmdir()
        except OSError:
            return out
        out.append(path)
        if path == top or top not in path.parents:
            return out
        path = path.parent


def undo() -> list[Path]:
    """Put back what this launch wrote and what is still its own (see the module docstring); returns
    the paths changed. Forgets the record."""
    changed: list[Path] = []
    if _SUBMITIT:
        folder, names = _SUBMITIT
        if folder.is_dir():  # a shared (symlinked) folder too: only the names this submission added
            for p in sorted(folder.iterdir()):
                if names is None or p.name not in names:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                    changed.append(p)
            if names is None:
                changed += _rmdir_up(folder, folder)
    for d, before in _BEFORE.items():
        if not d.is_dir():
            continue
        with sweep_lock(d):
            for name, was in before.files.items():
                path = d / name
                now = _read(path)
                if name not in before.mine or not _same(now, before.mine[name]) or _same(now, was):
                    continue  # not written by this launch, or rewritten since by another: theirs
                if was is None:
                    path.unlink(missing_ok=True)
                else:  # its bytes and times: the file as it was, for anything that compares either
                    atomic_write_bytes(path, was[0])
                    os.utime(path, ns=was[1])
                changed.append(path)
        if GRID_LOCK_NAME not in before.names and _remove_unheld_lock(d / GRID_LOCK_NAME):
            changed.append(d / GRID_LOCK_NAME)
        if before.created is not None:
            changed += _rmdir_up(d, before.created)
    _BEFORE.clear()
    _SUBMITIT.clear()
    return changed
