"""The cohort launcher's work: every job of a Hydra multirun, trained in this one process.

    python -m sweep.train experiment=paper hydra/launcher=cohort

Hydra's basic launcher starts jobs one at a time and the joblib launcher one process each; this one
composes every job's config (once per group choice, as the grid check does), hands the whole list to
:func:`sweep.engine.train_jobs`, which stacks runs of one architecture into cohorts and trains several
cohorts at once on the device, and returns one ``JobReturn`` per job. Process start-up, imports and
the dataset's trip to the device are paid once per launch. Each run keeps its own directory, lock,
resume and status, so a relaunch, or another launch on the same sweep at the same time (any
launcher), never trains a run twice.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from sweep.config import to_plain
from sweep.engine import train_jobs
from sweep.jobs import job_config, run_dir_of
from sweep.member import Job


def launch(
    config: DictConfig, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> list[JobReturn]:
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    cache: dict = {}
    jobs, composed = [], []
    for idx, overrides in enumerate(job_overrides):
        cfg = job_config(config, list(overrides), cache)
        out_dir = run_dir_of(cfg)
        with open_dict(cfg):
            cfg.hydra.job.id = cfg.hydra.job.num = initial_job_idx + idx
            cfg.hydra.runtime.output_dir = str(out_dir)
        jobs.append(Job(to_plain(cfg), out_dir, list(overrides), cfg.hydra))
        composed.append(cfg)
    print(f"cohort launcher: {len(jobs)} jobs in one process")
    returns = []
    for overrides, cfg, result in zip(job_overrides, composed, train_jobs(jobs), strict=True):
        task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        ret = JobReturn(
            overrides=list(overrides),
            cfg=task,
            hydra_cfg=cfg,
            working_dir=os.getcwd(),
            task_name=str(cfg.hydra.job.name),
        )
        if isinstance(result, BaseException):
            ret.status, ret.return_value = JobStatus.FAILED, result
        else:
            ret.status, ret.return_value = JobStatus.COMPLETED, result.get("val/neg_elbo")
        returns.append(ret)
    return returns
