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


def note_holder(run_dir: str | Path) -> None:
    """Write 'host pid' into the lock file, for humans, once a process has decided to train the run
    (not on a relaunch that only finds it complete: that must leave every file untouched)."""
    (Path(run_dir) / LOCK_NAME).write_text(f"{socket.gethostname()} {os.getpid()}\n")


def holder(run_dir: str | Path) -> str:
    """'host pid' of the last process that took the lock (informational only)."""
    try:
        return (Path(run_dir) / LOCK_NAME).read_text().strip()
    except OSError:
        return "unknown"
