"""Check a launch before anything is written (a Hydra callback, set in conf/config.yaml).

For every job of a multirun (and for a single run, before Hydra creates its directory) this validates
the job's config with :func:`sweep.rules.validate` (every key; the device against this machine unless
a Slurm launcher runs the jobs elsewhere), resolves its run directory, and stops the launch with one
``error:`` line and exit status 2, before anything is written, if:
* a job's config is invalid (e.g. a conv depth of 6 somewhere in the grid);
* a job is listed twice (a value repeated in a sweep axis, ``latent_dim=25,25``), or two jobs would
  write the same run directory: they differ only in keys the run name does not show (an ablation such
  as ``loss.reduction=sum,paper``); the error names those keys and how to give each variant its own
  directory (``experiment=paper_loss_ablation`` does so);
* a run directory already holds a run of a different configuration that trained, or one written by
  a version of the harness with another result schema (``results.SCHEMA_VERSION``);
* a single run's ``hydra.run.dir`` lies in a sweep (a directory with ``grid.json``) but is not one of
  its grid's run directories, or is one with another protocol than the sweep's settings
  (:func:`check_sweep_member`, which ``python -m sweep.rerun --out`` makes too);
* a single run's directory holds that run, complete, evaluated with another profile than the command
  asks for (:func:`sweep.member.check_evaluated_as`): it would be skipped, its numbers taken for this
  command's;
* a job's protocol (dataset, epochs, loss, evaluation profile: :func:`sweep.keys.protocol`) differs
  from the sweep's settings: those its ``grid.json`` records, or, for a sweep launched before they were
  recorded, those every run stored there shares (the message names the key and both values). Launcher,
  engine, device, thread and progress settings never count;
* a sweep directory would hold runs of two datasets (``data.name``): two jobs of the grid, or a job and
  a run already there. The default sweep directory names the dataset when it is not MNIST
  (``results/sweeps/paper_fashion_mnist``), so this only stops an explicit ``hydra.sweep.dir``.
The check fails closed: any exception inside it (a bug included) stops the launch the same way, since
Hydra would otherwise turn a callback's exception into a warning and launch anyway. It then, holding the
sweep's lock (:func:`sweep.lock.sweep_lock`), checks the settings once more and writes the grid's run
directories and the sweep's settings to ``<sweep dir>/grid.json`` (atomically), which ``python -m
sweep.status`` compares the sweep with: of two launches of different settings into one sweep at once,
the second is refused in one line. Then it prints how many runs are already complete.
Composition is done once per distinct group choice (encoder × decoder
…), with plain key overrides applied on top, so a 768-run grid checks in seconds. Sweepers other than
Hydra's basic one are left alone. :class:`SweepProgress`, the other callback here, draws the whole
sweep's progress line.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import InterpolationResolutionError

from sweep import results, undo
from sweep.config import CONF_DIR, flatten, to_plain
from sweep.data import dataset_of
from sweep.engine import stopped_runs
from sweep.jobs import job_config, job_overrides, override_key, run_dir_of
from sweep.keys import protocol, protocol_diff, shown
from sweep.lock import sweep_lock
from sweep.member import ConfigMismatchError, check_evaluated_as, check_run_dir
from sweep.models import SpecError
from sweep.names import run_name_of
from sweep.paths import writable
from sweep.rules import ConfigError, refusal, validate, validate_launcher
from sweep.status import (
    COMPLETE_STATES,
    FAILED_STATES,
    GRID_FILE,
    Scanner,
    Status,
    hms,
    read_grid,
    read_settings,
    scan,
    show_progress,
    sweep_of,
)

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
# The sweep directories of the multirun this process launched on this machine, once its grid check passed
# (``sweep.train`` clears it at each start): what Ctrl-C names the unfinished runs of where they train in
# other processes (the joblib launcher's workers), so that no engine of this process knows where they
# stopped.
LAUNCHED: list[Path] = []


class GridError(HydraException):
    """The grid cannot be launched as it stands; nothing was written."""


def runs_here(config: DictConfig) -> bool:
    """Whether the launcher runs the jobs on this machine (so its devices are the ones to check): not
    so for Slurm, whose jobs check their device on their node, before they write anything."""
    return not str(config.hydra.launcher.get("_target_", "")).endswith("SlurmLauncher")


def stored_configs(sweep_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(run directory, stored config) of every run below ``sweep_dir`` that has trained."""
    found = []
    for path in sorted(Path(sweep_dir).glob("**/.hydra/config.yaml")):
        try:  # a run that never trained holds nothing (a corrected relaunch replaces it)
            stored = results.trained_config(path.parent.parent)
        except results.StoredConfigError:
            continue  # unreadable: the check of its own run names it when the grid includes it
        if isinstance(stored, dict):
            found.append((path.parent.parent, stored))
    return found


