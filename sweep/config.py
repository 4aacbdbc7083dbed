"""Hydra glue: the ``run_name`` resolver, family shorthands, and config checks before training.

Importing this module registers:
* the OmegaConf resolver ``${run_name:}`` used by ``hydra.run.dir`` and ``hydra.sweep.subdir``: it
  validates the whole job config (so a bad value is rejected before Hydra creates any directory) and
  returns :func:`sweep.names.run_name_of` of it, the one place names are made;
* family shorthands ``encoder=conv4`` / ``decoder=dense16`` in Hydra's ConfigStore, built in a loop
  from ``conf/{encoder,decoder}/{dense,conv}.yaml`` plus a depth, so a grid can sweep
  ``encoder: dense1,dense4,conv1,conv2,conv4`` while ``encoder=conv encoder.depth=4`` keeps working.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweep import names
from sweep.data import DATASETS, LIKELIHOODS
from sweep.losses import REDUCTIONS
from sweep.models import CONV_MAX_DEPTH, Spec, validate_latent

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
FAMILY_DEPTHS = {"dense": range(1, 17), "conv": range(1, CONV_MAX_DEPTH + 1)}
# Keys that do not change what a run trains: they may differ between a stored run and a relaunch.
NON_IDENTITY_KEYS = (
    "results_dir",
    "sweep_name",
    "progress",
    "device",
    "eval",
    "num_threads",
    "search",
    "engine",
)


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the value and what is valid."""


def _run_name_resolver(*, _root_: DictConfig) -> str:
    return names.run_name_of(validate(to_plain(_root_)))


def _dataset(root: DictConfig) -> str | None:
    return OmegaConf.select(root, "data.name", default=None)


def _register() -> None:
    if not OmegaConf.has_resolver("run_name"):
        OmegaConf.register_new_resolver("run_name", _run_name_resolver)
    # "" for MNIST, else "_<dataset>" / "<dataset>/": the default sweep and run paths of conf/config.yaml
    if not OmegaConf.has_resolver("dataset_suffix"):
        OmegaConf.register_new_resolver(
            "dataset_suffix", lambda *, _root_: names.dataset_suffix(_dataset(_root_))
        )
    if not OmegaConf.has_resolver("dataset_subdir"):
        OmegaConf.register_new_resolver(
            "dataset_subdir", lambda *, _root_: names.dataset_subdir(_dataset(_root_))
        )
    cs = ConfigStore.instance()
    for group in ("encoder", "decoder"):
        for kind, depths in FAMILY_DEPTHS.items():
            base = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{kind}.yaml"))
            for depth in depths:
                cs.store(group=group, name=f"{kind}{depth}", node={**base, "depth": depth})


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


def identity(cfg: dict[str, Any]) -> dict[str, Any]:
    """The flattened config keys that determine what a run trains. A config stored before
    ``data.name`` existed trained on MNIST, and counts as ``data.name: mnist``."""
    flat = {"data.name": names.DEFAULT_DATASET, **flatten(cfg)}
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


def _number(cfg: dict, key: str, kind: type, lo: float, lo_open: bool = False) -> None:
    section, _, leaf = key.rpartition(".")
    value = cfg[section][leaf] if section else cfg[leaf]
    ok_type = isinstance(value, kind) or (kind is float and isinstance(value, int))
    if isinstance(value, bool) or not ok_type or (kind is float and not math.isfinite(value)):
        raise ConfigError(f"{key}={value!r} must be {'an integer' if kind is int else 'a finite number'}")
    if value < lo or (lo_open and value == lo):
        raise ConfigError(f"{key}={value!r} is out of range; valid: {'>' if lo_open else '>='} {lo}")


def _check_results_dir(value) -> None:
    """The nearest existing ancestor of ``results_dir`` (itself included) must be a directory."""
    if value is None:
        return
    path = Path(str(value))
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(
                    f"results_dir={str(value)!r} is not usable: {p} is a file; valid: a directory, "
                    "or a path that does not exist yet"
                )
            return


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Reject a bad config before any training, naming the bad value and the valid range."""
    validate_latent(cfg["latent_dim"])
    for role in ("encoder", "decoder"):
        Spec(**cfg[role]).validate(role)
    _number(cfg, "seed", int, 0)
    if cfg.get("trial") is not None:
        _number(cfg, "trial", int, 0)
    _number(cfg, "epochs", int, 1)
    _number(cfg, "batch_size", int, 1)
    _number(cfg, "lr", float, 0, lo_open=True)
    if cfg.get("num_threads") is not None:
        _number(cfg, "num_threads", int, 1)
    _number(cfg, "loss.beta", float, 0)
    _number(cfg, "loss.warmup_epochs", float, 0)
    _number(cfg, "loss.free_bits", float, 0)
    if cfg["loss"]["reduction"] not in REDUCTIONS:
        raise ConfigError(
            f"loss.reduction={cfg['loss']['reduction']!r} is unknown; valid: {', '.join(REDUCTIONS)}"
        )
    if cfg["data"]["likelihood"] not in LIKELIHOODS:
        raise ConfigError(
            f"data.likelihood={cfg['data']['likelihood']!r} is unknown; valid: {', '.join(LIKELIHOODS)}"
        )
    if cfg["data"].get("name", names.DEFAULT_DATASET) not in DATASETS:
        raise ConfigError(f"data.name={cfg['data']['name']!r} is unknown; valid: {', '.join(DATASETS)}")
    if cfg["data"]["subset"] is not None:
        _number(cfg, "data.subset", int, 1)
    ec = cfg.get("eval", {})
    if ec.get("iwae_k") is not None:
        _number(cfg, "eval.iwae_k", int, 1)
    for key in (
        "iwae_image_chunk",
        "iwae_sample_chunk",
        "mi_chunk",
        "probe_train",
        "knn_k",
        "latents_n",
        "kid_subsets",
    ):
        if key in ec:
            _number(cfg, f"eval.{key}", int, 1)
    for key in ("fid_samples", "kid_subset_size"):  # a covariance and an unbiased MMD need two images
        if key in ec:
            _number(cfg, f"eval.{key}", int, 2)
    for key in ("max_members", "slots", "eval_workers"):
        value = (cfg.get("engine") or {}).get(key, "auto")
        if value != "auto":
            _number(cfg, f"engine.{key}", int, 0 if key == "eval_workers" else 1)
    graphs = (cfg.get("engine") or {}).get("cuda_graphs", True)
    if not isinstance(graphs, bool):
        raise ConfigError(f"engine.cuda_graphs={graphs!r} must be true or false")
    _check_results_dir(cfg.get("results_dir"))
    _number(cfg, "data.val_size", int, 1)
    if cfg["data"]["val_size"] >= 60_000:
        raise ConfigError(f"data.val_size={cfg['data']['val_size']} is out of range; valid: 1..59999")
    n_train = min(60_000 - cfg["data"]["val_size"], cfg["data"]["subset"] or 60_000)
    if cfg["batch_size"] > n_train:
        raise ConfigError(
            f"batch_size={cfg['batch_size']} is larger than the training set ({n_train} images)"
        )
    return cfg


_register()
