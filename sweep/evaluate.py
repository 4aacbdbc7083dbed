"""Evaluate trained VAEs: the metrics docs/protocol.md defines, written as per-run evaluation files.

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

Sample quality (:mod:`sweep.fid_kid`): FID and KID of ``eval.fid_samples`` prior samples (decoder
means; at most as many as there are test images) against the test images, and the FID of the test
images' reconstructions, in the feature space of the dataset's cached classifier.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from omegaconf import OmegaConf
from torchvision.utils import make_grid, save_image

from sweep import divergence, fid_kid, metrics, results
from sweep.data import binarize, load_data
from sweep.device import cpu_threads, resolve_device
from sweep.keys import identity_digest, is_protocol
from sweep.losses import NOT_NORMALISED, Knobs, bits_per_dim, decoder_mean
from sweep.models import N_PIXELS, VAE, build_model, count_params
from sweep.slim import require_checkpoint
from sweep.stack import EVAL_BATCH, Stack, split_losses
from sweep.thresholds import THRESHOLDS

EVAL_FILES = ("eval.parquet", "dims.parquet", "latents.parquet", "recon.png", "samples.png")
IWAE_K_GPU, IWAE_K_CPU = 5000, 100
EVAL_COLUMNS = results.EVAL_COLUMNS  # the file's columns, in order (defined with the other schemas)


@functools.cache
def eval_defaults() -> dict[str, Any]:
    """The ``eval`` node of ``conf/config.yaml``: fills keys that a config stored by an older version
    of the harness lacks (e.g. ``fid_samples``)."""
    from sweep.config import CONF_DIR

    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml").eval)


@torch.no_grad()
def encode(stack: Stack, x: torch.Tensor, batch: int = EVAL_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, 1, 28, 28) → (μ, log σ²), each (S, N, L)."""
    parts = [stack.encode(x[i : i + batch]) for i in range(0, x.shape[0], batch)]
    return torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts], dim=1)


@torch.no_grad()
def decode_probs(stack: Stack, z: torch.Tensor, batch: int = EVAL_BATCH) -> torch.Tensor:
    """z (S, N, L) → decoder means (σ(logits), or the continuous Bernoulli's mean), (S, N, 1, 28, 28)."""
    return torch.cat(
        [
            decoder_mean(stack.likelihood, stack.decode(z[:, i : i + batch]))
            for i in range(0, z.shape[1], batch)
        ],
        1,
    )


def _png(tensor: torch.Tensor, nrow: int) -> bytes:
    buf = io.BytesIO()
    save_image(make_grid(tensor.float().cpu(), nrow=nrow, padding=1, pad_value=1.0), buf, format="png")
    return buf.getvalue()


def iwae_k_for(ec: dict[str, Any], device: torch.device) -> int:
    return ec["iwae_k"] or (IWAE_K_GPU if device.type == "cuda" else IWAE_K_CPU)


def test_subset(n_test: int, ec: dict[str, Any]) -> torch.Tensor:
    """A seeded permutation of the test images (``eval.seed``), the same for every run: the IWAE
    images are its first ``eval.iwae_images`` entries and the stored latents its first
    ``eval.latents_n`` (each sorted), so every run is scored on the same images (paired comparisons)."""
    return torch.randperm(n_test, generator=torch.Generator().manual_seed(ec["seed"]))


def iwae_pick(n_test: int, ec: dict[str, Any]) -> torch.Tensor | slice:
    """Indices of the test images IWAE is estimated on: all of them when ``eval.iwae_images`` is null
    (or covers the test set), else a fixed seeded subset of that many (:func:`test_subset`)."""
    n = ec.get("iwae_images")
    if n is None or n >= n_test:
        return slice(None)
    return test_subset(n_test, ec)[:n].sort().values


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", ())
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def iwae_with_retry(model, x: torch.Tensor, *, k: int, gen, chunks: tuple[int, int]):
    """:func:`metrics.iwae_nll` (of a model or a stack), retried with halved chunks (sample chunk
    first, then image chunk, down to 1 × 1) while the device runs out of memory. ``gen()`` makes a
    fresh seeded generator for each try, so the result does not depend on how many tries it took (up
    to float rounding). Returns (NLL per image, the (image_chunk, sample_chunk) that succeeded)."""
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


