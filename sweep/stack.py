"""S VAEs of one architecture as one batched model: the one implementation of the step math.

A :class:`Stack` holds the weights of S runs stacked along a leading *member* dimension (leaf
tensors, so one optimizer steps them all) and a weightless copy of the architecture on the meta
device. Every computation is written once, for one member, as a function of that member's weights
(``torch.func.functional_call``), and batched over members with ``torch.func.vmap``; with S = 1 the
same function is called directly, with no vmap. A single run is a stack of one, so a run trained
alone and a run trained in a cohort go through the same code.

Shapes: S members, B images, L latent dimensions. Images are (…, 1, 28, 28); inputs either carry the
member dimension (S, B, …) or are shared by all members (B, …). Members share no weights, so a
member's NaN never reaches another's gradient.

Buffers (BatchNorm's running statistics, ``encoder.norm=batch``) are stacked like the weights and
passed to ``functional_call`` beside them; BatchNorm updates them in place, under ``vmap`` each member
its own row (a stack of one passes views of them). Training steps run the architecture in training
mode (batch statistics, running statistics updated); everything else (validation, evaluation) in
evaluation mode, with the running statistics.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch.func import functional_call, stack_module_state, vmap

from sweep.losses import Knobs, kl_per_dim, nll_pixels, objective, recon_per_image
from sweep.models import VAE, reparameterise

if TYPE_CHECKING:
    from sweep.data import Split

EVAL_BATCH = 1000  # images per forward pass when a whole split is evaluated


class Stack:
    """S models of one architecture; ``params[name]`` is (S, *shape) for each parameter ``name`` of
    the :class:`~sweep.models.VAE`, ``buffers[name]`` alike for each buffer (none but BatchNorm's)."""

    def __init__(
        self, base: VAE, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor] | None = None
    ):
        self.base = base  # on the meta device: the architecture only
        self.params, self.buffers = params, buffers or {}
        self.size = next(iter(params.values())).shape[0]
        self.latent_dim = base.latent_dim
        self.likelihood = getattr(base, "likelihood", "bernoulli")
        self._vmapped: dict[tuple, Callable] = {}

    @classmethod
    def of(cls, models: Sequence[VAE], *, trainable: bool = True) -> Stack:
        """Copy the weights and buffers of ``models`` (one architecture, one device) into a new stack."""
        params, buffers = stack_module_state(list(models))
        if not trainable:
            params = {k: v.detach() for k, v in params.items()}
        return cls(copy.deepcopy(models[0]).to("meta"), params, buffers)

    def state(self) -> dict[str, torch.Tensor]:
        """Every stacked tensor by its name in the VAE's ``state_dict()``: the weights, then the buffers."""
        return {**self.params, **self.buffers}

    # ------------------------------------------------------------------ per-member functions
    def _split(self, params: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}

    def _encode_one(self, params, x):
        return functional_call(self.base.encoder, self._split(params, "encoder."), (x,))

    def _decode_one(self, params, z):
        return functional_call(self.base.decoder, self._split(params, "decoder."), (z,))

    def _losses_one(self, params, x, eps, beta, free_bits, divisor):
        """One member's training objective and its sums over the batch: x (B, 1, 28, 28), eps (B, L)
        → (objective, Σ_images recon, Σ_images Σ_d KL_d), nats."""
        mu, logvar = self._encode_one(params, x)
        logits = self._decode_one(params, reparameterise(mu, logvar, eps))
        recon = recon_per_image(logits, x, self.likelihood, params.get("log_scale"))
        kl_d = kl_per_dim(mu, logvar)
        loss = objective(recon, kl_d, beta=beta, free_bits=free_bits, divisor=divisor)
        return loss, recon.sum(), kl_d.sum()

    def _batched(self, fn: Callable, in_dims: tuple, *args, train: bool = False):
        """``fn(weights and buffers, *args)`` for every member, the architecture in training mode with
        ``train``, else in evaluation mode: vmapped for S > 1, called directly for S = 1 (the member
        dimension is indexed away and put back). ``in_dims``: 0 for per-member arguments, None for
        shared ones."""
        self.base.train(train)
        state = self.state()
        if self.size == 1:  # squeeze, not [0]: its backward is a view, not a zero-filled copy
            one = {k: v.squeeze(0) for k, v in state.items()}
            out = fn(one, *(a[0] if d == 0 else a for a, d in zip(args, in_dims, strict=True)))
            return tuple(o.unsqueeze(0) for o in out) if isinstance(out, tuple) else out.unsqueeze(0)
        key = (fn.__name__, in_dims)
        if key not in self._vmapped:
            self._vmapped[key] = vmap(fn, in_dims=(0, *in_dims))
        return self._vmapped[key](state, *args)

    # ------------------------------------------------------------------ batched over members
    def losses(self, x, eps, beta, free_bits, divisor, *, shared_x: bool = False, train: bool = False):
        """Per-member (objective, Σ recon, Σ KL), each (S,). x (S, B, …) or, with ``shared_x``, (B, …);
        eps (S, B, L); beta, free_bits, divisor (S,) tensors. ``train``: a training step (BatchNorm
        normalises by the batch and updates its running statistics); otherwise evaluation mode."""
        dims = (None if shared_x else 0, 0, 0, 0, 0)
        return self._batched(self._losses_one, dims, x, eps, beta, free_bits, divisor, train=train)

    def log_scale(self) -> torch.Tensor | None:
        """Each member's learned log scale of the likelihood, (S,), or None where it has none."""
        return self.params.get("log_scale")

    def nll_pixels(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """−log p(target | logits) per pixel for every member: logits (S, …), target broadcast to it."""
        log_scale = self.log_scale()
        if log_scale is not None:
            log_scale = log_scale.reshape(-1, *[1] * (logits.dim() - 1))
        return nll_pixels(self.likelihood, logits, target, log_scale)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images shared by all members (N, 1, 28, 28) → (μ, log σ²), each (S, N, L)."""
        return self._batched(self._encode_one, (None,), x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (S, M, L) → Bernoulli logits (S, M, 1, 28, 28)."""
        return self._batched(self._decode_one, (0,), z)


class ModelAsStack(Stack):
    """A view of one ordinary :class:`torch.nn.Module` with ``encoder`` and ``decoder`` attributes as a
    stack of one, without copying its weights (for evaluating any such model, e.g. in tests)."""

    def __init__(self, model):
        self.model, self.size = model, 1
        self.latent_dim = getattr(model, "latent_dim", None)
        self.likelihood = getattr(model, "likelihood", "bernoulli")

    def log_scale(self):
        scale = getattr(self.model, "log_scale", None)
        return None if scale is None else scale.reshape(1)

    def encode(self, x):
        mu, logvar = self.model.encoder(x)
        return mu.unsqueeze(0), logvar.unsqueeze(0)

    def decode(self, z):
        return self.model.decoder(z[0]).unsqueeze(0)


@torch.no_grad()
def split_losses(
    stack: Stack,
    split: Split,
    *,
    seeds: Sequence[int],
    knobs: Knobs,
    batch: int = EVAL_BATCH,
) -> list[dict[str, float]]:
    """Per member of ``stack``: the mean over ``split`` of loss (its training objective with its
    ``knobs``), recon, kl and neg_elbo, in nats per image, with one seeded reparameterised sample per
    image: member i's noise is one ``randn((N, L))`` draw of a generator seeded with ``seeds[i]``, so
    its numbers do not depend on the other members or on ``batch``. Inputs and targets are
    ``split.target`` (the fixed binarisation for ``bernoulli``, the pixels otherwise), shared by all
    members; BatchNorm with its running statistics. One host sync."""
    device = split.x.device
    n = len(split)
    eps = torch.stack(
        [
            torch.randn(
                (n, stack.latent_dim), device=device, generator=torch.Generator(device).manual_seed(s)
            )
            for s in seeds
        ]
    )
    tot = torch.zeros(stack.size, 3, dtype=torch.float64, device=device)
    for i in range(0, n, batch):
        x = split.target[i : i + batch]
        loss, recon, kl = stack.losses(
            x, eps[:, i : i + batch], knobs.beta, knobs.free_bits, knobs.divisor, shared_x=True
        )
        tot += torch.stack([loss * x.shape[0], recon, kl], dim=1)
    return [{"loss": lo, "recon": r, "kl": k, "neg_elbo": r + k} for lo, r, k in (tot / n).tolist()]
