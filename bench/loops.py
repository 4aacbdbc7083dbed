"""The training loops the benchmark compares: ``StockLoop`` (as pytorch/examples vae/main.py: torchvision
dataset, DataLoader, ``.item()`` per step) and ``CohortLoop``, the harness's own path
(:class:`sweep.cohort.Cohort`) with one model, one graphed model, or stacked cohorts."""

import dataclasses
import threading
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from sweep.cohort import Cohort, on_stream
from sweep.config import CONF_DIR, to_plain
from sweep.data import Split
from sweep.models import DEFAULT_WIDTH, VAE
from sweep.names import parse_run_name
from sweep.rules import validate

SCHEMA_VERSION = 1
RESULTS_DIR = Path(__file__).resolve().parent / "results"
BATCH, LR, SEED = 128, 1e-3, 0
# Every layer type of the grid: dense 1/4/16, conv 1..5 (transposed in decoders), a small and a large latent.
DEFAULT_CONFIGS = (
    "L25_dense1_dense1",
    "L200_dense4_conv2",
    "L25_dense16_dense1",
    "L25_conv1_conv1",
    "L200_conv3_conv3",
    "L50_conv4_dense4",
    "L25_conv5_conv5",
)
QUICK_CONFIGS = ("L8_dense1_dense1", "L8_conv1_conv2")
DEFAULTS = {"steps": 30, "warmup": 5, "repeats": 3}
QUICK = {"steps": 3, "warmup": 1, "repeats": 1}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def harness_cfg(name: str) -> dict[str, Any]:
    """The composed, validated run config of ``name`` (e.g. ``L25_dense1_conv4``) at batch 128."""
    from hydra import compose, initialize_config_dir

    from sweep.hydra_setup import register

    register()
    overrides = [*parse_run_name(name).overrides(), f"batch_size={BATCH}", f"lr={LR}", f"seed={SEED}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return validate(to_plain(compose("config", overrides=overrides)))


def arch_cfg(name: str) -> dict[str, Any]:
    """Just the architecture of ``name`` (conf/{encoder,decoder}/<kind>.yaml with its depth): no Hydra."""
    rid = parse_run_name(name)
    group = lambda role, kind, depth: {  # noqa: E731
        **OmegaConf.to_container(OmegaConf.load(CONF_DIR / role / f"{kind}.yaml")),
        "depth": depth,
        "width": DEFAULT_WIDTH[kind],  # the yaml's ${default_width:} needs Hydra's resolvers
    }
    return {
        "encoder": group("encoder", rid.enc_kind, rid.enc_depth),
        "decoder": group("decoder", rid.dec_kind, rid.dec_depth),
        "latent_dim": rid.latent_dim,
    }


def stock_loss(logits, x, mu, logvar) -> torch.Tensor:
    """pytorch/examples vae/main.py's ``loss_function``: BCE + KLD summed over the batch (on logits)."""
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


class StockLoop:
    """(a) The loop users write: DataLoader batches, ``.item()`` every step."""

    def __init__(self, model: VAE, loader, device: torch.device):
        self.model, self.loader, self.device = model, loader, device
        self.opt = torch.optim.Adam(model.parameters(), lr=LR)
        self.batches = iter(loader)
        self.train_loss = 0.0

    def run(self, steps: int) -> int:
        """Train ``steps`` batches; returns the number of images."""
        self.model.train()
        n = 0
        for _ in range(steps):
            try:
                data, _ = next(self.batches)
            except StopIteration:  # a new epoch, as the example's outer loop would start
                self.batches = iter(self.loader)
                data, _ = next(self.batches)
            data = data.to(self.device)
            self.opt.zero_grad()
            recon_batch, mu, logvar = self.model(data)
            loss = stock_loss(recon_batch, data, mu, logvar)
            loss.backward()
            self.train_loss += loss.item()
            self.opt.step()
            n += data.shape[0]
        return n


def _head(data, n: int):
    """``data`` with its training split cut to the first ``n`` images (an "epoch" of n images)."""
    t = data.train
    return dataclasses.replace(data, train=Split(t.x[:n], t.y[:n], t.target[:n]))


class CohortLoop:
    """The harness's own path, :class:`sweep.cohort.Cohort` (what every run trains with), on ``members``
    seeds of the config at once: (b) ``harness`` is one member, eager; (c) ``graph`` one member with
    its step captured as a CUDA graph; (d) ``cohort`` ``members`` members stacked, graphed on CUDA,
    ``slots`` such cohorts training at once, each in its own thread on its own CUDA stream (as
    :mod:`sweep.engine` runs a grid). Each ``run(steps)`` is one epoch of ``steps`` batches."""

    def __init__(self, cfg: dict[str, Any], data, device: torch.device, *, members=1, graphs=False, slots=1):
        self.cfg, self.data, self.device, self.members, self.graphs = cfg, data, device, members, graphs
        self.slots, self.cohorts, self.epoch = slots, {}, 0

    def _cohort(self, k: int) -> Cohort:
        if k not in self.cohorts:
            cfgs = [
                {**self.cfg, "seed": self.cfg["seed"] + k * self.members + s} for s in range(self.members)
            ]
            part = _head(self.data, min(self.steps * self.cfg["batch_size"], len(self.data.train)))
            self.cohorts[k] = Cohort(cfgs, part, self.device, graphs=self.graphs)
        return self.cohorts[k]

    def run(self, steps: int) -> int:
        """Train one epoch of ``steps`` batches on every member of every slot; returns model-samples.
        The epoch length is fixed by the first call (the captured graphs belong to one epoch shape),
        so a warm-up call trains a whole epoch and captures the step."""
        self.steps = getattr(self, "steps", None) or steps
        cohorts = [self._cohort(k) for k in range(self.slots)]
        epoch, self.epoch = self.epoch, self.epoch + 1
        if self.slots == 1:
            with on_stream(self.device):
                cohorts[0].train_epoch(epoch)
        else:
            errors = []

            def one(c):
                try:
                    with on_stream(self.device):
                        c.train_epoch(epoch)
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    errors.append(exc)

            threads = [threading.Thread(target=one, args=(c,)) for c in cohorts]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
        return sum(c.n * c.size for c in cohorts)

    @property
    def fused(self) -> bool:
        return any(bool(c.opt.defaults.get("fused")) for c in self.cohorts.values())
