"""The Slurm launcher's work (``hydra/launcher=slurm``): Hydra's submitit launcher, made to fit a sweep.

    python -m sweep.train experiment=full hydra/launcher=slurm hydra.launcher.partition=gpu ...
    python -m sweep.train experiment=full hydra/launcher=slurm hydra.launcher.runs_per_task=32   # cohorts

What it adds to ``hydra_submitit_launcher``'s SlurmLauncher:
* **complete runs are not submitted**: each job's run directory is resolved before submission and a
  run with its ``COMPLETE`` marker is reported as the basic launcher reports it, so relaunching a
  finished sweep submits nothing. Unfinished runs are submitted and resume from their ``last.pt``;
  a run another launch is training is skipped by its lock inside the task, as always.
* **cohorts on Slurm** (``runs_per_task`` > 1): runs are ordered so that runs that can stack (same
  :func:`sweep.engine.cohort_key`) are neighbours, and each array task trains ``runs_per_task`` of
  them in one process with the engine, exactly as ``hydra/launcher=cohort`` trains a whole grid.
  With 1 (the default) each array task is one run through Hydra's ``run_job``, as before.
* **every task is waited for**: a task that ends without a result (``scancel``, node failure, out of
  requeues) is reported with its run and Slurm state once all others are done, instead of the first
  such task aborting the wait while the rest still run.
* **clusters without accounting**: submitit polls ``sacct``, which fails there (with a warning three
  lines long at every poll), and it then never learns that a task without a result has ended: the
  launch would wait for ever for a cancelled task. Where ``scontrol show config`` says
  ``AccountingStorageType=accounting_storage/none`` the states come from ``squeue`` instead, and
  one line says so. Where accounting is on, nothing changes and sacct's real errors still show.

Requeue after preemption or a time-out is submitit's: on ``USR2`` (``signal_delay_s`` before the
time limit) the task checkpoints its call and requeues itself, up to ``max_num_timeout`` times for
time-outs; the run then resumes from its own ``last.pt``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import DictConfig, OmegaConf

from sweep import results, undo
from sweep.config import to_plain
from sweep.engine import cohort_key
from sweep.jobs import job_config, run_dir_of
from sweep.rules import ConfigError, refusal, validate_launcher

EXTRA_KEYS = ("runs_per_task",)  # ours; the rest of hydra.launcher goes to submitit as before
SQUEUE_POLL_S = 30  # at most one squeue every 30 s once a launch has run a while (submitit's sacct: 600 s)


# ------------------------------------------------------------------------------ the cluster
def partitions() -> dict[str, bool] | None:
    """{partition: whether any of its nodes has GRES gpu} as ``sinfo`` reports them (the default
    partition first), or None where ``sinfo`` is not on PATH or does not answer."""
    if shutil.which("sinfo") is None:
        return None
    try:
        out = subprocess.run(
            ["sinfo", "--noheader", "--format=%P|%G"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    found: dict[str, bool] = {}
    for line in out.stdout.splitlines():
        name, _, gres = line.strip().partition("|")
        if not name:
            continue
        default = name.endswith("*")
        name = name.rstrip("*")
        gpu = any(g.split(":")[0] == "gpu" for g in gres.split(","))
        if default and name not in found:
            found = {name: gpu, **found}
        found[name] = found.get(name, False) or gpu
    return found


def check_partition(launcher: DictConfig | dict[str, Any]) -> None:
    """Refuse a Slurm launch this cluster would reject only after ``.submitit/`` is written: a
    partition ``sinfo`` does not list, or GPUs (``gpus_per_task``, ``gpus_per_node``, ``gres`` gpu:…)
    asked of a partition none of whose nodes has GRES gpu. Where ``sinfo`` does not answer, nothing is
    checked (the launch reports what Slurm says)."""
    found = partitions()
    if not found:
        return
    get = (
        (lambda k: OmegaConf.select(launcher, k, default=None))
        if OmegaConf.is_config(launcher)
        else launcher.get
    )
    asked = get("partition")
    names = [p.strip() for p in str(asked).split(",")] if asked else [next(iter(found))]
    for name in names:
        if name not in found:
            raise ConfigError(
                f"hydra.launcher.partition={asked!r} is not a partition of this cluster (sinfo); valid: "
                + ", ".join(found)
            )
    gpus = {k: get(k) for k in ("gpus_per_task", "gpus_per_node")}
    wants = {k: v for k, v in gpus.items() if isinstance(v, int) and v > 0}
    if "gpu" in str(get("gres") or ""):
        wants["gres"] = get("gres")
    without = [n for n in names if not found[n]]
    if wants and without:
        key, value = next(iter(wants.items()))
        with_gpus = [n for n, g in found.items() if g]
        raise ConfigError(
            f"hydra.launcher.{key}={value!r} asks for GPUs, but partition {without[0]!r} has none (no GRES "
            f"gpu in sinfo); valid: hydra.launcher.{key}=0 for CPU tasks, or hydra.launcher.partition="
            + (f"one with GPUs: {', '.join(with_gpus)}" if with_gpus else "… (this cluster lists no GPUs)")
        )


# ------------------------------------------------------------------------------ job states
def accounting_off() -> bool:
    """True when this cluster keeps no job accounting (``sacct`` cannot answer)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "AccountingStorageType":
            return value.strip() in ("accounting_storage/none", "(null)", "")
    return False


