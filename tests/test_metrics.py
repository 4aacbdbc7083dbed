"""Known-answer tests for sweep.metrics: each compares a metric with a value computed another way."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from sweep import thresholds
from sweep.losses import kl_per_dim, recon_per_image
from sweep.metrics import (
    active_dims,
    active_units,
    collapse_flags,
    flops_per_image,
    iwae_nll,
    kl_per_dim_mean,
    mu_variance,
    mutual_information,
    mutual_information_ceiling,
    pca_silhouette,
    probe_accuracies,
    psnr,
    vae_flops,
)
from sweep.models import VAE, Spec, SpecError

P = 784
GRID = torch.linspace(-8.0, 8.0, 4001, dtype=torch.float64)  # quadrature grid over a 1-D latent


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class StandIn(nn.Module):
    """Anything with ``.encoder`` (x → (mu, logvar)) and ``.decoder`` (z → logits (B, 1, 28, 28))."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder


class ConstantDecoder(nn.Module):
    """Logits that ignore z, so p(x|z) = p(x) = Π Bern(x | sigmoid(b))."""

    def __init__(self, b: torch.Tensor):
        super().__init__()
        self.b = b

    def forward(self, z):
        return self.b.float().expand(z.shape[0], P).reshape(-1, 1, 28, 28)


class PriorEncoder(nn.Module):
    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, x):
        zeros = x.new_zeros(x.shape[0], self.latent_dim)
        return zeros, zeros


