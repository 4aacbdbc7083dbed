"""The config utilities every module shares: where the configs live (``CONF_DIR``), the family
depths, the role of each top-level key (what makes a run's identity, what may differ within a cohort),
plain dicts of a composed config, flattening, identities and their diffs, overrides on a stored config,
and how a run row types its config columns.

The rules a config is checked by are :mod:`sweep.rules`'s. Importing it registers nothing with Hydra: the
``${run_name:}`` resolver and the family shorthands are :func:`sweep.hydra_setup.register`'s, called by
the entry points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweep import names
from sweep.models import CONV_MAX_DEPTH
from sweep.rules import RULES, ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
FAMILY_DEPTHS = {
    "dense": range(1, 17),
    "conv": range(1, CONV_MAX_DEPTH + 1),
    "res": range(1, CONV_MAX_DEPTH + 1),
}
# The role of each top-level key of a run config, the one table that says which keys make a run's
# identity (what a stored run and its relaunch must agree on: config_diff, so the grid check and every
# entry point) and which may differ between runs stacked into one cohort (sweep.engine.cohort_key):
#   identity   what the run trains; runs of one cohort share it (one architecture, one data set)
#   member     what the run trains; each member of a cohort has its own (the stack trains each its own)
#   cohort     how the run executes, not what it trains; runs of one cohort share it (one device, one
#              evaluation of the stack, one thread count)
#   execution  how and where the run executes and is shown; may differ run by run
# A key missing here counts as identity (the safe side). tests/test_structure.py checks that every
# key with a rule in sweep.rules.RULES has a role.
KEY_ROLES = {
    "latent_dim": "identity",
    "encoder": "identity",
    "decoder": "identity",
    "batch_size": "identity",
    "lr": "identity",
    "train": "identity",
    "data": "identity",
    "seed": "member",
    "trial": "member",
    "epochs": "member",
    "loss": "member",
    "device": "cohort",
    "num_threads": "cohort",
    "eval": "cohort",
    "results_dir": "execution",
    "sweep_name": "execution",
    "progress": "execution",
    "search": "execution",
    "engine": "execution",
    "logger": "execution",
}
# Keys that do not change what a run trains: they may differ between a stored run and a relaunch.
NON_IDENTITY_KEYS = tuple(k for k, role in KEY_ROLES.items() if role in ("cohort", "execution"))
# Keys in which runs stacked into one cohort may differ; everything else must be equal.
PER_MEMBER_KEYS = tuple(k for k, role in KEY_ROLES.items() if role in ("member", "execution"))


def to_plain(cfg: DictConfig | dict) -> dict[str, Any]:
    """The resolved config as plain Python containers, without the ``hydra`` node (never resolved:
    outside a running job some of its values do not exist)."""
    if isinstance(cfg, DictConfig):
        return {
            k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
            for k, v in cfg.items()
            if k != "hydra"
        }
    return {k: v for k, v in cfg.items() if k != "hydra"}


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} → {"a.b": 1}; lists become their string form (parquet-friendly scalars)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v) if isinstance(v, list | tuple) else v
    return out


# What a config stored before a key existed trained with: that key's default, so its identity (and
# a relaunch's decision to skip it) is what it was.
STORED_DEFAULTS = {
    "data.name": names.DEFAULT_DATASET,
    "encoder.norm": names.DEFAULT_NORM,
    "decoder.norm": names.DEFAULT_NORM,
}


def identity(cfg: dict[str, Any]) -> dict[str, Any]:
    """The flattened config keys that determine what a run trains. A config stored before a key of
    ``STORED_DEFAULTS`` existed counts as having its default (``data.name: mnist``, no norm)."""
    flat = {**STORED_DEFAULTS, **flatten(cfg)}
    return {k: v for k, v in flat.items() if k.split(".")[0] not in NON_IDENTITY_KEYS}


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two configs' identities, as ``key: a -> b``."""
    ia, ib = identity(a), identity(b)
    return [
        f"{k}: {ia.get(k)!r} -> {ib.get(k)!r}" for k in sorted(set(ia) | set(ib)) if ia.get(k) != ib.get(k)
    ]


_ABSENT = object()


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides to a stored, resolved config; unknown keys are errors."""
    conf = OmegaConf.create(cfg)
    OmegaConf.set_struct(conf, True)
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.key_or_group
        current = OmegaConf.select(conf, key, default=_ABSENT)
        if current is _ABSENT:
            raise ConfigError(
                f"override {o.input_line!r}: key {key!r} does not exist; valid keys: {', '.join(flatten(cfg))}"
            )
        if isinstance(current, DictConfig) and not isinstance(o.value(), dict):
            raise ConfigError(
                f"override {o.input_line!r}: {key!r} is a config group; on a stored config override its keys "
                f"instead (e.g. {key}.kind=conv {key}.depth=4)"
            )
        try:
            OmegaConf.update(conf, key, o.value(), merge=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"override {o.input_line!r} does not apply: {exc}") from exc
    return to_plain(conf)


def row_values(flat: dict[str, Any]) -> dict[str, Any]:
    """A flattened config as a run row stores it: a key whose valid values mix text and numbers or
    booleans (``engine.max_members``: ``auto`` or 8; ``progress``: ``auto`` or true) is stored as text,
    so the column has one type in every run of a sweep, whatever each launch set."""

    def text(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    return {
        k: text(v) if v is not None and getattr(RULES.get(k), "mixed", False) else v for k, v in flat.items()
    }
