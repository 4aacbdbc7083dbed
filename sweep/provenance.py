"""What a run records about the code and the machine that made it: git commit, whether the code had
uncommitted changes and a hash that tells those changes apart, versions, host, and the machine that
computed each epoch (:func:`machine`).

The harness writes its results into its own checkout (``results/``, where ``results/examples/`` is
tracked), so a plain ``git status`` calls every run that writes there dirty. The code state is read
with the results tree left out: ``results/`` and every configured ``results_dir`` that lies inside the
checkout, tracked or untracked. ``git_dirty`` says whether anything else differs from ``HEAD``;
``git_diff_sha256`` (null when clean) identifies what differs, so two runs of one commit with the same
``git_diff_sha256`` ran the same code. Without git, or outside a checkout, all three git fields are null.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
RESULTS_TREE = "results"  # the checkout's own results tree, ignored whatever results_dir says
GIT_FIELDS = ("git_commit", "git_dirty", "git_diff_sha256")


def _git(repo: Path, *args: str) -> bytes | None:
    """git's stdout, or None where git is missing, fails, or ``repo`` is not in a checkout."""
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _excludes(top: Path, results_dirs: Iterable[str | Path]) -> list[str]:
    """Pathspecs of the whole checkout but its results trees: ``results/`` and each of ``results_dirs``
    (relative ones from the current directory, as the runs resolve them) that lies inside ``top``."""
    inside = {RESULTS_TREE}
    for d in results_dirs:
        resolved = Path(d).resolve()
        if resolved.is_relative_to(top) and resolved != top:
            inside.add(resolved.relative_to(top).as_posix())
    return [":(top)", *(f":(top,exclude,literal){p}" for p in sorted(inside))]


def _changed(top: Path, base: str, specs: list[str]) -> list[str] | None:
    """Paths (relative to ``top``) whose working-tree content differs from ``base``, and untracked
    files git does not ignore, within ``specs``; None if git cannot tell."""
    tracked = _git(top, "diff", base, "--name-only", "--no-renames", "-z", "--", *specs)
    untracked = _git(top, "ls-files", "--others", "--exclude-standard", "-z", "--", *specs)
    if tracked is None or untracked is None:
        return None
    return sorted({p for p in (tracked + untracked).decode(errors="surrogateescape").split("\0") if p})


def _content(path: Path) -> str:
    """What the hash keeps of one changed path: SHA-256 of its bytes and the executable bit, a
    link's target, ``deleted``, or ``directory`` (e.g. a submodule)."""
    if path.is_symlink():
        return "link " + os.readlink(path)
    if not path.exists():
        return "deleted"
    if path.is_dir():
        return "directory"
    mode = "x" if os.access(path, os.X_OK) else "-"
    return f"{mode} {hashlib.sha256(path.read_bytes()).hexdigest()}"


def git_state(repo: Path = PACKAGE_DIR, results_dirs: Iterable[str | Path] = ()) -> dict[str, Any]:
    """``git_commit`` (HEAD, or None before the first commit), ``git_dirty`` (code outside the results
    trees differs from HEAD: tracked changes or untracked files git does not ignore) and
    ``git_diff_sha256``: SHA-256 over each such path, sorted, as ``<path>\\0<content>\\n`` (content:
    see :func:`_content`), None when clean. All None where git is missing or ``repo`` is not in a
    checkout."""
    none = dict.fromkeys(GIT_FIELDS)
    top_out = _git(repo, "rev-parse", "--show-toplevel")
    if top_out is None:
        return none
    top = Path(top_out.decode().strip()).resolve()
    head = _git(top, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    commit = head.decode().strip() if head else None
    # before the first commit every file is a change: compare with the empty tree
    base = commit or (_git(top, "hash-object", "-t", "tree", os.devnull) or b"").decode().strip()
    changed = _changed(top, base, _excludes(top, results_dirs)) if base else None
    if changed is None:
        return {**none, "git_commit": commit}
    digest = hashlib.sha256()
    for p in changed:
        digest.update(f"{p}\0{_content(top / p)}\n".encode(errors="surrogateescape"))
    return {
        "git_commit": commit,
        "git_dirty": bool(changed),
        "git_diff_sha256": digest.hexdigest() if changed else None,
    }


def provenance(results_dirs: Iterable[str | Path] = ()) -> dict[str, Any]:
    """Where and with what a run was made: :func:`git_state` of this package's checkout (results trees
    ``results_dirs`` left out), torch and Python versions, host, command line."""
    import torch

    return {
        **git_state(PACKAGE_DIR, results_dirs),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "hostname": socket.gethostname(),
        "argv": " ".join(sys.argv),
    }


def machine(device: Any) -> str:
    """What computed a run's numbers, as far as their last bits go: on CUDA the GPU's name, else the
    CPU's model and the instruction set torch dispatches its CPU kernels to
    (``torch.backends.cpu.get_cpu_capability()``: ``AVX2``, ``AVX512``, …). One config and seed repeat
    to the bit on the same kernels only; on others float rounding, grown by training, parts two runs by
    up to the seed-to-seed scale (README: measured between Intel and AMD machines)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    if device.type != "cpu":
        return device.type
    model = cpu_info("model name") or platform.processor() or platform.machine()
    return f"{model} ({torch.backends.cpu.get_cpu_capability()})"


def cpu_info(key: str, path: Path = Path("/proc/cpuinfo")) -> str | None:
    """The value of ``key`` (``model name``, ``flags``) for the first CPU in ``path``, its whitespace
    collapsed; None where the file cannot be read (not Linux) or has no such line. Imports nothing
    heavy: :mod:`analysis` reads the flags before numpy loads."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
            return " ".join(value.split())
    return None