class LinearDecoder(nn.Module):
    """1-D latent: logits = z·w + b over the 784 pixels."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, z):
        return (z.double() * self.w + self.b).float().reshape(-1, 1, 28, 28)


def log_lik_on_grid(w, b, x):
    """log p(x | z_g) for every grid point: (n, G) float64."""
    logits = GRID[:, None] * w + b  # (G, P)
    return x.flatten(1).double() @ logits.T - F.softplus(logits).sum(1)


def exact_log_px(w, b, x):
    """log ∫ N(z; 0, 1) p(x|z) dz by the trapezoid rule on GRID: (n,) float64."""
    log_joint = log_lik_on_grid(w, b, x) - 0.5 * (GRID**2 + math.log(2 * math.pi))
    dz = float(GRID[1] - GRID[0])
    log_wts = torch.full_like(GRID, math.log(dz))
    log_wts[[0, -1]] = math.log(dz / 2)
    return torch.logsumexp(log_joint + log_wts, dim=1)


class MisfitPosteriorEncoder(nn.Module):
    """q(z|x) = N(posterior mean + shift·sd, var_mult·posterior var), moments by quadrature."""

    def __init__(self, w, b, shift: float, var_mult: float):
        super().__init__()
        self.w, self.b, self.shift, self.var_mult = w, b, shift, var_mult

    def forward(self, x):
        post = torch.softmax(log_lik_on_grid(self.w, self.b, x) - 0.5 * GRID**2, dim=1)
        mean = post @ GRID
        var = post @ GRID**2 - mean**2
        mu = mean + self.shift * var.sqrt()
        return mu[:, None].float(), torch.log(self.var_mult * var)[:, None].float()


@pytest.fixture(scope="module")
def linear_gaussian_case():
    torch.manual_seed(0)
    w = 0.1 * torch.randn(P, dtype=torch.float64)
    b = 0.5 * torch.randn(P, dtype=torch.float64)
    z = torch.randn(16, 1, dtype=torch.float64)
    x = torch.bernoulli(torch.sigmoid(z * w + b)).float().reshape(-1, 1, 28, 28)
    model = StandIn(MisfitPosteriorEncoder(w, b, shift=0.5, var_mult=1.5), LinearDecoder(w, b))
    return model, x, -exact_log_px(w, b, x)


@pytest.fixture(scope="module")
def tiny_vae():
    torch.manual_seed(1)
    model = VAE(Spec("dense", 1, 16), Spec("dense", 1, 16), 4)
    x = torch.bernoulli(torch.full((24, 1, 28, 28), 0.3))
    return model, x


# ---------------------------------------------------------------- IWAE


def test_iwae_exact_when_q_is_prior_and_decoder_ignores_z():
    # log w_k = log p(x) + log p(z_k) − log q(z_k|x) = log p(x) exactly, for every sample and every K.
    torch.manual_seed(0)
    b = torch.randn(P)
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.5))
    exact_nll = F.binary_cross_entropy_with_logits(b.expand(5, P), x.flatten(1), reduction="none").sum(1)
    model = StandIn(PriorEncoder(2), ConstantDecoder(b))
    for k in (1, 7, 300):
        est = iwae_nll(model, x, k=k, generator=gen(0), sample_chunk=50)
        assert est.shape == (5,) and est.dtype == torch.float64
        torch.testing.assert_close(est, exact_nll.double(), atol=1e-4, rtol=0)


def test_iwae_converges_to_quadrature_log_likelihood(linear_gaussian_case):
    model, x, exact_nll = linear_gaussian_case
    errs = {}
    for k in (1, 10, 1000, 3000):
        est = iwae_nll(model, x, k=k, generator=gen(0))
        errs[k] = (est - exact_nll).abs()
    mean_err = {k: float(e.mean()) for k, e in errs.items()}
    assert mean_err[1] > mean_err[10] > mean_err[1000] > mean_err[3000], mean_err
    assert mean_err[1] > 0.1  # the misfit proposal makes K = 1 visibly loose
    # measured: mean |error| 0.006, max 0.015 nats at K = 3000 (log p(x) ≈ −500 nats)
    assert mean_err[3000] < 0.02 and float(errs[3000].max()) < 0.05, mean_err


def test_iwae_k1_is_the_elbo_and_large_k_is_tighter(tiny_vae):
    model, x = tiny_vae
    reps = 200
    with torch.no_grad():
        xr = x.repeat(reps, 1, 1, 1)
        logits, mu, logvar = model(xr, generator=gen(1))
        neg_elbo = (recon_per_image(logits, xr) + kl_per_dim(mu, logvar).sum(1)).double()
    # K = 1 is an unbiased one-sample estimate of −ELBO (sampled rather than analytic KL)
    k1 = iwae_nll(model, xr, k=1, generator=gen(2))
    se = float(torch.sqrt(k1.var() / len(k1) + neg_elbo.var() / len(neg_elbo)))
    assert abs(float(k1.mean() - neg_elbo.mean())) < 4 * se, (float(k1.mean()), float(neg_elbo.mean()), se)
    # IWAE with K = 500 is a tighter bound: NLL estimate < −ELBO (measured gap ≈ 4.2 nats, SE ≈ 0.1)
    k500 = iwae_nll(model, x, k=500, generator=gen(3))
    assert float(k500.mean()) < float(neg_elbo.mean()) - 1.0


def test_iwae_is_chunk_invariant_and_deterministic(tiny_vae):
    model, x = tiny_vae
    a = iwae_nll(model, x, k=37, generator=gen(5), image_chunk=100, sample_chunk=500)
    b = iwae_nll(model, x, k=37, generator=gen(5), image_chunk=5, sample_chunk=4)
    c = iwae_nll(model, x, k=37, generator=gen(5), image_chunk=100, sample_chunk=500)
    d = iwae_nll(model, x, k=37, generator=gen(6))
    # same z per (image, sample) whatever the chunking; float32 rounding of the decoder only (NLL ≈ 550)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-6)
    assert torch.equal(a, c)
    assert float((a - d).abs().max()) > 1e-2  # a different seed gives visibly different estimates
    assert model.training  # train/eval state restored


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_iwae_rejects_bad_k(tiny_vae, bad):
    model, x = tiny_vae
    with pytest.raises(ValueError, match=r"k=.*valid: an integer >= 1"):
        iwae_nll(model, x, k=bad, generator=gen(0))


# ---------------------------------------------------------------- per-dimension KL, active units, collapse


def test_kl_per_dim_mean_matches_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(50, 6), torch.randn(50, 6)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).mean(0)
    got = kl_per_dim_mean(mu, logvar)
    assert got.shape == (6,)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_mu_variance_is_population_variance():
    mu = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    torch.testing.assert_close(mu_variance(mu), torch.tensor([1.0, 0.0], dtype=torch.float64))


def test_thresholds_are_named():
    assert thresholds.THRESHOLDS == {
        "active_unit_threshold": 0.01,
        "collapse_rate_threshold": 0.1,
        "paper_collapse_threshold": 1e-6,
    }


def test_all_prior_posterior_is_collapsed():
    mu, logvar = torch.zeros(200, 8), torch.zeros(200, 8)
    rate = float(kl_per_dim_mean(mu, logvar).sum())
    n_active = active_units(mu)
    assert rate == 0.0 and n_active == 0
    assert collapse_flags(rate, n_active, 8) == {"collapsed": True, "partial": False, "paper_collapsed": True}


def test_half_active_is_partial_and_all_active_is_not():
    torch.manual_seed(0)
    strong, weak = torch.randn(500, 3), 0.01 * torch.randn(500, 3)  # Var ≈ 1 vs ≈ 1e-4
    half = torch.cat([strong, weak], dim=1)
    assert active_units(half) == 3
    assert active_dims(half).tolist() == [True] * 3 + [False] * 3
    assert active_units(half, threshold=1e-6) == 6
    rate = float(kl_per_dim_mean(half, torch.zeros_like(half)).sum())
    assert collapse_flags(rate, 3, 6) == {"collapsed": False, "partial": True, "paper_collapsed": False}
    full = torch.randn(500, 6)
    assert active_units(full) == 6
    assert collapse_flags(3.0, 6, 6)["partial"] is False


def test_collapse_flag_thresholds():
    assert collapse_flags(0.05, 0, 4) == {"collapsed": True, "partial": False, "paper_collapsed": False}
    assert collapse_flags(0.5, 0, 4)["collapsed"] is False  # rate above 0.1 nats
    assert collapse_flags(0.05, 1, 4)["collapsed"] is False  # an active unit
    assert collapse_flags(5e-7, 0, 4)["paper_collapsed"] is True


# ---------------------------------------------------------------- mutual information


def gaussian_channel(n: int, latent: int, snr: float, seed: int):
    """Posteriors q(z|x) = N(x, 1) of n codes x ~ N(0, snr·I), (mu, logvar) each (n, latent), and the
    estimate's known answer with its tolerance. Over the continuous x, I(x; z) = L/2·log(1 + snr) (the
    Gaussian channel). One term of the estimate has variance L·ρ², ρ² = snr/(1 + snr) (the squared
    correlation of x_d and z_d), so its Monte Carlo standard error is sqrt(L·ρ²/n); the finite mixture
    (its own image among the n, and the log of an average) biases it by at most about
    E[q(z|x)/p(z)]/(n − 1) = (1 + snr)^L/(n − 1) per side. Tolerance: 5 standard errors plus twice that."""
    g = gen(seed)
    mu = math.sqrt(snr) * torch.randn((n, latent), generator=g, dtype=torch.float64)
    logvar = torch.zeros(n, latent, dtype=torch.float64)
    truth = latent / 2 * math.log1p(snr)
    tol = 5 * math.sqrt(latent * snr / (1 + snr) / n) + 2 * (1 + snr) ** latent / (n - 1)
    return mu, logvar, truth, tol


def separated(n: int = 300):
    """A 20 × 15 grid of means 5 apart, σ = exp(−5): each code identifies its image, MI = log n."""
    grid = torch.arange(n)
    return (
        5.0 * torch.stack([grid % 20, grid // 20], dim=1).float(),
        torch.full((n, 2), -10.0),
        math.log(n),
        1e-6,
    )


def identical(n: int = 400):
    """Every posterior the same: z says nothing about x, MI = 0 (up to rounding)."""
    mu = torch.tensor([0.3, -1.0, 2.0]).expand(n, 3)
    return mu, torch.tensor([0.0, -2.0, 1.0]).expand(n, 3), 0.0, 1e-9


MI_CASES = {
    "identical posteriors": identical,
    "separated posteriors": separated,
    "gaussian L=1 snr=4": lambda: gaussian_channel(2000, 1, 4.0, 1),
    "gaussian L=2 snr=1": lambda: gaussian_channel(2000, 2, 1.0, 2),
    "gaussian L=3 snr=0.5": lambda: gaussian_channel(2000, 3, 0.5, 3),
}


@pytest.mark.parametrize("case", MI_CASES)
def test_mi_known_answers_never_above_the_ceiling(case):
    mu, logvar, truth, tol = MI_CASES[case]()
    mi = mutual_information(mu, logvar, generator=gen(0), chunk=64)
    assert mi <= mutual_information_ceiling(len(mu)) + 1e-9
    assert abs(mi - truth) <= tol, (mi, truth, tol)


def test_mi_matches_brute_force_and_is_deterministic():
    torch.manual_seed(0)
    n, latent = 60, 3
    mu, logvar = torch.randn(n, latent), torch.randn(n, latent) - 1.0
    got = mutual_information(mu, logvar, generator=gen(7), chunk=7)
    # brute force with the same noise (the implementation's one randn((N, L), float64) draw)
    mu64, std = mu.double(), torch.exp(0.5 * logvar.double())
    z = mu64 + torch.randn((n, latent), dtype=torch.float64, generator=gen(7)) * std
    log_q = Normal(mu64[None], std[None]).log_prob(z[:, None]).sum(-1)  # (i, j) = log q(z_i | x_j)
    ref = float((log_q.diagonal() - (torch.logsumexp(log_q, dim=1) - math.log(n))).mean())
    assert abs(got - ref) < 1e-9
    assert got == mutual_information(mu, logvar, generator=gen(7), chunk=1000)
    assert 0.0 < got <= math.log(n)


# ---------------------------------------------------------------- latent quality


def balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % 10)


def test_probes_at_chance_on_random_latents():
    rng = np.random.default_rng(0)
    acc = probe_accuracies(
        rng.normal(size=(2000, 16)),
        balanced_labels(2000, rng),
        rng.normal(size=(1000, 16)),
        balanced_labels(1000, rng),
    )
    assert set(acc) == {"linear_probe_acc", "knn_acc"}
    assert acc["linear_probe_acc"] < 0.2 and acc["knn_acc"] < 0.2, acc


def test_probes_near_one_on_label_encoding_latents():
    rng = np.random.default_rng(1)
    y_tr, y_te = balanced_labels(2000, rng), balanced_labels(1000, rng)

    def encode(y):
        return torch.from_numpy(10.0 * np.eye(10)[y] + rng.normal(size=(len(y), 10))).float()

    acc = probe_accuracies(
        encode(y_tr), torch.from_numpy(y_tr), encode(y_te), torch.from_numpy(y_te), max_train=500
    )
    assert acc["linear_probe_acc"] > 0.98 and acc["knn_acc"] > 0.98, acc


def test_silhouette_separated_vs_random():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 60)
    centers = 20.0 * rng.normal(size=(3, 10))
    proj, score = pca_silhouette(centers[y] + 0.5 * rng.normal(size=(180, 10)), y)
    assert proj.shape == (180, 2) and proj.dtype == np.float32
    assert score > 0.8
    _, random_score = pca_silhouette(rng.normal(size=(180, 10)), y)
    assert random_score < 0.1


def test_silhouette_one_dimensional_latent():
    y = torch.arange(100) % 2
    mu = (10.0 * y + 0.1 * torch.randn(100, generator=gen(0)))[:, None]
    proj, score = pca_silhouette(mu, y)
    assert proj.shape == (100, 2) and np.all(proj[:, 1] == 0)
    assert score > 0.8


def test_psnr_known_answers():
    x = torch.rand(7, 1, 28, 28, generator=gen(0), dtype=torch.float64) * 0.8
    assert psnr(x + 0.1, x) == pytest.approx(20.0, abs=1e-6)
    assert psnr(x - 0.01, x) == pytest.approx(40.0, abs=1e-6)
    assert psnr(x, x) == math.inf


# ---------------------------------------------------------------- FLOPs


def test_flops_per_image_hand_counts():
    assert flops_per_image(nn.Linear(784, 512), torch.zeros(4, 784)) == 2 * 784 * 512
    mlp = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
    assert flops_per_image(mlp, torch.zeros(3, 784)) == 2 * (784 * 512 + 512 * 10)
    conv = nn.Conv2d(1, 8, 3, padding=1)
    assert flops_per_image(conv, torch.zeros(2, 1, 28, 28)) == 2 * 8 * 9 * 28 * 28


@pytest.mark.parametrize(
    "enc, dec", [(("dense", 2, 64), ("conv", 3, 16)), (("conv", 2, 8), ("dense", 1, 32))]
)
def test_vae_flops_counts_each_half_of_the_built_model_and_refuses_a_bad_spec(enc, dec):
    """``vae_flops`` counts an encoder (a decoder) once per spec and latent size: what it returns for a
    config is what counting the halves of that config's whole model gives, asked twice or not."""
    cfg = {"encoder": dict(zip(("kind", "depth", "width"), enc, strict=True)), "latent_dim": 6}
    cfg["decoder"] = dict(zip(("kind", "depth", "width"), dec, strict=True))
    model = VAE(Spec(*enc), Spec(*dec), 6)
    whole = (
        flops_per_image(model.encoder, torch.zeros(2, 1, 28, 28)),
        flops_per_image(model.decoder, torch.zeros(2, 6)),
    )
    assert vae_flops(cfg) == vae_flops(cfg) == whole and min(whole) > 0
    with pytest.raises(SpecError, match=r"decoder.depth=0 is out of range; valid: >= 1"):
        vae_flops({**cfg, "decoder": {**cfg["decoder"], "depth": 0}})
    with pytest.raises(SpecError, match=r"latent_dim=0 is out of range"):
        vae_flops({**cfg, "latent_dim": 0})
