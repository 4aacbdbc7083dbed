"""The training loops the benchmark compares: ``StockLoop`` (as pytorch/examples vae/main.py: torchvision
dataset, DataLoader, ``.item()`` per step), ``HarnessLoop`` (``sweep.train.train_epoch``) and the
``torch.func`` vmap prototype ``StackedLoop`` that trains several seeds as one batched model."""

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from sweep.config import CONF_DIR, to_plain, validate
from sweep.data import Split, binarize
from sweep.losses import beta_at, kl_per_dim, objective, recon_per_image
from sweep.metrics import flops_per_image
from sweep.models import VAE, Spec
from sweep.names import parse_run_name
from sweep.train import (
    build_model,
    make_optimizer,
    tf32_on_cuda,
    train_epoch,
)

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

    overrides = [*parse_run_name(name).overrides(), f"batch_size={BATCH}", f"lr={LR}", f"seed={SEED}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return validate(to_plain(compose("config", overrides=overrides)))


def arch_cfg(name: str) -> dict[str, Any]:
    """Just the architecture of ``name`` (conf/{encoder,decoder}/<kind>.yaml with its depth): no Hydra."""
    rid = parse_run_name(name)
    group = lambda role, kind, depth: {  # noqa: E731
        **OmegaConf.to_container(OmegaConf.load(CONF_DIR / role / f"{kind}.yaml")),
        "depth": depth,
    }
    return {
        "encoder": group("encoder", rid.enc_kind, rid.enc_depth),
        "decoder": group("decoder", rid.dec_kind, rid.dec_depth),
        "latent_dim": rid.latent_dim,
    }


def model_flops(cfg: dict[str, Any]) -> tuple[int, int]:
    """Forward FLOPs per image of the run's (encoder, decoder), counted on the meta device."""
    with torch.device("meta"):
        model = VAE(Spec(**cfg["encoder"]), Spec(**cfg["decoder"]), cfg["latent_dim"])
        x, z = torch.empty(1, 1, 28, 28), torch.empty(1, cfg["latent_dim"])
    return flops_per_image(model.encoder, x), flops_per_image(model.decoder, z)


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


class HarnessLoop:
    """(b) The harness's own path: ``train_epoch`` over a slice of the resident training split."""

    def __init__(self, model: VAE, cfg: dict[str, Any], data, device: torch.device):
        self.model, self.cfg, self.data = model, cfg, data
        self.opt = make_optimizer(model.parameters(), cfg["lr"])
        self.g_data = torch.Generator(device).manual_seed(cfg["seed"])
        self.g_noise = torch.Generator(device).manual_seed(cfg["seed"] + 1_000_003)
        self.epoch = 0

    def run(self, steps: int) -> int:
        t = self.data.train
        n = min(steps * self.cfg["batch_size"], len(t))
        part = dataclasses.replace(self.data, train=Split(t.x[:n], t.y[:n], t.target[:n]))
        train_epoch(self.model, self.opt, part, self.cfg, self.epoch, self.g_data, self.g_noise)
        self.epoch += 1
        return n


def stack_models(models: list[VAE]) -> tuple[VAE, dict[str, torch.Tensor]]:
    """S models of one architecture → (a weightless copy on the meta device, their parameters stacked
    along a new leading dim of size S, as leaf tensors for one optimizer)."""
    params, _ = torch.func.stack_module_state(models)  # the VAE has no buffers
    return copy.deepcopy(models[0]).to("meta"), params


def _seed_losses(base: VAE, params, x, eps, loss_cfg, beta):
    """One model's step, for ``vmap`` over seeds: x (B, 1, 28, 28), eps (B, L) → (objective, Σ recon, Σ KL)."""
    part = lambda prefix: {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}  # noqa: E731
    mu, logvar = torch.func.functional_call(base.encoder, part("encoder."), (x,))
    z = mu + eps * torch.exp(0.5 * logvar)  # as VAE.forward, with the seed's noise drawn outside vmap
    logits = torch.func.functional_call(base.decoder, part("decoder."), (z,))
    recon, kl_d = recon_per_image(logits, x), kl_per_dim(mu, logvar)
    loss = objective(recon, kl_d, reduction=loss_cfg["reduction"], beta=beta, free_bits=loss_cfg["free_bits"])
    return loss, recon.sum(), kl_d.sum()


def stacked_train_epoch(base, params, opt, data, cfg, epoch: int, gens) -> list[dict[str, float]]:
    """``train_epoch`` for S seeds at once (prototype): ``gens`` holds each seed's (g_data, g_noise),
    which draw its data order, binarisation and noise exactly as its own ``train_epoch`` would; the
    forward and backward passes of all seeds run as one ``vmap``-batched model and one optimizer steps
    the stacked weights (Adam is elementwise). Returns one ``train_epoch`` result per seed."""
    x_all, bs = data.train.x, cfg["batch_size"]
    n = x_all.shape[0]
    steps = math.ceil(n / bs)
    loss_cfg = cfg["loss"]
    bernoulli = cfg["data"]["likelihood"] == "bernoulli"
    perms = [torch.randperm(n, generator=g_data, device=x_all.device) for g_data, _ in gens]
    sums = torch.zeros(len(gens), 3, dtype=torch.float64, device=x_all.device)
    step_fn = torch.func.vmap(_seed_losses, in_dims=(None, 0, 0, 0, None, None))
    beta = loss_cfg["beta"]
    with tf32_on_cuda(x_all.device):
        for step in range(steps):
            xs, eps = [], []
            for perm, (g_data, g_noise) in zip(perms, gens, strict=True):
                x = x_all[perm[step * bs : (step + 1) * bs]]
                xs.append(binarize(x, g_data) if bernoulli else x)
                eps.append(torch.randn((x.shape[0], base.latent_dim), generator=g_noise, device=x.device))
            x = torch.stack(xs)
            beta = beta_at(loss_cfg["beta"], loss_cfg["warmup_epochs"], epoch + step / steps)
            loss, recon, kl = step_fn(base, params, x, torch.stack(eps), loss_cfg, beta)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()  # seeds share no weights: each gets its own gradient
            opt.step()
            sums += torch.stack([loss.detach() * x.shape[1], recon.detach(), kl.detach()], dim=1)
    return [
        {"loss": lo, "recon": r, "kl": k, "neg_elbo": r + k, "beta": beta} for lo, r, k in (sums / n).tolist()
    ]


class StackedLoop:
    """(c) Prototype: ``seeds`` seeds of the config as one batched model (:func:`stacked_train_epoch`)."""

    def __init__(self, cfg: dict[str, Any], data, device: torch.device, seeds: int):
        models = []
        for s in range(seeds):
            torch.manual_seed(cfg["seed"] + s)
            models.append(build_model(cfg).to(device))
        self.base, self.params = stack_models(models)
        self.opt = make_optimizer(self.params.values(), cfg["lr"])
        self.gens = [
            (
                torch.Generator(device).manual_seed(cfg["seed"] + s),
                torch.Generator(device).manual_seed(cfg["seed"] + s + 1_000_003),
            )
            for s in range(seeds)
        ]
        self.cfg, self.data, self.epoch = cfg, data, 0

    def run(self, steps: int) -> int:
        t = self.data.train
        n = min(steps * self.cfg["batch_size"], len(t))
        part = dataclasses.replace(self.data, train=Split(t.x[:n], t.y[:n], t.target[:n]))
        stacked_train_epoch(self.base, self.params, self.opt, part, self.cfg, self.epoch, self.gens)
        self.epoch += 1
        return n * len(self.gens)
