"""Encoders, decoders and the VAE against the architecture definitions in docs/protocol.md.

Expected parameter counts and sizes are computed here from the protocol's formulas, not read from
sweep.models, so a change to the architecture shows up as a failure.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from sweep.models import VAE, Spec, SpecError, count_params

# docs/protocol.md "Architectures": conv channels at width 32, spatial sizes after each stride-2 block.
CONV_CHANNELS_W32 = (32, 64, 128, 256, 256)
SIZES = (28, 14, 7, 4, 2, 1)  # SIZES[i] = spatial size after i blocks
DENSE_DEPTHS = (1, 2, 4, 16)
CONV_DEPTHS = (1, 2, 3, 4, 5)
LATENTS = (1, 25, 200)
KIND_DEPTHS = [("dense", d) for d in DENSE_DEPTHS] + [("conv", d) for d in CONV_DEPTHS]
WIDTH = {"dense": 512, "conv": 32}  # the defaults in conf/{encoder,decoder}/*.yaml
B = 3


def spec(kind: str, depth: int, width: int | None = None, activation: str = "leaky_relu") -> Spec:
    return Spec(kind, depth, WIDTH[kind] if width is None else width, activation)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_channels(depth: int, width: int = 32) -> list[int]:
    return [c * width // 32 for c in CONV_CHANNELS_W32[:depth]]


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def conv5x5(c_in: int, c_out: int) -> int:
    return c_in * c_out * 25 + c_out


def dense_encoder_params(depth: int, width: int, latent: int) -> int:
    return 784 * width + width + (depth - 1) * (width * width + width) + width * 2 * latent + 2 * latent


def dense_decoder_params(depth: int, width: int, latent: int) -> int:
    return latent * width + width + (depth - 1) * (width**2 + width) + width * 784 + 784


def conv_encoder_params(depth: int, width: int, latent: int) -> int:
    chans = [1] + conv_channels(depth, width)
    body = sum(conv5x5(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True))
    s = SIZES[depth]
    return body + linear(chans[-1] * s * s, 2 * latent)


def conv_decoder_params(depth: int, width: int, latent: int) -> int:
    chans = conv_channels(depth, width)
    s = SIZES[depth]
    dec = chans[::-1] + [1]  # mirror of the encoder, ending in one logit channel
    convs = sum(conv5x5(a, b) for a, b in zip(dec[:-1], dec[1:], strict=True))
    return linear(latent, chans[-1] * s * s) + convs


ENC_PARAMS = {"dense": dense_encoder_params, "conv": conv_encoder_params}
DEC_PARAMS = {"dense": dense_decoder_params, "conv": conv_decoder_params}


def build(kind: str, depth: int, latent: int, width: int | None = None, activation: str = "leaky_relu"):
    s = spec(kind, depth, width, activation)
    return VAE(s, s, latent)


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("latent", LATENTS)
@pytest.mark.parametrize(("kind", "depth"), KIND_DEPTHS)
def test_encoder_decoder_shapes(kind, depth, latent):
    torch.manual_seed(0)
    vae = build(kind, depth, latent)
    x = torch.rand(B, 1, 28, 28)
    with torch.no_grad():
        mu, logvar = vae.encoder(x)
        logits = vae.decoder(torch.randn(B, latent))
    assert mu.shape == (B, latent)
    assert logvar.shape == (B, latent)
    assert logits.shape == (B, 1, 28, 28)
    assert torch.isfinite(mu).all() and torch.isfinite(logvar).all() and torch.isfinite(logits).all()


@pytest.mark.parametrize("latent", LATENTS)
@pytest.mark.parametrize(("dec_kind", "dec_depth"), [("dense", 1), ("dense", 4), ("conv", 1), ("conv", 5)])
@pytest.mark.parametrize(("enc_kind", "enc_depth"), KIND_DEPTHS)
def test_vae_forward_shapes(enc_kind, enc_depth, dec_kind, dec_depth, latent):
    torch.manual_seed(0)
    vae = VAE(spec(enc_kind, enc_depth), spec(dec_kind, dec_depth), latent)
    assert vae.latent_dim == latent
    with torch.no_grad():
        logits, mu, logvar = vae(torch.rand(B, 1, 28, 28))
    assert logits.shape == (B, 1, 28, 28)
    assert mu.shape == (B, latent) and logvar.shape == (B, latent)


def test_vae_forward_uses_the_generator():
    vae = build("dense", 1, 4)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        a = vae(x, generator=torch.Generator().manual_seed(1))[0]
        b = vae(x, generator=torch.Generator().manual_seed(1))[0]
        c = vae(x, generator=torch.Generator().manual_seed(2))[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# ---------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("latent", LATENTS)
@pytest.mark.parametrize(("kind", "depth"), KIND_DEPTHS)
def test_parameter_counts(kind, depth, latent):
    vae = build(kind, depth, latent)
    w = WIDTH[kind]
    assert n_params(vae.encoder) == ENC_PARAMS[kind](depth, w, latent)
    assert n_params(vae.decoder) == DEC_PARAMS[kind](depth, w, latent)
    assert count_params(vae) == ENC_PARAMS[kind](depth, w, latent) + DEC_PARAMS[kind](depth, w, latent)


@pytest.mark.parametrize(("kind", "depth", "width"), [("dense", 3, 64), ("conv", 3, 8), ("conv", 5, 16)])
def test_parameter_counts_follow_width(kind, depth, width):
    vae = build(kind, depth, 7, width=width)
    assert n_params(vae.encoder) == ENC_PARAMS[kind](depth, width, 7)
    assert n_params(vae.decoder) == DEC_PARAMS[kind](depth, width, 7)


def test_conv_capacity_is_not_monotone_in_depth():
    # docs/protocol.md "Architectures": a CNN1 encoder's heads dominate at L=200 (14·14·32·400 weights).
    # conv1: 32·14·14·400 head weights; conv2: 64·7·7·400
    assert n_params(build("conv", 1, 200).encoder) > n_params(build("conv", 2, 200).encoder)


def test_iwae_reference_parameter_count():
    s = Spec("dense", 2, 200, "tanh")
    vae = VAE(s, s, 50)
    # encoder 784-200-200-(2×50), decoder 50-200-200-784
    expected = linear(784, 200) + linear(200, 200) + linear(200, 100)
    expected += linear(50, 200) + linear(200, 200) + linear(200, 784)
    assert n_params(vae) == expected
    assert all(not isinstance(m, nn.LeakyReLU) for m in vae.modules())
    assert sum(isinstance(m, nn.Tanh) for m in vae.modules()) == 4


# ---------------------------------------------------------------- intermediate sizes


def _record(modules, kind):
    seen = []
    for m in modules:
        if isinstance(m, kind):
            m.register_forward_hook(
                lambda mod, inp, out: seen.append((tuple(inp[0].shape), tuple(out.shape)))
            )
    return seen


@pytest.mark.parametrize("depth", CONV_DEPTHS)
def test_conv_encoder_feature_maps(depth):
    vae = build("conv", depth, 5)
    seen = _record(vae.encoder.modules(), nn.Conv2d)
    with torch.no_grad():
        vae.encoder(torch.zeros(2, 1, 28, 28))
    assert [out[2:] for _, out in seen] == [(s, s) for s in SIZES[1 : depth + 1]]
    assert [out[1] for _, out in seen] == conv_channels(depth)
    for m in vae.encoder.modules():
        if isinstance(m, nn.Conv2d):
            assert m.kernel_size == (5, 5) and m.stride == (2, 2) and m.padding == (2, 2)


@pytest.mark.parametrize("depth", CONV_DEPTHS)
def test_conv_decoder_mirrors_encoder_sizes(depth):
    vae = build("conv", depth, 5)
    seen = _record(vae.decoder.modules(), nn.ConvTranspose2d)
    with torch.no_grad():
        vae.decoder(torch.zeros(2, 5))
    assert len(seen) == depth
    sizes = [seen[0][0][2]] + [out[2] for _, out in seen]
    assert sizes == list(SIZES[: depth + 1][::-1])  # e.g. depth 5: 1, 2, 4, 7, 14, 28
    assert all(out[2] == out[3] for _, out in seen)
    channels = [seen[0][0][1]] + [out[1] for _, out in seen]
    assert channels == conv_channels(depth)[::-1] + [1]
    for m in vae.decoder.modules():
        if isinstance(m, nn.ConvTranspose2d):
            assert m.kernel_size == (5, 5) and m.stride == (2, 2) and m.padding == (2, 2)


def test_decoder_outputs_are_unbounded_logits():
    # No activation after the last layer: logits can be negative and > 1.
    for kind in ("dense", "conv"):
        dec = build(kind, 2, 3).decoder
        with torch.no_grad():
            for p in dec.parameters():
                p.fill_(0.0)
            last = [m for m in dec.modules() if isinstance(m, nn.Linear | nn.ConvTranspose2d)][-1]
            last.bias.fill_(-3.0)
            assert torch.allclose(dec(torch.randn(2, 3)), torch.full((2, 1, 28, 28), -3.0))


# ---------------------------------------------------------------- width and activation


def test_dense_width_and_activation_are_configurable():
    s = Spec("dense", 1, 400, "relu")
    vae = VAE(s, s, 20)
    enc_linears = [m for m in vae.encoder.modules() if isinstance(m, nn.Linear)]
    assert (enc_linears[0].in_features, enc_linears[0].out_features) == (784, 400)
    assert (enc_linears[-1].in_features, enc_linears[-1].out_features) == (400, 40)
    dec_linears = [m for m in vae.decoder.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in dec_linears] == [(20, 400), (400, 784)]
    acts = [m for m in vae.modules() if isinstance(m, nn.ReLU | nn.LeakyReLU | nn.Tanh)]
    assert len(acts) == 2 and all(type(m) is nn.ReLU for m in acts)
    # pytorch/examples vae/main.py: 784-400-(20, 20) and 20-400-784
    assert n_params(vae) == linear(784, 400) + linear(400, 40) + linear(20, 400) + linear(400, 784)


def test_default_activation_is_leaky_relu_0_2():
    vae = build("conv", 3, 4)
    acts = [m for m in vae.modules() if isinstance(m, nn.LeakyReLU)]
    # 3 after encoder convs; decoder: after the Linear and between the 3 transposed convs (2)
    assert len(acts) == 3 + 1 + 2
    assert all(m.negative_slope == pytest.approx(0.2) for m in acts)


def test_conv_activation_is_configurable():
    vae = build("conv", 2, 4, activation="tanh")
    assert not any(isinstance(m, nn.LeakyReLU) for m in vae.modules())
    assert sum(isinstance(m, nn.Tanh) for m in vae.modules()) == 2 + 1 + 1


# ---------------------------------------------------------------- invalid specs

GOOD = Spec("dense", 1, 512)


@pytest.mark.parametrize(
    ("enc", "dec", "latent", "needles"),
    [
        (Spec("conv", 6, 32), GOOD, 25, ["encoder.depth=6", "1..5"]),
        (GOOD, Spec("conv", 6, 32), 25, ["decoder.depth=6", "1..5"]),
        (Spec("dense", 0, 512), GOOD, 25, ["encoder.depth=0", ">= 1"]),
        (GOOD, Spec("conv", 0, 32), 25, ["decoder.depth=0", ">= 1"]),
        (GOOD, GOOD, 0, ["latent_dim=0", ">= 1"]),
        (GOOD, GOOD, -3, ["latent_dim=-3", ">= 1"]),
        (GOOD, GOOD, 2.5, ["latent_dim=2.5", "integer"]),
        (Spec("rnn", 1, 32), GOOD, 25, ["encoder.kind='rnn'", "dense", "conv"]),
        (GOOD, Spec("dense", 1, 512, "swishy"), 25, ["decoder.activation='swishy'", "leaky_relu", "tanh"]),
        (Spec("dense", 1, 0), GOOD, 25, ["encoder.width=0", ">= 1"]),
        (GOOD, Spec("conv", 2, 0), 25, ["decoder.width=0", ">= 1"]),
    ],
)
def test_invalid_specs_raise_spec_error(enc, dec, latent, needles):
    with pytest.raises(SpecError) as err:
        VAE(enc, dec, latent)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


def test_spec_validate_returns_spec_and_checks_integer_depth():
    assert Spec("conv", 5, 32).validate("encoder") == Spec("conv", 5, 32)
    with pytest.raises(SpecError, match=re.escape("encoder.depth=2.0")):
        Spec("dense", 2.0, 512).validate("encoder")


# ---------------------------------------------------------------- norm and the residual family
NORM_LAYER = {"batch": (nn.BatchNorm1d, nn.BatchNorm2d), "layer": (nn.GroupNorm,), "group": (nn.GroupNorm,)}
NORM_GROUPS = {"layer": 1, "group": 8}


def _hidden_layers(module: nn.Module) -> list[nn.Module]:
    """The leaf layers in order, the Gaussian head left out."""
    return [m for n, m in module.named_modules() if not list(m.children()) and not n.startswith("head")]


@pytest.mark.parametrize("norm", ["batch", "layer", "group"])
@pytest.mark.parametrize(("kind", "depth"), [("dense", 2), ("conv", 3), ("res", 2)])
def test_a_norm_sits_after_every_hidden_layer_before_its_activation(kind, depth, norm):
    s = Spec(kind, depth, 24, "elu", norm)
    vae = VAE(s, s, 4)
    for part in (vae.encoder, vae.decoder):
        layers = _hidden_layers(part)
        for i, m in enumerate(layers):
            if isinstance(m, nn.ELU):
                assert isinstance(layers[i - 1], NORM_LAYER[norm]), (part, i)
            if isinstance(m, nn.GroupNorm):
                assert m.num_groups == NORM_GROUPS[norm]
            if isinstance(m, NORM_LAYER[norm]):
                assert isinstance(layers[i + 1], nn.ELU)  # and a norm is always followed by one
        n_act = sum(isinstance(m, nn.ELU) for m in layers)
        assert sum(isinstance(m, NORM_LAYER[norm]) for m in layers) == n_act
    # the decoder's logits come straight from its last layer: no norm, no activation after it
    out = [m for m in _hidden_layers(vae.decoder) if not isinstance(m, nn.Unflatten)][-1]
    assert isinstance(out, nn.Linear if kind == "dense" else nn.ConvTranspose2d)
    assert (out.out_features if kind == "dense" else out.out_channels) == (784 if kind == "dense" else 1)


@pytest.mark.parametrize(("kind", "depth"), [("dense", 2), ("conv", 3)])
def test_without_a_norm_the_layers_keep_the_names_models_had_before_norms(kind, depth):
    """So a checkpoint written before the key existed loads: parameter names are those of a model
    built from the layer list docs/protocol.md gives (hidden layers at even indices, an activation
    after each; the conv decoder's Linear, reshape and activation, then its transposed convs)."""
    s = Spec(kind, depth, 16)
    vae = VAE(s, s, 4)
    if kind == "dense":
        enc = [f"body.{1 + 2 * i}" for i in range(depth)]  # body.0 is the Flatten
        dec = [f"{2 * i}" for i in range(depth + 1)]
    else:
        enc = [f"body.{2 * i}" for i in range(depth)]
        dec = ["0"] + [f"{3 + 2 * i}" for i in range(depth)]
    assert {n.rsplit(".", 1)[0] for n, _ in vae.encoder.named_parameters()} == {*enc, "head.linear"}
    assert {n.rsplit(".", 1)[0] for n, _ in vae.decoder.named_parameters()} == set(dec)
    assert not list(vae.buffers())


def res_unit_params(c: int) -> int:
    return 2 * (c * c * 9 + c)


@pytest.mark.parametrize("latent", (1, 25))
@pytest.mark.parametrize("depth", CONV_DEPTHS)
def test_res_parameter_counts_are_the_conv_kinds_plus_two_3x3_convs_per_block(depth, latent):
    """The res kind keeps the conv kind's channels, sizes, head and decoder input; each block adds one
    residual unit (two 3×3 convs at the block's channels)."""
    vae = build("res", depth, latent, width=8)
    chans = conv_channels(depth, 8)
    extra = sum(res_unit_params(c) for c in chans)
    assert n_params(vae.encoder) == conv_encoder_params(depth, 8, latent) + extra
    assert n_params(vae.decoder) == conv_decoder_params(depth, 8, latent) + extra


@pytest.mark.parametrize("depth", CONV_DEPTHS)
def test_res_encoder_and_decoder_keep_the_conv_sizes(depth):
    s = Spec("res", depth, 8)
    vae = VAE(s, s, 6)
    x = torch.rand(B, 1, 28, 28)
    feats = vae.encoder.body[:-1](x)  # before the flatten
    assert feats.shape == (B, conv_channels(depth, 8)[-1], SIZES[depth], SIZES[depth])
    assert vae.decoder(torch.randn(B, 6)).shape == (B, 1, 28, 28)


def test_a_residual_unit_is_the_identity_plus_its_branch():
    from sweep.models import ResidualUnit

    unit = ResidualUnit(Spec("res", 1, 8, norm="layer"), 8)
    h = torch.randn(2, 8, 7, 7)
    torch.testing.assert_close(unit(h), h + unit.branch(h))
    nn.init.zeros_(unit.branch[-1].weight), nn.init.zeros_(unit.branch[-1].bias)
    assert torch.equal(unit(h), h)  # a zero branch passes h through unchanged


@pytest.mark.parametrize(
    ("kind", "norm"), [("res", "none"), ("res", "batch"), ("conv", "group"), ("dense", "layer")]
)
def test_flops_are_recorded_for_every_kind_and_norm(kind, norm):
    """FLOPs count the matmuls and convolutions, not the norms: the same with any norm, and the res
    kind's are the conv kind's plus its 3×3 convs (2·9·C² per output pixel each, two per block)."""
    from sweep.metrics import vae_flops

    cfg = lambda k, n: {  # noqa: E731
        "latent_dim": 8,
        "encoder": {"kind": k, "depth": 2, "width": 16, "activation": "relu", "norm": n},
        "decoder": {"kind": k, "depth": 2, "width": 16, "activation": "relu", "norm": n},
    }
    enc, dec = vae_flops(cfg(kind, norm))
    assert (enc, dec) == vae_flops(cfg(kind, "none"))
    if kind == "res":
        conv_enc, conv_dec = vae_flops(cfg("conv", "none"))
        chans, sizes = conv_channels(2, 16), SIZES[1:3]
        extra = sum(2 * 2 * 9 * c * c * s * s for c, s in zip(chans, sizes, strict=True))
        assert enc == conv_enc + extra and dec == conv_dec + extra


@pytest.mark.parametrize(
    ("spec_", "needle"),
    [
        (Spec("res", 6, 8), "encoder.depth=6 is out of range for res; valid: 1..5"),
        (Spec("conv", 2, 12, norm="group"), "encoder.width=12 is not divisible by GroupNorm's 8 groups"),
        (Spec("dense", 2, 8, norm="instance"), "encoder.norm='instance' is unknown; valid: none, batch"),
        (
            Spec("dense", 1, 16, norm="group"),
            "encoder.width=16 leaves encoder.norm=group at most two features per group",
        ),
        (
            Spec("dense", 1, 2, norm="layer"),
            "encoder.width=2 leaves encoder.norm=layer at most two features per group",
        ),
    ],
)
def test_bad_norms_and_res_depths_are_refused_by_name(spec_, needle):
    with pytest.raises(SpecError, match=re.escape(needle)):
        spec_.validate("encoder")


@pytest.mark.parametrize(
    ("likelihood", "extra"), [("bernoulli", 0), ("gaussian", 0), ("gaussian_learned", 1), ("logistic", 1)]
)
def test_a_learned_likelihood_scale_is_one_parameter_of_the_model(likelihood, extra):
    from sweep.models import n_params as model_params

    s = Spec("dense", 1, 16)
    assert model_params(s, s, 4, likelihood) == model_params(s, s, 4) + extra


@pytest.mark.parametrize(("kind", "width"), [("dense", 24), ("conv", 8)])
def test_the_narrowest_dense_norm_layers_and_any_conv_width_are_accepted_and_not_constant(kind, width):
    """Three features per group on a dense layer (24 for group, 3 for layer) is the least that is more
    than a constant or a sign; a conv's groups also span the positions, so its width only has to divide."""
    for norm, w in (("group", width), ("layer", 3 if kind == "dense" else width)):
        s = Spec(kind, 1, w, norm=norm).validate("encoder")
        with torch.no_grad():
            mu, _ = VAE(s, Spec("dense", 1, 16), 4).encoder(torch.rand(8, 1, 28, 28))
        assert float(mu.std(0).min()) > 1e-4, (norm, w)  # each latent mean varies with the input


@pytest.mark.parametrize(("kind", "depth"), [("dense", 2), ("conv", 3), ("res", 2)])
def test_under_batch_norm_no_hidden_layer_has_a_bias_and_the_outputs_do(kind, depth):
    """A bias ahead of a BatchNorm is cancelled by its batch mean (sweep.models._bias): the hidden
    linear and conv layers have none, the Gaussian head and the decoder's last layer keep theirs; other
    norms keep every bias."""
    for norm in ("batch", "layer", "none"):
        vae = VAE(Spec(kind, depth, 16, norm=norm), Spec(kind, depth, 16, norm=norm), 4)
        layers = [m for m in vae.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
        outputs = {id(vae.encoder.head.linear), id(layers[-1])}  # the head; the decoder's logits layer
        assert all(m.bias is not None for m in layers if id(m) in outputs)
        hidden = [m.bias is None for m in layers if id(m) not in outputs]
        assert hidden and all(hidden) if norm == "batch" else not any(hidden), (norm, hidden)
