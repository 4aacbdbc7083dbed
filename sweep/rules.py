"""The one validator of run configs and of launcher settings, and what a refused command prints.

:func:`validate` is what every entry point checks a config with before anything is written
(``sweep.train`` single and multirun through :mod:`sweep.grid`, the engine's ``prepare``,
``sweep.rerun``, ``sweep.evaluate``, ``sweep.search``): ``RULES`` has one declarative rule per key (a
new key is one line there; a key without a rule is refused), then the bundled data and FID classifier
the run reads (their checksums), then the limits that depend on the data the run will use, then,
where the run executes, this machine's devices. :func:`validate_launcher`
checks ``hydra.launcher`` against ``LAUNCHER_RULES``; :func:`refusal` is the one ``error:`` line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import torch
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweep.data import DATASETS, LIKELIHOODS, check_data, dataset_of, first_two_classes
from sweep.fid_kid import check_classifier
from sweep.losses import REDUCTIONS
from sweep.models import MAX_PARAMS, Spec, SpecError, n_params, validate_latent
from sweep.paths import PathError, creatable

LOGGERS = ("tensorboard", "none")


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the value and what is valid."""


Check = Callable[[str, Any], None]  # check(key, value) raises ConfigError naming both and what is valid


# What a refused launch raises: bad values (ValueError: ConfigError, SpecError, RunNameError, …), a
# directory that cannot take the run (RuntimeError: SchemaVersionError, ConfigMismatchError), and
# what Hydra and OmegaConf raise for a bad override or group. Anything else is a bug in a check.
REFUSALS = (ValueError, RuntimeError, HydraException, OmegaConfBaseException)


def refusal(exc: BaseException, what: str) -> str:
    """The one ``error:`` line a command prints when it refuses ``what`` before anything is written; an
    unexpected exception (a bug in a check) refuses too, and says so: checks fail closed."""
    text = str(exc) if len(str(exc).splitlines()) < 2 else " ".join(str(exc).split())  # one line
    text = text.split(" Config search path:")[0]  # Hydra's list of where it looked: no help to a user
    cause = str(exc.__cause__ or "").strip().splitlines()
    if isinstance(exc, HydraException) and cause and cause[0] not in text:  # e.g. "Key 'x' is not in struct"
        text += f" ({cause[0]})"
    if isinstance(exc, REFUSALS):
        return f"error: {text}"
    return f"error: checking the {what} failed ({type(exc).__name__}: {text}); nothing was started"


# ------------------------------------------------------------------------------ validation rules
# Every key of a run's config has one rule here: validate() refuses a config with a key no rule knows,
# so a new key slots in as one line (its check says what is valid). Checks raise ConfigError with
# "<key>=<value> <problem>; valid: <what is>". Cross-key limits (sizes of the data the run will use)
# and checks against this machine (devices) follow the per-key rules.