def stored_datasets(sweep_dir: Path) -> dict[str, Path]:
    """Each dataset (``data.name``) of the runs stored below ``sweep_dir``, with one run of it."""
    found: dict[str, Path] = {}
    for run_dir, stored in stored_configs(sweep_dir):
        found.setdefault(dataset_of(stored), run_dir)
    return found


def sweep_settings(sweep_dir: Path) -> tuple[dict[str, Any], str]:
    """(the protocol settings every run of the sweep shares, where they come from): its ``grid.json``'s
    ``settings``; for a sweep launched before they were recorded, the protocol keys on which every
    run stored there agrees ({} for a new sweep)."""
    recorded = read_settings(sweep_dir)
    if recorded is not None:
        return recorded, GRID_FILE
    stored = [protocol(flatten(cfg)) for _, cfg in stored_configs(sweep_dir)]
    common = {k: v for k, v in stored[0].items() if all(p.get(k) == v for p in stored)} if stored else {}
    return common, "runs stored there"


def check_settings(sweep_dir: Path, jobs: list[tuple[list[str], dict[str, Any]]]) -> dict[str, Any]:
    """Refuse a job (overrides, protocol) whose protocol differs from the sweep's settings
    (:func:`sweep_settings`), naming the key and both values; return the settings the sweep keeps:
    those it had, or for a new sweep the protocol keys every job of this grid shares."""
    settings, source = sweep_settings(sweep_dir)
    for overrides, proto in jobs:
        for key, want, got in protocol_diff(settings, proto):
            raise GridError(
                f"grid job [{' '.join(overrides)}] sets {key}={shown(got)}, but the sweep {sweep_dir} holds "
                f"{key}={shown(want)} (its {source}): the runs of one sweep share their dataset, epochs, "
                f"loss and evaluation profile; valid: {key}={shown(want)}, or another sweep_name"
            )
    if settings or not jobs:
        return settings
    first = jobs[0][1]
    return {k: v for k, v in first.items() if all(p.get(k) == v for _, p in jobs)}


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


def check_sweep_member(cfg: dict[str, Any], run_dir: Path, what: str) -> None:
    """Refuse (:class:`ConfigError`) a single run's directory ``run_dir`` (given as ``what``:
    ``hydra.run.dir`` or ``--out``) inside a sweep (a directory with ``grid.json``) unless it is one of
    that sweep's run directories, named as this run is, and the run's protocol is the sweep's: another run
    put there would be
    counted by the sweep's analysis as one of its own (a second copy of a seed, or a run of another
    protocol)."""
    sweep = sweep_of(run_dir)
    if sweep is None:
        return
    grid = read_grid(sweep)[0]
    rel = str(Path(run_dir).resolve().relative_to(sweep))
    if rel not in grid:
        raise ConfigError(
            f"{what} {str(run_dir)!r} lies in the sweep {sweep}, whose grid has no run {rel}: a run put there "
            f"would count as one of the sweep's; valid: one of its run directories (e.g. {sweep / grid[0]}) "
            f"or a directory outside every sweep, e.g. {Path(cfg['results_dir']) / 'runs' / Path(rel).name}"
            if grid
            else f"{what} {str(run_dir)!r} lies in the sweep {sweep}, whose grid has no run {rel}"
        )
    name = run_name_of(cfg)
    if Path(rel).name != name:
        raise ConfigError(
            f"{what} {str(run_dir)!r} is the sweep {sweep}'s run {rel}, but this run is {name} (its "
            f"architecture, seed or trial differ): it would be counted as {Path(rel).name}; valid: "
            + (
                f"{what}={sweep / Path(rel).parent / name}"
                if name in {Path(r).name for r in grid}
                else f"a {what} outside the sweep"
            )
        )
    for key, want, got in protocol_diff(read_settings(sweep) or {}, flatten(cfg)):
        raise ConfigError(
            f"{what} {str(run_dir)!r} is a run of the sweep {sweep}, which holds {key}={shown(want)}, but "
            f"this run sets {key}={shown(got)}; valid: {key}={shown(want)}, or a {what} outside the sweep"
        )


