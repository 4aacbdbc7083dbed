"""``hydra/launcher=slurm``: hydra-submitit-launcher's Slurm launcher with a sweep's manners (complete
runs not submitted, every task waited for, squeue where the cluster keeps no accounting, and
``runs_per_task`` > 1 for cohorts of runs per array task). Hydra finds launchers only in the
``hydra_plugins`` package; the work is done by :func:`sweep.slurm.launch`."""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher


@dataclass
class SweepSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.vae_sweep_launcher.slurm_launcher.SweepSlurmLauncher"
    runs_per_task: int = 1  # > 1: each array task trains that many runs in one process, in cohorts


ConfigStore.instance().store(
    group="hydra/launcher", name="sweep_slurm", node=SweepSlurmConf, provider="vae-sweep"
)


class SweepSlurmLauncher(SlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from sweep.slurm import launch

        assert self.config is not None
        return launch(self.config, self.params, self._EXECUTOR, self, job_overrides, initial_job_idx)