def nonfinite(row: dict[str, Any], latents: tuple[int, int]) -> str | None:
    """What of a run's evaluation is not a finite number (a run can end ``ok`` with, say, every
    stored μ beyond float16's range after a huge learning rate): the metric columns by name, and
    ``latents.parquet mu`` with how many of its stored images; None when everything is finite.
    ``latents``: (images with a non-finite μ, images stored)."""
    bad = [
        k
        for k, v in row.items()
        if k.startswith(("test/", "latent/")) and isinstance(v, float) and not math.isfinite(v)
    ]
    if latents[0]:
        bad.append(f"latents.parquet mu ({latents[0]} of {latents[1]} images)")
    return ", ".join(bad) or None


def cpu_metrics(mu_train, y_train, mu_test, y_test, pick, *, seed: int, knn_k: int) -> dict[str, float]:
    """The CPU side of one run's evaluation (NumPy in, floats out; runs in a worker process when the
    engine has a pool): the linear and kNN probes and the silhouette of the PCA of μ[pick]. Returns
    the columns and, under ``_seconds``, what they took."""
    t0 = time.perf_counter()
    out = {
        f"latent/{k}": v
        for k, v in metrics.probe_accuracies(
            mu_train, y_train, mu_test, y_test, seed=seed, knn_k=knn_k
        ).items()
    }
    _, out["latent/pca_silhouette"] = metrics.pca_silhouette(mu_test[pick], y_test[pick])
    out["_seconds"] = time.perf_counter() - t0
    return out


def limit_worker_threads() -> None:
    """Initializer of the evaluation pool's processes: one BLAS/OpenMP thread each, so W workers use W
    cores and leave the rest to the processes that feed the GPU."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    torch.set_num_threads(1)


class Inline:
    """A stand-in for an executor that runs each call at once, in this process."""

    class _Done:
        def __init__(self, value):
            self.value = value

        def done(self) -> bool:
            return True

        def result(self):
            return self.value

    def submit(self, fn, *args, **kwargs):
        return self._Done(fn(*args, **kwargs))


class PendingEval:
    """The evaluation of a stack's members whose CPU side may still be running in a pool: ``done()``
    says whether it has finished, ``finish()`` waits for it, completes each row and writes each run's
    ``eval.parquet`` (its other evaluation files are written already), stamped with its run's identity."""

    def __init__(self, rows, run_dirs, identities, jobs, device_seconds: float):
        self.rows, self.run_dirs, self.identities = rows, run_dirs, identities
        self.jobs, self.device_seconds = jobs, device_seconds

    def done(self) -> bool:
        return all(j.done() for j in self.jobs)

    def finish(self) -> list[dict[str, Any]]:
        for row, run_dir, identity, job in zip(
            self.rows, self.run_dirs, self.identities, self.jobs, strict=True
        ):
            cpu = dict(job.result())
            row["eval/seconds"] = self.device_seconds + cpu.pop("_seconds")
            row.update(cpu)
            row["eval/nonfinite"] = nonfinite(row, row.pop("_latents_nonfinite"))
            if row["eval/nonfinite"]:
                print(f"{row['run_name']}: non-finite {row['eval/nonfinite']}", file=sys.stderr)
            results.write_parquet(run_dir / "eval.parquet", [row], EVAL_COLUMNS, identity=identity)
            (run_dir / results.EVALUATING).unlink(missing_ok=True)  # its files are one evaluation again
        return self.rows