def check_grid(config: DictConfig) -> dict[str, Any]:
    """Validate every job of the multirun ``config``; return counts, or raise :class:`GridError`."""
    sweep_dir = Path(config.hydra.sweep.dir)
    seen: dict[Path, list[str]] = {}
    datasets: dict[Path, dict[str, str]] = {}
    cache: dict = {}
    complete = 0
    here = runs_here(config)
    validate_launcher(config.hydra.launcher)
    if not here:  # Slurm: the partition and its GPUs, where this machine can ask (sinfo)
        from sweep.slurm import check_partition

        check_partition(config.hydra.launcher)
    writable_dirs: set[Path] = set()
    protocols: dict[Path, list[tuple[list[str], dict[str, Any]]]] = {}
    for overrides in job_overrides(config):
        cfg = job_config(config, overrides, cache)
        try:
            plain = validate(to_plain(cfg), here=here)
            job_sweep_dir = Path(str(cfg.hydra.sweep.dir))  # per job: it names the job's dataset
            run_dir = run_dir_of(cfg)
        except (ConfigError, SpecError, InterpolationResolutionError) as exc:
            reason = str(exc).splitlines()[0].split("resolving interpolation: ")[-1]
            raise GridError(f"grid job [{' '.join(overrides)}] is invalid: {reason}") from None
        if job_sweep_dir not in writable_dirs:  # once per sweep directory (one per dataset)
            writable(job_sweep_dir, "hydra.sweep.dir")
            writable_dirs.add(job_sweep_dir)
        _check_one_dataset(job_sweep_dir, dataset_of(to_plain(cfg)), overrides, datasets)
        protocols.setdefault(job_sweep_dir, []).append((overrides, protocol(flatten(plain))))
        if run_dir in seen:
            if sorted(overrides) == sorted(seen[run_dir]):
                raise GridError(
                    f"grid job [{' '.join(overrides)}] is listed twice: a value is repeated in "
                    f"{', '.join(repeated_values(config)) or 'the sweep'}; list each value once"
                )
            differ = sorted({override_key(o) for o in set(overrides) ^ set(seen[run_dir])})
            raise GridError(
                f"grid jobs [{' '.join(seen[run_dir])}] and [{' '.join(overrides)}] would both write {run_dir}: "
                f"the run name does not show {', '.join(differ)}. Give each variant its own directory, e.g. "
                f"'hydra.sweep.subdir={differ[0]}=${{{differ[0]}}}/${{run_name:}}' (as experiment=paper_loss_ablation "
                "does), or launch each value under its own sweep_name"
            )
        seen[run_dir] = overrides
        try:
            check_run_dir(plain, run_dir)
        except (results.SchemaVersionError, results.StoredConfigError, ConfigMismatchError) as exc:
            raise GridError(str(exc)) from None
        complete += results.is_complete(run_dir)
    for job_sweep_dir, jobs in protocols.items():  # again, under the sweep's lock, before grid.json
        check_settings(job_sweep_dir, jobs)
    dirs = sorted(datasets) or [sweep_dir]  # several when the grid sweeps the dataset
    where = dirs[0] if len(dirs) == 1 else ", ".join(map(str, dirs))
    by_dir = {d: [r for r in seen if r.is_relative_to(d)] for d in dirs}
    return {
        "runs": len(seen),
        "complete": complete,
        "sweep_dir": where,
        "run_dirs": list(seen),
        "by_dir": by_dir,
        "protocols": protocols,
    }


def write_grid_file(
    sweep_dir: Path, run_dirs: list[Path], argv: list[str], settings: dict[str, Any] | None = None
) -> None:
    """Record the launched grid for ``python -m sweep.status``: every run directory (relative to the
    sweep directory), the command, the time and the sweep's protocol ``settings`` (what every later
    launch and every run must agree with). Each launch replaces it (like Hydra's multirun.yaml)."""
    record = {
        "schema_version": results.SCHEMA_VERSION,
        "launched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m sweep.train " + shlex.join(argv[1:]),
        "runs": [str(Path(d).relative_to(sweep_dir)) for d in run_dirs],
        "settings": settings or {},
    }
    results.atomic_write_bytes(Path(sweep_dir) / GRID_FILE, json.dumps(record, indent=1).encode())


def record_grid(got: dict[str, Any], argv: list[str]) -> None:
    """Write the ``grid.json`` of each sweep directory of a checked grid (``got``, from
    :func:`check_grid`), each after checking the jobs' settings once more while holding the sweep's
    lock: a concurrent launch of other settings, checked meanwhile, finds this grid.json and is
    refused (:class:`GridError`), not mixed in."""
    for sweep_dir, run_dirs in got["by_dir"].items():  # one per dataset when the grid sweeps it
        with sweep_lock(sweep_dir):
            settings = check_settings(sweep_dir, got["protocols"].get(sweep_dir, []))
            write_grid_file(sweep_dir, run_dirs, argv, settings)


