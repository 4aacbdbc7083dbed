"""The jobs of a Hydra multirun, expanded and composed once for every part of a launch that needs them.

The grid check (:mod:`sweep.grid`), the cohort launcher (:mod:`sweep.cohort_launch`), the Slurm launcher
(:mod:`sweep.slurm`) and ``python -m sweep.status`` (for a sweep launched before ``grid.json``) all
see a multirun through these functions: the jobs in the order Hydra's basic sweeper launches them,
each job's composed config, and the directory its run writes to.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from sweep.config import CONF_DIR


def job_overrides(config: DictConfig) -> list[list[str]]:
    """Every job's overrides, in the order Hydra's basic sweeper launches them."""
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.params or {}).items()]
    parsed = OverridesParser.create().parse_overrides([*params, *config.hydra.overrides.task])
    axes: dict[str, list[str]] = {}
    for o in parsed:
        key = o.get_key_element()
        if o.is_sweep_override():
            axes[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            axes[key] = [f"{key}={o.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*axes.values())]


def override_key(override: str) -> str:
    """The key or group an override sets: ``+loss.beta=2`` → ``loss.beta``."""
    return override.split("=", 1)[0].lstrip("+~")


def _groups() -> set[str]:
    return {p.name for p in CONF_DIR.iterdir() if p.is_dir()}


def job_config(config: DictConfig, overrides: list[str], cache: dict) -> DictConfig:
    """The composed config of one job: composed once per group choice, key overrides applied on top."""
    groups = _groups()
    is_group = [
        o for o in overrides if (k := override_key(o)) in groups or k.startswith("hydra") or o[0] in "+~"
    ]
    group_key = tuple(is_group)
    if group_key not in cache:
        loader = GlobalHydra.instance().config_loader()
        cache[group_key] = loader.load_sweep_config(master_config=config, sweep_overrides=list(is_group))
    cfg = cache[group_key].copy()
    with open_dict(cfg):
        for o in OverridesParser.create().parse_overrides([o for o in overrides if o not in is_group]):
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
    return cfg


def run_dir_of(cfg: DictConfig) -> Path:
    """Where the job ``cfg`` (from :func:`job_config`) writes its run: its own sweep directory, which
    names its dataset when that is not MNIST (``…/paper_fashion_mnist/``), then its run's subdirectory.
    Not the launch's top-level ``hydra.sweep.dir``: a grid that sweeps ``data=`` spans several."""
    return Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
