"""The one loss: KL, reconstruction, objective reductions and the KL warm-up, on hand-checked values."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from sweep.losses import beta_at, kl_per_dim, objective, recon_per_image

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