@torch.no_grad()
def evaluate_stack(
    stack: Stack,
    data,
    cfg: dict[str, Any],
    run_dirs: Sequence[Path],
    names: Sequence[str],
    identities: Sequence[str],
    test_losses: Sequence[dict[str, float]] | None = None,
    pool=None,
) -> PendingEval:
    """Compute every test metric of each member of ``stack`` (runs of one architecture and one ``eval``
    config, e.g. the members of a cohort) and write each run's evaluation files. The device work (IWAE,
    encodings, MI, pictures) runs once for all members; the CPU side (probes, silhouette) goes to
    ``pool`` (an executor; None runs it here), so the result is a :class:`PendingEval` whose
    ``finish()`` writes ``eval.parquet``. ``identities``: each member's identity stamp
    (:func:`sweep.keys.identity_digest` of its own config; members differ in their seeds), which each of
    its files carries. ``test_losses``: each member's test losses if training has
    just computed them (same seed, same noise), so the test set is not passed twice.
    ``eval/seconds`` is the time the device part took plus the CPU part's own compute time.

    Every random draw comes from its own generator, seeded ``eval.seed`` + a fixed offset (1 IWAE,
    2 MI, 3 the probe images' binarisation, 4 the pictured prior samples, 5 the FID prior samples),
    so no metric's draws depend on another's."""
    t0 = time.perf_counter()
    ec, test = {**eval_defaults(), **cfg["eval"]}, data.test
    device = test.x.device
    gen = lambda offset: torch.Generator(device).manual_seed(ec["seed"] + offset)  # noqa: E731
    if test_losses is None:
        test_losses = _test_losses(stack, test, cfg["seed"])
    rows = _loss_rows(names, test_losses, data.likelihood)
    _add_iwae(rows, stack, data, ec, gen, names)
    mu, logvar = encode(stack, test.target)  # (S, N, L)
    pick = test_subset(len(test), ec)[: ec["latents_n"]].sort().values
    mu_np, y_test = mu.cpu().numpy(), test.y.cpu().numpy()
    cpu_jobs = _submit_probes(stack, data, mu_np, y_test, pick, ec, gen, pool)
    pictures = _decode_pictures(stack, mu, ec, gen, len(test))
    meter = fid_kid.meter_for(
        data.dataset, test.x, kid_subsets=ec["kid_subsets"], kid_subset_size=ec["kid_subset_size"]
    )
    arch = {**_arch_columns(stack, cfg), "eval/profile": eval_profile(ec)}
    for run_dir in run_dirs:  # before its first evaluation file; PendingEval.finish removes it
        results.atomic_write_bytes(Path(run_dir) / results.EVALUATING, b"")
    for i, (row, run_dir, name, identity) in enumerate(zip(rows, run_dirs, names, identities, strict=True)):
        probs, samples, fid_samples = (p[i] for p in pictures)
        row.update(
            {
                **_latent_columns(row["test/rate"], mu[i], logvar[i], gen, ec["mi_chunk"]),
                "test/psnr": metrics.psnr(probs, test.x),
                **arch,
                **meter.score(fid_samples, probs, seed=ec["seed"]),
            }
        )
        row["_latents_nonfinite"] = _write_latents(
            run_dir, name, identity, mu[i], logvar[i], mu_np[i], pick, y_test
        )
        results.atomic_write_bytes(run_dir / "recon.png", _png(torch.cat([test.x[:16], probs[:16]]), nrow=16))
        results.atomic_write_bytes(run_dir / "samples.png", _png(samples, nrow=8))
    return PendingEval(rows, list(run_dirs), list(identities), cpu_jobs, time.perf_counter() - t0)


def _test_losses(stack: Stack, test, seed: int) -> list[dict[str, float]]:
    """Each member's plain test losses (β = 1, no free bits, summed), with the run's seed."""
    size = stack.size
    knobs = Knobs.of([{"beta": 1.0, "free_bits": 0.0, "reduction": "sum"}] * size, test.x.device)
    return split_losses(stack, test, seeds=[seed] * size, knobs=knobs)


def _loss_rows(names: Sequence[str], test_losses, likelihood: str) -> list[dict[str, Any]]:
    """Each member's row as far as its test losses and the thresholds go."""
    return [
        {
            "run_name": name,
            "eval/status": "ok",
            "eval/reason": None,
            "test/neg_elbo": losses["neg_elbo"],
            "test/rate": losses["kl"],
            "test/distortion": losses["recon"],
            "test/neg_elbo_bpd": None if likelihood in NOT_NORMALISED else bits_per_dim(losses["neg_elbo"]),
            "test/bce_pixel_mean": losses["recon"] / N_PIXELS if likelihood == "bce" else None,
            **THRESHOLDS,
        }
        for name, losses in zip(names, test_losses, strict=True)
    ]