def _fail(key: str, value: Any, problem: str, valid: str) -> None:
    raise ConfigError(f"{key}={value!r} {problem}; valid: {valid}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Every config value is a column of the run's row (run.parquet), where an integer is 64 bits: a larger
# one would be accepted, trained, and then fail the row's write at the end of the run.
INT64_MAX = 2**63 - 1


def integer(lo: int, hi: int | None = None) -> Check:
    valid = f"{lo}..{hi}" if hi is not None else f">= {lo}"

    def check(key: str, value: Any) -> None:
        if not _is_int(value):
            _fail(key, value, "must be an integer", valid)
        if value < lo or (hi is not None and value > hi):
            _fail(key, value, "is out of range", valid)
        if value > INT64_MAX:
            _fail(key, value, "is out of range", f"{lo}..{INT64_MAX} (a run's row stores it in 64 bits)")

    check.valid = valid  # type: ignore[attr-defined]
    return check


def number(lo: float, *, above: bool = False) -> Check:
    """A finite float (an int is fine) >= lo, or > lo with ``above``."""
    valid = f"{'>' if above else '>='} {lo:g}"

    def check(key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            _fail(key, value, "must be a finite number", valid)
        if value < lo or (above and value == lo):
            _fail(key, value, "is out of range", valid)

    check.valid = valid  # type: ignore[attr-defined]
    return check


def one_of(*values: Any) -> Check:
    valid = ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values)

    def check(key: str, value: Any) -> None:
        if not any(value == v and type(value) is type(v) for v in values):
            _fail(key, value, "is unknown", valid)

    check.valid = valid  # type: ignore[attr-defined]
    check.mixed = len({type(v) for v in values}) > 1  # type: ignore[attr-defined]
    return check


def boolean(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(key, value, "must be true or false", "true, false")


def optional(inner: Check) -> Check:
    """null or what ``inner`` accepts."""

    def check(key: str, value: Any) -> None:
        if value is not None:
            inner(key, value)

    check.valid = f"{getattr(inner, 'valid', '?')} (or null)"  # type: ignore[attr-defined]
    return check


def auto_or(inner: Check) -> Check:
    def check(key: str, value: Any) -> None:
        if value != "auto":
            try:
                inner(key, value)
            except ConfigError:
                what = (
                    "is out of range"
                    if isinstance(value, int | float) and not isinstance(value, bool)
                    else "is not auto or a number"
                )
                _fail(key, value, what, f"auto, or {getattr(inner, 'valid', '?')}")

    check.mixed = True  # type: ignore[attr-defined]  # text or a number: see sweep.config.row_values
    return check


def path_component(key: str, value: Any) -> None:
    """One directory name below ``results_dir``: never empty, ``.``, ``..`` or a path of its own."""
    valid = "one directory name: not empty, '.' or '..', without '/' or '\\'"
    if not isinstance(value, str | int) or isinstance(value, bool):
        _fail(key, value, "must be a name", valid)
    text = str(value)
    if text in ("", ".", "..") or any(c in text for c in "/\\\0") or text != text.strip():
        _fail(key, value, "would leave its directory", valid)


def directory(key: str, value: Any) -> None:
    """A directory, or a path that does not exist yet, whose nearest existing ancestor is one."""
    valid = "a directory, or a path that does not exist yet"
    if not isinstance(value, str) or not value.strip():
        _fail(key, value, "is empty (it would mean the filesystem root or the working directory)", valid)
    try:  # the names fit this filesystem, no file on the way (where it is written, it is proven so)
        creatable(value, key)
    except PathError as exc:
        raise ConfigError(str(exc)) from None


DEVICE_KINDS = ("auto", "cpu", "cuda", "mps")


def device_name(key: str, value: Any) -> None:
    """A device string torch parses: auto, cpu, cuda, cuda:<n>, mps (where it is is :func:`check_here`)."""
    valid = "auto, cpu, cuda, cuda:<n>, mps"
    if not isinstance(value, str) or value == "":
        _fail(key, value, "is not a device", valid)
    if value == "auto":
        return
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        _fail(key, value, "is not a device", valid)
    if dev.type not in DEVICE_KINDS:
        _fail(key, value, "is not a device this harness trains on", valid)


def available_devices() -> list[str]:
    """The device strings that work on this machine."""
    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


def check_here(cfg: dict[str, Any]) -> None:
    """What only this machine can say: the device exists here. Called where the run will execute."""
    value = cfg.get("device", "auto")
    here = available_devices()
    dev = torch.device(value) if value != "auto" else None
    if dev is None or value in here or (dev.type == "cuda" and dev.index is None and "cuda" in here):
        return
    what = "no CUDA device" if dev.type == "cuda" and "cuda" not in here else f"no device {value}"
    raise ConfigError(
        f"device={value!r} is not available: this machine has {what}; valid here: {', '.join(here)}"
    )


def group_spec(key: str, value: Any) -> None:
    """An encoder or decoder group: exactly Spec's fields, checked by the models (their own ranges);
    ``norm`` may be absent (a config stored before it existed: no norm)."""
    fields = ("kind", "depth", "width", "activation", "norm")
    if not isinstance(value, dict):
        _fail(
            key, value, "must be a group", f"{key}=dense|conv|res|dense<n>|conv<n>|res<n>, or {key}.<field>=…"
        )
    extra = sorted(set(value) - set(fields))
    if extra:
        raise ConfigError(f"{key}.{extra[0]} is not a key of {key}; valid keys: {', '.join(fields)}")
    missing = [f for f in fields if f not in value and f != "norm"]
    if missing:
        raise ConfigError(f"{key} lacks {', '.join(missing)}; valid keys: {', '.join(fields)}")
    try:
        Spec(**value).validate(key)
    except SpecError as exc:
        raise ConfigError(str(exc)) from None


def latent(key: str, value: Any) -> None:
    try:
        validate_latent(value)
    except SpecError as exc:
        raise ConfigError(str(exc)) from None


# numpy's RandomState and scikit-learn's random_state take seeds below 2**32 (torch takes more): every
# seed key is held to that, so a run never fails, or overflows, on its seed after training started
SEED = integer(0, 2**32 - 1)

SEARCH_SAMPLERS = ("tpe", "nsga2", "random")
SEARCH_PRUNERS = ("median", "none")
SEARCH_DISTRIBUTIONS = ("categorical", "int", "float")


TEXT_COLUMNS = ("eval/status", "eval/reason", "eval/nonfinite", "test/iwae_null_reason", "eval/profile")


def objective_columns() -> list[str]:
    """What a search may optimise: the numeric metric columns of a run's ``run.parquet`` and
    ``eval.parquet`` (``val/…``, ``test/…``, ``params/…``, ``latent/…``, ``flops/…``, timings)."""
    from sweep.results import EVAL_COLUMNS, RUN_COLUMNS

    numeric = ("wall_seconds", "epochs_done")
    cols = [c for c in (*RUN_COLUMNS, *EVAL_COLUMNS) if ("/" in c and c not in TEXT_COLUMNS) or c in numeric]
    return list(dict.fromkeys(cols))


def search_node(key: str, sc: Any) -> None:
    """The ``search`` node of a search experiment (:mod:`sweep.search`); its space's values are checked
    against these rules by the search itself, which composes them."""
    if sc is None:
        return
    if not isinstance(sc, dict):
        _fail(key, sc, "must be a group", "a search experiment's node, e.g. experiment=search_arch")
    integer(1)("search.n_trials", sc.get("n_trials"))
    directions = _search_objectives(sc)
    one_of(*SEARCH_SAMPLERS)("search.sampler", sc.get("sampler"))
    one_of(*SEARCH_PRUNERS)("search.pruner", sc.get("pruner"))
    if sc["pruner"] != "none" and len(directions) > 1:
        raise ConfigError(
            f"search.pruner={sc['pruner']!r} cannot prune a multi-objective search; valid: none"
        )
    SEED("search.seed", sc.get("seed", 0))
    integer(0)("search.pruner_startup_trials", sc.get("pruner_startup_trials", 5))
    _search_space(sc.get("space"))


def _search_objectives(sc: dict[str, Any]) -> list[Any]:
    """``search.objectives`` and ``search.directions``: lists that pair up, each objective once and a
    numeric column of a run's results, each direction minimize or maximize. Returns the directions."""
    objectives, directions = sc.get("objectives") or [], sc.get("directions") or []
    for name, value in (("objectives", objectives), ("directions", directions)):
        if not isinstance(value, list):
            _fail(
                f"search.{name}",
                value,
                "must be a list",
                f"e.g. search.{name}=[{'val/neg_elbo' if name == 'objectives' else 'minimize'}]",
            )
    if len(objectives) != len(directions) or not objectives:
        raise ConfigError(
            f"search.objectives {objectives} and search.directions {directions} must pair up; valid: "
            "one direction (minimize, maximize) per objective"
        )
    for d in directions:
        one_of("minimize", "maximize")("search.directions", d)
    valid = objective_columns()
    if len(set(objectives)) < len(objectives):
        _fail("search.objectives", objectives, "repeats an objective", "each objective once")
    for o in objectives:
        if o not in valid:  # known before any trial trains, not after each one failed for it
            _fail("search.objectives", o, "is not a numeric column of a run's results", ", ".join(valid))
    return directions


def _search_space(space: Any) -> None:
    """``search.space``: a non-empty map of keys to distributions (categorical with choices, or int or
    float over a range, log scales above 0)."""
    if not isinstance(space, dict) or not space:
        _fail(
            "search.space",
            space,
            "must map keys to distributions",
            "e.g. {lr: {type: float, low: 1e-4, high: 1e-2}}",
        )
    for name, dist in space.items():
        if not isinstance(dist, dict):
            _fail(f"search.space.{name}", dist, "must be a distribution", ", ".join(SEARCH_DISTRIBUTIONS))
        one_of(*SEARCH_DISTRIBUTIONS)(f"search.space.{name}.type", dist.get("type"))
        if dist["type"] == "categorical" and not dist.get("choices"):
            _fail(f"search.space.{name}.choices", dist.get("choices"), "is empty", "a non-empty list")
        if dist["type"] != "categorical":
            lo, hi = dist.get("low"), dist.get("high")
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lo, hi)) or lo > hi:
                _fail(
                    f"search.space.{name}",
                    {"low": lo, "high": hi},
                    "is not a range",
                    "numbers with low <= high",
                )
            if dist.get("log") and lo <= 0:
                _fail(f"search.space.{name}.low", lo, "cannot start a log scale", "> 0 with log: true")


