"""Optuna search over the architecture space, through Hydra's compose API and the same ``train``.

    python -m sweep.search experiment=search_arch                 # single objective: val −ELBO (TPE)
    python -m sweep.search experiment=search_pareto search.n_trials=40   # distortion vs rate (NSGA-II)

The ``search`` node of the experiment says what to search (``space``: Hydra override keys →
distributions), what to optimise (``objectives``: columns of the run's ``run.parquet`` /
``eval.parquet`` rows, with ``directions``), the sampler, the pruner and ``n_trials``. Each trial is an
ordinary run in ``<results_dir>/searches/<sweep_name>/<run_name>_t<trial>/`` with the same files as a
grid run, so every analysis works on a search. The study lives in SQLite beside the trials
(``study.db``): relaunching the same command continues it, finishes trials a killed process left
running (resuming their checkpoints), and never grows the study beyond ``n_trials``; its sampler is
seeded past the trials already stored, so a relaunch explores new points instead of replaying the
first ones, and objectives or directions that differ from the stored study's are refused. Trials that
diverge or fail are recorded as failed; hopeless ones are pruned by intermediate validation −ELBO.
(The released Hydra Optuna sweeper pins optuna < 3, hence this direct use of Optuna.)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shlex
import sqlite3
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import optuna
import pyarrow.parquet as pq
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException
from optuna.trial import TrialState

from sweep.config import CONF_DIR, to_plain
from sweep.data import dataset_of
from sweep.hydra_setup import register
from sweep.lock import run_lock
from sweep.names import dataset_suffix, run_name_of
from sweep.paths import writable
from sweep.rules import ConfigError, refusal, validate

register()  # an entry point: it composes configs


def compose_cfg(overrides: list[str]) -> dict[str, Any]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return to_plain(compose("config", overrides=overrides))


def search_dir(cfg: dict[str, Any]) -> Path:
    """``<results_dir>/searches/<sweep_name>`` (``…_<dataset>`` when the dataset is not MNIST)."""
    return Path(cfg["results_dir"]) / "searches" / (cfg["sweep_name"] + dataset_suffix(dataset_of(cfg)))


def check_search(cfg: dict[str, Any], base: list[str]) -> dict[str, Any]:
    """Refuse a bad search before anything is written: the base config by the rules every run obeys
    (:func:`sweep.rules.validate`, its ``search`` node included), then every value the space can give
    (each categorical choice, each numeric range's ends) applied to it. Returns the ``search`` node."""
    sc = cfg.get("search")
    if not sc:
        raise ConfigError("no `search` node: pick a search experiment, e.g. experiment=search_arch")
    validate(cfg, here=True)
    writable(search_dir(cfg), "the search directory")  # results_dir and sweep_name make it
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for key, dist in sc["space"].items():
            ends = list(dist["choices"]) if dist["type"] == "categorical" else [dist["low"], dist["high"]]
            for value in ends:
                try:
                    validate(to_plain(compose("config", overrides=[*base, f"{key}={value}"])))
                except (ValueError, HydraException, OmegaConfBaseException) as exc:
                    reason = " ".join(str(exc).split())
                    raise ConfigError(
                        f"search.space.{key} can give {key}={value}, which is refused: {reason}"
                    ) from None
    return sc


def distributions(space: dict[str, Any]) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna's distribution of each key of ``search.space`` (what :func:`suggest` draws from)."""
    D = optuna.distributions
    return {
        key: D.CategoricalDistribution(list(d["choices"]))
        if d["type"] == "categorical"
        else (D.IntDistribution if d["type"] == "int" else D.FloatDistribution)(
            d["low"], d["high"], log=d.get("log", False)
        )
        for key, d in space.items()
    }


def suggest(trial: optuna.Trial, space: dict[str, Any]) -> list[str]:
    """Sample every key of the space; return them as Hydra overrides."""
    out = []
    for key, d in space.items():
        if d["type"] == "categorical":
            value = trial.suggest_categorical(key, list(d["choices"]))
        elif d["type"] == "int":
            value = trial.suggest_int(key, d["low"], d["high"], log=d.get("log", False))
        else:
            value = trial.suggest_float(key, d["low"], d["high"], log=d.get("log", False))
        out.append(f"{key}={value}")
    return out


def study_url(cfg: dict[str, Any]) -> str:
    return f"sqlite:///{(search_dir(cfg) / 'study.db').resolve()}"


SQLITE_HEADER = b"SQLite format 3\x00"


def _holds_study(path: Path, name: str) -> str | None:
    """Why the file ``path`` is not a study database holding the study ``name`` (None if it is one),
    read without writing to it: Optuna would create its tables in any file it opens."""
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_HEADER))
    if not head:
        return "is empty (0 bytes)"
    if head != SQLITE_HEADER:
        return "is not an SQLite database"
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            found = db.execute("SELECT 1 FROM studies WHERE study_name = ?", (name,)).fetchone()
    except sqlite3.Error as exc:
        return f"is not an Optuna study database ({exc})"
    return None if found else f"holds no study named {name!r}"


