"""The one loss: KL, reconstruction, objective reductions and the KL warm-up, on hand-checked values."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from sweep.losses import (
    GAUSSIAN_SIGMA,
    LIKELIHOODS,
    beta_at,
    bits_per_dim,
    decoder_mean,
    kl_per_dim,
    nll_pixels,
    objective,
    recon_per_image,
)

# ---------------------------------------------------------------- KL and reconstruction


def test_kl_per_dim_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(16, 7, generator=g, dtype=torch.float64) * 2
    logvar = torch.randn(16, 7, generator=g, dtype=torch.float64) * 3
    expected = kl_divergence(
        Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros_like(mu), torch.ones_like(mu))
    )
    got = kl_per_dim(mu, logvar)
    assert got.shape == (16, 7)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_kl_per_dim_is_zero_at_the_prior_and_positive_elsewhere():
    zeros = torch.zeros(3, 4)
    assert torch.equal(kl_per_dim(zeros, zeros), zeros)
    # μ = 2, σ = 1: ½ μ² = 2
    torch.testing.assert_close(kl_per_dim(torch.full((1, 1), 2.0), torch.zeros(1, 1)), torch.tensor([[2.0]]))


def _bce(logit: float, target: float) -> float:
    sig = 1.0 / (1.0 + math.exp(-logit))
    return -(target * math.log(sig) + (1.0 - target) * math.log(1.0 - sig))


def test_recon_per_image_by_hand():
    logits = [[0.0, 2.0, -1.0, 3.0], [-2.0, 0.5, 0.0, -4.0]]
    targets = [[1.0, 1.0, 0.0, 0.3], [0.0, 1.0, 0.5, 1.0]]
    expected = [
        sum(_bce(lg, t) for lg, t in zip(lr, tr, strict=True)) for lr, tr in zip(logits, targets, strict=True)
    ]
    got = recon_per_image(
        torch.tensor(logits, dtype=torch.float64).view(2, 1, 2, 2),
        torch.tensor(targets, dtype=torch.float64).view(2, 1, 2, 2),
    )
    assert got.shape == (2,)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    # spot-check one term without the helper: logit 0, target 1 → log 2
    assert _bce(0.0, 1.0) == pytest.approx(math.log(2.0))


def test_recon_per_image_sums_over_all_784_pixels():
    logits = torch.zeros(3, 1, 28, 28)
    target = torch.ones(3, 1, 28, 28)
    torch.testing.assert_close(recon_per_image(logits, target), torch.full((3,), 784 * math.log(2.0)))


# ---------------------------------------------------------------- objective reductions

RECON = torch.tensor([100.0, 200.0])  # mean 150
KL_D = torch.tensor([[1.0, 2.0, 3.0], [3.0, 0.0, 1.0]])  # per-image sums 6, 4 → mean 5; per-dim means 2, 1, 2


def test_sum_reduction():
    assert objective(RECON, KL_D).item() == pytest.approx(150.0 + 5.0)
    assert objective(RECON, KL_D, reduction="sum").item() == pytest.approx(155.0)


def test_paper_reduction_divides_only_the_reconstruction_by_784():
    assert objective(RECON, KL_D, reduction="paper").item() == pytest.approx(150.0 / 784 + 5.0)
    assert objective(RECON, KL_D, reduction="paper", beta=0.5).item() == pytest.approx(150.0 / 784 + 2.5)


def test_beta_scales_the_rate():
    assert objective(RECON, KL_D, beta=2.0).item() == pytest.approx(150.0 + 10.0)
    assert objective(RECON, KL_D, beta=0.0).item() == pytest.approx(150.0)


def test_free_bits():
    # Σ_d max(λ, mean_batch KL_d): λ = 1.5 → max(1.5, 2) + max(1.5, 1) + max(1.5, 2) = 5.5
    assert objective(RECON, KL_D, free_bits=1.5).item() == pytest.approx(150.0 + 5.5)
    assert objective(RECON, KL_D, free_bits=1.5, beta=2.0).item() == pytest.approx(150.0 + 11.0)
    assert objective(RECON, KL_D, free_bits=1.5, reduction="paper").item() == pytest.approx(150.0 / 784 + 5.5)
    # every dimension above λ: the same as no free bits
    assert objective(RECON, KL_D, free_bits=0.5).item() == pytest.approx(155.0)
    # λ above every dimension: L·λ
    assert objective(RECON, KL_D, free_bits=4.0).item() == pytest.approx(150.0 + 12.0)


def test_free_bits_uses_the_batch_mean_per_dimension():
    # Dimension 0 is 0 for one image and 4 for the other: batch mean 2 > λ = 1, so no clamp there,
    # although a per-image clamp would have raised the 0 to 1.
    kl = torch.tensor([[0.0], [4.0]])
    assert objective(torch.zeros(2), kl, free_bits=1.0).item() == pytest.approx(2.0)


def test_objective_is_differentiable():
    recon = RECON.clone().requires_grad_()
    kl = KL_D.clone().requires_grad_()
    objective(recon, kl, reduction="paper", beta=2.0).backward()
    torch.testing.assert_close(recon.grad, torch.full((2,), 1 / (2 * 784)))
    torch.testing.assert_close(kl.grad, torch.full((2, 3), 2.0 / 2))


@pytest.mark.parametrize("bad", ["mean", "SUM", ""])
def test_unknown_reduction_raises(bad):
    with pytest.raises(ValueError) as err:
        objective(RECON, KL_D, reduction=bad)
    msg = str(err.value)
    assert repr(bad) in msg and "sum" in msg and "paper" in msg


# ---------------------------------------------------------------- KL warm-up


@pytest.mark.parametrize("progress", [0.0, 0.5, 3.0, 1000.0])
def test_beta_at_without_warmup_is_constant(progress):
    assert beta_at(0.7, 0, progress) == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("progress", "expected"),
    [(0.0, 0.0), (2.5, 0.5 * 2.5 / 10), (5.0, 0.25), (10.0, 0.5), (15.0, 0.5), (1e6, 0.5)],
)
def test_beta_at_linear_ramp(progress, expected):
    assert beta_at(0.5, 10, progress) == pytest.approx(expected)


def test_beta_at_fractional_warmup():
    assert beta_at(2.0, 0.5, 0.25) == pytest.approx(1.0)
    assert beta_at(2.0, 0.5, 0.75) == pytest.approx(2.0)


# ---------------------------------------------------------------- likelihoods (data.likelihood)
# Known answers in float64 (the formulas are exact there to ~1e-15 of their terms; 1e-10 leaves room for
# torch's own series near λ = ½, accurate to (λ − ½)⁶ < 1e-18 inside its window |λ − ½| < 0.001).
# Logits span the continuous Bernoulli's series window (|o| < 1e-3) and both tails.
LOGITS = torch.tensor(
    [-30.0, -6.0, -1.0, -1e-3, -2e-4, 0.0, 3e-4, 9e-4, 1.1e-3, 0.5, 4.0, 25.0], dtype=torch.float64
)
PIXELS = torch.tensor([0.0, 1 / 255, 0.13, 0.5, 0.87, 254 / 255, 1.0], dtype=torch.float64)


def _grid():
    """Every logit against every pixel: (12, 7) each."""
    return torch.meshgrid(LOGITS, PIXELS, indexing="ij")


def _reference(likelihood: str, o: torch.Tensor, x: torch.Tensor, log_scale: torch.Tensor):
    from torch.distributions import ContinuousBernoulli

    mean = torch.sigmoid(o)
    return {
        "continuous_bernoulli": lambda: ContinuousBernoulli(logits=o).log_prob(x),
        "gaussian": lambda: Normal(mean, GAUSSIAN_SIGMA).log_prob(x),
        "gaussian_learned": lambda: Normal(mean, log_scale.exp()).log_prob(x),
    }[likelihood]()


@pytest.mark.parametrize("log_scale", [-3.0, 0.0, 1.5])
@pytest.mark.parametrize("likelihood", ["continuous_bernoulli", "gaussian", "gaussian_learned"])
def test_each_continuous_likelihood_is_torch_distributions_log_density(likelihood, log_scale):
    """Beyond |o| = 6 torch's continuous Bernoulli loses digits (it takes log1p(−λ) of λ = σ(o) rounded
    to float64: a relative 1e-5 at o = 25), so there the tails are held to integrating to one, below."""
    o, x = _grid()
    if likelihood == "continuous_bernoulli":
        o, x = o[o[:, 0].abs() <= 6], x[o[:, 0].abs() <= 6]
    ls = torch.tensor(log_scale, dtype=torch.float64)
    got = -nll_pixels(likelihood, o, x, ls)
    torch.testing.assert_close(got, _reference(likelihood, o, x, ls), rtol=1e-10, atol=1e-10)


def test_bernoulli_is_torch_distributions_on_binary_pixels_and_recon_sums_it_per_image():
    from torch.distributions import Bernoulli

    o = LOGITS.reshape(1, 1, 3, 4)
    x = (torch.arange(12, dtype=torch.float64).reshape(1, 1, 3, 4) % 3 == 0).double()
    want = Bernoulli(logits=o).log_prob(x)
    torch.testing.assert_close(-nll_pixels("bernoulli", o, x), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(recon_per_image(o, x, "bernoulli"), -want.sum().reshape(1))


def _logistic_bin_mass(k: int, mean: float, log_s: float) -> float:
    """The mass of pixel value k/255 by direct numeric integration of the logistic density over its bin
    (scipy's adaptive quadrature; the end bins integrate over half-lines)."""
    from scipy.integrate import quad

    s = math.exp(log_s)

    def pdf(t):
        u = (t - mean) / s
        return math.exp(-abs(u)) / (s * (1 + math.exp(-abs(u))) ** 2)  # symmetric form, no overflow

    lo = -math.inf if k == 0 else (k - 0.5) / 255
    hi = math.inf if k == 255 else (k + 0.5) / 255
    points = [mean] if lo < mean < hi and math.isfinite(lo) and math.isfinite(hi) else None
    return quad(pdf, lo, hi, points=points, epsabs=0, epsrel=1e-12, limit=200)[0]


@pytest.mark.parametrize(
    ("mean_logit", "log_s"),
    [(0.0, -3.0), (-2.5, -5.0), (3.0, -1.0), (0.7, 1.0), (-4.0, -7.0)],
    ids=["mid-narrow", "dark-very-narrow", "bright-wide", "mid-very-wide", "dark-sharp"],
)
def test_the_discretised_logistic_is_the_bin_integral_of_the_logistic_density(mean_logit, log_s):
    """Known answer by numeric integration over each pixel's bin; pixels at both end bins, beside the
    mean and far from it (masses down to ~1e-300 where the bin is far in a sharp tail are compared
    relatively, as logs)."""
    ks = [0, 1, 2, 30, 64, 127, 128, 200, 253, 254, 255]
    o = torch.full((len(ks),), mean_logit, dtype=torch.float64)
    x = torch.tensor(ks, dtype=torch.float64) / 255
    got = -nll_pixels("logistic", o, x, torch.tensor(log_s, dtype=torch.float64))
    mean = float(torch.sigmoid(torch.tensor(mean_logit, dtype=torch.float64)))
    for k, g in zip(ks, got.tolist(), strict=True):
        mass = _logistic_bin_mass(k, mean, log_s)
        if mass > 1e-250:  # quad's absolute floor; the log-space formula goes on far below it
            assert g == pytest.approx(math.log(mass), rel=1e-8, abs=1e-9), k


@pytest.mark.parametrize("log_s", [-6.0, -2.0, 0.5])
@pytest.mark.parametrize("mean_logit", [-3.0, 0.0, 1.2])
def test_the_discretised_logistic_sums_to_one_over_the_256_pixel_values(mean_logit, log_s):
    x = torch.arange(256, dtype=torch.float64) / 255
    o = torch.full_like(x, mean_logit)
    total = torch.logsumexp(-nll_pixels("logistic", o, x, torch.tensor(log_s, dtype=torch.float64)), 0)
    assert float(total) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("logit", [-30.0, -2.0, -5e-4, 0.0, 5e-4, 2e-3, 3.0, 25.0])
def test_the_continuous_bernoulli_integrates_to_one_on_the_unit_interval(logit):
    from scipy.integrate import quad

    o = torch.tensor(logit, dtype=torch.float64)

    def density(t):
        return math.exp(-float(nll_pixels("continuous_bernoulli", o, torch.tensor(t, dtype=torch.float64))))

    assert quad(density, 0.0, 1.0, epsabs=0, epsrel=1e-12)[0] == pytest.approx(1.0, rel=1e-9)


def test_the_continuous_bernoulli_mean_and_gradient_at_and_near_a_logit_of_zero():
    from torch.distributions import ContinuousBernoulli

    o = LOGITS.clone().requires_grad_(True)
    torch.testing.assert_close(decoder_mean("continuous_bernoulli", o), ContinuousBernoulli(logits=o).mean)
    nll_pixels("continuous_bernoulli", o, torch.full_like(o, 0.3)).sum().backward()
    assert torch.isfinite(o.grad).all()
    torch.testing.assert_close(decoder_mean("gaussian", o), torch.sigmoid(o))


@pytest.mark.parametrize("likelihood", [lk for lk in LIKELIHOODS if lk != "bce"])
def test_float32_agrees_with_float64_to_its_rounding(likelihood):
    """In float32 each pixel's term errs by a few ulps of the terms it is made of; those are bounded by
    |term| + |log scale| + 10 (the logit's size, log 2π, the bin width's log): 8·2⁻²³ of that."""
    o, x = _grid()
    ls = torch.tensor(-2.0, dtype=torch.float64)
    x = (x * 255).round() / 255  # the logistic's pixel values
    o = o.clamp(-15, 15)
    want = nll_pixels(likelihood, o, x, ls)
    got = nll_pixels(likelihood, o.float(), x.float(), ls.float()).double()
    tol = 8 * 2.0**-23 * (want.abs() + 2.0 + 15 + 10)
    assert ((got - want).abs() <= tol).all(), (got - want).abs().max()


def test_an_unknown_likelihood_is_refused_by_name():
    with pytest.raises(ValueError, match="data.likelihood='gauss' is unknown; valid: bernoulli, bce"):
        nll_pixels("gauss", LOGITS, LOGITS)


def test_bits_per_dim_is_nats_over_784_ln_2():
    assert bits_per_dim(784 * math.log(2.0)) == pytest.approx(1.0)
