"""End-to-end figure of a real grid launch: wall time, runs per hour, and how much of the time the GPU
sat idle, measured around the user's own command.

    python -m bench.grid --out bench/results/h200_grid.json -- \
        experiment=paper seed=0 epochs=10 eval.iwae_k=1000 hydra/launcher=cohort
    python -m bench.grid --out /tmp/smoke.json -- experiment=smoke results_dir=/tmp/r   # on CPU

Everything after ``--`` goes to ``python -m sweep.train`` unchanged, run as a subprocess from the
repository root. While it runs, the GPU's utilisation (the share of each sampling period in which a
kernel ran, as ``nvidia-smi`` reports it) is sampled every ``--interval`` seconds; the idle fraction
is the mean of (1 − utilisation) over the launch. The JSON holds the command, the wall time (start-up
included), the time to the first finished run, runs completed and per hour, each run's status and
wall seconds, the utilisation samples' summary, the device and torch version.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from sweep import results

REPO = Path(__file__).resolve().parent.parent


class GpuSampler:
    """``nvidia-smi`` utilisation samples in a background thread (none where there is no nvidia-smi)."""

    def __init__(self, interval: float):
        self.samples: list[tuple[float, float, float]] = []  # (t, utilisation %, memory MiB)
        self.proc = None
        exe = shutil.which("nvidia-smi")
        if exe:
            self.proc = subprocess.Popen(
                [exe, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                 f"-lms={max(50, int(interval * 1000))}"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            self.t0 = time.perf_counter()
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                util, mem = (float(v) for v in line.split(",")[:2])
            except ValueError:
                continue
            self.samples.append((time.perf_counter() - self.t0, util, mem))

    def stop(self) -> dict[str, Any]:
        if self.proc is None:
            return {"available": False}
        self.proc.terminate()
        self.proc.wait(timeout=10)
        utils = [u for _, u, _ in self.samples]
        if not utils:
            return {"available": True, "samples": 0}
        return {
            "available": True,
            "samples": len(utils),
            "mean_utilization_pct": statistics.fmean(utils),
            "idle_fraction": statistics.fmean(1 - u / 100 for u in utils),
            "zero_utilization_fraction": sum(u == 0 for u in utils) / len(utils),
            "peak_memory_mib": max(m for _, _, m in self.samples),
            "trace": [(round(t, 2), u) for t, u, _ in self.samples[:: max(1, len(self.samples) // 600)]],
        }


def sweep_dir_of(args: list[str]) -> Path:
    """Where ``python -m sweep.train <args>`` writes its multirun (results_dir/sweeps/sweep_name)."""
    from hydra import compose, initialize_config_dir

    from sweep.config import CONF_DIR
    from sweep.hydra_setup import register

    register()
    keys = [a for a in args if not a.startswith("hydra/") and not a.startswith("hydra.")]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=keys)
    return Path(str(cfg.results_dir)) / "sweeps" / str(cfg.sweep_name)


USAGE = "usage: python -m bench.grid --out JSON [--interval S] [--note TEXT] [--timeout S] -- <sweep.train overrides>"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv and {"-h", "--help"} & set(argv):
        _parser().print_help()
        return 0
    if "--" not in argv:
        print(USAGE, file=sys.stderr)
        return 2
    cut = argv.index("--")
    args, train_args = _parser().parse_args(argv[:cut]), argv[cut + 1 :]
    sweep_dir = sweep_dir_of(train_args)
    sampler = GpuSampler(args.interval)
    launch = _launch([sys.executable, "-m", "sweep.train", *train_args], args.timeout)
    gpu = sampler.stop()
    rows, timing = _completed_runs(sweep_dir)
    report = {
        "schema_version": 1,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m sweep.train " + " ".join(train_args),
        "bench_command": "python -m bench.grid " + " ".join(argv),
        "returncode": launch.rc,
        "timed_out": launch.timed_out,
        "note": args.note,
        **_machine(),
        "sweep_dir": str(sweep_dir),
        **_launch_summary(launch, rows),
        "gpu": gpu,
        "per_run": timing,
        "output_tail": "".join(launch.tail),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results.atomic_write_bytes(args.out, (json.dumps(report, indent=1) + "\n").encode())
    idle = f", GPU idle {gpu['idle_fraction']:.0%}" if gpu.get("idle_fraction") is not None else ""
    print(
        f"bench.grid: {len(launch.finished)} runs in {launch.wall:.1f} s ({report['runs_per_hour']:.0f} runs/h){idle}; wrote {args.out}"
    )
    return launch.rc


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.grid",
        usage=USAGE.removeprefix("usage: "),
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--out", type=Path, required=True, help="JSON path")
    p.add_argument("--interval", type=float, default=0.2, help="GPU sampling period in seconds (default 0.2)")
    p.add_argument("--note", default="", help="free text stored with the result")
    p.add_argument(
        "--timeout",
        type=float,
        help="stop the launch (SIGTERM) after this many seconds and report what finished",
    )
    return p


@dataclass
class _Launch:
    rc: int
    timed_out: bool
    wall: float  # seconds, start-up included
    finished: list[float]  # seconds from the start at which each run reported its result
    tail: list[str]  # the last 40 lines of its output


def _launch(cmd: list[str], timeout: float | None) -> _Launch:
    """Run ``cmd`` from the repository root, echoing its output and noting when each run finishes;
    after ``timeout`` seconds the launch and its evaluation workers get SIGTERM."""
    t0 = time.perf_counter()
    finished: list[float] = []
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
    )  # fmt: skip
    tail: list[str] = []

    def read() -> None:  # the launch's worker processes may hold the pipe open after it exits
        nonlocal tail
        for line in proc.stdout:
            sys.stdout.write(line)
            tail = (tail + [line])[-40:]
            if "; results in " in line:
                finished.append(time.perf_counter() - t0)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the launch and its evaluation workers
        rc, timed_out = proc.wait(), True
    reader.join(timeout=5)
    return _Launch(rc, timed_out, time.perf_counter() - t0, finished, tail)


def _completed_runs(sweep_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``run.parquet`` row of every complete run below ``sweep_dir``, and each one's status, wall,
    training, validation and evaluation seconds."""
    rows, timing = [], []
    for path in sorted(sweep_dir.glob(f"**/{results.COMPLETE}")):
        try:
            row = pq.read_table(path.parent / "run.parquet").to_pylist()[0]
        except Exception:  # noqa: BLE001 - a run another process is writing: not counted
            continue
        rows.append(row)
        entry = {"run": path.parent.name, "status": row["status"], "wall_seconds": row["wall_seconds"]}
        try:
            ep = pq.read_table(path.parent / "epochs.parquet").to_pandas()
            entry["train_seconds"] = float(ep.loc[ep["split"] == "train", "seconds"].sum())
            entry["val_seconds"] = float(ep.loc[ep["split"] == "val", "seconds"].sum())
            entry["eval_seconds"] = (
                pq.read_table(path.parent / "eval.parquet").to_pylist()[0].get("eval/seconds")
            )
        except Exception:  # noqa: BLE001 - a diverged run has no eval seconds
            pass
        timing.append(entry)
    return rows, timing


def _machine() -> dict[str, Any]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
    }


def _launch_summary(launch: _Launch, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Wall time, time to the first finished run, runs finished and per hour, statuses, run wall times."""
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    wall, finished = launch.wall, launch.finished
    return {
        "wall_seconds": wall,
        "first_run_finished_seconds": finished[0] if finished else None,
        "runs_finished_in_launch": len(finished),
        "runs_complete": len(rows),
        "statuses": statuses,
        "runs_per_hour": 3600 * len(finished) / wall if wall > 0 else None,
        "run_wall_seconds": {
            "median": statistics.median([r["wall_seconds"] for r in rows]) if rows else None,
            "sum": sum(r["wall_seconds"] for r in rows),
        },
    }


if __name__ == "__main__":
    sys.exit(main())