# key → check. A leaf key or a whole group (encoder, decoder, search). REQUIRED keys must be present;
# the others may be absent from configs stored by earlier versions (their defaults apply).
RULES: dict[str, Check] = {
    "latent_dim": latent,
    "encoder": group_spec,
    "decoder": group_spec,
    "seed": SEED,
    "trial": optional(integer(0)),
    "epochs": integer(1),
    "batch_size": integer(1),
    "lr": number(0, above=True),
    "device": device_name,
    "num_threads": optional(integer(1)),
    "loss.reduction": one_of(*REDUCTIONS),
    "loss.beta": number(0),
    "loss.warmup_epochs": number(0),
    "loss.free_bits": number(0),
    "train.eval_test_each_epoch": boolean,
    "data.name": one_of(*DATASETS),
    "data.likelihood": one_of(*LIKELIHOODS),
    "data.val_size": integer(1, 59_999),
    "data.split_seed": SEED,
    "data.binarize_seed": SEED,
    "data.subset": optional(integer(1)),
    "eval.iwae_k": optional(integer(1)),
    "eval.iwae_images": optional(integer(1)),
    "eval.iwae_image_chunk": integer(1),
    "eval.iwae_sample_chunk": integer(1),
    "eval.mi_chunk": integer(1),
    "eval.probe_train": integer(1),
    "eval.knn_k": integer(1),
    "eval.latents_n": integer(1),
    "eval.seed": SEED,
    "eval.fid_samples": integer(2),  # a covariance and an unbiased MMD need two images
    "eval.kid_subsets": integer(1),
    "eval.kid_subset_size": integer(2),
    "engine.max_members": auto_or(integer(1)),
    "engine.slots": auto_or(integer(1)),
    "engine.cuda_graphs": boolean,
    "engine.eval_workers": auto_or(integer(0)),
    "results_dir": directory,
    "sweep_name": path_component,
    "progress": one_of("auto", True, False),
    "logger": one_of(*LOGGERS),
    "search": search_node,
}
REQUIRED = (
    "latent_dim",
    "encoder",
    "decoder",
    "seed",
    "epochs",
    "batch_size",
    "lr",
    "loss.reduction",
    "loss.beta",
    "loss.warmup_epochs",
    "loss.free_bits",
    "data.likelihood",
    "data.val_size",
    "data.subset",
)
MNIST_TRAIN, MNIST_TEST = 60_000, 10_000