def repeated_values(config: DictConfig) -> list[str]:
    """Sweep axes that list a value more than once, as ``key=value``."""
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.params or {}).items()]
    out = []
    for o in OverridesParser.create().parse_overrides([*params, *config.hydra.overrides.task]):
        if o.is_sweep_override():
            values = list(o.sweep_string_iterator())
            out += [f"{o.get_key_element()}={v}" for v in dict.fromkeys(values) if values.count(v) > 1]
    return out


def failed_runs(sweep_dirs: list[Path]) -> str | None:
    """One ``error:`` line if a run of the grids in ``sweep_dirs`` failed (or its files are unreadable),
    as ``python -m sweep.status`` reads them; None if none did. A run another launch still holds is not
    this launch's failure (twin launches share a grid and skip each other's runs)."""
    bad, total = [], 0
    for sweep_dir in sweep_dirs:
        st = scan(sweep_dir)
        total += len(st.runs)
        bad += [(sweep_dir, r) for r in st.runs if r.state in FAILED_STATES]
    if not bad:
        return None
    sweep_dir, first = bad[0]
    return (
        f"error: {len(bad)} of {total} runs of the grid failed ({first.name}: {first.detail}); "
        f"python -m sweep.status {shlex.quote(str(sweep_dir))} lists them, "
        f"python -m sweep.rerun --failed {shlex.quote(str(sweep_dir))} retries them"
    )


def unfinished_runs(sweep_dirs: list[Path]) -> list[tuple[Path, int | None, int | None]]:
    """(run directory, epochs done, epochs) of each run of the grids in ``sweep_dirs`` (their
    ``grid.json``) that has started and is not complete (:func:`sweep.engine.stopped_runs`), as a
    Ctrl-C's line names them (:func:`sweep.engine.interrupted_line`)."""
    return stopped_runs([Path(d) / rel for d in sweep_dirs for rel in read_grid(Path(d))[0]])


def summary_line(sweep_dirs: list[Path]) -> str | None:
    """The one line a multirun ends with when no run failed: how its runs ended, where they are and
    what to run next (the table, the figures). None without a grid (a sweeper other than the basic one)."""
    if not sweep_dirs:
        return None
    states = [r.state for d in sweep_dirs for r in scan(d).runs]
    shown = ("ok", "diverged", "pruned", "training", "interrupted", "not started")
    parts = [f"{states.count(s)} {s}" for s in shown[1:] if states.count(s)]
    where = " ".join(shlex.quote(str(d)) for d in sweep_dirs)
    status = " · ".join(f"python -m sweep.status {shlex.quote(str(d))}" for d in sweep_dirs)
    return (
        f"sweep done: {states.count('ok')} of {len(states)} runs ok, {', '.join([*parts, '0 failed'])}, "
        f"in {where}; next: {status} · python -m analysis.figures {where}"
    )


def check_command_line(argv: list[str]) -> None:
    """Compose the command line's config as Hydra will, before Hydra does, so that what Hydra itself
    refuses (an override that does not parse, an unknown group option such as ``data=foo`` or
    ``encoder=conv6``, a key typo such as ``epoch=3``, a sweep without ``-m``) is one ``error:`` line
    with exit status 2 instead of Hydra's multi-line report with status 1. Help and the other
    informational flags are left to Hydra; a flag it does not know is refused the same way."""
    from hydra import initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.types import RunMode

    parser = get_args_parser()
    parser.error = lambda message: _refuse("command line", ValueError(f"{message}; see --help"))
    args = parser.parse_args(argv)
    if (
        args.help
        or args.hydra_help
        or args.info
        or args.shell_completion
        or args.config_path
        or args.config_dir
    ):
        return
    name = args.config_name or "config"
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            loader = GlobalHydra.instance().hydra
            cfg = loader.compose_config(
                name, args.overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False
            )
            if not args.multirun and cfg.hydra.mode != RunMode.MULTIRUN:  # a single run: sweeps refused
                loader.compose_config(
                    name, args.overrides, run_mode=RunMode.RUN, with_log_configuration=False
                )
    except Exception as exc:  # noqa: BLE001 - fail closed, as the grid check does
        _refuse("command line", exc)