def squeue_watcher():
    """A submitit job-state watcher that asks ``squeue`` (for clusters without accounting)."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    class SqueueWatcher(SlurmInfoWatcher):
        def _make_command(self) -> list[str] | None:
            if not self._registered - self._finished:
                return None
            # all of this user's jobs, one line per array task, finished ones while slurmctld keeps
            # them (MinJobAge); a job absent from the answer has ended and been forgotten
            return ["squeue", "--me", "--noheader", "--array", "--states=all", "--format=%i|%T|%N"]

        def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
            text = string.decode() if isinstance(string, bytes) else string
            info = super().read_info("JobID|State|NodeList\n" + text)
            for job_id in self._registered - self._finished:
                if job_id not in info:
                    info[job_id] = {"JobID": job_id, "State": "ENDED", "NodeList": ""}
            return info

    return SqueueWatcher(delay_s=SQUEUE_POLL_S)


# ------------------------------------------------------------------------------ tasks
class GroupTask:
    """One array task training several runs in one process (``runs_per_task`` > 1), through the same
    code as ``hydra/launcher=cohort``. Checkpointable: on a time-out or preemption submitit requeues
    the same call and every run resumes from its ``last.pt``."""

    def __init__(self, config: DictConfig, overrides: list[list[str]], first_idx: int, state: dict):
        self.config, self.overrides, self.first_idx, self.state = config, overrides, first_idx, state

    def __call__(self) -> list[JobReturn]:
        from sweep.cohort_launch import launch

        Singleton.set_state(self.state)  # Hydra's state with the launch's resolvers and config store
        return launch(self.config, self.overrides, self.first_idx)

    def checkpoint(self) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def _complete_return(cfg: DictConfig, overrides: list[str], run_dir: Path) -> JobReturn:
    row = pq.read_table(run_dir / "run.parquet").to_pylist()[0]
    print(f"{row['run_name']}: already complete ({row['status']}), not submitted: {run_dir}")
    ret = JobReturn(overrides=list(overrides), cfg=cfg, hydra_cfg=cfg, task_name=str(cfg.hydra.job.name))
    ret.status, ret.return_value = JobStatus.COMPLETED, row.get("val/neg_elbo")
    return ret


def _failed_return(overrides: list[str], exc: BaseException) -> JobReturn:
    ret = JobReturn(overrides=list(overrides))
    ret.status, ret.return_value = JobStatus.FAILED, exc
    return ret


def split_complete(
    config: DictConfig, job_overrides: Sequence[Sequence[str]]
) -> tuple[list[JobReturn | None], list[tuple[int, list[str], DictConfig]]]:
    """Which jobs of a multirun to submit: per job the return of a complete run (its ``COMPLETE``
    marker in its own run directory, :func:`sweep.jobs.run_dir_of`, which names its dataset) or None,
    and the (index, overrides, composed config) of every job left to submit."""
    out: list[JobReturn | None] = [None] * len(job_overrides)
    todo: list[tuple[int, list[str], DictConfig]] = []
    cache: dict = {}
    for i, overrides in enumerate(job_overrides):
        cfg = job_config(config, list(overrides), cache)
        run_dir = run_dir_of(cfg)
        if results.is_complete(run_dir):
            out[i] = _complete_return(cfg, list(overrides), run_dir)
        else:
            todo.append((i, list(overrides), cfg))
    return out, todo


def make_executor(params: dict[str, Any], executor_name: str) -> tuple[Any, Any]:
    """submitit's executor with ``hydra.launcher``'s parameters (``runs_per_task`` already taken out),
    and the squeue watcher where this cluster keeps no accounting (else None)."""
    import submitit

    executor = submitit.AutoExecutor(
        cluster=executor_name,
        folder=params.pop("submitit_folder"),
        **{f"{executor_name}_max_num_timeout": params.pop("max_num_timeout")},
    )
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    generic = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{k if k in generic else f"{executor_name}_{k}": v for k, v in params.items()}
    )
    watcher = None
    if executor_name == "slurm" and accounting_off():
        print(
            "slurm launcher: this cluster keeps no accounting (AccountingStorageType=accounting_storage/none), "
            "so sacct cannot answer: task states come from squeue"
        )
        watcher = squeue_watcher()
    return executor, watcher


def refused_submission(exc: Exception, params: dict[str, Any], earlier: bool = False) -> Exception:
    """A submission ``sbatch`` refused (submitit's ``FailedJobError``: a bad gres, partition, account or
    time limit where ``sinfo`` could not check them first) as one :class:`ConfigError` line naming what
    Slurm said and the launcher settings sent; any other exception as it was."""
    from submitit.core.utils import FailedJobError

    if not isinstance(exc, FailedJobError):
        return exc
    said = " ".join(str(exc).split()) or type(exc).__name__
    sent = ", ".join(
        f"hydra.launcher.{k}={params[k]!r}"
        for k in ("partition", "gpus_per_node", "gpus_per_task", "gres", "timeout_min", "account")
        if params.get(k) not in (None, "")
    )
    return ConfigError(
        f"Slurm refused the submission ({said}); "
        + ("this batch was not submitted (earlier batches were, and run on)" if earlier else "nothing was submitted")
        + f". Sent: {sent or 'the defaults'}; valid: "
        "settings this cluster accepts, e.g. hydra.launcher.gpus_per_node=0 for CPU tasks, a partition "
        "`sinfo` lists (docs/slurm.md)"
    )


def submit(
    executor: Any,
    config: DictConfig,
    per_run: Callable[..., JobReturn],
    todo: list[tuple[int, list[str], DictConfig]],
    runs_per_task: int,
    initial_job_idx: int,
) -> tuple[list[list[tuple[int, list[str], DictConfig]]], list[Any]]:
    """The jobs left to submit as one array: one run per task through ``per_run``, or groups of
    ``runs_per_task`` neighbours that can stack, each a :class:`GroupTask`. Returns (groups, jobs)."""
    for i, overrides, _ in todo:
        print(f"\t#{initial_job_idx + i} : {' '.join(filter_overrides(overrides))}")
    state = Singleton.get_state()
    if runs_per_task == 1:
        groups = [[t] for t in todo]
        args = [(ov, "hydra.sweep.dir", initial_job_idx + i, f"job_id_for_{i}", state) for i, ov, _ in todo]
        jobs = executor.map_array(per_run, *zip(*args, strict=True))
    else:  # neighbours can stack: order by cohort key (stable: grid order within a key)
        ordered = sorted(todo, key=lambda t: cohort_key(to_plain(t[2])))
        groups = [ordered[k : k + runs_per_task] for k in range(0, len(ordered), runs_per_task)]
        tasks = [GroupTask(config, [ov for _, ov, _ in g], initial_job_idx + g[0][0], state) for g in groups]
        with executor.batch():
            jobs = [executor.submit(task) for task in tasks]
    return groups, jobs


def wait_all(
    groups: list[list[tuple[int, list[str], DictConfig]]], jobs: list[Any], out: list[JobReturn | None]
) -> None:
    """Every task waited for, its runs' returns put in ``out`` by job index; a task without a result
    (cancelled, node failure, out of requeues, crashed) fails its runs and is reported once all are done."""
    problems = []
    for group, job in zip(groups, jobs, strict=True):
        job.wait()
        try:
            got = job.results()[0]
            rets = got if isinstance(got, list) else [got]
        except Exception as exc:  # no result: cancelled, node failure, out of requeues, crashed
            rets = [_failed_return(ov, exc) for _, ov, _ in group]
            names = ", ".join(os.path.basename(str(cfg.hydra.sweep.subdir)) for _, _, cfg in group)
            problems.append(f"task {job.job_id} ({names}) ended without a result, state {job.state}")
        for (i, _, _), ret in zip(group, rets, strict=True):
            out[i] = ret
    if problems:
        print(
            f"slurm launcher: {len(problems)} of {len(jobs)} task(s) did not finish; their runs stay unfinished "
            "(a relaunch resumes them):\n  " + "\n  ".join(problems)
        )


def launch(
    config: DictConfig,
    params: dict[str, Any],
    executor_name: str,
    per_run: Callable[..., JobReturn],
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
) -> list[JobReturn]:
    """Submit the unfinished jobs of a multirun as one Slurm array and wait for every task.

    ``params`` is ``hydra.launcher`` (resolved); ``per_run`` the launcher itself, called in a task
    with Hydra's usual arguments (``runs_per_task`` = 1)."""
    params = dict(params)
    validate_launcher(params)  # the grid check did so before anything was written; a launch without it
    runs_per_task = params.pop("runs_per_task", 1)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)

    out, todo = split_complete(config, job_overrides)
    n_tasks = -(-len(todo) // runs_per_task)
    print(
        f"slurm launcher: {len(job_overrides)} runs, {len(job_overrides) - len(todo)} complete (not submitted), "
        f"{len(todo)} to submit as {n_tasks} array task(s) of up to {runs_per_task} run(s)"
    )
    if not todo:
        return out  # type: ignore[return-value]

    undo.wrote()  # what this launch wrote before submitting: a refused submission puts it back
    folder = str(params["submitit_folder"]).split("%j")[0]  # submitit's files go below, named per call
    executor, watcher = make_executor(params, executor_name)
    earlier = undo.submitted()
    undo.submitting(folder)
    try:
        groups, jobs = submit(executor, config, per_run, todo, runs_per_task, initial_job_idx)
    except Exception as exc:
        refused = refused_submission(exc, params, earlier)
        if not isinstance(refused, ConfigError):
            raise
        undo.undo()  # nothing written: grid.json, multirun.yaml, .submitit/ as the launch found them
        print(refusal(refused, "Slurm submission"), file=sys.stderr)  # one error: line, exit 2
        raise SystemExit(2) from None
    undo.forget()
    if watcher is not None:  # submitit's class-wide sacct watcher, replaced for these jobs only
        for job in jobs:
            job.watcher = watcher
    wait_all(groups, jobs, out)
    return out  # type: ignore[return-value]