def joblib_n_jobs(key: str, value: Any) -> None:
    """joblib's worker count: n >= 1 workers, or -k for all cores but k - 1; 0 means nothing to
    joblib, and below -cores it quietly gives one worker, which is not what such a value asks for."""
    cores = os.cpu_count() or 1
    valid = f"1.. (that many workers), or -1..-{cores} (-1: every core of this machine, -2: all but one, …)"
    if not _is_int(value):
        _fail(key, value, "must be an integer", valid)
    if value == 0 or value < -cores:
        _fail(key, value, "is out of range", valid)


# hydra.launcher.<key> → check, for the keys of the launchers this harness uses (joblib, submitit's
# local and Slurm ones, and ours: cohort, slurm) that hold numbers the launch would only trip over after
# something was written; checked by the grid check (sweep/grid.py) with the run keys, before any job
# starts. The launcher's other keys are its own (Hydra refuses a key the launcher does not have).
LAUNCHER_RULES: dict[str, Check] = {
    "n_jobs": joblib_n_jobs,
    "prefer": one_of("processes", "threads"),
    "timeout": optional(number(0, above=True)),
    "runs_per_task": integer(1),
    "timeout_min": integer(1),
    "cpus_per_task": optional(integer(1)),
    "gpus_per_task": optional(integer(0)),
    "gpus_per_node": optional(integer(0)),
    "tasks_per_node": optional(integer(1)),
    "nodes": optional(integer(1)),
    "mem_gb": optional(integer(1)),
    "array_parallelism": integer(1),
    "max_num_timeout": integer(0),
    "signal_delay_s": integer(0),
}


