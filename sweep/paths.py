"""The paths an entry point writes or reads, checked before it starts (issue 23, class 6).

:func:`writable` proves that a path an entry point will write can be created: no NUL byte, no
component longer than the filesystem's ``NAME_MAX``, the whole under ``PATH_MAX``, not below a
regular file, and its nearest existing ancestor a directory in which this process can create an
entry — tried for real (a directory made and removed at once), because ``os.access`` says yes to root
on a directory chmod 0o555 and on ``/proc``, and cannot see a read-only mount. Every entry point that
writes calls it before it writes anything (``sweep.train`` single and multirun, ``sweep.rerun --out``,
``sweep.search``, ``analysis.figures --out``, the ``bench`` outputs). :func:`readable` turns what the
operating system says about a path a read-only tool is given (too long, a NUL byte, no permission)
into the same one-line refusal. Both raise :class:`PathError`, a ``ValueError`` as every refusal is
(:data:`sweep.rules.REFUSALS`), so every entry point prints it as its one ``error:`` line. It imports
nothing of the harness (``sweep.status`` uses it and stays free of torch and Hydra).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


class PathError(ValueError):
    """A path cannot be written (or read) as the entry point needs; the message names it and why."""


def _limit(path: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(path, name)
    except (OSError, ValueError):
        return default


def _nearest_existing(path: Path, shown: str, file: bool) -> Path:
    """The nearest ancestor of ``path`` (or ``path`` itself) that exists, refusing a regular file on
    the way (which no path can lie below); with ``file``, the directory that will hold ``path``."""
    if file and os.path.isdir(path):
        raise PathError(f"{shown} is a directory; valid: a file path (its directory may not exist yet)")
    for p in (path.parent, *path.parent.parents) if file else (path, *path.parents):
        try:
            p.stat()  # follows links: a link to a file is a file
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            continue  # an ancestor further up is a file: found there, with its name
        except OSError as exc:
            raise PathError(f"{shown} cannot be written: {p}: {exc.strerror}") from None
        if not os.path.isdir(p):
            where = "is a file" if p == path else f"lies below {p}, which is a file"
            raise PathError(f"{shown} {where}; valid: a directory, or a path that does not exist yet")
        return p
    return Path(path.anchor or ".")


def _named(what: str, text: str) -> str:
    """``key=value`` for a key or flag (``hydra.sweep.dir=/x``), ``what value`` for words; a path
    too long to read in one line is shown by its start and end."""
    shown = repr(text) if not text or "\0" in text else text
    if len(shown) > 160:
        shown = f"{shown[:100]}…{shown[-40:]}"
    return f"{what} {shown}" if " " in what else f"{what}={shown}"


def writable(path: str | Path, what: str, *, file: bool = False) -> Path:
    """``path`` as an absolute path, once it is proven creatable as a directory (or, with ``file``,
    as a file written atomically: a temporary file beside it, then a rename), see the module
    docstring; else :class:`PathError` naming ``what`` (the key or flag that set it, or words such as
    "the run directory"), the path and why."""
    full, existing = _creatable(path, what, file)
    _probe(existing, _named(what, os.fspath(path)))
    return full


def creatable(path: str | Path, what: str) -> Path:
    """What :func:`writable` checks without writing (for a config's rule, which only reads: the names
    fit, the path does not lie below a file); the absolute path, or :class:`PathError`."""
    return _creatable(path, what, False)[0]


def _creatable(path: str | Path, what: str, file: bool) -> tuple[Path, Path]:
    """(the absolute path, its nearest existing directory)."""
    text = os.fspath(path)
    shown = _named(what, text)
    if "\0" in text:
        raise PathError(f"{shown} contains a NUL byte; valid: a path without one")
    if not text.strip():
        raise PathError(f"{shown} is empty; valid: a directory, or a path that does not exist yet")
    full = Path(os.path.abspath(text))
    anchor = Path(full.anchor)
    name_max = _limit(anchor, "PC_NAME_MAX", 255)
    for part in full.parts[1:]:
        if len(os.fsencode(part)) > name_max:
            raise PathError(
                f"{shown} cannot be written: the name {part[:40]}… is {len(os.fsencode(part))} "
                f"bytes; valid: names of at most {name_max} bytes (this filesystem's NAME_MAX)"
            )
    path_max = _limit(anchor, "PC_PATH_MAX", 4096)
    if len(os.fsencode(str(full))) >= path_max:
        raise PathError(
            f"{shown} cannot be written: it is {len(os.fsencode(str(full)))} bytes long; valid: "
            f"paths shorter than {path_max} bytes (PATH_MAX)"
        )
    return full, _nearest_existing(full, shown, file)


def _probe(directory: Path, shown: str) -> None:
    """Create and remove a directory in ``directory``: the only test that root, read-only mounts and
    pseudo-filesystems (``/proc``, ``/sys``) all answer truthfully."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=directory))
    except OSError as exc:
        reason = {
            errno.ENOENT: "it takes no new entries",  # /proc: mkdir there says "no such file"
            errno.EPERM: "creating entries there is not permitted",
        }.get(exc.errno, exc.strerror or type(exc).__name__)
        raise PathError(
            f"{shown} cannot be written: {directory} is not writable ({reason}); valid: a path "
            "below a directory this user can write"
        ) from None


def readable(path: str | Path, what: str) -> Path:
    """``path`` once the operating system can look it up (it may not exist: the caller says what
    it needs there); else :class:`PathError` naming ``what``, the path and why (a name too long, a
    NUL byte, a directory on the way this user may not enter)."""
    text = os.fspath(path)
    shown = _named(what, text)
    if "\0" in text:
        raise PathError(f"{shown} contains a NUL byte; valid: a path without one")
    try:
        os.stat(text)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        raise PathError(f"{shown} cannot be read: {exc.strerror or type(exc).__name__}") from None
    return Path(text)
