"""Training throughput of the harness against the stock PyTorch loop, in one process on one device.

    python -m bench.throughput                                    # default sample → bench/results/<device>.json
    python -m bench.throughput --configs L25_dense1_dense1 L25_conv5_conv5 --steps 40 --repeats 5
    python -m bench.throughput --device cuda --out /tmp/gpu.json
    python -m bench.throughput --quick --out /tmp/quick.json      # a tiny sample in seconds (the test)

Each config of the sample is trained several ways with the same architecture (``sweep.models``),
batch 128 and Adam (lr 1e-3); the ways alternate, ``--repeats`` times, each timing ``--steps`` steps
after ``--warmup`` untimed ones:

* ``stock`` (a): the loop users write, as pytorch/examples ``vae/main.py`` does: torchvision
  ``datasets.MNIST`` over the bundled files, ``transforms.ToTensor()``, ``DataLoader(batch_size=128,
  shuffle=True)``, continuous-pixel BCE + KL summed over the batch, Adam, ``loss.item()`` every step;
* ``harness`` (b): :class:`sweep.cohort.Cohort` with one member, eager: what a single run trains
  with (the dataset resident on the device, the epoch's randomness drawn up front, fused Adam, one
  host sync per epoch);
* ``graph`` (c, CUDA only): the same with its training step captured once as a CUDA graph;
* ``cohort`` (d): ``--members`` seeds of the config stacked into one cohort (graphed on CUDA), and
  ``--slots`` such cohorts at once, each in its own thread on its own CUDA stream: how
  ``hydra/launcher=cohort`` trains a grid. Its rate counts every member's samples.

Both paths run with the same ``torch.get_num_threads()`` (``--threads``; torch's default otherwise).
On a shared machine pass ``--threads 1``: when other processes hold the cores, two OpenMP threads
wait on each other at every op and both paths slow down 10-40x, which measures the load, not the loop.

Throughput is model-samples per second (images through one model's training step), the median over
repeats. The JSON holds per config each path's rate and the ratios (b/a, d/a, d/b), the geometric
means and aggregates (total samples / total time), device, torch version, threads, settings and the
load average, and an estimate of the wall time of ``experiment=full`` (:func:`estimate_full`), drawn
next to the JSON as ``<name>_full_estimate.png``. The harness paths train one untimed epoch first
(``first_epoch_seconds``: building the cohort and capturing its graphs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from bench.args import non_negative_int, one_line_parser, output_path, positive_int, run_name
from bench.estimate import estimate_full, plot_estimate
from bench.loops import (
    BATCH,
    DEFAULT_CONFIGS,
    DEFAULTS,
    LR,
    QUICK,
    QUICK_CONFIGS,
    RESULTS_DIR,
    SCHEMA_VERSION,
    SEED,
    CohortLoop,
    StockLoop,
    harness_cfg,
    sync,
)
from sweep import results
from sweep.data import load_data, verify_and_extract
from sweep.device import resolve_device, tf32_on_cuda
from sweep.evaluate import iwae_k_for
from sweep.metrics import vae_flops
from sweep.models import build_model, count_params


def _timed(loop, steps: int, device: torch.device) -> tuple[int, float]:
    sync(device)
    t = time.perf_counter()
    n = loop.run(steps)
    sync(device)
    return n, time.perf_counter() - t


def stock_loader(device: torch.device):
    from torchvision import datasets, transforms

    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    ds = datasets.MNIST(
        str(verify_and_extract()), train=True, download=False, transform=transforms.ToTensor()
    )
    return torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, **kwargs)


def loader_ms_per_batch(loader, batches: int) -> float:
    """What the stock loop's data loading alone costs per batch (for the profile), in ms."""
    it = iter(loader)
    next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return (time.perf_counter() - t) / batches * 1e3


