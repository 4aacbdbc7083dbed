"""Train one VAE into its own run directory; with ``experiment=<grid>``, a whole grid as a Hydra multirun.

    python -m sweep.train encoder=dense encoder.depth=1 decoder=conv decoder.depth=4 latent_dim=25
    python -m sweep.train experiment=paper        # 300 runs into results/sweeps/paper/<run_name>/

A run is idempotent: relaunching skips it when its ``COMPLETE`` marker exists (for the same config),
resumes it from ``last.pt`` when it was interrupted, and refuses to touch a directory that holds a run
of a different config. ``train(cfg, out_dir)`` is the plain function that tests and other entry points
call; ``main`` is the thin Hydra edge.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pyarrow.parquet as pq
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from sweep import results
from sweep.config import CONF_DIR, config_diff, flatten, to_plain, validate
from sweep.data import binarize, check_data, load_mnist
from sweep.evaluate import evaluate_run, skip_evaluation, split_losses
from sweep.lock import holder, note_holder, run_lock
from sweep.losses import beta_at, kl_per_dim, objective, recon_per_image
from sweep.models import VAE, Spec, count_params
from sweep.names import run_name_of


class ConfigMismatchError(RuntimeError):
    """The run directory already holds a run of a different configuration."""


class StopRun(Exception):
    """Raised by an ``on_epoch`` callback to end a run early with a final status (e.g. ``pruned``)."""

    def __init__(self, message: str, *, epoch: int, status: str = "pruned"):
        super().__init__(message)
        self.epoch, self.status = epoch, status


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed every global RNG at the start of each run: jobs of one multirun share a process."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _show_progress(setting) -> bool:
    if setting == "auto":
        return sys.stderr.isatty() and not os.environ.get("CI")
    return bool(setting)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def make_optimizer(params, lr: float) -> torch.optim.Adam:
    """Adam, fused into one kernel over all parameters where this torch has one for their device (CPU
    and CUDA since torch 2.4): +10-20 % samples/s for small dense models on CPU, fewer launches on a
    GPU. It rounds differently from the per-tensor loop (last float32 bits), and is as deterministic.
    ``params``: an iterable of tensors, as ``torch.optim.Adam`` takes (``model.parameters()``)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device in this torch
        return torch.optim.Adam(params, lr=lr)


