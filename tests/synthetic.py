"""Fake sweeps for analysis tests: run directories with the real file schemas, no training.

``make_sweep(tmp_path)`` writes ``<root>/sweeps/synthetic/<run_name>/`` with ``run.parquet``,
``eval.parquet``, ``dims.parquet``, ``latents.parquet`` and ``COMPLETE``, through the harness's own
writers (``sweep.results.write_parquet`` with ``RUN_COLUMNS`` / ``EVAL_COLUMNS``), so analysis reads
exactly what a real sweep would give it, each file stamped with its run's identity as a real run's is
(:func:`sweep.keys.identity_digest` of its row). Everything is a function of the arguments and ``rng_seed``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from sweep import results, thresholds
from sweep.evaluate import EVAL_COLUMNS
from sweep.keys import identity_digest
from sweep.names import run_name

N_IMAGES = 60  # stored test latents per run
N_DIGITS = 10
_FAMILY = re.compile(r"^(dense|conv|res)(\d+)$")


def _family(name: str) -> tuple[str, int]:
    m = _FAMILY.match(name)
    if not m:
        raise ValueError(f"family {name!r} is not dense<n>, conv<n> or res<n>")
    return m.group(1), int(m.group(2))


def _config(
    latent, enc, dec, seed, likelihood, sweep_name, root, dataset="mnist", reduction="sum", norm=None
) -> dict:
    (ek, ed), (dk, dd) = _family(enc), _family(dec)
    norms = {} if norm is None else {"encoder.norm": norm, "decoder.norm": norm}
    return {
        **norms,
        "encoder.kind": ek,
        "encoder.depth": ed,
        "encoder.width": 512 if ek == "dense" else 32,
        "encoder.activation": "leaky_relu",
        "decoder.kind": dk,
        "decoder.depth": dd,
        "decoder.width": 512 if dk == "dense" else 32,
        "decoder.activation": "leaky_relu",
        "data.name": dataset,
        "data.likelihood": likelihood,
        "data.val_size": 10000,
        "data.split_seed": 0,
        "data.binarize_seed": 0,
        "data.subset": None,
        "latent_dim": latent,
        "seed": seed,
        "epochs": 2,
        "batch_size": 128,
        "lr": 1e-3,
        "loss.reduction": reduction,
        "loss.beta": 1.0,
        "loss.warmup_epochs": 0,
        "loss.free_bits": 0.0,
        "results_dir": str(root),
        "sweep_name": sweep_name,
        "device.requested": "cpu",
    }


def make_sweep(
    root: str | Path,
    *,
    seeds=(0, 1, 2),
    latents=(25, 50),
    encoders=("dense1", "conv2"),
    decoders=("dense1", "conv2"),
    failed=(),
    diverged=(),
    collapsed_fraction: float = 0.3,
    likelihood: str = "bernoulli",
    rng_seed: int = 0,
    sweep_name: str = "synthetic",
    dataset: str = "mnist",
    with_epochs: bool = True,
    loss_reduction: str = "sum",
    norms=None,
) -> Path:
    """Write a fake sweep; returns its directory. ``failed`` / ``diverged``: run names (e.g.
    ``L25_dense1_conv2_s0``) given that status. About ``collapsed_fraction`` of the other runs are
    collapsed (rate below the paper's floor, no active unit); the rest have every second-to-all units
    active and latent means clustered by digit. With ``with_epochs``, evaluated and diverged runs also
    get ``epochs.parquet`` (train and val rows per epoch: the validation distortion falls to the final
    one, dense1 encoders twice as fast, and the rate grows to the final one; no draw from the rng).
    ``loss_reduction`` is the runs' ``loss.reduction`` (what tells an ablation's arms apart). ``norms``:
    a normalisation axis, the same norm on both sides (``experiment=design``'s, e.g. ``("none", "batch",
    "layer")``; the runs get ``encoder.norm``/``decoder.norm`` and their names its tag); None (the
    default) writes no norm key, as runs stored before it existed."""
    rng = np.random.default_rng(rng_seed)
    out = Path(root) / "sweeps" / sweep_name
    labels = np.arange(N_IMAGES) % N_DIGITS
    for latent in latents:
        centres = rng.normal(0.0, 2.0, size=(N_DIGITS, latent))
        for norm in norms or (None,):
            for enc in encoders:
                for dec in decoders:
                    for seed in seeds:
                        _write_run(
                            out, rng, centres, labels, latent, enc, dec, seed, failed, diverged,
                            collapsed_fraction, likelihood, sweep_name, root, dataset, with_epochs,
                            loss_reduction, norm,
                        )  # fmt: skip
    return out


def _write_run(
    out, rng, centres, labels, latent, enc, dec, seed, failed, diverged, collapsed_fraction, likelihood,
    sweep_name, root, dataset="mnist", with_epochs=True, loss_reduction="sum", norm=None,
):  # fmt: skip
    (ek, ed), (dk, dd) = _family(enc), _family(dec)
    name = run_name(latent, ek, ed, dk, dd, seed, enc_norm=norm or "none", dec_norm=norm or "none")
    run_dir = out / name
    status = "failed" if name in failed else "diverged" if name in diverged else "ok"
    collapsed = status == "ok" and rng.random() < collapsed_fraction
    # Depth-1 dense encoders and conv decoders get a lower distortion, so rankings have a signal.
    distortion = 90.0 + 5.0 * (ek != "dense") + 4.0 * (dk != "conv") + 0.02 * latent + rng.normal(0, 2)
    distortion += 60.0 if collapsed else 0.0
    rate = float(rng.uniform(1e-8, 5e-7)) if collapsed else float(rng.uniform(15.0, 30.0))
    active = 0 if collapsed else int(rng.integers(max(1, latent // 2), latent + 1))
    row = {
        **_run_row(name, status, distortion, rate, latent, ed, dd),
        **_config(latent, enc, dec, seed, likelihood, sweep_name, root, dataset, loss_reduction, norm),
    }
    stamp = identity_digest(row)
    results.write_parquet(run_dir / "run.parquet", [row], results.RUN_COLUMNS, identity=stamp)
    if with_epochs and status != "failed":
        _write_epochs(run_dir, name, stamp, row["epochs_done"], distortion, rate, fast=enc == "dense1")
    if status == "failed":
        return  # a failed run writes run.parquet only (and no COMPLETE, so a relaunch retries it)
    if status == "diverged":
        ev = {"run_name": name, "eval/status": "skipped", "eval/reason": "run status is diverged"}
        ev = {**ev, **thresholds.THRESHOLDS}
        results.write_parquet(run_dir / "eval.parquet", [ev], EVAL_COLUMNS, identity=stamp)
        results.write_complete(run_dir, "diverged")
        return
    _write_eval(run_dir, row, stamp, rng, active, collapsed)
    _write_latents(run_dir, name, stamp, rng, centres, labels, latent, active, collapsed, rate)
    results.write_complete(run_dir, "ok")


def _run_row(name, status, distortion, rate, latent, ed, dd) -> dict:
    """run.parquet's outcome columns of one fake run (its configuration columns come from ``_config``)."""
    return {
        "run_name": name,
        "status": status,
        "error": {"ok": None, "failed": "RuntimeError: out of memory", "diverged": "non-finite loss"}[status],
        "diverged_epoch": 2 if status == "diverged" else None,
        "epochs_done": 0 if status == "failed" else 2,
        "params/encoder": 1000 * ed * latent,
        "params/decoder": 1000 * dd * latent,
        "params/total": 1000 * (ed + dd) * latent,
        "test/recon": None if status != "ok" else distortion,
        "test/kl": None if status != "ok" else rate,
        "test/neg_elbo": None if status != "ok" else distortion + rate,
        "wall_seconds": 1.0,
        "device": "cpu",
        "started_at": "2025-01-01T00:00:00+00:00",
        "finished_at": "2025-01-01T00:00:01+00:00",
    }