def measure_config(
    name, device, loader, data_cache, *, steps, warmup, repeats, members=1, slots=1
) -> dict[str, Any]:
    """Every path on one config, alternating; rates are medians over ``repeats``."""
    cfg = harness_cfg(name)
    key = json.dumps(cfg["data"], sort_keys=True)
    if key not in data_cache:
        data_cache[key] = load_data(cfg, device)
    data = data_cache[key]
    torch.manual_seed(cfg["seed"])  # the same initial weights as the harness's first member
    stock_model = build_model(cfg).to(device)
    loops: dict[str, Any] = {
        "stock": StockLoop(stock_model, loader, device),
        "harness": CohortLoop(cfg, data, device),
    }
    if device.type == "cuda":
        loops["graph"] = CohortLoop(cfg, data, device, graphs=True)
    if members > 1 or slots > 1:
        loops["cohort"] = CohortLoop(
            cfg, data, device, members=members, graphs=device.type == "cuda", slots=slots
        )
    out: dict[str, Any] = {
        "config": name,
        "params": count_params(stock_model),
        "flops_per_image": sum(vae_flops(cfg)),
        "load_average": list(os.getloadavg()),
    }
    rates: dict[str, list[float]] = {k: [] for k in loops}
    warm: dict[str, float] = {}
    first: dict[str, float] = {}
    for k, loop in loops.items():  # the harness's paths train in TF32 on CUDA, as sweep.engine does
        with contextlib.nullcontext() if k == "stock" else tf32_on_cuda(device):
            if k != "stock":  # the first epoch fixes its length (steps) and captures the graphs
                first[k] = _timed(loop, steps, device)[1]
            warm[k] = _timed(loop, warmup, device)[1]
    for _ in range(repeats):
        for k, loop in loops.items():
            with contextlib.nullcontext() if k == "stock" else tf32_on_cuda(device):
                n, dt = _timed(loop, steps, device)
            rates[k].append(n / dt)
    for k in loops:
        out[k] = {
            "samples_per_s": statistics.median(rates[k]),
            "runs_samples_per_s": rates[k],
            "warmup_seconds": warm[k],
            "compile_seconds": 0.0,
        }
        if k in first:
            out[k]["first_epoch_seconds"] = first[k]  # includes building the cohort and graph capture
    out["harness"]["fused_adam"] = loops["harness"].fused
    out["ratio"] = out["harness"]["samples_per_s"] / out["stock"]["samples_per_s"]
    if "graph" in out:
        out["graph_ratio"] = out["graph"]["samples_per_s"] / out["stock"]["samples_per_s"]
    if "cohort" in out:
        out["cohort"].update(members=members, slots=slots, graphs=device.type == "cuda")
        out["cohort_ratio"] = out["cohort"]["samples_per_s"] / out["stock"]["samples_per_s"]
        out["cohort_vs_eager"] = out["cohort"]["samples_per_s"] / out["harness"]["samples_per_s"]
    return out


PATHS = ("stock", "harness", "graph", "cohort")


def overall(configs: list[dict[str, Any]]) -> dict[str, float]:
    """Geometric means of the per-config rates and ratios; aggregate = total images / total time
    (every config trained for the same number of images)."""
    gm = lambda xs: math.exp(statistics.fmean(math.log(x) for x in xs))  # noqa: E731
    out: dict[str, float] = {}
    for k in PATHS:
        if all(k in c for c in configs):
            r = [c[k]["samples_per_s"] for c in configs]
            out[f"{k}_geomean_samples_per_s"] = gm(r)
            out[f"{k}_aggregate_samples_per_s"] = len(r) / sum(1.0 / x for x in r)
    out["ratio_geomean"] = gm([c["ratio"] for c in configs])
    out["ratio_aggregate"] = out["harness_aggregate_samples_per_s"] / out["stock_aggregate_samples_per_s"]
    for k in ("graph_ratio", "cohort_ratio", "cohort_vs_eager"):
        if all(k in c for c in configs):
            out[f"{k}_geomean"] = gm([c[k] for c in configs])
    if "cohort_vs_eager_geomean" in out:
        out["cohort_vs_eager_min"] = min(c["cohort_vs_eager"] for c in configs)
    return out


