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
    overridden. A role's stored width follows what it was derived from, as composing does: where an
    override changes what a width is derived from (:func:`_derived_width`) and leaves the width alone,
    a default width (:data:`sweep.models.DEFAULT_WIDTH`) becomes the new kind's default (a dense run's
    512 units would otherwise become 512 conv channels under a name that shows no width), and a
    capacity-matched width (``experiment=capacity_matched``) becomes the new family's matched width at
    the new latent size (kept, it would match nothing). A width that is neither stays with a depth or
    latent change; with a new kind no width follows from it: it must be given."""
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
    stored = _with_stored_defaults(cfg)
    for role in ("encoder", "decoder"):
        if f"{role}.width" not in given and isinstance(stored.get(role), dict):
            width = _derived_width(role, stored, to_plain(conf))
            if width is not None:
                conf[role].width = width
    return to_plain(conf)


def _spec(role: str, cfg: dict[str, Any]) -> tuple:
    """What a role's default or capacity-matched width is derived from: its kind, depth, activation
    and the latent size."""
    r = cfg[role]
    return r.get("kind"), r.get("depth"), r.get("activation"), cfg.get("latent_dim")


def _matched(role: str, spec: tuple) -> int | None:
    """The capacity-matched width of ``spec`` (:func:`sweep.capacity.matched_width`); None where it has none."""
    from sweep.capacity import CapacityError, matched_width  # torch, as sweep.models already is

    kind, depth, activation, latent_dim = spec
    try:
        return matched_width(role, kind, depth, latent_dim, activation)
    except (CapacityError, ValueError, KeyError, TypeError):
        return None


def _derived_width(role: str, stored: dict[str, Any], new: dict[str, Any]) -> int | None:
    """The width ``role`` takes after overrides that leave its width alone (None: it keeps its own).

    The stored width is the old kind's default → the new kind's; the old family's matched width (and no
    default) → the new family's matched one (:class:`ConfigError` where it has none); any other width is
    kept unless the kind changed, which is refused: no width follows from it."""
    was, now = _spec(role, stored), _spec(role, new)
    if was == now or now[0] not in DEFAULT_WIDTH:
        return None  # nothing a width is derived from changed (or an unknown kind, refused by validation)
    width, (old_kind, *_), (kind, *_) = stored[role].get("width"), was, now
    if width == DEFAULT_WIDTH.get(old_kind):
        return DEFAULT_WIDTH[kind] if kind != old_kind else None
    if width is not None and width == _matched(role, was):
        matched = _matched(role, now)
        if matched is None:
            raise ConfigError(
                f"{role} {kind}{now[1]} at latent_dim={now[3]}: the stored {role}.width={width} is the "
                f"capacity-matched width of {old_kind}{was[1]} at latent_dim={was[3]}, and {kind}{now[1]} has "
                f"none there; valid: {role}.width=… given too (python -m sweep.capacity prints the matched widths)"
            )
        return matched
    if kind != old_kind:
        raise ConfigError(
            f"override {role}.kind={kind} of a stored {role} of {role}.width={width}, not the {old_kind} "
            f"default {DEFAULT_WIDTH.get(old_kind)} nor its capacity-matched width: no width follows from "
            f"it; valid: {role}.width=… given too (python -m sweep.capacity prints the matched widths)"
        )
    return None


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
