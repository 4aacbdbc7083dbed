"""Does reduced precision change the IWAE NLL? Re-evaluates finished runs of a sweep three ways with
the same noise: float32 (TF32 off), TF32 (what the engine uses on CUDA), and a bf16-autocast decoder.

    python -m bench.precision results/sweeps/paper --runs 12 --images 1000 --k 1000 --out bench/results/h200_precision.json

The runs are spread over the sweep's decoders (its first ``--runs`` run directories in name order,
round-robin over decoder architectures). For each: the mean IWAE NLL over the first ``--images``
test images at ``--k`` samples (generator seeded with ``eval.seed + 1``, as the evaluation does),
and its seconds, in each precision. The JSON reports per run the three means and the differences to
float32, and over runs the largest absolute difference: reduced precision is acceptable for the
evaluation only where that stays under 0.01 nats. Needs CUDA (on CPU all three are float32).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from sweep import metrics, results
from sweep.data import load_data
from sweep.device import resolve_device, tf32_on_cuda
from sweep.models import build_model
from sweep.stack import Stack

TOLERANCE_NATS = 0.01


class Bf16Decoder(Stack):
    """A stack whose decoder runs under bf16 autocast; logits come back as float32."""

    def __init__(self, stack: Stack):
        super().__init__(stack.base, stack.params)

    def decode(self, z):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return super().decode(z).float()


def pick_runs(sweep: Path, n: int) -> list[Path]:
    done = sorted(
        p.parent
        for p in sweep.glob(f"**/{results.COMPLETE}")
        if results.read_complete(p.parent)["status"] == "ok"
    )
    by_decoder: dict[str, list[Path]] = {}
    for d in done:
        cfg = results.read_stored_config(d)
        by_decoder.setdefault(f"{cfg['decoder']['kind']}{cfg['decoder']['depth']}", []).append(d)
    out: list[Path] = []
    while len(out) < n and any(by_decoder.values()):
        for runs in by_decoder.values():
            if runs and len(out) < n:
                out.append(runs.pop(0))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.precision", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", type=Path)
    p.add_argument("--runs", type=int, default=12)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    rows, cache = [], {}
    for run_dir in pick_runs(args.sweep, args.runs):
        rows.append(measure(run_dir, cache, images=args.images, k=args.k))
        print(json.dumps(rows[-1]), flush=True)
    summary = {name: summarise(rows, name) for name in ("tf32", "bf16")}
    report = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.precision " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "tolerance_nats": TOLERANCE_NATS,
        "images": args.images,
        "k": args.k,
        "summary": summary,
        "runs": rows,
    }
    results.atomic_write_bytes(args.out, (json.dumps(report, indent=1) + "\n").encode())
    print(json.dumps(summary, indent=1))
    return 0


def measure(run_dir: Path, cache: dict, *, images: int, k: int) -> dict:
    """One run's mean IWAE NLL over its first ``images`` test images at ``k`` samples and its seconds
    in each precision, and the differences to float32. ``cache``: loaded data by data config."""
    cfg = results.read_stored_config(run_dir)
    device = resolve_device("auto")
    key = json.dumps(cfg["data"], sort_keys=True)
    if key not in cache:
        cache[key] = load_data(cfg, device)
    x = cache[key].test.target[:images]
    model = build_model(cfg).to(device)
    model.load_state_dict(torch.load(run_dir / "best.pt", map_location=device, weights_only=True)["model"])
    stack = Stack.of([model], trainable=False)
    ec = cfg["eval"]
    row = {"run": run_dir.name}
    for name, model_, flags in (
        ("fp32", stack, False),
        ("tf32", stack, True),
        ("bf16", Bf16Decoder(stack), True),
    ):
        gen = torch.Generator(device).manual_seed(ec["seed"] + 1)
        with tf32_on_cuda(device, enabled=flags):
            t = time.perf_counter()
            nll = metrics.iwae_nll(
                model_, x, k=k, generator=gen, image_chunk=ec["iwae_image_chunk"],
                sample_chunk=ec["iwae_sample_chunk"],
            )  # fmt: skip
            mean = float(nll.mean())  # syncs
            row[f"{name}_seconds"] = time.perf_counter() - t
        row[f"{name}_nll"] = mean
    for name in ("tf32", "bf16"):
        row[f"{name}_minus_fp32"] = row[f"{name}_nll"] - row["fp32_nll"]
    return row


def summarise(rows: list[dict], name: str) -> dict:
    """Over the runs: the largest and the mean difference of precision ``name`` to float32, whether every
    difference is within the tolerance, and its time relative to float32."""
    diffs = [r[f"{name}_minus_fp32"] for r in rows]
    return {
        "max_abs_diff_nats": max(abs(d) for d in diffs),
        "mean_diff_nats": sum(diffs) / len(rows),
        "within_tolerance": all(abs(d) < TOLERANCE_NATS for d in diffs),
        "seconds_vs_fp32": sum(r[f"{name}_seconds"] for r in rows) / sum(r["fp32_seconds"] for r in rows),
    }


if __name__ == "__main__":
    sys.exit(main())