def _write_eval(run_dir, row, stamp, rng, active, collapsed) -> None:
    """eval.parquet of one evaluated fake run, from its run row (one draw from ``rng``: the IWAE bound's
    noise)."""
    name, latent, ed, dd = row["run_name"], row["latent_dim"], row["encoder.depth"], row["decoder.depth"]
    distortion, rate = row["test/recon"], row["test/kl"]
    bernoulli = row["data.likelihood"] == "bernoulli"
    ev = {
        "run_name": name,
        "eval/status": "ok",
        "eval/seconds": 0.1,
        "test/neg_elbo": distortion + rate,
        "test/rate": rate,
        "test/distortion": distortion,
        "test/bce_pixel_mean": None if bernoulli else distortion / 784,
        "test/iwae_nll": distortion + rate - 3.0 + rng.normal(0, 0.5) if bernoulli else None,
        "test/iwae_k": 100 if bernoulli else None,
        "test/iwae_null_reason": None if bernoulli else "bce likelihood is not a normalised density",
        "test/active_units": active,
        "test/mutual_information": min(rate, np.log(10000)),
        "collapsed": collapsed,
        "partial": 0 < active < latent,
        "paper_collapsed": rate < thresholds.PAPER_COLLAPSE_THRESHOLD,
        "latent/linear_probe_acc": 0.1 if collapsed else 0.9,
        "latent/knn_acc": 0.1 if collapsed else 0.9,
        "latent/pca_silhouette": 0.0 if collapsed else 0.3,
        "test/psnr": 12.0 if collapsed else 18.0,
        "params/encoder": row["params/encoder"],
        "params/decoder": row["params/decoder"],
        "flops/encoder": 2000 * ed * latent,
        "flops/decoder": 2000 * dd * latent,
        # sample quality follows distortion (no draw from rng: the other values stay as they were)
        "test/fid_prior": 20.0 + 0.5 * (distortion - 90.0) + (30.0 if collapsed else 0.0),
        "test/kid_prior": 0.01 + 0.001 * (distortion - 90.0),
        "test/kid_prior_std": 0.001,
        "test/fid_recon": 5.0 + 0.2 * (distortion - 90.0),
        "test/fid_samples": 10000,
        "test/fid_real": 10000,
        "test/kid_subset_size": 1000,
        "test/fid_classifier": "0" * 64,
        **thresholds.THRESHOLDS,
    }
    results.write_parquet(run_dir / "eval.parquet", [ev], EVAL_COLUMNS, identity=stamp)


