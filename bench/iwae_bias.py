"""How far is the evaluation's IWAE NLL from a much larger K? Re-estimates finished runs (with their
checkpoints: before ``sweep.slim``) at several K on the same fixed test images, with the same seeded
noise the evaluation draws, and reports per run each K's mean NLL, its standard error over images, and
the bias against the largest K (IWAE_K is an upper bound on −log p(x) that falls with K).

    python -m bench.iwae_bias results/examples/reproduce/L25_dense1_dense1_s0 ... \
        --k 200 1000 5000 --images 500 --out bench/results/cpu_iwae_bias.json

The images are the first ``--images`` of the evaluation's IWAE subset (``eval.iwae_images``, seeded by
``eval.seed``), so K = ``eval.iwae_k`` here reproduces the run's own estimate on those images.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from bench.args import integer_at_least, one_line_parser, output_path, positive_int
from sweep import metrics, results
from sweep.data import load_data
from sweep.device import resolve_device
from sweep.evaluate import iwae_pick, test_subset
from sweep.models import build_model


def estimate(run_dir: Path, ks: list[int], n_images: int) -> dict:
    cfg = results.read_stored_config(run_dir)
    device = resolve_device("cpu")
    model = build_model(cfg).to(device)
    state = torch.load(run_dir / "best.pt", map_location=device, weights_only=True)["model"]
    model.load_state_dict(state)
    model.eval()
    ec = cfg["eval"]
    test = load_data(cfg, device).test
    pick = iwae_pick(len(test), ec)
    order = pick if isinstance(pick, torch.Tensor) else test_subset(len(test), ec).sort().values
    x = test.target[order[:n_images]]
    out = {"run": run_dir.name, "images": len(x), "by_k": {}}
    for k in ks:
        t0 = time.perf_counter()
        nll = metrics.iwae_nll(
            model,
            x,
            k=k,
            generator=torch.Generator(device).manual_seed(ec["seed"] + 1),
            image_chunk=ec["iwae_image_chunk"],
            sample_chunk=ec["iwae_sample_chunk"],
        ).double()
        out["by_k"][str(k)] = {
            "nll": float(nll.mean()),
            "se": float(nll.std() / math.sqrt(len(nll))),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(f"{run_dir.name} K={k}: {out['by_k'][str(k)]}", flush=True)
    top = out["by_k"][str(max(ks))]["nll"]
    out["bias_vs_max_k"] = {k: v["nll"] - top for k, v in out["by_k"].items()}
    return out


def main(argv: list[str] | None = None) -> int:
    p = one_line_parser("python -m bench.iwae_bias", __doc__)
    p.add_argument("runs", type=Path, nargs="+", help="finished run directories that still hold best.pt")
    p.add_argument("--k", type=positive_int, nargs="+", default=[200, 1000, 5000])
    p.add_argument("--images", type=integer_at_least(2), default=500, help="at least 2: a standard error")
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--out", type=output_path, required=True)
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:  # a refused argument (status 2, one line) or --help (0)
        return int(exc.code or 0)
    bad = [str(r) for r in args.runs if not (r / "best.pt").is_file()]
    if bad:
        print(
            f"error: no best.pt in {', '.join(bad)}; valid: a finished run before sweep.slim", file=sys.stderr
        )
        return 2
    torch.set_num_threads(args.threads)
    rows = [estimate(r, sorted(set(args.k)), args.images) for r in args.runs]
    doc = {
        "what": "IWAE NLL bias of the evaluation's K against the largest K, same images and noise seed",
        "command": "python -m bench.iwae_bias " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads},
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": rows,
    }
    results.atomic_write_bytes(args.out, (json.dumps(doc, indent=1) + "\n").encode())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
