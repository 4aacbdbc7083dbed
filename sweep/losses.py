"""The one VAE loss: −ELBO in nats per image, with knobs whose defaults give the plain VAE.

* distortion (reconstruction) per image: Σ_pixels BCE-with-logits(logits, target)
* rate per image: Σ_d KL(N(μ_d, σ_d²) ‖ N(0, 1)) = Σ_d ½(μ_d² + σ_d² − 1 − log σ_d²)
* objective, averaged over the batch:
  - ``reduction="sum"`` (default, correct): distortion + β·rate
  - ``reduction="paper"``: distortion / 784 + β·rate — per-pixel mean BCE plus per-image summed KL, the
    setting the paper's loss scale suggests; it weighs the KL 784× relative to the likelihood.
  - ``free_bits`` λ > 0 replaces the rate by Σ_d max(λ, mean_batch KL_d) (Kingma et al. 2016).
  - β is scaled by a linear warm-up (:func:`beta_at`).

The metrics that get reported (recon, kl, neg_elbo) are always the unweighted nats per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# distortion divisor per reduction: "paper" is the per-pixel mean BCE (784 pixels)
RECON_DIVISORS = {"sum": 1.0, "paper": 784.0}
REDUCTIONS = tuple(RECON_DIVISORS)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per latent dimension: (B, L) → (B, L)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def recon_per_image(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σ_pixels BCE-with-logits: (B, 1, 28, 28) × 2 → (B,) nats."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)


def beta_at(beta: float, warmup_epochs: float, progress_epochs: float) -> float:
    """Linear KL warm-up: β · min(1, progress / warmup_epochs); ``warmup_epochs=0`` gives β throughout."""
    if warmup_epochs <= 0:
        return beta
    return beta * min(1.0, progress_epochs / warmup_epochs)


def recon_divisor(reduction: str) -> float:
    if reduction not in REDUCTIONS:
        raise ValueError(f"loss.reduction={reduction!r} is unknown; valid: {', '.join(REDUCTIONS)}")
    return RECON_DIVISORS[reduction]


def objective(
    recon: torch.Tensor,
    kl_d: torch.Tensor,
    *,
    reduction: str = "sum",
    beta: float | torch.Tensor = 1.0,
    free_bits: float | torch.Tensor = 0.0,
    divisor: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """The scalar to minimise. ``recon`` (B,) nats, ``kl_d`` (B, L) nats.

    The knobs may be Python numbers or 0-dim tensors (one run of a cohort under ``vmap``, where every
    member has its own β, free bits and reduction): ``divisor`` (1 or 784, from ``reduction`` when
    None) divides the distortion, and free bits are chosen by ``torch.where``, never by host control
    flow, so numbers and tensors give the same floats."""
    if divisor is None:
        divisor = recon_divisor(reduction)
    beta, free_bits, divisor = (
        torch.as_tensor(v, dtype=recon.dtype, device=recon.device) for v in (beta, free_bits, divisor)
    )
    rate = torch.where(free_bits > 0, kl_d.mean(0).clamp(min=free_bits).sum(), kl_d.sum(1).mean())
    return recon.mean() / divisor + beta * rate


@dataclass(frozen=True)
class Knobs:
    """The loss knobs of S runs, each an (S,) float32 tensor on one device: β (its value now, after
    warm-up), free bits, and the distortion divisor of each run's ``loss.reduction``."""

    beta: torch.Tensor
    free_bits: torch.Tensor
    divisor: torch.Tensor

    @classmethod
    def of(cls, loss_cfgs: Sequence[dict], device, betas: Sequence[float] | None = None) -> Knobs:
        """From the runs' ``loss`` configs; ``betas`` (the warmed-up β of each run) default to ``loss.beta``."""
        betas = [c["beta"] for c in loss_cfgs] if betas is None else list(betas)
        col = lambda vals: torch.tensor(vals, dtype=torch.float32, device=device)  # noqa: E731
        return cls(
            col(betas),
            col([c["free_bits"] for c in loss_cfgs]),
            col([recon_divisor(c["reduction"]) for c in loss_cfgs]),
        )
