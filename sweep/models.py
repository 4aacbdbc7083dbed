"""Encoders and decoders built from a tiny spec, exactly as ``docs/protocol.md`` ("Architectures") defines
them.

A spec is ``(kind, depth, width, activation, norm)``; depth is a loop count. ``BUILDERS`` maps each kind
to its builder, and that dict is the whole registry:

* ``dense`` encoder: ``depth`` × [Linear(·, width) + act] on the flattened image, then the Gaussian head.
  ``dense`` decoder: ``depth`` × [Linear(·, width) + act] from z, then Linear(width, 784) logits.
* ``conv`` encoder: ``depth`` × [Conv2d(k=5, s=2, p=2) + act], channels width·(1, 2, 4, 8, 8)
  (32, 64, 128, 256, 256 at the default width 32), spatial 28→14→7→4→2→1, flatten, Gaussian head.
  ``conv`` decoder: Linear(L, C·s·s) + act, reshape, then ``depth`` ConvTranspose2d(k=5, s=2, p=2)
  mirroring the encoder (1→2→4→7→14→28, output_padding chosen per step), act between, 1 logit channel.
* ``res`` encoder: ``depth`` × [Conv2d(k=5, s=2, p=2), then a pre-activation residual unit
  h + conv3×3(act(norm(conv3×3(act(norm(h))))))], the conv kind's channels and sizes, then norm + act,
  flatten, Gaussian head. ``res`` decoder: Linear(L, C·s·s), reshape, then ``depth`` × [residual unit,
  norm + act, ConvTranspose2d(k=5, s=2, p=2)], the conv decoder's channels and sizes, 1 logit channel.

``norm`` (``none``, ``batch``, ``layer``, ``group``) puts a normalisation layer after every hidden
linear or conv layer, before its activation (never after the Gaussian head or the output logits):
BatchNorm1d/2d, GroupNorm(1, C) (layer norm over each example's features, per-channel affine) or
GroupNorm(``GROUP_NORM_GROUPS``, C). ``none`` adds no module, so the layers' names (a checkpoint's keys)
are those of the models built before the key existed. Under ``batch`` the hidden linear and conv layers
have no bias (:func:`_bias`), the output logits and the Gaussian head keep theirs.

The VAE's ``likelihood`` (``data.likelihood``, :mod:`sweep.losses`) adds one parameter where it learns a
global scale (``gaussian_learned``, ``logistic``): ``log_scale``, beside the encoder and decoder.

Every encoder returns ``(mu, logvar)``, each (B, L), through the one :class:`GaussianHead`; every
decoder maps z (B, L) to logits (B, 1, 28, 28). Nothing here imports omegaconf.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from sweep.names import DEFAULT_WIDTH  # noqa: F401 - re-exported: the builders' widths

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
KINDS = ("dense", "conv", "res")
# The width each kind has unless a config sets one: conf/{encoder,decoder}/<kind>.yaml hold
# ``width: ${default_width:}``, resolved from the group's own kind, so ``encoder.kind=res`` alone builds
# what ``encoder=res`` does (a width left at the other kind's default would train a model its run name
# does not describe: the name holds no width).
# DEFAULT_WIDTH = {"dense": 512, "conv": 32, "res": 32}: sweep.names's (torch-free, for the analysis too)
NORMS = ("none", "batch", "layer", "group")
# GroupNorm's group count: Wu & He (2018, Table 3) find G from 8 to 32 within 0.5 % of each other on
# ImageNet; 8 is the one that divides the small widths of tests and searches (8, 16, 24, …) as well as
# the defaults (32 conv channels, 512 dense units).
GROUP_NORM_GROUPS = 8
# likelihoods whose scale is one learned parameter of the model (sweep.losses)
LEARNED_SCALE = ("gaussian_learned", "logistic")
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


# The fewest features a dense layer's norm group may hold: one normalises to 0, two to ±1 (a sign)
MIN_GROUP_FEATURES = 3


@dataclass(frozen=True)
class Spec:
    kind: str
    depth: int
    width: int
    activation: str = "leaky_relu"
    norm: str = "none"

    def validate(self, role: str) -> Spec:
        if self.kind not in KINDS:
            raise SpecError(f"{role}.kind={self.kind!r} is unknown; valid: {', '.join(KINDS)}")
        for key in ("depth", "width"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecError(f"{role}.{key}={value!r} must be an integer; valid: >= 1")
        if self.depth < 1:
            raise SpecError(f"{role}.depth={self.depth} is out of range; valid: >= 1")
        if self.kind in ("conv", "res") and self.depth > CONV_MAX_DEPTH:
            raise SpecError(
                f"{role}.depth={self.depth} is out of range for {self.kind}; valid: 1..{CONV_MAX_DEPTH} "
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
        if self.norm not in NORMS:
            raise SpecError(f"{role}.norm={self.norm!r} is unknown; valid: {', '.join(NORMS)}")
        if self.norm == "group" and self.width % GROUP_NORM_GROUPS:
            raise SpecError(
                f"{role}.width={self.width} is not divisible by GroupNorm's {GROUP_NORM_GROUPS} groups "
                f"({role}.norm=group); valid: a multiple of {GROUP_NORM_GROUPS}, or {role}.norm=none|batch|layer"
            )
        groups = {"group": GROUP_NORM_GROUPS, "layer": 1}.get(self.norm)
        if self.kind == "dense" and groups and self.width < MIN_GROUP_FEATURES * groups:
            # a dense layer's group holds width/groups values (a conv's also spans its positions): one
            # value normalises to 0 and two to ±1, so the layer outputs its shift, or a sign per group
            raise SpecError(
                f"{role}.width={self.width} leaves {role}.norm={self.norm} at most two features per group "
                f"on a dense layer, which it normalises to a constant or a sign; valid: {role}.width >= "
                f"{MIN_GROUP_FEATURES * groups}, or {role}.norm=none|batch"
                + ("|group" if self.norm == "layer" else "|layer")
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
def n_params(encoder: Spec, decoder: Spec, latent_dim: int, likelihood: str = "bernoulli") -> int:
    """The parameters of the VAE of these specs, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        return count_params(VAE(encoder, decoder, latent_dim, likelihood))


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