def validate_launcher(launcher: DictConfig | dict) -> None:
    """Every key of ``hydra.launcher`` that has a rule in :data:`LAUNCHER_RULES`, against it (a key is
    read alone, so an interpolation elsewhere in the node, e.g. ``submitit_folder``, is not resolved)."""
    for key, check in LAUNCHER_RULES.items():
        value = (
            OmegaConf.select(launcher, key, default=_MISSING)
            if OmegaConf.is_config(launcher)
            else (launcher.get(key, _MISSING))
        )
        if value is not _MISSING:
            check(f"hydra.launcher.{key}", value)


def sizes(cfg: dict[str, Any]) -> dict[str, int]:
    """How many images each split and the probe set will hold (what the size limits check against)."""
    dc, ec = cfg["data"], cfg.get("eval") or {}
    cap = dc.get("subset") or math.inf
    train = int(min(MNIST_TRAIN - dc["val_size"], cap))
    return {
        "train": train,
        "val": int(min(dc["val_size"], cap)),
        "test": int(min(MNIST_TEST, cap)),
        "probe": min(ec.get("probe_train", 10_000), train),
    }


def _limits(cfg: dict[str, Any]) -> None:
    """Keys whose valid range depends on the data the run will use, or on each other (the size of the
    model the architecture keys make together)."""
    likelihood = cfg["data"].get("likelihood", "bernoulli")
    total = n_params(Spec(**cfg["encoder"]), Spec(**cfg["decoder"]), cfg["latent_dim"], likelihood)
    if total > MAX_PARAMS:
        raise ConfigError(
            f"encoder={cfg['encoder']} decoder={cfg['decoder']} latent_dim={cfg['latent_dim']} make a model of "
            f"{total} parameters; valid: at most {MAX_PARAMS} (2**28: 4 GiB with gradients and Adam's state)"
        )
    warmup, epochs = cfg["loss"]["warmup_epochs"], cfg["epochs"]
    if warmup > epochs:  # β·min(1, t / warm-up) would never reach β: the run's objective is not the one named
        raise ConfigError(
            f"loss.warmup_epochs={warmup} is longer than the run (epochs={epochs}): the KL weight would "
            f"never reach loss.beta; valid: 0..{epochs} (0: no warm-up)"
        )
    n = sizes(cfg)
    if cfg["batch_size"] > n["train"]:
        raise ConfigError(
            f"batch_size={cfg['batch_size']} is larger than the training set ({n['train']} images); "
            f"valid: 1..{n['train']}"
        )
    _batch_norm_batches(cfg, n["train"])
    _probe_classes(cfg, n)
    k = (cfg.get("eval") or {}).get("knn_k")
    if k is not None and k > n["probe"]:
        raise ConfigError(
            f"eval.knn_k={k} is larger than the kNN probe's training set ({n['probe']} images: "
            f"min(eval.probe_train, training set)); valid: 1..{n['probe']}"
        )