def stored_study(cfg: dict[str, Any]) -> optuna.Study | None:
    """The study a previous launch left in ``study.db`` (read only), or None for a new search. A
    ``study.db`` that is not that study (empty, another file, another study) is refused: a search
    writes it whole (:func:`make_study`), so it is not one this search left."""
    path = search_dir(cfg) / "study.db"
    if not path.is_file():
        return None
    why = _holds_study(path, cfg["sweep_name"])
    if why is not None:
        raise ConfigError(
            f"{path} {why}: no search wrote it so; valid: move it away to start a new study, or "
            "another sweep_name"
        )
    return optuna.load_study(study_name=cfg["sweep_name"], storage=study_url(cfg))


def check_stored_study(cfg: dict[str, Any], study: optuna.Study | None) -> None:
    """Refuse a relaunch whose objectives or directions differ from those the stored study optimises:
    Optuna would load the study and silently keep its own, mixing values of two questions."""
    if study is None:
        return
    sc = cfg["search"]
    stored = {
        "search.objectives": list(study.metric_names or []),  # None if a launch died before naming them
        "search.directions": [d.name.lower() for d in study.directions],
    }
    asked = {"search.objectives": list(sc["objectives"]), "search.directions": list(sc["directions"])}
    for key, was in stored.items():
        if was and was != asked[key]:
            raise ConfigError(
                f"{key}={asked[key]} disagrees with the study in {search_dir(cfg) / 'study.db'}, "
                f"created with {key}={was}; valid: {was}, or another sweep_name for a new study"
            )
    # the space: each key's distribution as the stored trials drew it (a changed one would fail the
    # next trial's suggest after it was asked for, and mix two questions in one study)
    space = distributions(sc["space"])
    for t in study.get_trials(deepcopy=False):
        for key, was in t.distributions.items():
            if space.get(key) != was:
                now = sc["space"].get(key, "absent")
                raise ConfigError(
                    f"search.space.{key}={now} disagrees with the study in {search_dir(cfg) / 'study.db'}, "
                    f"whose trial {t.number} drew {key} from {was}; valid: that distribution, or "
                    "another sweep_name for a new study"
                )
        new = sorted(set(space) - set(t.distributions))
        if t.distributions and new:
            raise ConfigError(
                f"search.space.{new[0]}={sc['space'][new[0]]} is not in the study in "
                f"{search_dir(cfg) / 'study.db'} (its trials drew {', '.join(t.distributions)}); valid: "
                "those keys, or another sweep_name for a new study"
            )


SEED_RANGE = 2**32  # numpy's RandomState, which Optuna's samplers draw from, takes seeds below this


def make_study(cfg: dict[str, Any], n_stored: int = 0) -> optuna.Study:
    """Create (or load) the study, its sampler seeded with ``search.seed`` plus the number of trials
    already stored: each launch draws new points, where re-seeding with ``search.seed`` alone would
    replay trial 0's, and a relaunch of the same command over the same study draws the same ones.
    (Pickling the sampler, Optuna's other way to continue, fails for NSGA-II, which holds a lock.)"""
    sc = cfg["search"]
    root = search_dir(cfg)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "study.db").is_file():
        _create_study_file(cfg)
    seed = (sc["seed"] + n_stored) % SEED_RANGE
    sampler = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }[sc["sampler"]]()
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=sc.get("pruner_startup_trials", 5), n_warmup_steps=0)
        if sc["pruner"] == "median"
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        study_name=cfg["sweep_name"],
        storage=study_url(cfg),
        directions=list(sc["directions"]),
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    if list(study.metric_names or []) != list(sc["objectives"]):
        study.set_metric_names(list(sc["objectives"]))
    return study


def _create_study_file(cfg: dict[str, Any]) -> None:
    """Write ``study.db`` whole: the study (its directions and objectives) created in a temporary
    file, then linked into place, which fails if another search got there first (link never replaces).
    So a ``study.db`` always holds its study, and two searches starting one study at once share it:
    the second loads the first's, checked like any stored study (:func:`check_stored_study`)."""
    sc, path = cfg["search"], search_dir(cfg) / "study.db"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".study.db.", suffix=".tmp")
    os.close(fd)
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp}")
        made = optuna.create_study(study_name=cfg["sweep_name"], storage=storage, directions=list(sc["directions"]))
        with warnings.catch_warnings():  # experimental in optuna since 3.2; the names only label the objectives
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            made.set_metric_names(list(sc["objectives"]))
        storage.engine.dispose()  # every connection closed: the file is complete
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # another search created it meanwhile: it must be the same study
            check_stored_study(cfg, stored_study(cfg))
    finally:
        os.unlink(tmp)