def _norm(spec: Spec, channels: int, dims: int) -> list[nn.Module]:
    """The normalisation layer of ``spec.norm`` over ``channels`` features of (B, C) (``dims`` 1) or
    (B, C, H, W) (``dims`` 2) inputs; none for ``none``, so its models keep their layer names."""
    if spec.norm == "none":
        return []
    if spec.norm == "batch":
        return [(nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(channels)]
    return [nn.GroupNorm(1 if spec.norm == "layer" else GROUP_NORM_GROUPS, channels)]


def _bias(spec: Spec) -> bool:
    """Whether a hidden linear or conv layer has a bias: not under BatchNorm. A BatchNorm subtracts the
    batch mean of each channel, so a bias ahead of it (through a residual skip too) is cancelled and
    its gradient is zero in exact arithmetic; Adam then steps it by up to lr on rounding noise alone,
    the running means follow it, and evaluation, which reads them, inherits a drift that no loss
    shows (a stacked and a lone run parted by 0.4 nats of test −ELBO after 2 smoke epochs). So, as in
    torchvision's ResNets, hidden layers under ``norm=batch`` have none (BatchNorm's own shift takes
    its place); the output logits and the Gaussian head keep theirs."""
    return spec.norm != "batch"


def _act(spec: Spec, channels: int, dims: int) -> list[nn.Module]:
    """norm (if any), then the activation: what follows every hidden linear or conv layer."""
    return [*_norm(spec, channels, dims), ACTIVATIONS[spec.activation]()]


def _dense_stack(n_in: int, spec: Spec) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(spec.depth):
        layers += [
            nn.Linear(n_in if i == 0 else spec.width, spec.width, bias=_bias(spec)),
            *_act(spec, spec.width, 1),
        ]
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
        layers += [nn.Conv2d(c_in, c, 5, stride=2, padding=2, bias=_bias(spec)), *_act(spec, c, 2)]
        c_in = c
    s = CONV_SIZES[spec.depth]
    return Encoder(nn.Sequential(*layers, nn.Flatten()), c_in * s * s, latent_dim)


def _up(spec: Spec, i: int, c: int, c_out: int) -> nn.ConvTranspose2d:
    """The decoder's i-th upsampling step, mirroring the encoder's (depth − i)-th block; the last one
    (to the logits) has a bias under every norm."""
    size_in, size_out = CONV_SIZES[spec.depth - i], CONV_SIZES[spec.depth - i - 1]
    bias = i == spec.depth - 1 or _bias(spec)
    # ConvTranspose2d(k=5, s=2, p=2) gives 2·in − 1 + output_padding
    return nn.ConvTranspose2d(
        c, c_out, 5, stride=2, padding=2, output_padding=size_out - 2 * size_in + 1, bias=bias
    )


def _decoder_input(spec: Spec, latent_dim: int) -> list[nn.Module]:
    """Linear(L, C·s·s) reshaped to (C, s, s): where the conv and res decoders start."""
    c, s = _conv_channels(spec)[-1], CONV_SIZES[spec.depth]
    return [nn.Linear(latent_dim, c * s * s, bias=_bias(spec)), nn.Unflatten(1, (c, s, s))]


def conv_decoder(spec: Spec, latent_dim: int) -> nn.Module:
    channels = _conv_channels(spec)
    c = channels[-1]
    # the activation after the reshape (elementwise, so where it sits is the same function; after it,
    # a norm sees channels): the parameter layers keep the indices of models built before norms existed
    layers: list[nn.Module] = [*_decoder_input(spec, latent_dim), *_act(spec, c, 2)]
    outs = channels[-2::-1] + [1]  # mirror the encoder's channels, ending in one logit channel
    for i, c_out in enumerate(outs):
        layers.append(_up(spec, i, c, c_out))
        if i < len(outs) - 1:
            layers += _act(spec, c_out, 2)
        c = c_out
    return nn.Sequential(*layers)


class ResidualUnit(nn.Module):
    """A pre-activation residual unit (He et al. 2016, "Identity mappings"): h + conv3×3(act(norm(
    conv3×3(act(norm(h)))))), channels and size kept. h: (B, C, H, W)."""

    def __init__(self, spec: Spec, channels: int):
        super().__init__()
        conv = lambda: nn.Conv2d(channels, channels, 3, padding=1, bias=_bias(spec))  # noqa: E731
        self.branch = nn.Sequential(*_act(spec, channels, 2), conv(), *_act(spec, channels, 2), conv())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.branch(h)


def res_encoder(spec: Spec, latent_dim: int) -> Encoder:
    layers: list[nn.Module] = []
    c_in = 1
    for c in _conv_channels(spec):
        layers += [nn.Conv2d(c_in, c, 5, stride=2, padding=2, bias=_bias(spec)), ResidualUnit(spec, c)]
        c_in = c
    s = CONV_SIZES[spec.depth]
    return Encoder(nn.Sequential(*layers, *_act(spec, c_in, 2), nn.Flatten()), c_in * s * s, latent_dim)


def res_decoder(spec: Spec, latent_dim: int) -> nn.Module:
    channels = _conv_channels(spec)
    c = channels[-1]
    layers: list[nn.Module] = _decoder_input(spec, latent_dim)
    for i, c_out in enumerate(channels[-2::-1] + [1]):
        layers += [ResidualUnit(spec, c), *_act(spec, c, 2), _up(spec, i, c, c_out)]
        c = c_out
    return nn.Sequential(*layers)


BUILDERS = {
    "dense": (dense_encoder, dense_decoder),
    "conv": (conv_encoder, conv_decoder),
    "res": (res_encoder, res_decoder),
}


class VAE(nn.Module):
    """Gaussian-latent VAE with a standard-normal prior; the decoder outputs one logit per pixel, read by
    the ``likelihood`` (:func:`sweep.losses.nll_pixels`), with a learned ``log_scale`` where it has one."""

    def __init__(
        self, encoder_spec: Spec, decoder_spec: Spec, latent_dim: int, likelihood: str = "bernoulli"
    ):
        super().__init__()
        validate_latent(latent_dim)
        encoder_spec.validate("encoder")
        decoder_spec.validate("decoder")
        self.latent_dim, self.likelihood = latent_dim, likelihood
        self.encoder = BUILDERS[encoder_spec.kind][0](encoder_spec, latent_dim)
        self.decoder = BUILDERS[decoder_spec.kind][1](decoder_spec, latent_dim)
        if likelihood in LEARNED_SCALE:  # log σ (gaussian_learned) or log s (logistic), σ = s = 1 at first
            self.log_scale = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """x (B, 1, 28, 28) → (logits (B, 1, 28, 28), mu (B, L), logvar (B, L)), one reparameterised z."""
        mu, logvar = self.encoder(x)
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        return self.decoder(reparameterise(mu, logvar, eps)), mu, logvar


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = μ + ε·σ, σ = exp(½ log σ²), for standard-normal noise ε of μ's shape."""
    return mu + eps * torch.exp(0.5 * logvar)


def build_model(cfg) -> VAE:
    """The VAE of a run config (``encoder``, ``decoder``, ``latent_dim``, ``data.likelihood``), on the
    default device."""
    likelihood = (cfg.get("data") or {}).get("likelihood", "bernoulli")
    return VAE(Spec(**cfg["encoder"]), Spec(**cfg["decoder"]), cfg["latent_dim"], likelihood)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