@contextlib.contextmanager
def tf32_on_cuda(device: torch.device):
    """TF32 matmuls and convolutions while training on CUDA; the previous flags come back afterwards
    (jobs of one multirun share a process). Elsewhere a no-op."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def train_epoch(model, opt, data, cfg, epoch: int, g_data, g_noise) -> dict[str, float]:
    """One pass over the shuffled training split. Nothing in the loop waits for the device: β is a
    Python float and the sums stay on the device (one host sync per epoch)."""
    x_all, bs = data.train.x, cfg["batch_size"]
    n = x_all.shape[0]
    steps = math.ceil(n / bs)
    loss_cfg = cfg["loss"]
    bernoulli = cfg["data"]["likelihood"] == "bernoulli"
    perm = torch.randperm(n, generator=g_data, device=x_all.device)
    sums = torch.zeros(3, dtype=torch.float64, device=x_all.device)
    beta = loss_cfg["beta"]
    with tf32_on_cuda(x_all.device):
        for step in range(steps):
            x = x_all[perm[step * bs : (step + 1) * bs]]
            if bernoulli:
                x = binarize(x, g_data)
            logits, mu, logvar = model(x, generator=g_noise)
            recon, kl_d = recon_per_image(logits, x), kl_per_dim(mu, logvar)
            beta = beta_at(loss_cfg["beta"], loss_cfg["warmup_epochs"], epoch + step / steps)
            loss = objective(
                recon, kl_d, reduction=loss_cfg["reduction"], beta=beta, free_bits=loss_cfg["free_bits"]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # float64 += float32 promotes before adding, exactly as an explicit .double() would
            sums += torch.stack([loss.detach() * x.shape[0], recon.detach().sum(), kl_d.detach().sum()])
    loss, recon, kl = (sums / n).tolist()
    return {"loss": loss, "recon": recon, "kl": kl, "neg_elbo": recon + kl, "beta": beta}


def _eval(model, split, cfg, beta: float) -> dict[str, float]:
    lc = cfg["loss"]
    return split_losses(
        model, split, seed=cfg["seed"], reduction=lc["reduction"], beta=beta, free_bits=lc["free_bits"]
    )


def _load_run_row(out_dir: Path) -> dict[str, Any]:
    return pq.read_table(out_dir / "run.parquet").to_pylist()[0]


def train(
    cfg: DictConfig | dict,
    out_dir: str | Path,
    overrides: list[str] | None = None,
    hydra_cfg: Any = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train (or skip, or resume) the run ``cfg`` in ``out_dir``; return its ``run.parquet`` row.

    ``on_epoch(epoch, val_neg_elbo)`` is called after each epoch's checkpoint; it may raise
    :class:`StopRun` to end the run early (a search pruning a hopeless trial). A run that another
    process is training is skipped at once with status ``locked`` (nothing is written)."""
    cfg = validate(to_plain(cfg))
    name = run_name_of(cfg)
    out_dir = Path(out_dir)
    results.check_schema_version(out_dir)  # a run of another schema version is neither skipped nor touched
    stored = results.read_stored_config(out_dir)
    if stored is not None and (diff := config_diff(stored, cfg)):
        raise ConfigMismatchError(
            f"{out_dir} already holds a run of a different configuration ({'; '.join(diff)}); "
            "choose another results_dir / --out, or move that run away"
        )
    if not results.is_complete(out_dir):
        check_data()  # checksums before anything is written (cached per process: load_data reuses it)
    with run_lock(out_dir) as locked:
        if not locked:
            print(f"{name}: being trained by another process ({holder(out_dir)}), skipped: {out_dir}")
            return {**dict.fromkeys(results.RUN_COLUMNS), "run_name": name, "status": "locked"}
        if results.is_complete(out_dir):
            row = _load_run_row(out_dir)
            print(f"{name}: already complete ({row['status']}), skipped: {out_dir}")
            return row
        note_holder(out_dir)
        results.remove_stale_temps(out_dir)  # left by a process killed mid-write; we hold the lock
        if results.read_stored_config(out_dir) is None:  # written once, before anything else
            results.write_yaml(out_dir / ".hydra" / "config.yaml", cfg)
            results.write_yaml(out_dir / ".hydra" / "overrides.yaml", list(overrides or []))
            if hydra_cfg is not None:
                yaml_text = OmegaConf.to_yaml(hydra_cfg)
                results.atomic_write_bytes(out_dir / ".hydra" / "hydra.yaml", yaml_text.encode())
        threads = torch.get_num_threads()
        try:  # jobs of one multirun share a process: the thread count must not leak into the next
            if cfg["num_threads"]:
                torch.set_num_threads(cfg["num_threads"])
            return _run(cfg, out_dir, name, overrides, on_epoch)
        finally:
            torch.set_num_threads(threads)