def run_trial(
    study: optuna.Study, trial: optuna.Trial, base: list[str], sc: dict[str, Any]
) -> TrialState | None:
    """Train one trial and tell the study how it ended; None if another process holds it."""
    from sweep.train import StopRun, train

    overrides = [*base, *suggest(trial, sc["space"]), f"trial={trial.number}"]
    try:
        cfg = validate(compose_cfg(overrides))
    except (
        ValueError,
        HydraException,
        OmegaConfBaseException,
    ) as exc:  # a sampled point outside the valid space
        print(f"trial {trial.number}: invalid config, failed: {exc}", file=sys.stderr)
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    out_dir = search_dir(cfg) / run_name_of(cfg)

    def report(epoch: int, val: float) -> None:  # intermediate values exist for one objective only
        trial.report(val, epoch)
        if trial.should_prune():
            raise StopRun(f"pruned by {sc['pruner']} at validation -ELBO {val:.3f}", epoch=epoch)

    row = train(cfg, out_dir, overrides=overrides, on_epoch=report if len(sc["directions"]) == 1 else None)
    if row["status"] == "locked":
        return None
    if row["status"] == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    values = objective_values(out_dir, row, sc["objectives"]) if row["status"] == "ok" else None
    if values is None:
        print(f"trial {trial.number}: {row['status']}, recorded as failed", file=sys.stderr)
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    study.tell(trial, values)
    return TrialState.COMPLETE


def objective_values(run_dir: Path, row: dict[str, Any], objectives: list[str]) -> list[float] | None:
    """The objectives from the run's row and its evaluation row; None if any is missing or not finite."""
    merged = dict(row)
    if (run_dir / "eval.parquet").is_file():
        merged.update(pq.read_table(run_dir / "eval.parquet").to_pylist()[0])
    values = [merged.get(k) for k in objectives]
    if any(v is None or not math.isfinite(float(v)) for v in values):
        return None
    return [float(v) for v in values]


def stale_trials(study: optuna.Study, cfg: dict[str, Any], base: list[str]) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials whose run no live process holds: a killed search left them; they are resumed.
    (A trial another live search has asked for but not yet locked would look stale too: run one
    search process per study.)"""
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        overrides = [f"{k}={v}" for k, v in t.params.items()] + [f"trial={t.number}"]
        run_dir = search_dir(cfg) / run_name_of(compose_cfg([*base, *overrides]))
        with run_lock(run_dir) as free:
            if free:
                out.append(t)
    return out


def open_search(overrides: list[str]) -> tuple[optuna.Study, dict[str, Any]]:
    """Every check of a search, then its study (created whole, or loaded): nothing trains here, and a
    refusal leaves a stored study untouched. Returns the study and the run config."""
    cfg = compose_cfg(overrides)
    check_search(cfg, overrides)
    stored = stored_study(cfg)
    check_stored_study(cfg, stored)
    return make_study(cfg, len(stored.trials) if stored is not None else 0), cfg


def search(overrides: list[str]) -> optuna.Study:
    study, cfg = open_search(overrides)
    return run_search(study, cfg, overrides)


def run_search(study: optuna.Study, cfg: dict[str, Any], overrides: list[str]) -> optuna.Study:
    """Resume the trials a stopped search left running, then ask for trials until ``n_trials``."""
    sc = cfg["search"]
    for frozen in stale_trials(study, cfg, overrides):
        print(f"trial {frozen.number}: left running by a stopped search, resuming it")
        # re-suggesting on the same trial returns its stored parameters
        run_trial(study, optuna.Trial(study, frozen._trial_id), overrides, sc)
    # study.ask() hands out enqueued (WAITING) trials first; they count towards n_trials like the rest
    while len(study.trials) < sc["n_trials"] or study.get_trials(
        deepcopy=False, states=(TrialState.WAITING,)
    ):
        run_trial(study, study.ask(), overrides, sc)
    return study


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sweep.search", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. experiment=search_arch search.n_trials=20"
    )
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from sweep.engine import interrupted_line

    command = ["python", "-m", "sweep.search", *args.overrides]
    try:
        study, cfg = open_search(args.overrides)
    except KeyboardInterrupt as exc:
        print(interrupted_line(exc, command), file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a refused search is one line; no trial was asked for
        print(refusal(exc, "search"), file=sys.stderr)
        return 2
    try:
        run_search(study, cfg, args.overrides)
    except KeyboardInterrupt as exc:  # Ctrl-C: the trial in flight stays RUNNING; a relaunch resumes it
        print(interrupted_line(exc, command), file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - after trials started: say so, and how to go on
        trials = study.get_trials(deepcopy=False)
        print(
            f"error: the search stopped in trial {len(trials) - 1} ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())}); the study keeps its trials: `{shlex.join(command)}` goes on "
            "from there",
            file=sys.stderr,
        )
        return 1
    states = [t.state.name for t in study.trials]
    print(
        f"{len(states)} trials in {study.study_name}: "
        + ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))
    )
    if len(study.directions) == 1 and any(t.state == TrialState.COMPLETE for t in study.trials):
        print(f"best: trial {study.best_trial.number} {study.best_trial.params} value {study.best_value:.4f}")
    else:
        print(f"Pareto front: {len(study.best_trials)} trials")
    return 0


if __name__ == "__main__":
    sys.exit(main())