def _write_latents(run_dir, name, stamp, rng, centres, labels, latent, active, collapsed, rate) -> None:
    """dims.parquet and latents.parquet of one evaluated fake run: the first ``active`` units carry
    digit-clustered means, the rest (all of a collapsed run's) none."""
    mu_var = np.zeros(latent) if collapsed else np.where(np.arange(latent) < active, 1.0, 1e-4)
    dims = [
        {
            "run_name": name,
            "dim": d,
            "kl": rate / latent,
            "mu_var": float(mu_var[d]),
            "active": bool(mu_var[d] > thresholds.ACTIVE_UNIT_THRESHOLD),
        }
        for d in range(latent)
    ]
    results.write_parquet(run_dir / "dims.parquet", dims, identity=stamp)
    mu = (
        np.zeros((N_IMAGES, latent))
        if collapsed
        else centres[labels] + rng.normal(0, 0.7, (N_IMAGES, latent))
    )
    mu = mu * np.sqrt(mu_var)
    flat = pa.array(mu.astype(np.float16).ravel(), pa.float16())
    latents = pa.table(
        {
            "run_name": pa.array([name] * N_IMAGES),
            "index": pa.array(np.arange(N_IMAGES, dtype=np.int64)),
            "label": pa.array(labels.astype(np.int64)),
            "mu": pa.FixedSizeListArray.from_arrays(flat, latent),
        }
    )
    results.write_parquet(run_dir / "latents.parquet", latents, identity=stamp)


def _write_epochs(run_dir, name, stamp, epochs, distortion, rate, fast) -> None:
    """epochs.parquet of one run: per epoch e, a train and a val row whose distortion is the final one
    plus 8 (4 for ``fast``) nats per epoch still to go, and whose rate grows linearly to the final one."""
    rows = []
    for e in range(1, epochs + 1):
        recon = distortion + (4.0 if fast else 8.0) * (epochs - e)
        kl = rate * e / epochs
        for split in ("train", "val"):
            rows.append({"run_name": name, "epoch": e, "split": split, "loss": recon + kl, "recon": recon,
                         "kl": kl, "neg_elbo": recon + kl, "seconds": 1.0, "lr": 1e-3, "beta": 1.0})  # fmt: skip
    results.write_parquet(run_dir / "epochs.parquet", rows, results.EPOCH_COLUMNS, identity=stamp)


def corrupt(path: str | Path) -> Path:
    """Overwrite a parquet file with bytes that start like parquet but are not (a torn write)."""
    path = Path(path)
    path.write_bytes(b"PAR1" + b"\x00garbage, not a parquet footer\x00" * 4)
    return path


# ---------------------------------------------------------------- run tables with a planted effect
LATENT_EFFECT = {25: 8.0, 50: 4.0, 100: 2.0, 200: 0.0}  # nats: bigger latents reconstruct better
DECODER_EFFECT = {"dense1": 3.0, "dense4": 1.5, "conv1": 1.0, "conv2": 0.0, "conv4": -0.5}
FAMILIES = ("dense1", "dense4", "conv1", "conv2", "conv4")


