"""Train one VAE into its own run directory; with ``experiment=<grid>``, a whole grid as a Hydra multirun.

    python -m sweep.train encoder=dense encoder.depth=1 decoder=conv decoder.depth=4 latent_dim=25
    python -m sweep.train experiment=paper        # 300 runs into results/sweeps/paper/<run_name>/

A run is idempotent: relaunching skips it when its ``COMPLETE`` marker exists (for the same config),
resumes it from ``last.pt`` when it was interrupted, and refuses to touch a directory that holds a run
of a different config. ``train(cfg, out_dir)`` is the plain function that tests and other entry points
call; ``main`` is the thin Hydra edge.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from sweep.cohort import make_optimizer, seed_everything
from sweep.config import CONF_DIR, to_plain
from sweep.engine import train_jobs
from sweep.hydra_setup import register
from sweep.member import ConfigMismatchError, Job, StopRun
from sweep.models import build_model

__all__ = [
    "ConfigMismatchError",
    "StopRun",
    "build_model",
    "cli",
    "main",
    "make_optimizer",
    "seed_everything",
    "train",
]

register()  # before @hydra.main composes: the run_name resolver and the encoder=conv4 shorthands


def train(
    cfg: DictConfig | dict,
    out_dir: str | Path,
    overrides: list[str] | None = None,
    hydra_cfg: Any = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train (or skip, or resume) the run ``cfg`` in ``out_dir``; return its ``run.parquet`` row.

    ``on_epoch(epoch, val_neg_elbo)`` is called after each epoch's checkpoint; it may raise
    :class:`StopRun` to end the run early (a search pruning a hopeless trial). A run that another
    process is training is skipped at once with status ``locked`` (nothing is written). The run is a
    cohort of one in :mod:`sweep.engine`, trained by the same code as a whole grid."""
    job = Job(to_plain(cfg), Path(out_dir), list(overrides or []), hydra_cfg, on_epoch)
    (result,) = train_jobs([job])
    if isinstance(result, BaseException):
        raise result
    return result


def launcher_threads(hc) -> int | None:
    """CPU threads for one run under the job's launcher, so parallel runs do not oversubscribe cores:
    a submitit task gets its ``cpus_per_task``; joblib's ``n_jobs`` workers split this machine."""
    cpus = OmegaConf.select(hc, "launcher.cpus_per_task", default=None)
    if isinstance(cpus, int) and cpus > 0:
        return cpus
    n_jobs = OmegaConf.select(hc, "launcher.n_jobs", default=None)
    if isinstance(n_jobs, int) and n_jobs > 1:
        return max(1, (os.cpu_count() or 1) // n_jobs)
    return None


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    if cfg.num_threads is None:
        cfg.num_threads = launcher_threads(hc)
    row = train(cfg, hc.runtime.output_dir, overrides=list(hc.overrides.task), hydra_cfg=hc)
    if row["status"] == "failed" and hc.mode == RunMode.RUN:
        sys.exit(1)
    return row.get("val/neg_elbo")


def cli() -> None:
    """``python -m sweep.train``: Hydra's own errors (a bad override or group option) refused in one
    line with exit status 2 (:func:`sweep.grid.check_command_line`), then Hydra's ``main``; Ctrl-C
    ends it with one line saying where each run stopped and how to resume it, exit status 130: the
    runs this process's engine stopped, or, where they trained in other processes (the joblib
    launcher's workers), every started and unfinished run of the launched grid
    (:func:`sweep.grid.unfinished_runs`)."""
    from sweep import grid
    from sweep.engine import Interrupted, interrupted_line

    grid.LAUNCHED.clear()
    grid.check_command_line(sys.argv[1:])
    try:
        main()
    except KeyboardInterrupt as exc:  # Ctrl-C: one line saying where it stopped, not a traceback
        if not isinstance(exc, Interrupted):  # no engine here saw the runs stop: the grid's files say
            exc = Interrupted(grid.unfinished_runs(grid.LAUNCHED))
        print(interrupted_line(exc, ["python", "-m", "sweep.train", *sys.argv[1:]]), file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    # Call the importable module's ``main``, not this ``__main__`` copy: process launchers (joblib,
    # submitit) pickle the task function, and only a module-level one pickles cleanly.
    from sweep.train import cli as _cli

    _cli()
