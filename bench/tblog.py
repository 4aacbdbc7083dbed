"""What TensorBoard logging costs a run: its import, and the time spent writing event files.

    python -m bench.tblog                            # the smoke grid → bench/results/cpu_tblog.json

Imports ``torch.utils.tensorboard`` in fresh processes that have imported torch already (as a run has),
then trains the four runs of ``experiment=smoke`` in this process (one engine launch, fresh directories)
with ``logger=tensorboard`` while timing every call into :class:`sweep.tblog.RunLogger` (opening the
writer and the HParams, each epoch's scalars, the end-of-run metrics and pictures), and once more with
``logger=none`` for the runs' wall times beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from hydra import compose, initialize_config_dir

from sweep import results
from sweep.config import CONF_DIR, to_plain
from sweep.engine import train_jobs
from sweep.hydra_setup import register
from sweep.member import Job
from sweep.tblog import RunLogger

ROOT = Path(__file__).resolve().parent.parent
SMOKE = [(e, d) for e in ("dense2", "conv5") for d in ("dense2", "conv5")]  # experiment=smoke's grid


def import_seconds(repeats: int) -> list[float]:
    code = (
        "import time, torch; t = time.perf_counter(); import torch.utils.tensorboard; "
        "print(time.perf_counter() - t)"
    )
    return [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(repeats)
    ]


def smoke_jobs(root: Path, logger: str) -> list[Job]:
    register()
    jobs = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for enc, dec in SMOKE:
            over = ["experiment=smoke", f"encoder={enc}", f"decoder={dec}", f"logger={logger}"]
            cfg = to_plain(
                compose("config", overrides=[*over, "device=cpu", "progress=false", "num_threads=1"])
            )
            jobs.append(Job(cfg, root / f"{enc}_{dec}", over))
    return jobs


@contextlib.contextmanager
def timed_logger(spent: dict[str, float]):
    """Every call into :class:`sweep.tblog.RunLogger`'s ``open``, ``epoch``, ``end`` and ``close`` timed
    into ``spent`` (seconds by run name) while the block runs; the methods are restored afterwards."""
    saved = {method: getattr(RunLogger, method) for method in ("open", "epoch", "end", "close")}
    for method, real in saved.items():

        def timed(self, *a, _real=real, **kw):
            t = time.perf_counter()
            try:
                return _real(self, *a, **kw)
            finally:
                spent[self.name] += time.perf_counter() - t

        setattr(RunLogger, method, timed)
    try:
        yield spent
    finally:
        for method, real in saved.items():
            setattr(RunLogger, method, real)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tblog", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cpu_tblog.json")
    args = p.parse_args(argv)
    imports = import_seconds(3)
    spent: dict[str, float] = defaultdict(float)
    walls = {}
    with tempfile.TemporaryDirectory() as tmp, timed_logger(spent):
        for logger in ("tensorboard", "none"):
            jobs = smoke_jobs(Path(tmp) / logger, logger)
            rows = train_jobs(jobs)
            walls[logger] = {r["run_name"]: r["wall_seconds"] for r in rows}
            assert all(r["status"] == "ok" for r in rows), rows
        events = sum(f.stat().st_size for f in (Path(tmp) / "tensorboard").rglob("events.out.tfevents.*"))
    per_run = {name: spent[name] for name in walls["tensorboard"]}
    report = {
        "command": "python -m bench.tblog " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.node()} · {os.cpu_count()} cores · {platform.machine()}",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_1min": os.getloadavg()[0],
        "import_seconds": {"median": statistics.median(imports), "all": imports},
        "write_seconds_per_run": per_run,
        "write_seconds_median": statistics.median(per_run.values()),
        "wall_seconds_with_tensorboard": walls["tensorboard"],
        "wall_seconds_with_none": walls["none"],
        "event_bytes_per_run": events / len(per_run),
        "epochs_per_run": jobs[0].cfg["epochs"],
    }
    results.atomic_write_bytes(args.out, (json.dumps(report, indent=1) + "\n").encode())
    for name, s in per_run.items():
        print(
            f"{name}: TensorBoard {s * 1000:.0f} ms of {walls['tensorboard'][name]:.1f} s "
            f"(same run with logger=none: {walls['none'][name]:.1f} s)"
        )
    print(
        f"import torch.utils.tensorboard after torch: {statistics.median(imports) * 1000:.0f} ms (once per "
        f"process); event files {events / len(per_run) / 1024:.0f} KiB per run → {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