def _batch_norm_batches(cfg: dict[str, Any], n_train: int) -> None:
    """BatchNorm normalises by the statistics of the batch: a training batch of one image has none (a
    dense layer's variance is undefined and torch raises mid-epoch), so with ``norm=batch`` on either side
    every batch of an epoch, the last partial one too, must hold two images or more."""
    roles = [r for r in ("encoder", "decoder") if cfg[r].get("norm") == "batch"]
    if not roles:
        return
    bs = cfg["batch_size"]
    tail = n_train % bs
    if bs == 1 or tail == 1:
        what = "a batch of 1" if bs == 1 else f"a last batch of 1 image ({n_train} training images)"
        raise ConfigError(
            f"batch_size={bs} with {roles[0]}.norm=batch gives {what}, which BatchNorm cannot normalise; "
            f"valid: a batch_size >= 2 that leaves no single image over, or {roles[0]}.norm=none|layer|group"
        )


def _probe_classes(cfg: dict[str, Any], n: dict[str, int]) -> None:
    """The linear probe (scikit-learn's LogisticRegression) is fit on the first ``n["probe"]`` images of
    the train split and needs two classes among them; where they hold one, the run would train and then
    fail in its evaluation. The least count that holds two comes from the split's labels."""
    dc = cfg["data"]
    need = first_two_classes(dataset_of(cfg), dc["val_size"], dc.get("split_seed", 0))
    if need is not None and n["probe"] >= need:
        return
    probe_train = (cfg.get("eval") or {}).get("probe_train", 10_000)
    why = f"the linear probe needs two classes, and the first {n['probe']} training images hold one"
    if need is not None and n["train"] >= need:
        raise ConfigError(f"eval.probe_train={probe_train} is too small: {why}; valid: >= {need}")
    raise ConfigError(
        f"data.subset={dc['subset']} is too small: {why}; valid: data.subset >= {need or 'more'} "
        "(or null: every image)"
    )


def _bundle(cfg: dict[str, Any]) -> None:
    """What every run of the config reads from ``data/<data.name>/``: the data files (their checksums)
    and the FID feature classifier its evaluation loads (its checksum), checked before a launch writes
    anything, not in each job after the grid and its run directories were written. Both are cached
    per process. Raises :class:`~sweep.data.DataError` naming the file and how to restore it."""
    check_data(dataset_of(cfg))
    check_classifier(dataset_of(cfg))


def _leaves(d: dict[str, Any], prefix: str = ""):
    for k, v in d.items():
        key = f"{prefix}{k}"
        if key in RULES or not isinstance(v, dict):
            yield key, v
        else:
            yield from _leaves(v, key + ".")


_MISSING = object()


def _get(cfg: dict[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def validate(cfg: dict[str, Any], *, here: bool = False) -> dict[str, Any]:
    """Refuse a bad config before anything is written: every key against its rule (a key without one
        is refused), then the bundled data and FID classifier the run reads (their checksums), then the
    limits that depend on the data, then, with ``here``, what this machine must
        provide (the device). Messages name the key, the value and what is valid. Returns ``cfg``."""
    for key, value in _leaves({k: v for k, v in cfg.items() if k != "hydra"}):
        if key not in RULES:
            raise ConfigError(
                f"{key}={value!r} is not a key of the run config; valid keys: {', '.join(RULES)}"
            )
        RULES[key](key, value)
    for key in REQUIRED:
        if _get(cfg, key) is _MISSING:
            raise ConfigError(
                f"{key} is missing from the config; valid: {getattr(RULES[key], 'valid', 'see conf/config.yaml')}"
            )
    _bundle(cfg)
    _limits(cfg)
    if here:
        check_here(cfg)
    return cfg