def _add_iwae(rows: list[dict[str, Any]], stack: Stack, data, ec: dict[str, Any], gen, names) -> None:
    """The IWAE columns of each row (every normalised likelihood), or why there are none (BCE)."""
    if data.likelihood in NOT_NORMALISED:
        for row in rows:
            row["test/iwae_null_reason"] = "bce on continuous pixels is not a normalised likelihood"
        return
    test, size = data.test, stack.size
    k = iwae_k_for(ec, test.x.device)
    chunks = (ec["iwae_image_chunk"], max(1, ec["iwae_sample_chunk"] // size))  # memory as for one run
    x_iwae = test.target[iwae_pick(len(test), ec)]
    nll, used = iwae_with_retry(stack, x_iwae, k=k, gen=lambda: gen(1), chunks=chunks)
    n_iwae = nll.shape[1]
    se = (nll.double().std(1) / math.sqrt(n_iwae)).tolist() if n_iwae > 1 else [math.nan] * size
    for row, v, s in zip(rows, nll.mean(1).tolist(), se, strict=True):
        row.update(
            {
                "test/iwae_nll": v,
                "test/iwae_bpd": bits_per_dim(v),
                "test/iwae_k": k,
                "test/iwae_images": n_iwae,
                "test/iwae_nll_se": s,
            }
        )
    if used != chunks:
        print(
            f"{names[0]}{f' (+{size - 1})' if size > 1 else ''}: IWAE evaluated with image_chunk={used[0]}, sample_chunk={used[1]}"
        )


def _submit_probes(stack: Stack, data, mu_np, y_test, pick, ec: dict[str, Any], gen, pool) -> list:
    """Encode the probes' training images and submit each member's :func:`cpu_metrics` to ``pool``
    (None: run here). mu_np: (S, N, L) test μ; pick: the indices of the stored latents."""
    n_probe = min(ec["probe_train"], len(data.train))
    x_probe = data.train.x[:n_probe]
    x_probe = binarize(x_probe, gen(3)) if data.likelihood == "bernoulli" else x_probe
    mu_train, _ = encode(stack, x_probe)
    mu_train_np, y_probe = mu_train.cpu().numpy(), data.train.y[:n_probe].cpu().numpy()
    return [
        (pool or Inline()).submit(
            cpu_metrics,
            mu_train_np[i],
            y_probe,
            mu_np[i],
            y_test,
            pick.numpy(),
            seed=ec["seed"],
            knn_k=ec["knn_k"],
        )
        for i in range(stack.size)
    ]


def _decode_pictures(stack: Stack, mu: torch.Tensor, ec: dict[str, Any], gen, n_test: int):
    """(reconstructions at z = μ (S, N, 1, 28, 28), 64 pictured prior samples (S, 64, 1, 28, 28), the
    FID prior samples (S, n, 1, 28, 28)), all decoder means; the prior draws are shared by the members,
    like the IWAE noise."""
    size, device = stack.size, mu.device
    probs = decode_probs(stack, mu)
    prior = torch.randn((64, stack.latent_dim), generator=gen(4), device=device)
    samples = decode_probs(stack, prior.expand(size, -1, -1))
    n_fid = min(ec["fid_samples"], n_test)
    fid_z = torch.randn((n_fid, stack.latent_dim), generator=gen(5), device=device)
    return probs, samples, decode_probs(stack, fid_z.expand(size, -1, -1))


def _arch_columns(stack: Stack, cfg: dict[str, Any]) -> dict[str, int]:
    flops = metrics.vae_flops(cfg)
    return {
        "params/encoder": count_params(stack.base.encoder),
        "params/decoder": count_params(stack.base.decoder),
        "flops/encoder": flops[0],
        "flops/decoder": flops[1],
    }


def _latent_columns(
    rate: float, mu: torch.Tensor, logvar: torch.Tensor, gen, mi_chunk: int
) -> dict[str, Any]:
    """One member's active units, mutual information (with its ceiling log N) and collapse flags. mu,
    logvar: (N, L)."""
    n_active = metrics.active_units(mu)
    terms = metrics.mutual_information_terms(mu, logvar, generator=gen(2), chunk=mi_chunk)
    se = float(terms.std() / math.sqrt(len(terms))) if len(terms) > 1 else math.nan
    return {
        "test/active_units": n_active,
        "test/mutual_information": float(terms.mean()),
        "test/mutual_information_ceiling": metrics.mutual_information_ceiling(mu.shape[0]),
        "test/mutual_information_se": se,
        **metrics.collapse_flags(rate, n_active, mu.shape[1]),
    }


def _write_latents(
    run_dir: Path, name: str, identity: str, mu, logvar, mu_np, pick, y_test
) -> tuple[int, int]:
    """Write one member's ``dims.parquet`` and ``latents.parquet`` (μ[pick] in float16), each stamped
    ``identity``. mu, logvar:
    (N, L) tensors, mu_np the same μ as NumPy. Returns (stored images with a non-finite μ, stored
    images), for :func:`nonfinite`."""
    idx = pick.numpy()
    with np.errstate(over="ignore"):  # beyond float16 becomes inf: flagged, not warned
        mu16 = mu_np[idx].astype(np.float16)
    latents = pa.table(
        {
            "run_name": [name] * len(idx),
            "index": idx,
            "label": y_test[idx],
            "mu": pa.FixedSizeListArray.from_arrays(pa.array(mu16.ravel()), mu.shape[1]),
        }
    )
    kl_l = metrics.kl_per_dim_mean(mu, logvar).tolist()
    var_l, act_l = metrics.mu_variance(mu).tolist(), metrics.active_dims(mu).tolist()
    dims = [
        {"run_name": name, "dim": d, "kl": kl_l[d], "mu_var": var_l[d], "active": act_l[d]}
        for d in range(mu.shape[1])
    ]
    results.write_parquet(run_dir / "dims.parquet", dims, identity=identity)
    results.write_parquet(run_dir / "latents.parquet", latents, identity=identity)
    return int((~np.isfinite(mu16)).any(axis=1).sum()), len(idx)


def evaluate_run(
    model: VAE,
    data,
    cfg: dict[str, Any],
    run_dir: Path,
    run_name: str,
    test_losses: dict[str, float] | None = None,
) -> dict[str, Any]:
    """:func:`evaluate_stack` for one model."""
    stack = Stack.of([model], trainable=False)
    losses = None if test_losses is None else [test_losses]
    pending = evaluate_stack(stack, data, cfg, [run_dir], [run_name], [identity_digest(cfg)], losses)
    return pending.finish()[0]


def eval_profile(ec: dict[str, Any]) -> str:
    """The evaluation profile an ``eval`` node scores with, as ``eval.parquet`` records it: its protocol
    keys (:func:`sweep.keys.is_protocol`: not the chunk sizes) as sorted JSON. A re-evaluation with other
    ``eval.*`` values rewrites only the evaluation files, so this, not the run's stored config, says what
    the run's evaluation numbers mean (``analysis.collect`` groups runs by it)."""
    keep = {k: ec[k] for k in sorted(ec) if is_protocol(f"eval.{k}")}
    return json.dumps(keep, sort_keys=True, separators=(",", ":"))


def skip_evaluation(run_dir: Path, run_name: str, reason: str, *, identity: str) -> dict[str, Any]:
    """Record that a run was not evaluated (e.g. it diverged), and why; ``identity``: the run's stamp."""
    row = {"run_name": run_name, "eval/status": "skipped", "eval/reason": reason, **THRESHOLDS}
    results.write_parquet(run_dir / "eval.parquet", [row], EVAL_COLUMNS, identity=identity)
    (Path(run_dir) / results.EVALUATING).unlink(missing_ok=True)
    return row


def find_finished_runs(path: Path) -> list[Path]:
    """``path`` itself if it is a finished run directory, else every finished run below it."""
    if results.is_complete(path):
        return [path]
    return sorted(p.parent for p in path.glob(f"**/{results.COMPLETE}"))


def reevaluation_config(run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """The config to re-evaluate one finished run with: its stored config with ``overrides`` (only
    ``eval.*`` and ``device``) on top, validated by the rules ``sweep.train`` uses (this machine's
    device included). Raises a ValueError naming the bad key or file."""
    from sweep.config import apply_overrides
    from sweep.rules import ConfigError, validate

    stored = results.read_stored_config(run_dir)
    if stored is None:
        raise ConfigError(f"{run_dir}: no stored config (.hydra/config.yaml)")
    if results.read_complete(run_dir).get("status") == "ok":  # the others are not re-evaluated
        require_checkpoint(run_dir, "re-evaluate")
    bad = [o for o in overrides if not o.split("=", 1)[0].lstrip("+").startswith(("eval.", "device"))]
    if bad:
        raise ConfigError(
            f"only eval.* and device may be overridden when re-evaluating, not {', '.join(bad)}; "
            "valid: e.g. eval.iwae_k=5000 device=cuda"
        )
    stored = {**stored, "eval": {**eval_defaults(), **stored.get("eval", {})}}  # keys added since it ran
    cfg = apply_overrides(stored, overrides)
    try:
        return validate(cfg, here=True)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (re-evaluating {run_dir})") from None


def reevaluate(run_dir: Path, overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Recompute the evaluation of one finished run from ``best.pt``, with
    :func:`reevaluation_config` (or that config itself), on the run's ``num_threads`` CPU threads."""
    from sweep.names import run_name_of

    cfg = overrides if isinstance(overrides, dict) else reevaluation_config(run_dir, overrides)
    name = run_name_of(cfg)
    status = results.read_complete(run_dir)["status"]
    if status != "ok":
        return skip_evaluation(run_dir, name, f"run status is {status}", identity=identity_digest(cfg))
    with cpu_threads(cfg.get("num_threads")):  # as training does
        device = resolve_device(cfg["device"])
        model = build_model(cfg).to(device)
        state = torch.load(run_dir / "best.pt", map_location=device, weights_only=True)["model"]
        model.load_state_dict(state)
        row = evaluate_run(model, load_data(cfg, device), cfg, run_dir, name)
    if reason := divergence.of_evaluation(row, cfg["data"]["likelihood"]):
        record_divergence(run_dir, f"evaluation: {reason}")
    return row


def record_divergence(run_dir: Path, reason: str) -> None:
    """Mark a finished ``ok`` run ``diverged`` (:mod:`sweep.divergence`) after its re-evaluation:
    ``run.parquet`` first, then ``COMPLETE`` (a kill between them leaves ``COMPLETE`` at ``ok``, so the
    next ``sweep.evaluate`` re-evaluates the run and marks it again)."""
    import pyarrow.parquet as pq

    row = pq.read_table(run_dir / "run.parquet").to_pylist()[0]
    row.update(status="diverged", error=reason, diverged_epoch=row.get("best/epoch"))
    results.write_parquet(run_dir / "run.parquet", [row], results.RUN_COLUMNS, identity=identity_digest(row))
    results.write_complete(run_dir, "diverged")
    print(f"{row['run_name']}: diverged: {reason}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Every run's config is checked before any run is re-evaluated: a bad override or stored config
    is refused with one ``error:`` line and exit status 2, nothing rewritten."""
    from sweep.rules import refusal

    p = argparse.ArgumentParser(prog="python -m sweep.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("path", type=Path, help="a run directory or a directory of runs (a sweep)")
    p.add_argument("overrides", nargs="*", help="eval.* or device overrides, e.g. eval.iwae_k=5000")
    args = p.parse_intermixed_args(argv)
    from sweep.lock import holder, run_lock
    from sweep.paths import PathError, readable, writable

    try:
        runs = find_finished_runs(readable(args.path, "path"))
    except PathError as exc:  # a name too long, a NUL byte, a directory it may not enter
        print(refusal(exc, "path"), file=sys.stderr)
        return 2
    if not runs:
        print(
            f"error: no finished run (a directory with {results.COMPLETE}) at or below {args.path}",
            file=sys.stderr,
        )
        return 2
    cfgs = {}
    for run_dir in runs:
        try:
            writable(run_dir, "the run directory")  # before any run is computed
            cfgs[run_dir] = reevaluation_config(run_dir, args.overrides)
        except Exception as exc:  # noqa: BLE001 - refused before anything is rewritten
            print(refusal(exc, f"evaluation of {run_dir}"), file=sys.stderr)
            return 2
    failed = 0
    for run_dir, cfg in cfgs.items():
        with run_lock(run_dir) as held:  # never beside training or sweep.slim on the same run
            if not held:
                failed += 1
                print(
                    f"{run_dir.name}: used by another process ({holder(run_dir)}), not re-evaluated; "
                    "run this again once it is done",
                    file=sys.stderr,
                )
                continue
            try:
                results.tidy(run_dir)
                if results.read_complete(run_dir).get("status") == "ok":  # slimmed since the check?
                    require_checkpoint(run_dir, "re-evaluate")
                row = reevaluate(run_dir, cfg)
                print(f"{run_dir.name}: {row['eval/status']} {row.get('eval/reason') or ''}".rstrip())
            except Exception as exc:  # one broken run must not stop the others
                failed += 1
                print(f"{run_dir.name}: evaluation failed: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