def _run(cfg, out_dir: Path, name: str, overrides, on_epoch) -> dict[str, Any]:
    """Train under the run's lock and write ``run.parquet`` (and ``COMPLETE`` unless it failed)."""
    prov = results.provenance()
    device = resolve_device(cfg["device"])
    row: dict[str, Any] = {
        "run_name": name,
        "status": "failed",
        "error": None,
        "diverged_epoch": None,
        "epochs_done": 0,
        "device": str(device),
        "overrides": " ".join(overrides or []),
        "started_at": _now(),
        **{k: prov[k] for k in ("torch_version", "python_version", "hostname", "git_commit", "git_dirty")},
    }
    row["wall_seconds"] = -time.perf_counter()
    try:
        row.update(_fit(cfg, out_dir, device, name, on_epoch))
    except StopRun as stop:
        row.update(status=stop.status, error=str(stop), epochs_done=stop.epoch)
        skip_evaluation(out_dir, name, f"run {stop.status} after epoch {stop.epoch}: {stop}")
    except Exception as exc:  # recorded, not fatal: the sweep goes on and a relaunch retries it
        row["error"] = (
            "".join(traceback.format_exception_only(exc)).strip() + "\n" + traceback.format_exc(limit=-3)
        )
        print(f"{name}: FAILED: {exc}", file=sys.stderr)
    if row["wall_seconds"] < 0:  # _fit did not return: this session's time only
        row["wall_seconds"] += time.perf_counter()
    row["finished_at"] = _now()
    flat = flatten(cfg)
    flat["device.requested"] = flat.pop("device")  # the row's ``device`` is the one actually used
    row = {**dict.fromkeys(results.RUN_COLUMNS), **row, **flat}
    results.write_parquet(out_dir / "run.parquet", [row], results.RUN_COLUMNS)
    if row["status"] != "failed":
        results.write_complete(out_dir, row["status"])
        (out_dir / "last.pt").unlink(missing_ok=True)  # resume state is not needed once complete
    print(f"{name}: {row['status']}; results in {out_dir}")
    return row


def build_model(cfg: dict[str, Any]) -> VAE:
    return VAE(Spec(**cfg["encoder"]), Spec(**cfg["decoder"]), cfg["latent_dim"])


def load_data(cfg: dict[str, Any], device: torch.device):
    dc = cfg["data"]
    return load_mnist(
        device,
        likelihood=dc["likelihood"],
        val_size=dc["val_size"],
        split_seed=dc["split_seed"],
        binarize_seed=dc["binarize_seed"],
        subset=dc["subset"],
    )


