"""A per-run lock, so that concurrent launches on one sweep directory never train the same run twice.

The lock is an exclusive ``flock`` on ``<run dir>/.lock``. The operating system releases it when its
holder exits for any reason (SIGKILL and node loss included), so a dead holder never blocks a
relaunch; the ``.lock`` file itself stays and means nothing unless a live process holds the flock on
it. On Linux NFS mounts flock is mapped onto POSIX byte-range locks, which NFSv4 supports.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[bool]:
    """Yield True while holding the run's lock, or False at once if another live process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


NOTE_SIZE = 96  # bytes: the holder note is one fixed-size record, rewritten in place by one pwrite


def note_holder(run_dir: str | Path, epoch: int | None = None, epochs: int | None = None) -> None:
    """Write 'host pid epoch epochs' into the lock file, for humans and ``python -m sweep.status``,
    once a process has decided to train the run (not on a relaunch that only finds it complete: that
    must leave every file untouched), and again after every epoch (a heartbeat: the file's mtime).

    The lock file cannot be replaced by an atomic rename (the flock is on its inode), so the note is
    one fixed-size record written at offset 0 by a single ``pwrite``, never truncated: a reader sees
    the previous note or the new one (or, at worst, a garbled line it reports as unknown)."""
    fields = [socket.gethostname(), str(os.getpid())]
    if epoch is not None:
        fields += [str(epoch), str(epochs if epochs is not None else "?")]
    record = " ".join(fields).encode()[: NOTE_SIZE - 1].ljust(NOTE_SIZE - 1) + b"\n"
    fd = os.open(Path(run_dir) / LOCK_NAME, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, record, 0)
    finally:
        os.close(fd)


def read_note(run_dir: str | Path) -> dict[str, str | int | None] | None:
    """The holder note as {'host', 'pid', 'epoch', 'epochs'} (ints where known), or None if there is
    none or it cannot be parsed."""
    try:
        text = (Path(run_dir) / LOCK_NAME).read_text(errors="replace")
    except OSError:
        return None
    parts = text.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    num = lambda i: int(parts[i]) if len(parts) > i and parts[i].isdigit() else None  # noqa: E731
    return {"host": parts[0], "pid": int(parts[1]), "epoch": num(2), "epochs": num(3)}


def holder(run_dir: str | Path) -> str:
    """'host pid' of the last process that took the lock (informational only)."""
    note = read_note(run_dir)
    return "unknown" if note is None else f"{note['host']} {note['pid']}"


def local_locks() -> set[int] | None:
    """Inodes of every file locked on this machine, from ``/proc/locks``, or None without procfs.
    Reading the kernel's table leaves the locks alone: probing one with ``flock`` could make a launch
    that tries it at that instant skip the run."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    out = set()
    for line in lines:
        parts = line.split()
        dev = next((p for p in parts if p.count(":") == 2), None)  # maj:min:inode
        if dev is not None and ("FLOCK" in parts or "POSIX" in parts):
            out.add(int(dev.rsplit(":", 1)[1]))
    return out


GRID_LOCK_NAME = ".grid.lock"


@contextmanager
def sweep_lock(sweep_dir: str | Path) -> Iterator[None]:
    """Hold the sweep's lock (an exclusive ``flock`` on ``<sweep dir>/.grid.lock``), waiting for it:
    the last check of a launch's grid against the sweep's ``grid.json`` and the write of its own are
    one step, so of two launches of different settings into one sweep the second is refused. Only a
    launch whose grid passed every other check takes it (the directory is then written anyway)."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(sweep_dir / GRID_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
