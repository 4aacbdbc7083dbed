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

import torch
import torch.nn.functional as F

REDUCTIONS = ("sum", "paper")


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


def objective(
    recon: torch.Tensor,
    kl_d: torch.Tensor,
    *,
    reduction: str = "sum",
    beta: float = 1.0,
    free_bits: float = 0.0,
) -> torch.Tensor:
    """The scalar to minimise. ``recon`` (B,) nats, ``kl_d`` (B, L) nats."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"loss.reduction={reduction!r} is unknown; valid: {', '.join(REDUCTIONS)}")
    if free_bits > 0:
        rate = kl_d.mean(0).clamp(min=free_bits).sum()
    else:
        rate = kl_d.sum(1).mean()
    distortion = recon.mean()
    if reduction == "paper":
        distortion = distortion / 784.0
    return distortion + beta * rate
