"""Run names: the one place a name is made from a config and parsed back into one.

Grammar: ``L{latent}_{enc}{n}[norm]_{dec}{n}[norm]_s{seed}[_{likelihood}][_t{trial}]``, e.g.
``L25_dense1_conv4_s0``, where enc/dec are ``dense``, ``conv`` or ``res``. What is not the default shows:

* a side's ``norm`` other than ``none`` follows its depth: ``bn`` (batch), ``ln`` (layer), ``gn``
  (group), e.g. ``L50_res2bn_conv4bn_s0``;
* a ``data.likelihood`` other than ``bernoulli`` follows the seed: ``_bce``, ``_cb``
  (continuous_bernoulli), ``_gauss`` (gaussian), ``_gausslearned`` (gaussian_learned), ``_logistic``,
  e.g. ``L50_dense1_conv2_s0_cb``;
* runs of an Optuna search end in their trial number, ``L25_dense1_conv4_s0_t12``.

A configuration with the defaults (no norm, the Bernoulli likelihood) keeps the name it had before these
keys existed. The paper's spelling ``L25_DNN1_CNN4`` (DNN = dense, CNN = conv, the family names in any case, the seed suffix
optional and 0 when absent) is accepted on input and always written canonically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PAPER_KINDS = {"dnn": "dense", "cnn": "conv", "dense": "dense", "conv": "conv", "res": "res"}
DEFAULT_NORM, DEFAULT_LIKELIHOOD = "none", "bernoulli"
# The width each kind has unless a config sets one (a run name holds no width): sweep.models builds with
# it, conf/{encoder,decoder}/<kind>.yaml resolve ``${default_width:}`` to it; here, torch-free, for the
# analysis too.
DEFAULT_WIDTH = {"dense": 512, "conv": 32, "res": 32}
NORM_TAGS = {"batch": "bn", "layer": "ln", "group": "gn"}
LIKELIHOOD_TAGS = {
    "bce": "bce",
    "continuous_bernoulli": "cb",
    "gaussian": "gauss",
    "gaussian_learned": "gausslearned",
    "logistic": "logistic",
}
GRAMMAR = (
    "L{latent}_{enc}{depth}[bn|ln|gn]_{dec}{depth}[bn|ln|gn][_s{seed}][_bce|_cb|_gauss|_gausslearned|_logistic]"
    "[_t{trial}] with enc/dec in dense|conv|res (or the paper's DNN|CNN), e.g. L25_dense1_conv4_s0, "
    "L50_res2bn_conv4bn_s0_cb or L25_DNN1_CNN4"
)
_NORM = "(" + "|".join(NORM_TAGS.values()) + ")?"
_LIKELIHOOD = "(?:_(" + "|".join(sorted(LIKELIHOOD_TAGS.values(), key=len, reverse=True)) + "))?"
_PATTERN = re.compile(
    rf"^L(\d+)_([A-Za-z]+?)(\d+){_NORM}_([A-Za-z]+?)(\d+){_NORM}(?:_s(\d+))?{_LIKELIHOOD}(?:_t(\d+))?$"
)


class RunNameError(ValueError):
    """A run name does not follow the grammar."""


@dataclass(frozen=True)
class RunId:
    latent_dim: int
    enc_kind: str
    enc_depth: int
    dec_kind: str
    dec_depth: int
    seed: int = 0
    trial: int | None = None
    enc_norm: str = DEFAULT_NORM
    dec_norm: str = DEFAULT_NORM
    likelihood: str = DEFAULT_LIKELIHOOD

    @property
    def name(self) -> str:
        return run_name(
            self.latent_dim,
            self.enc_kind,
            self.enc_depth,
            self.dec_kind,
            self.dec_depth,
            self.seed,
            self.trial,
            enc_norm=self.enc_norm,
            dec_norm=self.dec_norm,
            likelihood=self.likelihood,
        )

    def overrides(self) -> list[str]:
        """Hydra overrides that select this configuration (a default norm or likelihood is not named)."""
        return [
            f"latent_dim={self.latent_dim}",
            f"encoder={self.enc_kind}",
            f"encoder.depth={self.enc_depth}",
            *([f"encoder.norm={self.enc_norm}"] if self.enc_norm != DEFAULT_NORM else []),
            f"decoder={self.dec_kind}",
            f"decoder.depth={self.dec_depth}",
            *([f"decoder.norm={self.dec_norm}"] if self.dec_norm != DEFAULT_NORM else []),
            f"seed={self.seed}",
            *([f"data.likelihood={self.likelihood}"] if self.likelihood != DEFAULT_LIKELIHOOD else []),
            *([f"trial={self.trial}"] if self.trial is not None else []),
        ]


def run_name(
    latent_dim,
    enc_kind,
    enc_depth,
    dec_kind,
    dec_depth,
    seed,
    trial=None,
    *,
    enc_norm=DEFAULT_NORM,
    dec_norm=DEFAULT_NORM,
    likelihood=DEFAULT_LIKELIHOOD,
) -> str:
    enc_tag, dec_tag = (NORM_TAGS.get(n, "") for n in (enc_norm, dec_norm))
    name = f"L{latent_dim}_{enc_kind}{enc_depth}{enc_tag}_{dec_kind}{dec_depth}{dec_tag}_s{seed}"
    if likelihood != DEFAULT_LIKELIHOOD:
        name += f"_{LIKELIHOOD_TAGS.get(likelihood, likelihood)}"
    return name if trial is None else f"{name}_t{trial}"


def paper_label(latent_dim, enc_kind, enc_depth, dec_kind, dec_depth) -> str:
    """The paper's label, ``L25_DNN1_CNN4``, for figures; a kind the paper lacks is spelled in capitals
    (``res`` → ``RES``: ``L50_RES2_CNN2``, which :func:`parse_run_name` reads back)."""
    k = {"dense": "DNN", "conv": "CNN", "res": "RES"}
    return f"L{latent_dim}_{k[enc_kind]}{enc_depth}_{k[dec_kind]}{dec_depth}"


def run_name_of(cfg) -> str:
    """The run name of a (resolved or plain-dict) config with latent_dim, encoder, decoder, seed (and
    norms and data.likelihood, their defaults where a config stored before them lacks them)."""
    return run_name(
        cfg["latent_dim"],
        cfg["encoder"]["kind"],
        cfg["encoder"]["depth"],
        cfg["decoder"]["kind"],
        cfg["decoder"]["depth"],
        cfg["seed"],
        cfg.get("trial"),
        enc_norm=cfg["encoder"].get("norm", DEFAULT_NORM),
        dec_norm=cfg["decoder"].get("norm", DEFAULT_NORM),
        likelihood=(cfg.get("data") or {}).get("likelihood", DEFAULT_LIKELIHOOD),
    )


DEFAULT_DATASET = "mnist"  # the paper's dataset: its runs keep the plain paths


def dataset_suffix(dataset: str | None) -> str:
    """``""`` for MNIST, else ``_<dataset>``: appended to sweep and search directory names, so runs of
    different datasets never share a directory (``results/sweeps/paper_fashion_mnist``)."""
    return "" if dataset in (None, DEFAULT_DATASET) else f"_{dataset}"


def dataset_subdir(dataset: str | None) -> str:
    """``""`` for MNIST, else ``<dataset>/``: put before a single run's name under ``results/runs/``."""
    return "" if dataset in (None, DEFAULT_DATASET) else f"{dataset}/"


def parse_run_name(name: str) -> RunId:
    m = _PATTERN.match(name.strip())
    if not m:
        raise RunNameError(f"cannot parse run name {name!r}; grammar: {GRAMMAR}")
    latent, enc, enc_n, enc_norm, dec, dec_n, dec_norm, seed, lik, trial = m.groups()
    kinds = []
    for k in (enc, dec):
        if k.lower() not in PAPER_KINDS:
            raise RunNameError(f"unknown layer kind {k!r} in run name {name!r}; grammar: {GRAMMAR}")
        kinds.append(PAPER_KINDS[k.lower()])
    norm_of = {tag: norm for norm, tag in NORM_TAGS.items()}
    likelihood_of = {tag: lik for lik, tag in LIKELIHOOD_TAGS.items()}
    return RunId(
        int(latent),
        kinds[0],
        int(enc_n),
        kinds[1],
        int(dec_n),
        int(seed or 0),
        None if trial is None else int(trial),
        enc_norm=norm_of.get(enc_norm, DEFAULT_NORM),
        dec_norm=norm_of.get(dec_norm, DEFAULT_NORM),
        likelihood=likelihood_of.get(lik, DEFAULT_LIKELIHOOD),
    )
