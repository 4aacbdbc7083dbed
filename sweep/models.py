"""Encoders and decoders built from a tiny spec, exactly as ``docs/protocol.md`` ("Architectures") defines
them.

A spec is ``(kind, depth, width, activation)``; depth is a loop count. ``BUILDERS`` maps each kind to
its builder, and that dict is the whole registry:

* ``dense`` encoder: ``depth`` × [Linear(·, width) + act] on the flattened image, then the Gaussian head.
  ``dense`` decoder: ``depth`` × [Linear(·, width) + act] from z, then Linear(width, 784) logits.
* ``conv`` encoder: ``depth`` × [Conv2d(k=5, s=2, p=2) + act], channels width·(1, 2, 4, 8, 8)
  (32, 64, 128, 256, 256 at the default width 32), spatial 28→14→7→4→2→1, flatten, Gaussian head.
  ``conv`` decoder: Linear(L, C·s·s) + act, reshape, then ``depth`` ConvTranspose2d(k=5, s=2, p=2)
  mirroring the encoder (1→2→4→7→14→28, output_padding chosen per step), act between, 1 logit channel.

Every encoder returns ``(mu, logvar)``, each (B, L), through the one :class:`GaussianHead`; every
decoder maps z (B, L) to logits (B, 1, 28, 28). Nothing here imports omegaconf.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

IMAGE_SHAPE = (1, 28, 28)
N_PIXELS = 784
CONV_MAX_DEPTH = 5
CONV_CHANNEL_MULT = (1, 2, 4, 8, 8)  # × width: 32, 64, 128, 256, 256 at width 32
CONV_SIZES = (28, 14, 7, 4, 2, 1)  # spatial size after 0..5 stride-2 blocks
# The most parameters a run may have: training holds each four times in fp32 (weights, gradients,
# Adam's two moments), so 2**28 is 4 GiB a run, 128 GiB for a cohort of 32 stacked runs on a GPU; the
# largest model of the grids here has 9.0·10**6 (dense16 both ways at latent_dim 200). A config beyond it
# would only fail allocating, after its run directory was written (latent_dim=10**10: 40 TB).
MAX_PARAMS = 2**28
# What one size key alone implies, so each has a range of its own (the exact count of the whole
# architecture is checked against MAX_PARAMS too, by sweep.rules): the Gaussian head has at least 4
# parameters per latent dimension (a weight from at least one feature and a bias, for μ and log σ²),
# and a first layer of width w at least 25·w (a 5×5 convolution from the one image channel; a dense
# one has 784·w).
MAX_LATENT = MAX_PARAMS // 4
MAX_WIDTH = MAX_PARAMS // 25
KINDS = ("dense", "conv")
ACTIVATIONS = {
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


class SpecError(ValueError):
    """An architecture spec is invalid; the message names the bad value and the valid range."""


@dataclass(frozen=True)
class Spec:
    kind: str
    depth: int
    width: int
    activation: str = "leaky_relu"

    def validate(self, role: str) -> Spec:
        if self.kind not in KINDS:
            raise SpecError(f"{role}.kind={self.kind!r} is unknown; valid: {', '.join(KINDS)}")
        for key in ("depth", "width"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecError(f"{role}.{key}={value!r} must be an integer; valid: >= 1")
        if self.depth < 1:
            raise SpecError(f"{role}.depth={self.depth} is out of range; valid: >= 1")
        if self.kind == "conv" and self.depth > CONV_MAX_DEPTH:
            raise SpecError(
                f"{role}.depth={self.depth} is out of range for conv; valid: 1..{CONV_MAX_DEPTH} "
                f"(each block halves 28x28; five reach 1x1)"
            )
        if self.width < 1:
            raise SpecError(f"{role}.width={self.width} is out of range; valid: >= 1")
        if self.width > MAX_WIDTH:
            raise SpecError(
                f"{role}.width={self.width} is out of range; valid: 1..{MAX_WIDTH} (a wider first layer "
                f"alone has more than {MAX_PARAMS} parameters)"
            )
        if self.activation not in ACTIVATIONS:
            raise SpecError(
                f"{role}.activation={self.activation!r} is unknown; valid: {', '.join(ACTIVATIONS)}"
            )
        return self


def validate_latent(latent_dim) -> int:
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
        raise SpecError(f"latent_dim={latent_dim!r} is out of range; valid: an integer >= 1")
    if latent_dim > MAX_LATENT:
        raise SpecError(
            f"latent_dim={latent_dim} is out of range; valid: 1..{MAX_LATENT} (a larger Gaussian head "
            f"alone has more than {MAX_PARAMS} parameters)"
        )
    return latent_dim


@functools.lru_cache(maxsize=256)
def n_params(encoder: Spec, decoder: Spec, latent_dim: int) -> int:
    """The parameters of the VAE of these specs, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        return count_params(VAE(encoder, decoder, latent_dim))


