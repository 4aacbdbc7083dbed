"""Pure metric functions for a trained VAE, as ``docs/protocol.md`` ("Metrics and definitions") defines
them. Torch, numpy and scikit-learn only; nothing here imports omegaconf or hydra.

Shapes: N images, L latent dimensions, K importance samples. Images are (N, 1, 28, 28); posterior
parameters ``mu`` and ``logvar`` are (N, L). All log-densities are in nats.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn

from sweep.losses import kl_per_dim
from sweep.models import BUILDERS, IMAGE_SHAPE, Spec, validate_latent
from sweep.stack import ModelAsStack, Stack
from sweep.thresholds import ACTIVE_UNIT_THRESHOLD, COLLAPSE_RATE_THRESHOLD, PAPER_COLLAPSE_THRESHOLD

_LOG_2PI = math.log(2.0 * math.pi)


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} is out of range; valid: an integer >= {minimum}")
    return value


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


# IWAE noise is drawn for this many images at a time (one randn((block, K, L)) call), so the draws do
# not depend on the image or sample chunks the computation uses (bounds the noise memory at K·L·block).
IWAE_NOISE_BLOCK = 10


class _NoiseStream:
    """Standard-normal IWAE noise for consecutive images, (n, K, L) at a time, drawn in blocks of
    ``IWAE_NOISE_BLOCK`` images from one generator whatever the n asked for."""

    def __init__(self, k: int, latent: int, generator, device, dtype):
        self.shape, self.generator, self.device, self.dtype = (k, latent), generator, device, dtype
        self.left: torch.Tensor | None = None

    def take(self, n: int) -> torch.Tensor:
        parts, have = [], 0
        while have < n:
            if self.left is None or len(self.left) == 0:
                self.left = torch.randn(
                    (IWAE_NOISE_BLOCK, *self.shape),
                    device=self.device,
                    dtype=self.dtype,
                    generator=self.generator,
                )
            part, self.left = self.left[: n - have], self.left[n - have :]
            parts.append(part)
            have += len(part)
        return parts[0] if len(parts) == 1 else torch.cat(parts)


@torch.no_grad()
def iwae_nll(
    model,
    x: torch.Tensor,
    *,
    k: int,
    generator: torch.Generator | None,
    image_chunk: int = 100,
    sample_chunk: int = 500,
) -> torch.Tensor:
    """Per-image IWAE NLL estimate (Burda et al. 2016; docs/protocol.md "IWAE NLL"), in nats.

    ``−log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x)`` with z_k ~ q(z|x) = N(μ(x), σ²(x)), where
    ``log p(x|z) = −Σ_pixels nll_pixels(likelihood, decoder(z), x)`` (:mod:`sweep.losses`; the model's
    ``likelihood``, Bernoulli unless it says otherwise), p(z) = N(0, I) and q is the encoder's
    diagonal Gaussian. ``model``: a module with ``encoder`` and ``decoder`` (→ (N,) float64 nats on x's
    device), or a :class:`~sweep.stack.Stack` of S models (→ (S, N), all members evaluated at once).
    x: (N, 1, 28, 28) targets (binary for Bernoulli). It upper-bounds −log p(x) in expectation and tightens as K grows
    (K=1 is a one-sample −ELBO).

    Noise: standard-normal ε, (K, L) per image, drawn for ``IWAE_NOISE_BLOCK`` images at a time in
    image order, shared by the members of a stack (z = μ + ε·σ per member), so z for image i, sample k
    depends only on the generator's state, never on ``image_chunk``, ``sample_chunk`` or the stack
    (results agree across chunk sizes up to float rounding). ``generator`` must live on x's device.

    Memory: the decoder runs on S · image_chunk · sample_chunk latents at a time, so logits take about
    that many times 784 floats (plus the decoder's own activations); the noise for an image chunk takes
    max(image_chunk, IWAE_NOISE_BLOCK)·K·L floats. log w is summed per chunk with ``torch.logsumexp``
    and chunks are combined with ``torch.logaddexp`` in float64.
    """
    _positive_int("k", k)
    _positive_int("image_chunk", image_chunk)
    _positive_int("sample_chunk", sample_chunk)
    is_stack = isinstance(model, Stack)
    stack = model if is_stack else ModelAsStack(model)
    was_training = getattr(model, "training", False)
    if not is_stack:
        model.eval()
    noise, out = None, []
    for i in range(0, x.shape[0], image_chunk):
        xc = x[i : i + image_chunk]
        n = xc.shape[0]
        target = xc.flatten(1)  # (n, P)
        mu, logvar = stack.encode(xc)  # (S, n, L) each
        s_, latent = mu.shape[0], mu.shape[2]
        if noise is None:
            noise = _NoiseStream(k, latent, generator, mu.device, mu.dtype)
        eps = noise.take(n)  # (n, K, L)
        std = torch.exp(0.5 * logvar)
        acc = torch.full((s_, n), -math.inf, dtype=torch.float64, device=mu.device)
        for s in range(0, k, sample_chunk):
            log_w = _log_weights(stack, mu, logvar, std, eps[:, s : s + sample_chunk], target)
            acc = torch.logaddexp(acc, torch.logsumexp(log_w, dim=2))
        out.append(math.log(k) - acc)
    if not is_stack:
        model.train(was_training)
    nll = torch.cat(out, dim=1)
    return nll if is_stack else nll[0]


def _log_weights(stack, mu, logvar, std, e: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log w = log p(x|z) + log p(z) − log q(z|x) at z = μ + ε·σ, float64 (S, n, m). mu, logvar, std:
    (S, n, L); e: the noise ε, (n, m, L); target: the images flattened, (n, P)."""
    s_, n, latent = mu.shape
    m = e.shape[1]
    z = mu[:, :, None] + e * std[:, :, None]  # (S, n, m, L)
    logits = stack.decode(z.reshape(s_, n * m, latent)).reshape(s_, n, m, -1)  # (S, n, m, P)
    log_px_z = -stack.nll_pixels(logits.float(), target[None, :, None].expand_as(logits)).sum(-1)
    log_pz = -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)
    log_qz_x = -0.5 * (e.pow(2) + _LOG_2PI + logvar[:, :, None]).sum(-1)  # (z−μ)/σ = ε exactly
    return (log_px_z + log_pz - log_qz_x).double()