def _move_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.corrupt`` (``.corrupt1``, … if taken), never overwriting a file."""
    for i in range(1000):
        aside = path.with_name(f"{path.name}.corrupt{i or ''}")
        if not aside.exists():
            os.replace(path, aside)
            return aside
    raise FileExistsError(f"too many {path.name}.corrupt* files next to {path}")


def _fit(cfg, out_dir: Path, device: torch.device, name: str, on_epoch=None) -> dict[str, Any]:
    """The training loop: resume from ``last.pt`` if present, checkpoint every epoch, keep the best
    validation weights, then evaluate them. Returns the run's result columns."""
    seed = cfg["seed"]
    seed_everything(seed)
    data = load_data(cfg, device)
    model = build_model(cfg).to(device)
    opt = make_optimizer(model.parameters(), cfg["lr"])
    g_data = torch.Generator(device).manual_seed(seed)
    g_noise = torch.Generator(device).manual_seed(seed + 1_000_003)
    out = {
        "params/encoder": count_params(model.encoder),
        "params/decoder": count_params(model.decoder),
        "params/total": count_params(model),
    }
    start, best, history, resumed_seconds = 0, {"epoch": None, "neg_elbo": math.inf}, [], 0.0
    last = out_dir / "last.pt"
    if last.is_file():
        try:
            state = torch.load(last, map_location=device, weights_only=True)
        except Exception as exc:  # corrupted on disk (atomic writes never tear it): fail, keep it aside
            aside = _move_aside(last)
            raise RuntimeError(
                f"cannot resume: checkpoint {last} is unreadable ({type(exc).__name__}: {exc}); moved it to "
                f"{aside.name}, so a relaunch trains this run from the start"
            ) from exc
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        g_data.set_state(state["g_data"])
        g_noise.set_state(state["g_noise"])
        history.extend(state["history"])
        start, best = state["epoch"], state["best"]
        resumed_seconds = state["seconds"]
        print(f"{name}: resuming after epoch {start}")
    t0 = time.perf_counter() - resumed_seconds  # wall time counts every session of the run
    bar = tqdm(
        range(start, cfg["epochs"]),
        desc=name,
        disable=not _show_progress(cfg["progress"]),
        leave=False,
    )
    for epoch in bar:
        t = time.perf_counter()
        tr = train_epoch(model, opt, data, cfg, epoch, g_data, g_noise)
        rows = [{"epoch": epoch + 1, "split": "train", **tr, "seconds": time.perf_counter() - t}]
        splits = (
            {"val": data.val, "test": data.test}
            if cfg["train"]["eval_test_each_epoch"]
            else {"val": data.val}
        )
        for split_name, split in splits.items():
            t = time.perf_counter()
            rows.append(
                {
                    "epoch": epoch + 1,
                    "split": split_name,
                    **_eval(model, split, cfg, tr["beta"]),
                    "beta": tr["beta"],
                    "seconds": time.perf_counter() - t,
                }
            )
        for r in rows:
            r.update(run_name=name, lr=opt.param_groups[0]["lr"])
        history.extend(rows)
        results.write_parquet(out_dir / "epochs.parquet", history, results.EPOCH_COLUMNS)
        if not all(math.isfinite(r[k]) for r in rows for k in ("loss", "recon", "kl")):
            out.update(
                status="diverged",
                diverged_epoch=epoch + 1,
                epochs_done=epoch + 1,
                error=f"non-finite loss in epoch {epoch + 1}",
                wall_seconds=time.perf_counter() - t0,
            )
            skip_evaluation(out_dir, name, f"run diverged in epoch {epoch + 1}")
            return out
        val = rows[1]["neg_elbo"]
        if val < best["neg_elbo"]:
            best = {"epoch": epoch + 1, "neg_elbo": val}
            results.save_torch(
                out_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch + 1, "val/neg_elbo": val}
            )
        results.save_torch(
            last,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "g_data": g_data.get_state(),
                "g_noise": g_noise.get_state(),
                "history": history,
                "epoch": epoch + 1,
                "best": best,
                "seconds": time.perf_counter() - t0,
            },
        )
        bar.set_postfix(val_neg_elbo=f"{val:.2f}")
        if on_epoch is not None:
            on_epoch(epoch + 1, val)
    model.load_state_dict(torch.load(out_dir / "best.pt", map_location=device, weights_only=True)["model"])
    beta = history[-1]["beta"]
    for split_name, split in (("val", data.val), ("test", data.test)):
        out.update({f"{split_name}/{k}": v for k, v in _eval(model, split, cfg, beta).items()})
    test = {k.split("/", 1)[1]: v for k, v in out.items() if k.startswith("test/")}
    evaluate_run(model, data, cfg, out_dir, name, test_losses=test)
    out.update(status="ok", epochs_done=cfg["epochs"], wall_seconds=time.perf_counter() - t0)
    out["best/epoch"] = best["epoch"]
    return out


def launcher_threads(hc) -> int | None:
    """CPU threads for one run under the job's launcher, so parallel runs do not oversubscribe cores:
    a submitit task gets its ``cpus_per_task``; joblib's ``n_jobs`` workers split this machine."""
    cpus = OmegaConf.select(hc, "launcher.cpus_per_task", default=None)
    if isinstance(cpus, int) and cpus > 0:
        return cpus
    n_jobs = OmegaConf.select(hc, "launcher.n_jobs", default=None)
    if isinstance(n_jobs, int) and n_jobs > 1:
        return max(1, (os.cpu_count() or 1) // n_jobs)
    return None


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    if cfg.num_threads is None:
        cfg.num_threads = launcher_threads(hc)
    row = train(cfg, hc.runtime.output_dir, overrides=list(hc.overrides.task), hydra_cfg=hc)
    if row["status"] == "failed" and hc.mode == RunMode.RUN:
        sys.exit(1)
    return row.get("val/neg_elbo")


if __name__ == "__main__":
    # Call the importable module's ``main``, not this ``__main__`` copy: process launchers (joblib,
    # submitit) pickle the task function, and only a module-level one pickles cleanly.
    from sweep.train import main as _main

    _main()
