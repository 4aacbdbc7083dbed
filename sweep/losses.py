"""The one VAE loss: −ELBO in nats per image, with knobs whose defaults give the plain VAE.

* distortion (reconstruction) per image: Σ_pixels −log p(target | decoder output), the run's
  ``data.likelihood`` (:func:`nll_pixels`; the decoder outputs one logit ``o`` per pixel):
  - ``bernoulli``: binarised pixels, p = Bernoulli(σ(o)) (BCE-with-logits);
  - ``bce``: the same BCE on continuous pixels, the paper's setting: not a normalised likelihood;
  - ``continuous_bernoulli``: pixels in [0, 1], the continuous Bernoulli of λ = σ(o) (Loaiza-Ganem and
    Cunningham 2019), its normalising constant C(λ) included;
  - ``gaussian``: pixels in [0, 1], N(σ(o), ``GAUSSIAN_SIGMA``²); ``gaussian_learned``: N(σ(o), σ²) with
    one learned log σ per model;
  - ``logistic``: the 8-bit pixel values k/255, a logistic of location σ(o) and one learned log scale
    per model, discretised to each value's bin of width 1/255 (the end bins open), as in PixelCNN++
    (Salimans et al. 2017).
  Each but ``bce`` is a normalised (log-)likelihood: ``bernoulli`` and ``logistic`` a probability mass,
  the continuous ones a density on [0, 1]^784; bits per dimension are nats / (784 · ln 2).
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

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# distortion divisor per reduction: "paper" is the per-pixel mean BCE (784 pixels)
RECON_DIVISORS = {"sum": 1.0, "paper": 784.0}
REDUCTIONS = tuple(RECON_DIVISORS)
LIKELIHOODS = ("bernoulli", "bce", "continuous_bernoulli", "gaussian", "gaussian_learned", "logistic")
NOT_NORMALISED = ("bce",)  # no IWAE NLL, no bits per dimension: the paper's ablation only
# The fixed σ of ``gaussian``, in pixel units on [0, 1]: a conventional choice (not fitted), about the
# spread of a good MNIST reconstruction's residuals at the strokes' edges; ``gaussian_learned`` fits it.
GAUSSIAN_SIGMA = 0.1
PIXEL_LEVELS = 256  # 8-bit pixels: the discretised logistic's bins are k/255 ± 1/510
_HALF_BIN = 0.5 / (PIXEL_LEVELS - 1)
_LOG_2PI = math.log(2.0 * math.pi)
# |o| below this, log(o / tanh(o/2)) is its Taylor series log 2 + o²/12 (error below o⁴/1440 < 1e-15):
# the closed form is 0/0 at o = 0, and its gradient is not defined there
_CB_TAYLOR = 1e-3


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per latent dimension: (B, L) → (B, L)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def recon_per_image(
    logits: torch.Tensor,
    target: torch.Tensor,
    likelihood: str = "bernoulli",
    log_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Σ_pixels −log p(target | logits) under ``likelihood``: (B, 1, 28, 28) × 2 → (B,) nats."""
    return nll_pixels(likelihood, logits, target, log_scale).flatten(1).sum(1)


def _cb_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(λ) of the continuous Bernoulli at λ = σ(o): C = 2·artanh(1 − 2λ)/(1 − 2λ) = o / tanh(o/2)."""
    small = logits.abs() < _CB_TAYLOR
    safe = torch.where(small, torch.ones_like(logits), logits)
    return torch.where(small, math.log(2.0) + logits.pow(2) / 12.0, torch.log(safe / torch.tanh(safe / 2)))


def nll_pixels(
    likelihood: str, logits: torch.Tensor, target: torch.Tensor, log_scale: torch.Tensor | None = None
) -> torch.Tensor:
    """−log p(target | logits) per pixel, nats, elementwise (any shape; ``log_scale`` broadcasts: a
    0-dim tensor for one model, or (S, 1, …) for a stack). ``log_scale`` is the learned log σ of
    ``gaussian_learned`` and log s of ``logistic``, unused otherwise. Torch ops only, no host control
    flow: it runs under ``vmap``."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if likelihood in ("bernoulli", "bce"):
        return bce
    if likelihood == "continuous_bernoulli":
        return bce - _cb_log_norm(logits)
    mean = torch.sigmoid(logits)
    if likelihood in ("gaussian", "gaussian_learned"):
        log_sigma = log_scale if likelihood == "gaussian_learned" else math.log(GAUSSIAN_SIGMA)
        log_sigma = torch.as_tensor(log_sigma, dtype=logits.dtype, device=logits.device)
        return 0.5 * ((target - mean) * torch.exp(-log_sigma)).pow(2) + log_sigma + 0.5 * _LOG_2PI
    if likelihood == "logistic":
        return -_discretised_logistic(target, mean, log_scale)
    raise ValueError(f"data.likelihood={likelihood!r} is unknown; valid: {', '.join(LIKELIHOODS)}")


def _discretised_logistic(x: torch.Tensor, mean: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    """log P(x) of a logistic(mean, s) discretised to 8-bit pixels x = k/255: the mass of the bin
    [x − h, x + h], h = 1/510, with the bins of 0 and 1 reaching −∞ and +∞. With a = (x + h − mean)/s and
    b = (x − h − mean)/s, σ(a) − σ(b) = σ(a)·σ(−b)·(1 − e^(b − a)), so log P is a sum of log-sigmoids and
    one log(−expm1(−2h/s)): finite for any pixel however far from the mean."""
    inv_s = torch.exp(-log_s)
    a, b = (x + _HALF_BIN - mean) * inv_s, (x - _HALF_BIN - mean) * inv_s
    upper, lower = F.logsigmoid(a), F.logsigmoid(-b)  # log σ(a) = log P(X ≤ x + h), log P(X ≥ x − h)
    bin_width = torch.log(-torch.expm1(-2 * _HALF_BIN * inv_s))
    middle = upper + lower + bin_width
    return torch.where(x < _HALF_BIN, upper, torch.where(x > 1 - _HALF_BIN, lower, middle))


def decoder_mean(likelihood: str, logits: torch.Tensor) -> torch.Tensor:
    """The mean of p(x | z) in [0, 1] (the pictures, PSNR and FID's samples): σ(o), but for the continuous
    Bernoulli, whose mean is λ/(2λ − 1) + 1/(2 artanh(1 − 2λ)) = 1/(1 − e^(−o)) − 1/o (½ at o = 0)."""
    mean = torch.sigmoid(logits)
    if likelihood != "continuous_bernoulli":
        return mean
    # the closed form subtracts two numbers near 1/o: below |o| = 0.01 the series 1/2 + o/12 − o³/720
    # (error below o⁵/30240 < 1e-14) replaces it, which loses at most 100 ulps of 1/o there
    small = logits.abs() < 1e-2
    safe = torch.where(small, torch.ones_like(logits), logits)
    series = 0.5 + logits / 12.0 - logits.pow(3) / 720.0
    return torch.where(small, series, 1.0 / (-torch.expm1(-safe)) - 1.0 / safe)


def bits_per_dim(nats_per_image: float, n_pixels: int = 784) -> float:
    """Nats per image as bits per pixel."""
    return nats_per_image / (n_pixels * math.log(2.0))


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