def _refuse(what: str, exc: BaseException) -> NoReturn:
    """Print one ``error:`` line and exit with status 2. Any exception counts: a check that breaks
    must stop the launch, not let it go on unchecked (Hydra would turn it into a warning)."""
    print(refusal(exc, what), file=sys.stderr)
    raise SystemExit(2)


class GridCheck(Callback):
    """Hydra callback: :func:`check_grid` at the start of every multirun of the basic sweeper, and the
    same checks of a single run (its config, this machine's device, its directory, the sweep it lies
    in: :func:`check_sweep_member`) before Hydra
    creates the run directory. Either failing prints one ``error:`` line and exits with status 2. At the
    end of a multirun it exits with status 1 when a run of the grid failed (:func:`failed_runs`), as a
    failed single run does, so scripts and Slurm dependencies can tell; otherwise it prints
    :func:`summary_line`."""

    def __init__(self) -> None:
        self.sweep_dirs: list[Path] = []  # the grid's sweep directories, once its check passed

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            plain = validate(to_plain(config), here=True)
            writable(str(config.hydra.run.dir), "hydra.run.dir")
            check_sweep_member(plain, Path(str(config.hydra.run.dir)), "hydra.run.dir")
            check_run_dir(plain, Path(str(config.hydra.run.dir)))
            check_evaluated_as(plain, Path(str(config.hydra.run.dir)), "hydra.run.dir")
        except Exception as exc:  # noqa: BLE001 - fail closed
            _refuse("run", exc)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
            return
        try:
            got = check_grid(config)
        except Exception as exc:  # noqa: BLE001 - fail closed
            _refuse("grid", exc)
        # what the sweep directories hold now: a submission refused after this launch wrote them
        # (Slurm's sbatch) puts them back (sweep.undo)
        undo.remember([*got["by_dir"], Path(str(config.hydra.sweep.dir))])
        try:
            record_grid(got, sys.argv)
        except Exception as exc:  # noqa: BLE001 - fail closed
            _refuse("grid", exc)
        print(
            f"grid: {got['runs']} runs in {got['sweep_dir']}: {got['complete']} already complete, "
            f"{got['runs'] - got['complete']} to train or resume"
        )
        self.sweep_dirs = list(got["by_dir"])
        if runs_here(config):  # Slurm's tasks go on training on their nodes: Ctrl-C here stops none
            LAUNCHED[:] = self.sweep_dirs

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        line = failed_runs(self.sweep_dirs)
        if line:
            print(line, file=sys.stderr)
            raise SystemExit(1)
        summary = summary_line(self.sweep_dirs)
        if summary:
            print(summary)


class SweepProgress(Callback):
    """Hydra callback (``hydra.callbacks.sweep_progress`` in conf/config.yaml): while a multirun
    trains, one progress line for the whole sweep (runs finished / total, training now, ETA), polled
    from the sweep directory in a background thread, so it works with every launcher. On a terminal
    only (``progress``: ``auto`` = a terminal outside CI), like the per-run bars."""

    def __init__(self, interval: float = 5.0):
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bar = None
        self.scanner: Scanner | None = None

    # Process launchers (submitit) pickle the callbacks with the launch: only the settings travel.
    def __getstate__(self) -> dict[str, Any]:
        return {"interval": self.interval}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        if not show_progress(config.get("progress", "auto")):
            return
        self.start(Path(str(config.hydra.sweep.dir)))

    def start(self, sweep_dir: Path, disable: bool = False) -> None:
        from tqdm.auto import tqdm

        self.scanner = Scanner(sweep_dir)
        self.bar = tqdm(
            total=0,
            desc="sweep",
            unit="run",
            position=0,
            dynamic_ncols=True,
            disable=disable,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} runs finished{postfix}",
        )
        self.poll()
        self._thread = threading.Thread(target=self._loop, name="sweep-progress", daemon=True)
        self._thread.start()

    def poll(self) -> Status | None:
        if self.scanner is None or self.bar is None:
            return None
        st = self.scanner.scan()
        finished = st.count(*COMPLETE_STATES, "failed")
        eta = st.eta_seconds()
        self.bar.total = len(st.runs)
        self.bar.n = finished
        self.bar.set_postfix_str(
            f"{st.count('training')} training, {st.count('failed')} failed"
            + (f", ETA {hms(eta)}" if eta is not None else ""),
            refresh=False,
        )
        self.bar.refresh()
        return st

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - a progress line never stops a launch
                pass

    def on_multirun_end(self, config=None, **kwargs: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        if self.bar is not None:
            try:
                self.poll()
            except Exception:  # noqa: BLE001
                pass
            self.bar.close()
