"""How fast ``python -m sweep.status`` answers on a 300-run sweep (the paper grid's size).

    python -m bench.status                           # → bench/results/status.json and a summary
    python -m bench.status --runs 768 --out /tmp/status.json

Builds a synthetic sweep with the harness's own writers (``grid.json``; per run ``.hydra/config.yaml``,
``run.parquet`` and ``COMPLETE`` as a real run leaves them): by default 240 ok, 12 failed, 6 diverged,
8 training (this process holds their locks and writes their holder notes), 10 interrupted and 24 not
started. Then times, ``--repeats`` times each: the whole command in a fresh process as a user runs it
(interpreter start, imports, scan, table), and the scan alone in this process, first (cold: every
``run.parquet`` read) and again (as ``--watch`` and the progress line rescan: complete runs are cached).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.args import one_line_parser, output_path, positive_int
from sweep import results
from sweep.grid import write_grid_file
from sweep.lock import note_holder, run_lock
from sweep.status import Scanner, render

ROOT = Path(__file__).resolve().parent.parent
MIX = {"ok": 240, "failed": 12, "diverged": 6, "training": 8, "interrupted": 10, "not started": 24}


def build(sweep: Path, n_runs: int, stack: contextlib.ExitStack) -> dict[str, int]:
    """Write a synthetic sweep of ``n_runs`` runs in MIX's proportions; returns the counts."""
    total = sum(MIX.values())
    counts = {k: round(v * n_runs / total) for k, v in MIX.items()}
    counts["ok"] += n_runs - sum(counts.values())
    names = []
    i = 0
    for state, n in counts.items():
        for _ in range(n):
            name = f"L{25 * (1 + i % 4)}_dense{1 + i % 3}_conv{1 + i % 5}_s{i}"
            names.append(name)
            run = sweep / name
            i += 1
            if state == "not started":
                continue
            results.write_yaml(run / ".hydra" / "config.yaml", {"run_name": name, "epochs": 50})
            if state in ("training", "interrupted"):
                results.write_parquet(run / "epochs.parquet", [{"run_name": name, "epoch": 1}])
                if state == "training":
                    assert stack.enter_context(run_lock(run))
                    note_holder(run, 7, 50)
                continue
            error = {"failed": "RuntimeError: out of memory\n...", "diverged": "non-finite loss in epoch 3"}
            row = {
                "run_name": name,
                "status": state,
                "error": error.get(state),
                "wall_seconds": 30.0 + i % 17,
                "epochs_done": 50,
            }
            results.write_parquet(run / "run.parquet", [row], results.RUN_COLUMNS)
            if state != "failed":
                results.write_complete(run, state)
    write_grid_file(sweep, [sweep / n for n in names], ["sweep/train.py", "experiment=paper"])
    return counts


def main(argv: list[str] | None = None) -> int:
    p = one_line_parser("python -m bench.status", __doc__)
    p.add_argument("--runs", type=positive_int, default=300)
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--out", type=output_path, default=ROOT / "bench" / "results" / "status.json")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:  # a refused argument (status 2) or --help (0): returned like the rest
        return int(exc.code or 0)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        sweep = Path(tmp) / "sweeps" / "paper"
        counts = build(sweep, args.runs, stack)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "sweep.status", str(sweep)]
        process, cold, warm = [], [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
            process.append(time.perf_counter() - t)
            if done.returncode != 1:  # failed runs: the sweep is not all ok
                print(done.stdout, done.stderr, file=sys.stderr)
                return 1
            scanner = Scanner(sweep)
            t = time.perf_counter()
            st = scanner.scan()
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            scanner.scan()
            warm.append(time.perf_counter() - t)
        seen = {s: st.count(s) for s in counts}
        assert seen == counts, (seen, counts)
        table = render(st)
    report = {
        "command": "python -m bench.status " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.node()} · {os.cpu_count()} cores · {platform.processor() or platform.machine()}",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_1min": os.getloadavg()[0],  # the machine is shared: how busy it was
        "runs": args.runs,
        "states": counts,
        "repeats": args.repeats,
        "process_seconds": {"median": statistics.median(process), "max": max(process), "all": process},
        "scan_cold_seconds": {"median": statistics.median(cold), "max": max(cold)},
        "scan_warm_seconds": {"median": statistics.median(warm), "max": max(warm)},
        "target_seconds": 1.0,
        "met": max(process) < 1.0,
        "table": table.splitlines(),
    }
    results.atomic_write_bytes(args.out, (json.dumps(report, indent=1) + "\n").encode())
    print(table)
    print(
        f"\npython -m sweep.status on {args.runs} runs: median {report['process_seconds']['median']:.3f} s, "
        f"max {max(process):.3f} s in a fresh process (target < 1 s: {'met' if report['met'] else 'NOT met'}); "
        f"scan alone {report['scan_cold_seconds']['median'] * 1000:.0f} ms cold, "
        f"{report['scan_warm_seconds']['median'] * 1000:.0f} ms warm → {args.out}"
    )
    return 0 if report["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
