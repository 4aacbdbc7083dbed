"""Evaluate trained VAEs: the metrics PROTOCOL.md defines, written as per-run evaluation files.

    python -m sweep.evaluate results/sweeps/paper                 # every finished run below the path
    python -m sweep.evaluate results/runs/L25_dense1_conv4_s0 eval.iwae_k=5000

Training calls :func:`evaluate_run` at the end of each run; the command above recomputes the
evaluation of finished runs from their ``best.pt`` and rewrites only the evaluation files (atomically),
so a metric can be added or K raised after a sweep without retraining. Files per run:

* ``eval.parquet``: one row of test metrics (columns in ``results/README.md``), thresholds included;
* ``dims.parquet``: one row per latent dimension: KL_d, Var_x(μ_d), active;
* ``latents.parquet``: μ (float16) and the label of a fixed seeded subset of test images, the same
  images for every run, so analysis can draw PCA projections without loading a model;
* ``recon.png`` (16 test images over their reconstructions) and ``samples.png`` (64 prior samples).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torchvision.utils import make_grid, save_image

from sweep import metrics, results
from sweep.data import Split, binarize
from sweep.losses import kl_per_dim, objective, recon_per_image
from sweep.models import N_PIXELS, VAE, count_params

EVAL_BATCH = 1000
EVAL_FILES = ("eval.parquet", "dims.parquet", "latents.parquet", "recon.png", "samples.png")
IWAE_K_GPU, IWAE_K_CPU = 5000, 100
# Columns of eval.parquet, in order (results/README.md documents each).
EVAL_COLUMNS = [
    "schema_version",
    "run_name",
    "eval/status",
    "eval/reason",
    "eval/seconds",
    "test/neg_elbo",
    "test/rate",
    "test/distortion",
    "test/bce_pixel_mean",
    "test/iwae_nll",
    "test/iwae_k",
    "test/iwae_null_reason",
    "test/active_units",
    "test/mutual_information",
    "collapsed",
    "partial",
    "paper_collapsed",
    "latent/linear_probe_acc",
    "latent/knn_acc",
    "latent/pca_silhouette",
    "test/psnr",
    "params/encoder",
    "params/decoder",
    "flops/encoder",
    "flops/decoder",
    *metrics.THRESHOLDS,
]


@torch.no_grad()
def split_losses(
    model: VAE,
    split: Split,
    *,
    seed: int,
    reduction: str = "sum",
    beta: float = 1.0,
    free_bits: float = 0.0,
    batch: int = EVAL_BATCH,
) -> dict[str, float]:
    """Mean over ``split`` of loss (the training objective), recon, kl and neg_elbo, in nats per image,
    with one seeded reparameterised sample per image (deterministic given ``seed``). Inputs and
    targets are ``split.target`` (the fixed binarisation for ``bernoulli``, pixels for ``bce``)."""
    was_training = model.training
    model.eval()
    device = split.x.device
    gen = torch.Generator(device).manual_seed(seed)
    tot = torch.zeros(3, dtype=torch.float64, device=device)
    for i in range(0, len(split), batch):
        x = split.target[i : i + batch]
        logits, mu, logvar = model(x, generator=gen)
        recon, kl_d = recon_per_image(logits, x), kl_per_dim(mu, logvar)
        loss = objective(recon, kl_d, reduction=reduction, beta=beta, free_bits=free_bits)
        tot += torch.stack([loss * x.shape[0], recon.sum(), kl_d.sum()]).double()
    model.train(was_training)
    loss, recon, kl = (tot / len(split)).tolist()
    return {"loss": loss, "recon": recon, "kl": kl, "neg_elbo": recon + kl}


@torch.no_grad()
def encode(model: VAE, x: torch.Tensor, batch: int = EVAL_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, 1, 28, 28) → (μ, log σ²), each (N, L)."""
    parts = [model.encoder(x[i : i + batch]) for i in range(0, x.shape[0], batch)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _png(tensor: torch.Tensor, nrow: int) -> bytes:
    buf = io.BytesIO()
    save_image(make_grid(tensor.float().cpu(), nrow=nrow, padding=1, pad_value=1.0), buf, format="png")
    return buf.getvalue()


def iwae_k_for(ec: dict[str, Any], device: torch.device) -> int:
    return ec["iwae_k"] or (IWAE_K_GPU if device.type == "cuda" else IWAE_K_CPU)


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", ())
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def iwae_with_retry(model: VAE, x: torch.Tensor, *, k: int, gen, chunks: tuple[int, int]):
    """:func:`metrics.iwae_nll`, retried with halved chunks (sample chunk first, then image chunk,
    down to 1 × 1) while the device runs out of memory. ``gen()`` makes a fresh seeded generator for
    each try, so the result does not depend on how many tries it took (up to float rounding).
    Returns (nll per image, the (image_chunk, sample_chunk) that succeeded)."""
    image_chunk, sample_chunk = chunks
    while True:
        try:
            nll = metrics.iwae_nll(
                model, x, k=k, generator=gen(), image_chunk=image_chunk, sample_chunk=sample_chunk
            )
            return nll, (image_chunk, sample_chunk)
        except Exception as exc:
            if not _is_oom(exc) or (image_chunk, sample_chunk) == (1, 1):
                raise
            if x.device.type == "cuda":
                torch.cuda.empty_cache()
            if sample_chunk > 1:
                sample_chunk = max(1, sample_chunk // 2)
            else:
                image_chunk = max(1, image_chunk // 2)
            print(
                f"IWAE ran out of memory; retrying with image_chunk={image_chunk}, sample_chunk={sample_chunk}",
                file=sys.stderr,
            )


@torch.no_grad()
def evaluate_run(
    model: VAE,
    data,
    cfg: dict[str, Any],
    run_dir: Path,
    run_name: str,
    test_losses: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Compute every metric of the test set and write the evaluation files of ``run_dir``."""
    t0 = time.perf_counter()
    model.eval()
    ec, test = cfg["eval"], data.test
    device = test.x.device
    gen = lambda offset: torch.Generator(device).manual_seed(ec["seed"] + offset)  # noqa: E731
    # training has just computed these (same seed, same noise): no second pass over the test set
    losses = test_losses or split_losses(model, test, seed=cfg["seed"])
    row: dict[str, Any] = {
        "run_name": run_name,
        "eval/status": "ok",
        "eval/reason": None,
        "test/neg_elbo": losses["neg_elbo"],
        "test/rate": losses["kl"],
        "test/distortion": losses["recon"],
        "test/bce_pixel_mean": losses["recon"] / N_PIXELS if data.likelihood == "bce" else None,
        **metrics.THRESHOLDS,
    }
    if data.likelihood == "bernoulli":
        k = iwae_k_for(ec, device)
        nll, chunks = iwae_with_retry(
            model,
            test.target,
            k=k,
            gen=lambda: gen(1),
            chunks=(ec["iwae_image_chunk"], ec["iwae_sample_chunk"]),
        )
        row.update({"test/iwae_nll": float(nll.mean()), "test/iwae_k": k})
        if chunks != (ec["iwae_image_chunk"], ec["iwae_sample_chunk"]):
            print(f"{run_name}: IWAE evaluated with image_chunk={chunks[0]}, sample_chunk={chunks[1]}")
    else:
        row["test/iwae_null_reason"] = "bce on continuous pixels is not a normalised likelihood"

    mu, logvar = encode(model, test.target)
    kl_d, mu_var = metrics.kl_per_dim_mean(mu, logvar), metrics.mu_variance(mu)
    active = mu_var > metrics.ACTIVE_UNIT_THRESHOLD
    n_active = int(active.sum())
    row.update(
        {
            "test/active_units": n_active,
            "test/mutual_information": metrics.mutual_information(
                mu, logvar, generator=gen(2), chunk=ec["mi_chunk"]
            ),
            **metrics.collapse_flags(losses["kl"], n_active, mu.shape[1]),
            "test/psnr": metrics.psnr(
                torch.sigmoid(torch.cat([model.decoder(m) for m in mu.split(EVAL_BATCH)])), test.x
            ),
        }
    )

    n_probe = min(ec["probe_train"], len(data.train))
    x_probe = data.train.x[:n_probe]
    x_probe = binarize(x_probe, gen(3)) if data.likelihood == "bernoulli" else x_probe
    mu_train, _ = encode(model, x_probe)
    row.update(
        {
            f"latent/{k}": v
            for k, v in metrics.probe_accuracies(
                mu_train, data.train.y[:n_probe], mu, test.y, seed=ec["seed"], knn_k=ec["knn_k"]
            ).items()
        }
    )

    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(ec["seed"]))[: ec["latents_n"]]
    pick = pick.sort().values.to(device)
    _, row["latent/pca_silhouette"] = metrics.pca_silhouette(mu[pick], test.y[pick])
    row.update(
        {
            "params/encoder": count_params(model.encoder),
            "params/decoder": count_params(model.decoder),
            "flops/encoder": metrics.flops_per_image(model.encoder, test.target[:1]),
            "flops/decoder": metrics.flops_per_image(model.decoder, mu[:1]),
        }
    )

    latents = pa.table(
        {
            "run_name": [run_name] * len(pick),
            "index": pick.cpu().numpy(),
            "label": test.y[pick].cpu().numpy(),
            "mu": pa.FixedSizeListArray.from_arrays(
                pa.array(mu[pick].cpu().numpy().astype(np.float16).ravel()), mu.shape[1]
            ),
        }
    )
    dims = [
        {
            "run_name": run_name,
            "dim": d,
            "kl": float(kl_d[d]),
            "mu_var": float(mu_var[d]),
            "active": bool(active[d]),
        }
        for d in range(mu.shape[1])
    ]
    recon = torch.sigmoid(model.decoder(mu[:16]))
    prior = torch.randn((64, mu.shape[1]), generator=gen(4), device=device)
    row["eval/seconds"] = time.perf_counter() - t0
    results.write_parquet(run_dir / "dims.parquet", dims)
    results.write_parquet(run_dir / "latents.parquet", latents)
    results.atomic_write_bytes(run_dir / "recon.png", _png(torch.cat([test.x[:16], recon]), nrow=16))
    results.atomic_write_bytes(run_dir / "samples.png", _png(torch.sigmoid(model.decoder(prior)), nrow=8))
    results.write_parquet(run_dir / "eval.parquet", [row], EVAL_COLUMNS)
    return row


def skip_evaluation(run_dir: Path, run_name: str, reason: str) -> dict[str, Any]:
    """Record that a run was not evaluated (e.g. it diverged), and why."""
    row = {"run_name": run_name, "eval/status": "skipped", "eval/reason": reason, **metrics.THRESHOLDS}
    results.write_parquet(run_dir / "eval.parquet", [row], EVAL_COLUMNS)
    return row


def find_finished_runs(path: Path) -> list[Path]:
    """``path`` itself if it is a finished run directory, else every finished run below it."""
    if results.is_complete(path):
        return [path]
    return sorted(p.parent for p in path.glob(f"**/{results.COMPLETE}"))


def reevaluate(run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """Recompute the evaluation of one finished run from its stored config and ``best.pt``."""
    from sweep.config import apply_overrides
    from sweep.names import run_name_of
    from sweep.train import build_model, load_data, resolve_device

    stored = results.read_stored_config(run_dir)
    if stored is None:
        raise FileNotFoundError(f"{run_dir}: no stored config (.hydra/config.yaml)")
    bad = [o for o in overrides if not o.split("=", 1)[0].lstrip("+").startswith(("eval.", "device"))]
    if bad:
        raise ValueError(f"only eval.* and device may be overridden when re-evaluating, not {', '.join(bad)}")
    cfg = apply_overrides(stored, overrides)
    name = run_name_of(cfg)
    status = results.read_complete(run_dir)["status"]
    if status != "ok":
        return skip_evaluation(run_dir, name, f"run status is {status}")
    device = resolve_device(cfg["device"])
    model = build_model(cfg).to(device)
    model.load_state_dict(torch.load(run_dir / "best.pt", map_location=device, weights_only=True)["model"])
    return evaluate_run(model, load_data(cfg, device), cfg, run_dir, name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sweep.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("path", type=Path, help="a run directory or a directory of runs (a sweep)")
    p.add_argument("overrides", nargs="*", help="eval.* or device overrides, e.g. eval.iwae_k=5000")
    args = p.parse_intermixed_args(argv)
    runs = find_finished_runs(args.path)
    if not runs:
        print(
            f"error: no finished run (a directory with {results.COMPLETE}) at or below {args.path}",
            file=sys.stderr,
        )
        return 2
    failed = 0
    for run_dir in runs:
        try:
            row = reevaluate(run_dir, args.overrides)
            print(f"{run_dir.name}: {row['eval/status']} {row.get('eval/reason') or ''}".rstrip())
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # one broken run must not stop the others
            failed += 1
            print(f"{run_dir.name}: evaluation failed: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