def kl_per_dim_mean(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-dimension rate (docs/protocol.md "Per-dimension KL"):
    KL_d = E_x[½(μ_d² + σ_d² − 1 − log σ_d²)].

    mu, logvar: (N, L) over the evaluation set → (L,) nats, the mean over images; sums to the rate.
    """
    return kl_per_dim(mu, logvar).mean(0)


def mu_variance(mu: torch.Tensor) -> torch.Tensor:
    """Var_x(μ_d(x)) over the data (docs/protocol.md "Active units"; Burda et al. 2016 use Cov_x(E_q[z])).

    mu: (N, L) → (L,) float64. Population variance (divides by N, ``correction=0``); at N = 10k the
    difference from the unbiased estimate is 1e-4 relative, far below the threshold's resolution.
    """
    return mu.double().var(0, correction=0)


def active_dims(mu: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> torch.Tensor:
    """Which units are active (Burda et al. 2016; docs/protocol.md "Active units"): Var_x(μ_d) > threshold.

    mu: (N, L) posterior means over the test set → (L,) bool.
    """
    return mu_variance(mu) > threshold


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Number of active units: how many of :func:`active_dims` are true.

    mu: (N, L) posterior means over the test set → int in [0, L].
    """
    return int(active_dims(mu, threshold).sum())


@torch.no_grad()
def mutual_information(
    mu: torch.Tensor, logvar: torch.Tensor, *, generator: torch.Generator | None, chunk: int = 1000
) -> float:
    """I_q(x; z) in nats: the mean of :func:`mutual_information_terms`."""
    return float(mutual_information_terms(mu, logvar, generator=generator, chunk=chunk).mean())


def mutual_information_terms(
    mu: torch.Tensor, logvar: torch.Tensor, *, generator: torch.Generator | None, chunk: int = 1000
) -> torch.Tensor:
    """The per-image terms whose mean estimates I_q(x; z) = E_x E_{q(z|x)}[log q(z|x) − log q(z)] (He et al. 2019; docs/protocol.md
    "Mutual information").

    q(z) = (1/N) Σ_n q(z|x_n) is the aggregate posterior over all N given posteriors; mu, logvar: (N, L).
    One z_n ~ q(z|x_n) per image (one ``randn((N, L), generator=generator)`` draw, on mu's device). Both
    log q(z_n|x_n) and log q(z_n) are evaluated at that sample, so since q(z_n) ≥ q(z_n|x_n)/N every
    term, and the estimate, is ≤ log N by construction, up to rounding (He et al.'s code uses the analytic entropy for
    the first term instead; the expectations agree). log q(z) for a chunk of samples is a logsumexp over
    the N posteriors, with the squared distances expanded into matrix products in float64 (after
    centring on the mean μ), so memory is O(chunk × N), never O(N² × L); the expansion's rounding error
    is about 1e-16·(|z − mean μ|/σ)² nats, negligible unless means sit ~1e5 σ from the centre.
    Returns the N terms log q(z_n|x_n) − log q(z_n), float64 nats (N,): their mean is the estimate,
    their standard deviation / √N its Monte Carlo standard error.
    """
    _positive_int("chunk", chunk)
    mu, logvar = mu.double(), logvar.double()
    n, latent = mu.shape
    eps = torch.randn(mu.shape, device=mu.device, dtype=torch.float64, generator=generator)
    z = mu + eps * torch.exp(0.5 * logvar)
    center = mu.mean(0)  # log q(z|x) is translation invariant; centring reduces cancellation below
    mu, z = mu - center, z - center
    log_q_own = -0.5 * (eps.pow(2) + _LOG_2PI + logvar).sum(1)  # log q(z_n | x_n), (N,)
    inv_var = torch.exp(-logvar)  # (N, L)
    # log q(z_i|x_j) = −½ [Σ_d z_id²/σ_jd² − 2 z_id μ_jd/σ_jd² + μ_jd²/σ_jd² + log σ_jd² + log 2π]
    const = (mu.pow(2) * inv_var + logvar).sum(1) + latent * _LOG_2PI  # (N,)
    log_q_agg = []
    for i in range(0, n, chunk):
        zc = z[i : i + chunk]  # (C, L)
        quad = zc.pow(2) @ inv_var.T - 2.0 * zc @ (mu * inv_var).T + const  # (C, N)
        log_q_agg.append(torch.logsumexp(-0.5 * quad, dim=1) - math.log(n))
    return log_q_own - torch.cat(log_q_agg)


def mutual_information_ceiling(n: int) -> float:
    """log N, the most :func:`mutual_information` can return over N posteriors (nats): each of its terms
    is log N + log p(n | z_n), p(n | z_n) = q(z_n|x_n) / Σ_j q(z_n|x_j) ≤ 1 the share of the aggregate
    posterior's density at z_n that its own image holds. It is also I_q(x; z) of N distinct images
    whose codes identify each one for certain, so an estimate near it says how many images were
    pooled, not how much the code carries (``analysis.mi`` flags those)."""
    return math.log(_positive_int("n", n))


def collapse_flags(rate: float, n_active: int, latent_dim: int) -> dict[str, bool]:
    """Collapse flags (docs/protocol.md "Collapse flags"); ``rate`` in nats per image.

    ``collapsed``: no active unit and rate < COLLAPSE_RATE_THRESHOLD; ``partial``: some but not all of
    the ``latent_dim`` units active; ``paper_collapsed``: rate < PAPER_COLLAPSE_THRESHOLD.
    """
    return {
        "collapsed": bool(n_active == 0 and rate < COLLAPSE_RATE_THRESHOLD),
        "partial": bool(0 < n_active < latent_dim),
        "paper_collapsed": bool(rate < PAPER_COLLAPSE_THRESHOLD),
    }


def probe_accuracies(
    mu_train,
    y_train,
    mu_test,
    y_test,
    *,
    seed: int = 0,
    knn_k: int = 5,
    max_train: int | None = 10000,
) -> dict[str, float]:
    """Latent quality (docs/protocol.md "Latent quality"): digit-label accuracy from μ on the test set.

    mu_train (N_train, L), y_train (N_train,), mu_test (N_test, L), y_test (N_test,); numpy arrays or
    tensors. Both classifiers are fit on the training μ, subsampled without replacement to
    ``max_train`` rows by ``np.random.default_rng(seed)`` when larger (None keeps all), and scored on
    the test μ: ``linear_probe_acc`` from StandardScaler + multinomial LogisticRegression (lbfgs,
    max_iter=2000), ``knn_acc`` from KNeighborsClassifier(n_neighbors=knn_k).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _positive_int("knn_k", knn_k)
    xtr, ytr, xte, yte = (_numpy(a) for a in (mu_train, y_train, mu_test, y_test))
    xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
    if max_train is not None and len(xtr) > max_train:
        keep = np.sort(np.random.default_rng(seed).choice(len(xtr), size=max_train, replace=False))
        xtr, ytr = xtr[keep], ytr[keep]
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    knn = KNeighborsClassifier(n_neighbors=knn_k)
    return {
        "linear_probe_acc": float(linear.fit(xtr, ytr).score(xte, yte)),
        "knn_acc": float(knn.fit(xtr, ytr).score(xte, yte)),
    }


def pixel_knn_accuracy(dataset: str, *, n_train: int = 10_000, knn_k: int = 5) -> float:
    """The kNN probe of :func:`probe_accuracies` on ``dataset``'s pixels instead of a latent: fit on the
    intensities of the first ``n_train`` training images of the default split (split_seed 0, 10,000
    held out), scored on the test images. The reference C6's separability bar is relative to
    (``analysis.latent_claims.PIXEL_KNN``, docs/protocol.md "Claims check")."""
    from sklearn.neighbors import KNeighborsClassifier

    from sweep.data import load_mnist

    data = load_mnist("cpu", dataset=dataset)
    xtr, ytr = data.train.x[:n_train].flatten(1).numpy(), data.train.y[:n_train].numpy()
    xte, yte = data.test.x.flatten(1).numpy(), data.test.y.numpy()
    return float(KNeighborsClassifier(n_neighbors=knn_k).fit(xtr, ytr).score(xte, yte))


def pca_silhouette(mu, y) -> tuple[np.ndarray, float]:
    """2-D PCA of μ and the silhouette of that projection by digit label (docs/protocol.md "Latent quality").

    mu: (N, L), y: (N,), numpy or tensors → (projection (N, 2) float32, silhouette in [−1, 1]).
    PCA uses the full SVD (deterministic, signs fixed by scikit-learn's svd_flip). With L = 1 the
    projection is the centred 1-D μ, the silhouette is computed on it, and a zero column pads it to
    (N, 2). The silhouette (Euclidean) is NaN when y has fewer than 2 or more than N − 1 labels.
    """
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    m, labels = _numpy(mu).astype(np.float64), _numpy(y)
    m = m.reshape(len(m), -1)
    n_comp = min(2, m.shape[1])
    proj = PCA(n_components=n_comp, svd_solver="full").fit_transform(m)
    n_labels = len(np.unique(labels))
    score = float(silhouette_score(proj, labels)) if 2 <= n_labels <= len(m) - 1 else float("nan")
    if n_comp < 2:
        proj = np.concatenate([proj, np.zeros((len(proj), 2 - n_comp))], axis=1)
    return proj.astype(np.float32), score


def psnr(probs: torch.Tensor, x: torch.Tensor) -> float:
    """PSNR in dB of the decoder mean against continuous images: 10·log10(1 / MSE), peak 1.

    probs: sigmoid(logits) in [0, 1], x: images in [0, 1], same shape, e.g. (N, 1, 28, 28). The MSE is
    dataset-level (one mean over all pixels of all images, in float64), not a mean of per-image PSNRs.
    A perfect reconstruction gives +inf.
    """
    mse = float((probs.double() - x.double()).pow(2).mean())
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


@torch.no_grad()
def flops_per_image(module: nn.Module, example_input: torch.Tensor) -> int:
    """Forward FLOPs per image, counted by ``torch.utils.flop_counter.FlopCounterMode``.

    example_input: a batch (B, ...) → total FLOPs of ``module(example_input)`` // B. Torch's counter
    counts a (m×k)@(k×n) matmul (and so a Linear without its bias) as 2·m·k·n and convolutions alike;
    bias adds, activations, normalisation and elementwise ops are not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        module(example_input)
    return int(counter.get_total_flops()) // int(example_input.shape[0])


def vae_flops(cfg) -> tuple[int, int]:
    """Forward FLOPs per image of a run's (encoder, decoder), from its config (``encoder``, ``decoder``,
    ``latent_dim``), counted on the meta device: no weights are made or touched. An encoder's count
    depends only on its spec and the latent size (a decoder's alike), so each is counted once per
    process: a grid of E encoders × D decoders costs E + D counts, not 2·E·D."""
    latent = validate_latent(cfg["latent_dim"])
    enc, dec = Spec(**cfg["encoder"]).validate("encoder"), Spec(**cfg["decoder"]).validate("decoder")
    return _part_flops(enc, latent, 0), _part_flops(dec, latent, 1)


@functools.lru_cache(maxsize=4096)
def _part_flops(spec: Spec, latent_dim: int, part: int) -> int:
    """FLOPs per image of one half of a VAE: ``part`` 0 is the encoder (on an image), 1 the decoder."""
    with torch.device("meta"):
        net = BUILDERS[spec.kind][part](spec, latent_dim).eval()  # BatchNorm takes a batch of one
        x = torch.empty(1, *IMAGE_SHAPE) if part == 0 else torch.empty(1, latent_dim)
    return flops_per_image(net, x)
