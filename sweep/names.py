"""Run names: the one place a name is made from a config and parsed back into one.

Grammar: ``L{latent}_{enc}{n}_{dec}{n}_s{seed}``, e.g. ``L25_dense1_conv4_s0``, where enc/dec are
``dense`` or ``conv``; runs of an Optuna search add their trial number, ``L25_dense1_conv4_s0_t12``. The paper's spelling ``L25_DNN1_CNN4`` (DNN = dense, CNN = conv, any case, the
seed suffix optional and 0 when absent) is accepted on input and always written canonically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PAPER_KINDS = {"dnn": "dense", "cnn": "conv", "dense": "dense", "conv": "conv"}
GRAMMAR = (
    "L{latent}_{enc}{depth}_{dec}{depth}[_s{seed}][_t{trial}] with enc/dec in dense|conv (or the paper's "
    "DNN|CNN), e.g. L25_dense1_conv4_s0 or L25_DNN1_CNN4"
)
_PATTERN = re.compile(r"^L(\d+)_([A-Za-z]+?)(\d+)_([A-Za-z]+?)(\d+)(?:_s(\d+))?(?:_t(\d+))?$")


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
        )

    def overrides(self) -> list[str]:
        """Hydra overrides that select this configuration."""
        return [
            f"latent_dim={self.latent_dim}",
            f"encoder={self.enc_kind}",
            f"encoder.depth={self.enc_depth}",
            f"decoder={self.dec_kind}",
            f"decoder.depth={self.dec_depth}",
            f"seed={self.seed}",
            *([f"trial={self.trial}"] if self.trial is not None else []),
        ]


def run_name(latent_dim, enc_kind, enc_depth, dec_kind, dec_depth, seed, trial=None) -> str:
    name = f"L{latent_dim}_{enc_kind}{enc_depth}_{dec_kind}{dec_depth}_s{seed}"
    return name if trial is None else f"{name}_t{trial}"


def paper_label(latent_dim, enc_kind, enc_depth, dec_kind, dec_depth) -> str:
    """The paper's label, ``L25_DNN1_CNN4``, for figures."""
    k = {"dense": "DNN", "conv": "CNN"}
    return f"L{latent_dim}_{k[enc_kind]}{enc_depth}_{k[dec_kind]}{dec_depth}"


def run_name_of(cfg) -> str:
    """The run name of a (resolved or plain-dict) config with latent_dim, encoder, decoder, seed."""
    return run_name(
        cfg["latent_dim"],
        cfg["encoder"]["kind"],
        cfg["encoder"]["depth"],
        cfg["decoder"]["kind"],
        cfg["decoder"]["depth"],
        cfg["seed"],
        cfg.get("trial"),
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
    latent, enc, enc_n, dec, dec_n, seed, trial = m.groups()
    kinds = []
    for k in (enc, dec):
        if k.lower() not in PAPER_KINDS:
            raise RunNameError(f"unknown layer kind {k!r} in run name {name!r}; grammar: {GRAMMAR}")
        kinds.append(PAPER_KINDS[k.lower()])
    return RunId(
        int(latent),
        kinds[0],
        int(enc_n),
        kinds[1],
        int(dec_n),
        int(seed or 0),
        None if trial is None else int(trial),
    )