# ---------------------------------------------------------------------------------------- report
def device_info(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        cpuinfo = Path("/proc/cpuinfo")
        if cpuinfo.is_file() and (m := re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())):
            name = m.group(1).strip()
    import torchvision

    return {
        "type": device.type,
        "name": name,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "tf32_in_harness_training": device.type == "cuda",
    }


def default_out(device: torch.device) -> Path:
    if device.type == "cuda":
        slug = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")
        return RESULTS_DIR / f"{slug}.json"
    return RESULTS_DIR / f"{device.type}.json"


def table(report: dict[str, Any]) -> str:
    paths = [k for k in PATHS if f"{k}_geomean_samples_per_s" in report["overall"]]
    head = f"{'config':<22}" + "".join(f"{k + '/s':>12}" for k in paths) + f"{'b/a':>7}"
    extra = "cohort_ratio" in report["configs"][0]
    lines = [head + (f"{'d/a':>8}{'d/b':>7}" if extra else "") + "  load avg (1 min)"]
    for c in report["configs"]:
        cells = "".join(f"{c[k]['samples_per_s']:>12.0f}" for k in paths)
        more = f"{c['cohort_ratio']:>8.1f}{c['cohort_vs_eager']:>7.1f}" if extra else ""
        lines.append(f"{c['config']:<22}{cells}{c['ratio']:>7.2f}{more}  {c['load_average'][0]:.2f}")
    o = report["overall"]
    for k in ("geomean", "aggregate"):
        cells = "".join(f"{o[f'{p}_{k}_samples_per_s']:>12.0f}" for p in paths)
        more = (
            f"{o['cohort_ratio_geomean']:>8.1f}{o['cohort_vs_eager_geomean']:>7.1f}"
            if extra and k == "geomean"
            else ""
        )
        lines.append(f"{k:<22}{cells}{o[f'ratio_{k}']:>7.2f}{more}")
    d, s = report["device"], report["settings"]
    lines.append(
        f"{d['name']} · torch {d['torch']} · {d['threads']} threads · {s['steps']} steps × "
        f"{s['repeats']} repeats after {s['warmup']} warm-up · batch {s['batch_size']}"
        + (f" · cohort: {s['members']} members × {s['slots']} slots" if extra else "")
    )
    est = report["full_estimate"]
    lines.append(
        f"experiment=full ({est['runs']} runs × {est['epochs']} epochs) training + validation: "
        + ", ".join(f"{k} {est[f'{k}_hours']:.1f} h" for k in est["paths"])
        + f" (+ IWAE K={est['iwae_k']}: {est['harness_iwae_hours']:.1f} h)"
    )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = one_line_parser("python -m bench.throughput", __doc__)
    p.add_argument(
        "--configs", nargs="+", type=run_name, metavar="SPEC", help="run names, e.g. L25_dense1_conv4"
    )
    p.add_argument("--steps", type=positive_int, help=f"timed steps per repeat (default {DEFAULTS['steps']})")
    p.add_argument(
        "--warmup", type=non_negative_int, help=f"untimed steps first (default {DEFAULTS['warmup']})"
    )
    p.add_argument(
        "--repeats", type=positive_int, help=f"alternating repeats (default {DEFAULTS['repeats']})"
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | any torch device (default auto)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads for both paths (default: torch's)")
    p.add_argument(
        "--members",
        type=positive_int,
        help="cohort path: seeds stacked per cohort (default 16 on cuda, 3 on cpu)",
    )
    p.add_argument(
        "--slots",
        type=positive_int,
        help="cohort path: cohorts training at once (default 4 on cuda, 1 on cpu)",
    )
    p.add_argument("--out", type=output_path, help="JSON path (default bench/results/<device>.json)")
    p.add_argument("--note", default="", help="free text stored with the settings (why these settings)")
    p.add_argument("--quick", action="store_true", help="a tiny sample in a few seconds (for the test)")
    return p


def settings_of(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The measurement's settings: the preset's (quick or default) where an argument is not given, and
    the cohort path's size by device."""
    preset = QUICK if args.quick else DEFAULTS
    steps, warmup, repeats = (
        preset[k] if getattr(args, k) is None else getattr(args, k) for k in ("steps", "warmup", "repeats")
    )
    cuda = device.type == "cuda"
    return {
        "batch_size": BATCH,
        "lr": LR,
        "seed": SEED,
        "steps": steps,
        "warmup": warmup,
        "repeats": repeats,
        "quick": args.quick,
        "members": args.members if args.members is not None else (16 if cuda else 3),
        "slots": args.slots if args.slots is not None else (4 if cuda else 1),
        "note": args.note,
        "stock": "torchvision MNIST + ToTensor + DataLoader(batch_size=128, shuffle=True), "
        "continuous BCE + KL (sum), Adam, loss.item() each step",
        "harness": "sweep.cohort.Cohort with one member, eager, over sweep.data.load_mnist (bernoulli "
        "likelihood), fused Adam where available",
        "graph": "the harness with its training step captured as one CUDA graph (CUDA only)",
        "cohort": "members seeds stacked into one Cohort (torch.func vmap; graphed on CUDA), slots cohorts at "
        "once, each in its own thread and CUDA stream; the rate counts every member's samples",
    }


def measure_all(names: list[str], device, loader, s: dict[str, Any]) -> list[dict[str, Any]]:
    """Every config of the sample measured in turn (:func:`measure_config`), each one's rates printed."""
    cache: dict[str, Any] = {}
    configs = []
    for name in names:
        c = measure_config(
            name,
            device,
            loader,
            cache,
            steps=s["steps"],
            warmup=s["warmup"],
            repeats=s["repeats"],
            members=s["members"],
            slots=s["slots"],
        )
        configs.append(c)
        print(
            f"{name}: " + ", ".join(f"{k} {c[k]['samples_per_s']:.0f}/s" for k in PATHS if k in c),
            file=sys.stderr,
        )
    return configs


def write_report(report: dict[str, Any], out_path: Path) -> None:
    """The JSON and the estimate's figure beside it, each written atomically; the table on stdout."""
    png = out_path.with_name(f"{out_path.stem}_full_estimate.png")
    report["full_estimate"]["figure"] = png.name
    results.atomic_write_bytes(out_path, (json.dumps(report, indent=1) + "\n").encode())
    results.atomic_write_bytes(png, plot_estimate(report))
    print(table(report))
    print(f"wrote {out_path} and {png.name}")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # a refused argument (status 2) or --help (0): returned like the rest
        return int(exc.code or 0)
    names = args.configs or list(QUICK_CONFIGS if args.quick else DEFAULT_CONFIGS)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    settings = settings_of(args, device)
    try:  # the default, known once the device is: proven writable before anything is measured
        out_path = args.out or output_path(str(default_out(device)))
    except argparse.ArgumentTypeError as exc:
        print(f"error: argument --out: {exc}", file=sys.stderr)
        return 2

    load_before = list(os.getloadavg())
    t0 = time.perf_counter()
    loader = stock_loader(device)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.throughput", *(sys.argv[1:] if argv is None else argv)]),
        "device": device_info(device),
        "settings": settings,
    }
    settings["stock_loader_ms_per_batch"] = loader_ms_per_batch(loader, max(settings["steps"], 5))
    configs = measure_all(names, device, loader, settings)
    report["configs"] = configs
    report["overall"] = overall(configs)
    report["full_estimate"] = estimate_full(configs, iwae_k=iwae_k_for({"iwae_k": None}, device))
    settings["load_average_before"] = load_before
    settings["load_average_after"] = list(os.getloadavg())
    settings["bench_seconds"] = time.perf_counter() - t0
    write_report(report, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
