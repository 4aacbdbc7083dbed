"""Shared helpers for the fault-injection tests (imported by test modules; not a test module)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
# the tiny settings every launched run uses (plus device=cpu, num_threads=1: the box is shared)
TINY = [
    "data.subset=200",
    "batch_size=50",
    "eval.iwae_k=2",
    "eval.latents_n=50",
    "eval.probe_train=200",
    "progress=false",
    "num_threads=1",
    "device=cpu",
]
# columns that legitimately differ between two trainings of the same config
RUN_VOLATILE = {
    "wall_seconds",
    "started_at",
    "finished_at",
    "hostname",
    "git_commit",
    "git_dirty",
    "overrides",
    "results_dir",
    "torch_version",
    "python_version",
}


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file below ``root`` (names in ``skip`` left out)."""
    root = Path(root)
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def env(**extra: str) -> dict[str, str]:
    out = {**os.environ, "CI": "true", "HYDRA_FULL_ERROR": "0"}
    out.pop("VAE_SWEEP_KILL_AT", None)  # the kill hook only where a test sets it
    return {**out, **extra}


def cli(*args: str, timeout: int = 300, **extra_env: str) -> subprocess.CompletedProcess:
    """``python -m <args>`` as a user runs it, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def launch(*args: str, **extra_env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env(**extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def trained(out: str) -> list[str]:
    """Run names a launch's stdout says it trained to the end (status ok)."""
    return [line.split(":")[0] for line in out.splitlines() if ": ok; results in" in line]


def results_of(sweep_dir: Path) -> dict[str, dict[str, pd.DataFrame]]:
    """The deterministic content of every run below ``sweep_dir``: run.parquet without timing and
    provenance, epochs.parquet without ``seconds``, eval.parquet without ``eval/seconds``, dims."""
    out = {}
    for run in sorted(p.parent for p in Path(sweep_dir).glob("*/run.parquet")):
        run_t = pq.read_table(run / "run.parquet").to_pandas()
        out[run.name] = {
            "run": run_t.drop(columns=[c for c in run_t.columns if c in RUN_VOLATILE]),
            "epochs": pq.read_table(run / "epochs.parquet").to_pandas().drop(columns="seconds"),
            "eval": pq.read_table(run / "eval.parquet").to_pandas().drop(columns="eval/seconds"),
            "dims": pq.read_table(run / "dims.parquet").to_pandas(),
        }
    return out


def assert_same_results(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        for table in a[name]:
            pd.testing.assert_frame_equal(a[name][table], b[name][table], obj=f"{name}/{table}")
