"""Do runs trained in a cohort end where the same runs trained alone end? Compares two sweeps of the
same runs, one launched with ``engine.max_members=1`` and one stacked, run by run.

    python -m sweep.train -m latent_dim=25 encoder=dense1,conv2 decoder=conv2 seed=0,1,2,3 epochs=10 \
        hydra/launcher=cohort engine.max_members=1 sweep_name=alone
    python -m sweep.train -m ... engine.max_members=4 sweep_name=stacked
    python -m bench.agreement results/sweeps/alone results/sweeps/stacked --out bench/results/agreement.json

For each architecture: per seed the test −ELBO alone and stacked, their difference, and the seed-to-
seed standard deviation of each; the figure (``<out>.png``) draws both against the seed. A stacked
run differs from its alone twin only by float32 rounding amplified over training, so the differences
should sit well inside the seed-to-seed spread.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
from pathlib import Path

from analysis.collect import load_sweep
from sweep import results

METRICS = ("test/neg_elbo", "test/iwae_nll", "test/kl")


def runs(path: Path) -> dict[str, dict]:
    table = load_sweep(path).runs
    return {r["run_name"]: r for r in table.to_dict("records")}


def _missing(value) -> bool:
    """None, or the NaN that the runs table holds where a run has no value."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.agreement", description=__doc__.split("\n\n")[0])
    p.add_argument("alone", type=Path)
    p.add_argument("stacked", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    alone, stacked = runs(args.alone), runs(args.stacked)
    common = sorted(set(alone) & set(stacked))
    archs: dict[str, list[str]] = {}
    for name in common:
        archs.setdefault(name.rsplit("_s", 1)[0], []).append(name)
    report: dict = {
        "command": "python -m bench.agreement " + " ".join(sys.argv[1:] if argv is None else argv),
        "archs": {},
    }
    for arch, names in sorted(archs.items()):
        entry = {}
        for m in METRICS:
            a = [alone[n].get(m) for n in names]
            s = [stacked[n].get(m) for n in names]
            if any(_missing(v) for v in a + s):  # a run without test metrics (failed) in either sweep
                continue
            diffs = [x - y for x, y in zip(s, a, strict=True)]
            entry[m] = {
                "alone": a,
                "stacked": s,
                "stacked_minus_alone": diffs,
                "max_abs_diff": max(abs(d) for d in diffs),
                "seed_sd_alone": statistics.stdev(a) if len(a) > 1 else None,
                "seed_sd_stacked": statistics.stdev(s) if len(s) > 1 else None,
            }
        report["archs"][arch] = {"runs": names, **entry}
    results.atomic_write_bytes(args.out, (json.dumps(report, indent=1) + "\n").encode())
    results.atomic_write_bytes(args.out.with_suffix(".png"), figure(report))
    for arch, e in report["archs"].items():
        m = e.get("test/neg_elbo")
        if m:
            print(
                f"{arch}: max |stacked - alone| {m['max_abs_diff']:.3f} nats; seed SD alone {m['seed_sd_alone']:.3f}, stacked {m['seed_sd_stacked']:.3f}"
            )
    return 0


def figure(report: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    archs = [a for a, e in report["archs"].items() if "test/neg_elbo" in e]
    fig = Figure(figsize=(3.2 * max(1, len(archs)), 3), dpi=120)
    axes = fig.subplots(1, max(1, len(archs)), squeeze=False)[0]
    for ax, arch in zip(axes, archs, strict=False):
        m = report["archs"][arch]["test/neg_elbo"]
        seeds = range(len(m["alone"]))
        ax.plot(seeds, m["alone"], "o", label="alone", color="tab:blue")
        ax.plot(seeds, m["stacked"], "x", label="in a cohort", color="tab:green", ms=8)
        ax.set(title=arch, xlabel="seed", ylabel="test −ELBO (nats)")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


if __name__ == "__main__":
    sys.exit(main())