def planted_table(
    rng, *, shift: float = 0.0, seeds=(0, 1, 2), noise: float = 2.0, capacity_slope: float = 0.0
):
    """A run table of the reproduction's design (4 latents × 5 encoders × 5 decoders × seeds), status ok:
    test/distortion = latent effect + decoder effect + configuration effect + run noise − ``shift`` for
    dense1 encoders. The latent and decoder effects are strata a test must not mistake for an encoder
    effect; the configuration effect (sd 1, shared by a configuration's seeds) makes seeds of one
    configuration alike, as in a real sweep. ``params/encoder`` and ``params/decoder`` grow with depth and
    latent size (as a conv encoder's Gaussian heads do)."""
    rows = []
    config_effect = {}
    for latent in LATENT_EFFECT:
        for enc in FAMILIES:
            for dec in FAMILIES:
                config_effect[latent, enc, dec] = rng.normal(0.0, 1.0)
    for seed in seeds:
        for (latent, enc, dec), effect in config_effect.items():
            (ek, ed), (dk, dd) = _family(enc), _family(dec)
            d = LATENT_EFFECT[latent] + DECODER_EFFECT[dec] + effect + rng.normal(0.0, noise)
            d -= shift if enc == "dense1" else 0.0
            params_enc = (2e5 if ek == "dense" else 5e4) * ed + 2 * 800 * latent
            params_dec = (2e5 if dk == "dense" else 5e4) * dd + 800 * latent
            d += capacity_slope * (np.log(params_enc) + np.log(params_dec))
            rows.append(
                {
                    "run_name": run_name(latent, ek, ed, dk, dd, seed),
                    "status": "ok",
                    "seed": seed,
                    "latent_dim": latent,
                    "family/encoder": enc,
                    "family/decoder": dec,
                    "test/distortion": 90.0 + d,
                    "params/encoder": params_enc,
                    "params/decoder": params_dec,
                }
            )
    import pandas as pd

    return pd.DataFrame(rows)


# ---------------------------------------------------------------- the design grid with planted effects
DESIGN_FAMILIES = ("dense1", "conv2", "res2")
DESIGN_NORMS = ("none", "batch", "layer")
NORM_TREND = {"none": -1.0, "batch": 0.0, "layer": 1.0}  # how a planted × norm interaction grows


def planted_design(
    rng, *, encoder=None, decoder=None, norm=None, enc_norm=0.0, dec_norm=0.0, enc_dec_sd=0.0, noise=1.0
):
    """A run table of ``experiment=design`` (latent 50 × encoders × decoders × norms {none, batch,
    layer}, the same norm on both sides, seed 0), status ok: test/distortion = 90 + ``encoder[enc]`` +
    ``decoder[dec]`` + ``norm[norm]`` (dicts of nats, 0 where absent) + an encoder × decoder effect (one
    draw of sd ``enc_dec_sd`` per pair, the same at every norm) + ``enc_norm`` · t(norm) for dense1
    encoders + ``dec_norm`` · t(norm) for dense1 decoders (t = -1, 0, 1 for none, batch, layer: a planted
    interaction) + the configuration's noise (sd ``noise``); test/neg_elbo adds a rate of 20 ± 1."""
    encoder, decoder, norm = encoder or {}, decoder or {}, norm or {}
    pair = {(e, d): rng.normal(0.0, enc_dec_sd) for e in DESIGN_FAMILIES for d in DESIGN_FAMILIES}
    rows = []
    for n in DESIGN_NORMS:
        for enc in DESIGN_FAMILIES:
            for dec in DESIGN_FAMILIES:
                (ek, ed), (dk, dd) = _family(enc), _family(dec)
                t = NORM_TREND[n]
                d = 90.0 + encoder.get(enc, 0.0) + decoder.get(dec, 0.0) + norm.get(n, 0.0) + pair[enc, dec]
                d += enc_norm * t * (enc == "dense1") + dec_norm * t * (dec == "dense1")
                d += rng.normal(0.0, noise)
                rows.append({
                    "run_name": run_name(50, ek, ed, dk, dd, 0, enc_norm=n, dec_norm=n), "status": "ok",
                    "seed": 0, "latent_dim": 50, "family/encoder": enc, "family/decoder": dec,
                    "encoder.norm": n, "decoder.norm": n, "test/distortion": d,
                    "test/neg_elbo": d + 20.0 + rng.normal(0.0, 1.0),
                })  # fmt: skip
    import pandas as pd

    return pd.DataFrame(rows)
