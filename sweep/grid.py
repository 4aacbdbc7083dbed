"""Check a whole grid before the first of its jobs starts (a Hydra callback, set in conf/config.yaml).

For every job of a multirun this resolves the job's run directory, which validates the job's config
(the ``run_name`` resolver), and stops the launch with a clear error, before anything is written, if:
* a job's config is invalid (e.g. a conv depth of 6 somewhere in the grid);
* two jobs would write the same run directory: they differ only in keys the run name does not show
  (an ablation such as ``loss.reduction=sum,paper``); the error names those keys and how to give
  each variant its own directory (``experiment=paper_loss_ablation`` does so);
* a run directory already holds a run of a different configuration, or one written by a version of
  the harness with another result schema (``results.SCHEMA_VERSION``);
* a sweep directory would hold runs of two datasets (``data.name``): two jobs of the grid, or a job and
  a run already there. The default sweep directory names the dataset when it is not MNIST
  (``results/sweeps/paper_fashion_mnist``), so this only stops an explicit ``hydra.sweep.dir``.
It then prints how many runs are already complete. Composition is done once per distinct group
choice (encoder × decoder …), with plain key overrides applied on top, so a 768-run grid checks in
seconds. Sweepers other than Hydra's basic one are left alone.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationResolutionError

from sweep import results
from sweep.config import CONF_DIR, config_diff, to_plain
from sweep.data import dataset_of

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


class GridError(HydraException):
    """The grid cannot be launched as it stands; nothing was written."""


def _groups() -> set[str]:
    return {p.name for p in CONF_DIR.iterdir() if p.is_dir()}


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


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def job_config(config: DictConfig, overrides: list[str], cache: dict) -> DictConfig:
    """The composed config of one job: composed once per group choice, key overrides applied on top."""
    groups = _groups()
    is_group = [o for o in overrides if _key(o) in groups or _key(o).startswith("hydra") or o[0] in "+~"]
    group_key = tuple(is_group)
    if group_key not in cache:
        loader = GlobalHydra.instance().config_loader()
        cache[group_key] = loader.load_sweep_config(master_config=config, sweep_overrides=list(is_group))
    cfg = cache[group_key].copy()
    with open_dict(cfg):
        for o in OverridesParser.create().parse_overrides([o for o in overrides if o not in is_group]):
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
    return cfg


def stored_datasets(sweep_dir: Path) -> dict[str, Path]:
    """Each dataset (``data.name``) of the runs stored below ``sweep_dir``, with one run of it."""
    found: dict[str, Path] = {}
    for path in sorted(Path(sweep_dir).glob("**/.hydra/config.yaml")):
        stored = results.read_stored_config(path.parent.parent)
        if isinstance(stored, dict):
            found.setdefault(dataset_of(stored), path.parent.parent)
    return found


def _check_one_dataset(sweep_dir: Path, dataset: str, overrides: list[str], dirs: dict) -> None:
    """Refuse a job that would put runs of ``dataset`` into a sweep directory that holds (or, in this
    grid, will hold) runs of another dataset."""
    if sweep_dir not in dirs:
        dirs[sweep_dir] = {name: f"the run {run}" for name, run in stored_datasets(sweep_dir).items()}
    other = {name: who for name, who in dirs[sweep_dir].items() if name != dataset}
    if other:
        name, who = next(iter(other.items()))
        raise GridError(
            f"grid job [{' '.join(overrides)}] would put data.name={dataset} runs into {sweep_dir}, which "
            f"holds data.name={name} runs ({who}): runs of different datasets never share a directory. "
            "Leave hydra.sweep.dir at its default (it names the dataset) or give each dataset its own"
        )
    dirs[sweep_dir].setdefault(dataset, f"grid job [{' '.join(overrides)}]")


def check_grid(config: DictConfig) -> dict[str, Any]:
    """Validate every job of the multirun ``config``; return counts, or raise :class:`GridError`."""
    sweep_dir = Path(config.hydra.sweep.dir)
    seen: dict[Path, list[str]] = {}
    datasets: dict[Path, dict[str, str]] = {}
    cache: dict = {}
    complete = 0
    for overrides in job_overrides(config):
        cfg = job_config(config, overrides, cache)
        try:
            job_sweep_dir = Path(str(cfg.hydra.sweep.dir))  # per job: it names the job's dataset
            run_dir = job_sweep_dir / str(cfg.hydra.sweep.subdir)
        except InterpolationResolutionError as exc:
            reason = str(exc).splitlines()[0].split("resolving interpolation: ")[-1]
            raise GridError(f"grid job [{' '.join(overrides)}] is invalid: {reason}") from None
        _check_one_dataset(job_sweep_dir, dataset_of(to_plain(cfg)), overrides, datasets)
        if run_dir in seen:
            differ = sorted({_key(o) for o in set(overrides) ^ set(seen[run_dir])})
            raise GridError(
                f"grid jobs [{' '.join(seen[run_dir])}] and [{' '.join(overrides)}] would both write {run_dir}: "
                f"the run name does not show {', '.join(differ)}. Give each variant its own directory, e.g. "
                f"'hydra.sweep.subdir={differ[0]}=${{{differ[0]}}}/${{run_name:}}' (as experiment=paper_loss_ablation "
                "does), or launch each value under its own sweep_name"
            )
        seen[run_dir] = overrides
        try:
            results.check_schema_version(run_dir)
        except results.SchemaVersionError as exc:
            raise GridError(str(exc)) from None
        stored = results.read_stored_config(run_dir)
        if stored is not None and (diff := config_diff(stored, to_plain(cfg))):
            raise GridError(f"{run_dir} already holds a run of a different configuration ({'; '.join(diff)})")
        complete += results.is_complete(run_dir)
    dirs = sorted(datasets) or [sweep_dir]  # several when the grid sweeps the dataset
    where = dirs[0] if len(dirs) == 1 else ", ".join(map(str, dirs))
    return {"runs": len(seen), "complete": complete, "sweep_dir": where}


class GridCheck(Callback):
    """Hydra callback: :func:`check_grid` at the start of every multirun of the basic sweeper."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
            return
        try:
            got = check_grid(config)
        except GridError as exc:
            # Hydra turns a callback's exceptions into warnings and launches anyway: stop it here
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        print(
            f"grid: {got['runs']} runs in {got['sweep_dir']}: {got['complete']} already complete, "
            f"{got['runs'] - got['complete']} to train or resume"
        )
