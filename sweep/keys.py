"""What each key of a run's config is for: its role (``KEY_ROLES``), a run's identity (what it trains,
seed included: the same identity is the same run wherever it is stored) and its protocol (what its
numbers mean besides its architecture and seed). Free of torch and Hydra, so that ``sweep.status`` and
``analysis`` can use it; :mod:`sweep.config` re-exports the names it always had.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from sweep import names

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


# The keys whose values say what a run's numbers mean besides its architecture and seed: the data it
# was trained and scored on (data.*), its training budget (epochs) and objective (loss.*), and the
# evaluation profile (eval.*, but for the chunk sizes, which only batch one computation). Analysis never
# pools runs that differ in one of them (analysis.rank.protocol_columns), and a sweep keeps the value of
# each that its first launch held constant (grid.json's "settings", checked by every later launch).
PROTOCOL_KEYS = ("data", "epochs", "loss", "eval")
BATCHING_KEYS = ("eval.iwae_image_chunk", "eval.iwae_sample_chunk", "eval.mi_chunk")


def is_protocol(key: str) -> bool:
    """Whether the flattened config key (or run-table column) ``key`` is part of a run's protocol."""
    return key.split(".")[0] in PROTOCOL_KEYS and key not in BATCHING_KEYS


def comparable(value: Any) -> Any:
    """A config value as two stores of it compare equal: YAML's ``1`` and parquet's ``1.0`` or
    ``numpy.int64(1)`` are one number, a missing value (None, NaN) is None."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalars
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return None if math.isnan(value) else float(value)
    return str(value)


def shown(value: Any) -> str:
    """A :func:`comparable` value as a config spells it (``2``, not ``2.0``)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def protocol(flat: dict[str, Any]) -> dict[str, Any]:
    """The protocol of a flattened config or a run row: every protocol key it has, values
    :func:`comparable`; a run stored before ``data.name`` existed trained on MNIST."""
    flat = {"data.name": names.DEFAULT_DATASET, **flat}
    return {k: comparable(v) for k, v in flat.items() if is_protocol(k)}


def protocol_diff(settings: dict[str, Any], flat: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, value in ``settings``, value in ``flat``) for each key of ``settings`` (a sweep's
    protocol) on which the flattened config or run row ``flat`` differs; a key it lacks is None."""
    got = protocol(flat)
    return [(k, v, got.get(k)) for k, v in sorted(settings.items()) if comparable(v) != got.get(k)]


def row_identity(row: dict[str, Any]) -> tuple:
    """A run's identity from its run row (run.parquet: the flattened config among the result
    columns), hashable: the sorted (key, value) pairs of every identity or member key (config plus
    seed), values :func:`comparable`. Two rows with the same one are the same trained model."""
    row = {**STORED_DEFAULTS, **row}
    roles = ("identity", "member")
    return tuple(
        sorted((k, comparable(v)) for k, v in row.items() if KEY_ROLES.get(k.split(".")[0]) in roles)
    )


def identity_digest(d: dict[str, Any]) -> str:
    """A run's identity (:func:`row_identity`: config plus seed) as a short stable stamp: the first 16
    hex digits of the sha256 of its canonical JSON. ``d`` is a config (nested, as ``.hydra/config.yaml``
    stores it) or a run row (flat, as ``run.parquet`` stores it): both give the same stamp. Every per-run
    parquet file carries it (``sweep.results.IDENTITY_KEY``), so analysis can tell a file copied from
    another run of the same name from the run's own (:func:`analysis.collect.collect`)."""
    pairs = row_identity(flatten(d))
    canonical = json.dumps(pairs, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
