"""``hydra/launcher=cohort``: Hydra hands this launcher every job of a multirun at once, and it trains
them all in this one process with :mod:`sweep.engine` (cohorts of stacked runs, several at a time on
one device). Hydra finds launchers only in the ``hydra_plugins`` package; the work is done by
:func:`sweep.cohort_launch.launch`."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class CohortLauncherConf:
    _target_: str = "hydra_plugins.vae_sweep_launcher.cohort_launcher.CohortLauncher"


ConfigStore.instance().store(
    group="hydra/launcher", name="cohort", node=CohortLauncherConf, provider="vae-sweep"
)


class CohortLauncher(Launcher):
    def __init__(self) -> None:
        self.config: Optional[DictConfig] = None  # noqa: UP045 - Hydra loads plugins without __future__
        self.hydra_context: Optional[HydraContext] = None  # noqa: UP045

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from sweep.cohort_launch import launch

        assert self.config is not None
        return launch(self.config, job_overrides, initial_job_idx)
