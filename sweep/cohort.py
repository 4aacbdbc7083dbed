"""A cohort: S runs of one architecture trained together, in one process, on one device.

The members' weights form one :class:`~sweep.stack.Stack` stepped by one fused Adam (Adam is
elementwise, so each member's update is its own). What makes a member's result independent of the
cohort it trained in:

* its weights start from its own seed (the global RNG is seeded per member, under a lock);
* its randomness comes from its own two generators, drawn once per epoch for the whole epoch:
  ``g_data`` draws the data order (``randperm``) and then the binarisation of every training image in
  that order, ``g_noise`` the reparameterisation noise (``randn((N, L))``). A run trained alone is a
  cohort of one and draws exactly the same numbers;
* its loss knobs (β with its warm-up, free bits, ``loss.reduction``) are its own entries of (S,)
  tensors; β's warm-up is computed on the device from the step counter, in float64 as
  :func:`sweep.losses.beta_at` computes it on the host.

The training step reads its batch from the epoch's draws through a device step counter, so it has
no host input at all: on CUDA (``graphs=True``) it is captured once as a CUDA graph after a few eager
steps, and replayed for every later step (one graph for full batches, one for the last partial
batch). Nothing waits for the device inside an epoch; the per-member loss sums stay on it until the
epoch ends. ``checkpoints()`` gives each member's state in the format a run trained alone saves
(its ``VAE.state_dict()``, a one-model Adam state dict, its generators), and a cohort can be rebuilt
from such states, which is how a relaunch resumes and how a finished or diverged member leaves.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sweep.data import binarize
from sweep.losses import Knobs, beta_at
from sweep.models import N_PIXELS, build_model
from sweep.stack import Stack

NOISE_SEED_OFFSET = 1_000_003  # g_noise is seeded with seed + this (g_data with the seed itself)
EAGER_STEPS = {"full": 3, "tail": 1}  # eager steps of each batch shape before it is captured
# Seeding the global RNGs and drawing initial weights must not interleave between threads.
_INIT_LOCK = threading.Lock()
_CAPTURE_LOCK = threading.Lock()


def seed_everything(seed: int) -> None:
    """Seed every global RNG at the start of each run: jobs of one multirun share a process."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(params, lr: float, *, capturable: bool = False) -> torch.optim.Adam:
    """Adam, fused into one kernel over all parameters where this torch has one for their device (CPU
    and CUDA since torch 2.4): +10-20 % samples/s for small dense models on CPU, fewer launches on a
    GPU. It rounds differently from the per-tensor loop (last float32 bits), and is as deterministic.
    ``capturable``: its step counter lives on the device, so ``step()`` can be captured in a CUDA graph.
    ``params``: an iterable of tensors, as ``torch.optim.Adam`` takes (``model.parameters()``)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True, capturable=capturable)
    except (RuntimeError, ValueError):  # no fused kernel for this device in this torch
        return torch.optim.Adam(params, lr=lr, capturable=capturable)


class Cohort:
    """S runs of one architecture, data config, batch size and learning rate, at the same epoch.

    ``cfgs``: the members' validated run configs; ``states``: per member None (fresh) or a checkpoint
    as :meth:`checkpoints` returns it (and ``last.pt`` holds); ``data``: the dataset on ``device``.
    Everything runs on the current CUDA stream (:func:`on_stream` gives a slot its own)."""

    def __init__(
        self,
        cfgs: Sequence[dict[str, Any]],
        data,
        device: torch.device,
        states: Sequence[dict[str, Any] | None] | None = None,
        *,
        graphs: bool = False,
    ):
        cfg0 = cfgs[0]
        states = list(states) if states is not None else [None] * len(cfgs)
        self.cfgs, self.data, self.device, self.size = list(cfgs), data, device, len(cfgs)
        self.graphs = graphs and device.type == "cuda"
        models = []
        for cfg, state in zip(cfgs, states, strict=True):
            with _INIT_LOCK:
                seed_everything(cfg["seed"])
                model = build_model(cfg)
            if state is not None:
                model.load_state_dict(state["model"])
            models.append(model.to(device))
        self.stack = Stack.of(models)
        self.opt = make_optimizer(self.stack.params.values(), cfg0["lr"], capturable=self.graphs)
        if states[0] is not None:
            self._load_optimizer([s["optimizer"] for s in states])
        self.gens = []
        for cfg, state in zip(cfgs, states, strict=True):
            g_data = torch.Generator(device).manual_seed(cfg["seed"])
            g_noise = torch.Generator(device).manual_seed(cfg["seed"] + NOISE_SEED_OFFSET)
            if state is not None:
                g_data.set_state(state["g_data"])
                g_noise.set_state(state["g_noise"])
            self.gens.append((g_data, g_noise))

        loss_cfgs = [c["loss"] for c in cfgs]
        self.knobs = Knobs.of(loss_cfgs, device)  # β is replaced by its warmed-up value each step
        f64 = lambda key: torch.tensor([c[key] for c in loss_cfgs], dtype=torch.float64, device=device)  # noqa: E731
        self.beta64, self.warmup64 = f64("beta"), f64("warmup_epochs")

        x_all = data.train.x
        self.n, self.bs = x_all.shape[0], cfg0["batch_size"]
        self.steps = math.ceil(self.n / self.bs)
        self.tail = self.n - (self.steps - 1) * self.bs
        self.bernoulli = cfg0["data"]["likelihood"] == "bernoulli"
        size, latent = self.size, self.stack.latent_dim
        self.order = torch.empty((size, self.n), dtype=torch.int64, device=device)
        self.bits = (
            torch.empty((size, self.n, N_PIXELS), dtype=torch.uint8, device=device)
            if self.bernoulli
            else None
        )
        self.eps = torch.empty((size, self.n, latent), dtype=torch.float32, device=device)
        self.counter = torch.zeros((), dtype=torch.int64, device=device)
        self.epoch_t = torch.zeros((), dtype=torch.float64, device=device)
        self.sums = torch.zeros((size, 3), dtype=torch.float64, device=device)
        self.arange = torch.arange(self.bs, device=device)
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._eager: dict[int, int] = {}

    # ------------------------------------------------------------------ optimizer state per member
    def _load_optimizer(self, member_states: Sequence[dict[str, Any]]) -> None:
        """Stack the members' one-model Adam states into this cohort's optimizer."""
        current = self.opt.state_dict()
        n_params = len(current["param_groups"][0]["params"])
        state = {}
        for j in range(n_params):
            per = [m["state"][j] for m in member_states]
            if len({float(p["step"]) for p in per}) != 1:
                raise ValueError("cohort members must have taken the same number of optimizer steps")
            state[j] = {
                "step": per[0]["step"].clone(),
                "exp_avg": torch.stack([p["exp_avg"] for p in per]),
                "exp_avg_sq": torch.stack([p["exp_avg_sq"] for p in per]),
            }
        self.opt.load_state_dict({"state": state, "param_groups": current["param_groups"]})

    def checkpoints(self) -> list[dict[str, Any]]:
        """Each member's model, optimizer (as a one-model Adam's ``state_dict()``) and generators, as
        copies on the CPU: what ``last.pt`` stores and what a cohort is rebuilt from. Each stacked
        tensor crosses to the CPU once, then is sliced per member."""
        sd = self.opt.state_dict()
        group = {k: v for k, v in sd["param_groups"][0].items() if k != "params"}
        weights = {k: v.detach().cpu() for k, v in self.stack.state().items()}  # BatchNorm's buffers too
        moments = {j: {k: v.detach().cpu() for k, v in st.items()} for j, st in sd["state"].items()}
        n_params = len(self.stack.params)
        return [
            {
                "model": {k: v[i].clone() for k, v in weights.items()},
                "optimizer": {
                    "state": {
                        j: {k: (v.clone() if k == "step" else v[i].clone()) for k, v in st.items()}
                        for j, st in moments.items()
                    },
                    "param_groups": [{**group, "params": list(range(n_params))}],
                },
                "g_data": g_data.get_state(),
                "g_noise": g_noise.get_state(),
            }
            for i, (g_data, g_noise) in enumerate(self.gens)
        ]

    # ------------------------------------------------------------------ one epoch
    def draw_epoch(self) -> None:
        """Each member's randomness for a whole epoch, from its own generators: data order and
        binarisation (``g_data``), reparameterisation noise (``g_noise``)."""
        x_all = self.data.train.x
        for s, (g_data, g_noise) in enumerate(self.gens):
            torch.randperm(self.n, generator=g_data, device=self.device, out=self.order[s])
            if self.bernoulli:
                self.bits[s].copy_(binarize(x_all[self.order[s]], g_data).view(self.n, N_PIXELS))
            torch.randn(
                (self.n, self.stack.latent_dim), generator=g_noise, device=self.device, out=self.eps[s]
            )

    def _beta(self, progress: torch.Tensor) -> torch.Tensor:
        """β of each member at ``progress`` epochs (float64 on the device, as :func:`beta_at`)."""
        frac = torch.where(self.warmup64 > 0, (progress / self.warmup64).clamp(max=1.0), 1.0)
        return (self.beta64 * frac).to(torch.float32)

    def _step(self, batch: int) -> None:
        """One training step of every member on its next ``batch`` images. Reads only device state
        (the step counter, the epoch's draws), so it can be captured as a CUDA graph."""
        self.opt.zero_grad(set_to_none=True)
        idx = self.counter * self.bs + self.arange[:batch]
        if self.bernoulli:
            x = self.bits.index_select(1, idx).to(torch.float32).view(self.size, batch, 1, 28, 28)
        else:
            x = self.data.train.x[self.order.index_select(1, idx)]  # (S, B, 1, 28, 28)
        eps = self.eps.index_select(1, idx)
        beta = self._beta(self.epoch_t + self.counter.to(torch.float64) / self.steps)
        loss, recon, kl = self.stack.losses(
            x, eps, beta, self.knobs.free_bits, self.knobs.divisor, train=True
        )
        loss.sum().backward()  # members share no weights: each gets its own gradient
        self.opt.step()
        with torch.no_grad():
            # float64 += float32 promotes before adding, exactly as an explicit .double() would
            self.sums += torch.stack([loss.detach() * batch, recon.detach(), kl.detach()], dim=1)
            self.counter += 1

    def _run_step(self, batch: int) -> None:
        if not self.graphs:
            self._step(batch)
            return
        kind = "full" if batch == self.bs else "tail"
        graph = self._graphs.get(batch)
        if graph is not None:
            graph.replay()
            return
        if self._eager.get(batch, 0) < EAGER_STEPS[kind]:
            self._eager[batch] = self._eager.get(batch, 0) + 1
            self._step(batch)
            return
        # The plain capture API on this thread's own stream: ``torch.cuda.graph`` would synchronize the
        # whole device and empty the cache first, stalling the cohorts other threads are running.
        graph = torch.cuda.CUDAGraph()
        try:
            with _CAPTURE_LOCK:  # one capture at a time in this process
                graph.capture_begin(capture_error_mode="thread_local")
                try:
                    self._step(batch)
                finally:
                    graph.capture_end()
        except RuntimeError as exc:  # nothing of the step ran: train on without graphs
            warnings.warn(f"CUDA graph capture failed, this cohort trains eagerly: {exc}", stacklevel=2)
            self.graphs = False
            self._step(batch)
            return
        self._graphs[batch] = graph
        graph.replay()  # capturing recorded the step without running it

    def train_epoch(self, epoch: int) -> list[dict[str, float]]:
        """One pass of every member over its own shuffle of the training split. One host sync, at the
        end. Returns per member its mean loss, recon, kl, neg_elbo and the β of its last step."""
        self.draw_epoch()
        self.counter.zero_()
        self.sums.zero_()
        self.epoch_t.fill_(epoch)
        for step in range(self.steps):
            self._run_step(self.bs if step < self.steps - 1 else self.tail)
        sums = (self.sums / self.n).tolist()
        progress = epoch + (self.steps - 1) / self.steps
        return [
            {
                "loss": lo,
                "recon": r,
                "kl": k,
                "neg_elbo": r + k,
                "beta": beta_at(c["loss"]["beta"], c["loss"]["warmup_epochs"], progress),
            }
            for (lo, r, k), c in zip(sums, self.cfgs, strict=True)
        ]

    def release(self) -> None:
        """Drop the captured graphs (and their memory pools)."""
        self._graphs.clear()


@contextlib.contextmanager
def on_stream(device: torch.device):
    """Run the body on a new CUDA stream of its own (concurrent cohorts in one process), or as is on
    other devices. The stream first waits for the current one (where the data was loaded)."""
    if device.type != "cuda":
        yield None
        return
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        yield stream
    torch.cuda.current_stream(device).wait_stream(stream)
