"""Evaluation of a trained VAE on a data split.

``split_losses`` gives the per-image −ELBO, distortion and rate (nats per image, one seeded
reparameterised sample per image, so the numbers are deterministic given the seed).
"""

from __future__ import annotations

import torch

from sweep.data import Split
from sweep.losses import kl_per_dim, objective, recon_per_image
from sweep.models import VAE

EVAL_BATCH = 1000


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
    """Mean over ``split`` of loss (the training objective), recon, kl and neg_elbo, in nats per image.
    Inputs and targets are ``split.target`` (the fixed binarisation for ``bernoulli``, pixels for ``bce``)."""
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
