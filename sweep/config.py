"""The config utilities every module shares: where the configs live (``CONF_DIR``), the family
depths, the role of each top-level key (what makes a run's identity, what may differ within a cohort),
plain dicts of a composed config, flattening, identities and their diffs, overrides on a stored config,
and how a run row types its config columns.

The role of each key, a run's identity and its protocol are :mod:`sweep.keys`'s (torch- and Hydra-free,
re-exported here). The rules a config is checked by are :mod:`sweep.rules`'s. Importing it registers nothing with Hydra: the
``${run_name:}`` resolver and the family shorthands are :func:`sweep.hydra_setup.register`'s, called by
the entry points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweep.keys import (  # noqa: F401 - the key roles and identities, torch-free, re-exported here
    KEY_ROLES,
    NON_IDENTITY_KEYS,
    PER_MEMBER_KEYS,
    STORED_DEFAULTS,
    config_diff,
    flatten,
    identity,
)
from sweep.models import CONV_MAX_DEPTH, DEFAULT_WIDTH
from sweep.rules import RULES, ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
FAMILY_DEPTHS = {
    "dense": range(1, 17),
    "conv": range(1, CONV_MAX_DEPTH + 1),
    "res": range(1, CONV_MAX_DEPTH + 1),
}


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


_ABSENT = object()


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides to a stored, resolved config; unknown keys are errors.

    A key the config was stored without because it did not exist yet (``STORED_DEFAULTS``:
    ``encoder.norm``, ``data.name``, …) is there with the default the run trained with, so it can be
    overridden. An override of a role's ``kind`` (``encoder.kind=…`` or ``encoder={kind: …}``) that
    leaves its ``width`` alone gives the role the new kind's default width
    (:data:`sweep.models.DEFAULT_WIDTH`), as composing ``encoder.kind=…`` does: a dense run's 512 units
    would otherwise become 512 conv channels under a name that shows no width. Where the stored width is
    not the old kind's default (a capacity-matched run), no default is right: the width must be given."""
    conf = OmegaConf.create(_with_stored_defaults(cfg))
    OmegaConf.set_struct(conf, True)
    parsed = OverridesParser.create().parse_overrides(overrides)
    given = set()  # every dotted key the overrides set, a group's value's keys included
    for o in parsed:
        value = o.value()
        given |= {f"{o.key_or_group}.{k}" for k in value} if isinstance(value, dict) else {o.key_or_group}
    for o in parsed:
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
    stored = flatten(cfg)
    for role in ("encoder", "decoder"):
        kind, was = OmegaConf.select(conf, f"{role}.kind", default=None), stored.get(f"{role}.kind")
        if f"{role}.kind" not in given or kind == was or f"{role}.width" in given or kind not in DEFAULT_WIDTH:
            continue
        width = stored.get(f"{role}.width")
        if width != DEFAULT_WIDTH.get(was):
            raise ConfigError(
                f"override {role}.kind={kind} of a stored {role} of {role}.width={width}, not the {was} "
                f"default {DEFAULT_WIDTH.get(was)} (a capacity-matched width?): no width follows from it; "
                f"valid: {role}.width=… given too (python -m sweep.capacity prints the matched widths)"
            )
        conf[role].width = DEFAULT_WIDTH[kind]
    return to_plain(conf)


def _with_stored_defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with each ``STORED_DEFAULTS`` key it lacks set to that default (where its group exists)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg.items()}
    for dotted, value in STORED_DEFAULTS.items():
        group, _, key = dotted.partition(".")
        if isinstance(out.get(group), dict) and key not in out[group]:
            out[group][key] = value
    return out


def row_values(flat: dict[str, Any]) -> dict[str, Any]:
    """A flattened config as a run row stores it: a key whose valid values mix text and numbers or
    booleans (``engine.max_members``: ``auto`` or 8; ``progress``: ``auto`` or true) is stored as text,
    so the column has one type in every run of a sweep, whatever each launch set."""

    def text(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    return {
        k: text(v) if v is not None and getattr(RULES.get(k), "mixed", False) else v for k, v in flat.items()
    }
