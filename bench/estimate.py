"""Estimated wall time of ``experiment=full`` on the measured device, from the benchmark's per-config
throughput (configs outside the sample interpolated by forward FLOPs per image), and its figure."""

import io
import math
import textwrap
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from bench.loops import arch_cfg
from sweep.config import CONF_DIR
from sweep.metrics import vae_flops


# ---------------------------------------------------------------------------------------- full estimate
def full_grid() -> dict[str, Any]:
    """``experiment=full`` as conf/experiment/full.yaml defines it, and the split sizes it trains on."""
    exp = OmegaConf.load(CONF_DIR / "experiment" / "full.yaml")
    data = OmegaConf.load(CONF_DIR / "data" / "mnist.yaml")
    params = {k: str(v).split(",") for k, v in exp.hydra.sweeper.params.items()}
    return {
        "names": [
            f"L{latent}_{enc}_{dec}"
            for latent in params["latent_dim"]
            for enc in params["encoder"]
            for dec in params["decoder"]
        ],
        "seeds": len(params["seed"]),
        "epochs": int(exp.epochs),
        "train_images": 60_000 - int(data.val_size),
        "val_images": int(data.val_size),
    }


def estimate_full(
    configs: list[dict[str, Any]],
    grid: dict[str, Any] | None = None,
    *,
    iwae_k: int,
    test_images: int = 10_000,
) -> dict[str, Any]:
    """Estimated wall time of ``experiment=full`` on the measured device, runs one after another.

    Training per run: ``epochs`` × (train images / rate + val images / (3 × rate)), a forward pass
    taken as a third of a training step. Configs in the sample use their measured rate; every other
    config's rate is interpolated linearly in log(FLOPs per image) → log(samples/s) between the
    measured configs (clamped to the nearest one outside their range). The end-of-run IWAE
    (``test_images`` × ``iwae_k`` decoder passes) is estimated apart, at the config's training FLOP
    rate: pessimistic where training is launch-bound (a GPU), since IWAE batches 50k latents a call.
    Probes, pictures and file writes are not counted."""
    grid = grid or full_grid()
    measured = sorted(configs, key=lambda c: c["flops_per_image"])
    paths = [k for k in ("stock", "harness", "graph", "cohort") if all(k in c for c in configs)]
    per_config = [
        _config_row(name, configs, measured, paths, grid, test_images * iwae_k) for name in grid["names"]
    ]
    runs = len(grid["names"]) * grid["seeds"]
    hours = lambda key: grid["seeds"] * sum(r[key] for r in per_config) / 3600  # noqa: E731
    return {
        "runs": runs,
        "configs": len(grid["names"]),
        "seeds": grid["seeds"],
        "epochs": grid["epochs"],
        "train_images": grid["train_images"],
        "val_images": grid["val_images"],
        "test_images": test_images,
        "iwae_k": iwae_k,
        "paths": paths,
        **{f"{k}_hours": hours(f"{k}_train_seconds_per_run") for k in paths},
        "harness_iwae_hours": hours("iwae_seconds_per_run"),
        "assumption": (
            "runs one after another (the cohort path: at its measured rate, which counts all members); a forward pass = 1/3 of a training step; unmeasured configs "
            "interpolated in log FLOPs/image -> log samples/s between measured ones (clamped outside); "
            "IWAE at the training FLOP rate; probes, pictures and I/O not counted"
        ),
        "per_config": per_config,
    }


def _config_row(
    name: str,
    configs: list[dict[str, Any]],
    measured: list[dict[str, Any]],
    paths: list[str],
    grid,
    iwae_passes: int,
) -> dict[str, Any]:
    """One config's rates (measured or interpolated) and seconds per run on each path, and its IWAE
    seconds (``iwae_passes`` = test images × K decoder passes at the harness's training FLOP rate)."""
    by_name = {c["config"]: c for c in configs}
    per_epoch_images = grid["train_images"] + grid["val_images"] / 3
    enc, dec = vae_flops(arch_cfg(name))
    row: dict[str, Any] = {
        "config": name,
        "measured": name in by_name,
        "flops_per_image": enc + dec,
        "decoder_flops_per_image": dec,
    }
    for k in paths:
        rate = by_name[name][k]["samples_per_s"] if name in by_name else _interpolated(measured, k, enc + dec)
        row[f"{k}_samples_per_s"] = rate
        row[f"{k}_train_seconds_per_run"] = grid["epochs"] * per_epoch_images / rate
    flop_rate = 3 * (enc + dec) * row["harness_samples_per_s"]
    row["iwae_seconds_per_run"] = iwae_passes * dec / flop_rate
    return row


def _interpolated(measured: list[dict[str, Any]], path: str, flops: float) -> float:
    """The samples/s of path ``path`` at ``flops`` per image: linear in log FLOPs → log samples/s
    between the ``measured`` configs (sorted by FLOPs), clamped to the nearest one outside them."""
    xs = np.log([c["flops_per_image"] for c in measured])
    ys = np.log([c[path]["samples_per_s"] for c in measured])
    return float(np.exp(np.interp(math.log(flops), xs, ys)))


def plot_estimate(report: dict[str, Any]) -> bytes:
    """PNG: training rate against FLOPs per image (measured and interpolated) and the total estimate."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    est = report["full_estimate"]
    fig = Figure(figsize=(10, 4), dpi=120)
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    palette = {"stock": "tab:gray", "harness": "tab:blue", "graph": "tab:purple", "cohort": "tab:green"}
    colors = {k: palette[k] for k in est["paths"]}
    for k, color in colors.items():
        rows = sorted(est["per_config"], key=lambda r: r["flops_per_image"])
        ax.plot(
            [r["flops_per_image"] for r in rows],
            [r[f"{k}_samples_per_s"] for r in rows],
            ".",
            color=color,
            alpha=0.3,
            ms=4,
        )
        meas = sorted(report["configs"], key=lambda c: c["flops_per_image"])
        ax.plot(
            [c["flops_per_image"] for c in meas],
            [c[k]["samples_per_s"] for c in meas],
            "o-",
            color=color,
            label=f"{k} (measured; dots: full grid, interpolated)",
        )
    ax.set(xscale="log", yscale="log", xlabel="forward FLOPs per image", ylabel="training samples / s")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8)
    ax.set_title(f"{report['device']['name']} · torch {report['device']['torch']}", fontsize=9)
    hours = [est[f"{k}_hours"] for k in colors]
    bars = bx.bar(list(colors), hours, color=list(colors.values()), label="training + validation")
    bx.bar_label(bars, labels=[f"{h:.1f} h" for h in hours], fontsize=8, label_type="center")
    iwae = bx.bar(["harness"], [est["harness_iwae_hours"]], bottom=[est["harness_hours"]], color="tab:orange")
    iwae.set_label(f"+ IWAE K={est['iwae_k']} (at training FLOP rate)")
    bx.bar_label(iwae, labels=[f"{est['harness_iwae_hours']:.1f} h"], fontsize=8, label_type="center")
    bx.set(ylabel="hours", title=f"experiment=full: {est['runs']} runs × {est['epochs']} epochs, in series")
    bx.title.set_fontsize(9)
    bx.legend(fontsize=7)
    fig.text(0.01, 0.01, textwrap.fill(est["assumption"], 170), fontsize=6)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