def _conv_channels(spec: Spec) -> list[int]:
    return [spec.width * m for m in CONV_CHANNEL_MULT[: spec.depth]]


# log σ² is clamped to this range in the Gaussian head: σ² in [9e-14, 4.9e8]. An exploding encoder
# then gives a huge but finite KL (reported as such) instead of exp overflowing to inf metrics;
# values inside the range pass through bit for bit (the gradient is zero outside it).
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


class GaussianHead(nn.Module):
    """The one Gaussian head: features (B, F) → (mu, logvar), each (B, L); logvar clamped to
    [``LOGVAR_MIN``, ``LOGVAR_MAX``]."""

    def __init__(self, features: int, latent_dim: int):
        super().__init__()
        self.linear = nn.Linear(features, 2 * latent_dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.linear(h).chunk(2, dim=-1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


class Encoder(nn.Module):
    """x (B, 1, 28, 28) → (mu, logvar), each (B, L)."""

    def __init__(self, body: nn.Module, features: int, latent_dim: int):
        super().__init__()
        self.body = body
        self.head = GaussianHead(features, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.body(x))


def _dense_stack(n_in: int, spec: Spec) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(spec.depth):
        layers += [nn.Linear(n_in if i == 0 else spec.width, spec.width), ACTIVATIONS[spec.activation]()]
    return layers


def dense_encoder(spec: Spec, latent_dim: int) -> Encoder:
    return Encoder(nn.Sequential(nn.Flatten(), *_dense_stack(N_PIXELS, spec)), spec.width, latent_dim)


def dense_decoder(spec: Spec, latent_dim: int) -> nn.Module:
    return nn.Sequential(
        *_dense_stack(latent_dim, spec), nn.Linear(spec.width, N_PIXELS), nn.Unflatten(1, IMAGE_SHAPE)
    )


def conv_encoder(spec: Spec, latent_dim: int) -> Encoder:
    layers: list[nn.Module] = []
    c_in = 1
    for c in _conv_channels(spec):
        layers += [nn.Conv2d(c_in, c, 5, stride=2, padding=2), ACTIVATIONS[spec.activation]()]
        c_in = c
    s = CONV_SIZES[spec.depth]
    return Encoder(nn.Sequential(*layers, nn.Flatten()), c_in * s * s, latent_dim)


def conv_decoder(spec: Spec, latent_dim: int) -> nn.Module:
    channels = _conv_channels(spec)
    c, s = channels[-1], CONV_SIZES[spec.depth]
    layers: list[nn.Module] = [
        nn.Linear(latent_dim, c * s * s),
        ACTIVATIONS[spec.activation](),
        nn.Unflatten(1, (c, s, s)),
    ]
    outs = channels[-2::-1] + [1]  # mirror the encoder's channels, ending in one logit channel
    for i, c_out in enumerate(outs):
        size_in, size_out = CONV_SIZES[spec.depth - i], CONV_SIZES[spec.depth - i - 1]
        # ConvTranspose2d(k=5, s=2, p=2) gives 2·in − 1 + output_padding
        layers.append(
            nn.ConvTranspose2d(c, c_out, 5, stride=2, padding=2, output_padding=size_out - 2 * size_in + 1)
        )
        if i < len(outs) - 1:
            layers.append(ACTIVATIONS[spec.activation]())
        c = c_out
    return nn.Sequential(*layers)


BUILDERS = {
    "dense": (dense_encoder, dense_decoder),
    "conv": (conv_encoder, conv_decoder),
}


class VAE(nn.Module):
    """Gaussian-latent VAE with a standard-normal prior; the decoder outputs Bernoulli logits."""

    def __init__(self, encoder_spec: Spec, decoder_spec: Spec, latent_dim: int):
        super().__init__()
        validate_latent(latent_dim)
        encoder_spec.validate("encoder")
        decoder_spec.validate("decoder")
        self.latent_dim = latent_dim
        self.encoder = BUILDERS[encoder_spec.kind][0](encoder_spec, latent_dim)
        self.decoder = BUILDERS[decoder_spec.kind][1](decoder_spec, latent_dim)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """x (B, 1, 28, 28) → (logits (B, 1, 28, 28), mu (B, L), logvar (B, L)), one reparameterised z."""
        mu, logvar = self.encoder(x)
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        return self.decoder(reparameterise(mu, logvar, eps)), mu, logvar


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = μ + ε·σ, σ = exp(½ log σ²), for standard-normal noise ε of μ's shape."""
    return mu + eps * torch.exp(0.5 * logvar)


def build_model(cfg) -> VAE:
    """The VAE of a run config (``encoder``, ``decoder``, ``latent_dim``), on the default device."""
    return VAE(Spec(**cfg["encoder"]), Spec(**cfg["decoder"]), cfg["latent_dim"])


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
