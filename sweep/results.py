"""Per-run result files, each written atomically (temp file in the same directory, fsync, rename).

A run directory holds (see ``results/README.md`` for the full schemas):
``epochs.parquet`` (one row per epoch × split), ``run.parquet`` (one row), ``last.pt`` (resume state),
``best.pt`` (best-validation weights), ``.hydra/`` (config snapshot), and ``COMPLETE`` written last.
Every parquet file carries ``schema_version`` as a column and in its metadata, and every per-run one its
run's identity stamp (:data:`IDENTITY_KEY`) in its metadata.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from sweep.thresholds import THRESHOLDS

SCHEMA_VERSION = 1
# The schema metadata key of a per-run parquet file that holds its run's identity stamp
# (:func:`sweep.keys.identity_digest`: config plus seed), so a file copied from another run of the same
# name is told apart from the run's own. Files written before it existed have none.
IDENTITY_KEY = b"vae_sweep.identity"
COMPLETE = "COMPLETE"
# Present while a run's evaluation files are being rewritten (written before the first, removed after
# eval.parquet, the last): one left behind means a killed evaluation, whose files may mix two
# evaluations. Analysis skips that run's evaluation files; sweep.evaluate redoes it.
EVALUATING = "EVALUATING"
EPOCH_COLUMNS = [
    "schema_version",
    "run_name",
    "epoch",
    "split",
    "loss",
    "recon",
    "kl",
    "neg_elbo",
    "seconds",
    "lr",
    "beta",
    "machine",
]
# run.parquet always has these, then the flattened config (``encoder.depth``, ``loss.reduction``, …).
RUN_COLUMNS = [
    "schema_version",
    "run_name",
    "status",
    "error",
    "diverged_epoch",
    "epochs_done",
    "params/encoder",
    "params/decoder",
    "params/total",
    "best/epoch",
    "val/loss",
    "val/recon",
    "val/kl",
    "val/neg_elbo",
    "test/loss",
    "test/recon",
    "test/kl",
    "test/neg_elbo",
    "wall_seconds",
    "device",
    "torch_version",
    "python_version",
    "hostname",
    "machines",
    "git_commit",
    "git_dirty",
    "git_diff_sha256",
    "overrides",
    "started_at",
    "finished_at",
]
# Columns of eval.parquet, in order (results/README.md documents each).
EVAL_COLUMNS = [
    "schema_version",
    "run_name",
    "eval/status",
    "eval/reason",
    "eval/nonfinite",
    "eval/seconds",
    "test/neg_elbo",
    "test/rate",
    "test/distortion",
    "test/neg_elbo_bpd",
    "test/bce_pixel_mean",
    "test/iwae_nll",
    "test/iwae_bpd",
    "test/iwae_k",
    "test/iwae_images",
    "test/iwae_nll_se",
    "test/iwae_null_reason",
    "test/active_units",
    "test/mutual_information",
    "test/mutual_information_ceiling",
    "test/mutual_information_se",
    "collapsed",
    "partial",
    "paper_collapsed",
    "latent/linear_probe_acc",
    "latent/knn_acc",
    "latent/pca_silhouette",
    "test/psnr",
    "params/encoder",
    "params/decoder",
    "flops/encoder",
    "flops/decoder",
    "test/fid_prior",
    "test/kid_prior",
    "test/kid_prior_std",
    "test/fid_recon",
    "test/fid_samples",
    "test/fid_real",
    "test/kid_subset_size",
    "test/fid_classifier",
    *THRESHOLDS,
    "eval/profile",
]


STATUSES = ("ok", "diverged", "failed", "pruned")
_UMASK = os.umask(0)
os.umask(_UMASK)
# Fault-injection hook for tests/test_kill.py, inert unless the variable is set:
# VAE_SWEEP_KILL_AT=<file name>:<n>:<before|after> SIGKILLs this process right before or after the
# rename of the n-th atomic write (in this process) of a file of that name (``*`` = any file).
KILL_AT_ENV = "VAE_SWEEP_KILL_AT"
# Test hook for tests/test_slurm.py, inert unless the variable is set: VAE_SWEEP_HOLD_AT=<file name>:<hold
# file> makes this process wait, after each atomic write of a file of that name (``*`` = any file), for as
# long as <hold file> exists: a test holds a run at a checkpoint for as long as it needs, then releases it.
HOLD_AT_ENV = "VAE_SWEEP_HOLD_AT"
TMP_SUFFIX = ".tmp"
_kill_count = 0


class SchemaVersionError(RuntimeError):
    """A run directory was written by a version of the harness with another result schema."""


def _maybe_kill(name: str, moment: str) -> None:
    global _kill_count
    spec = os.environ.get(KILL_AT_ENV)
    if not spec:
        return
    target, n, when = spec.rsplit(":", 2)
    if target not in ("*", name):
        return
    if moment == "before":
        _kill_count += 1
    if when == moment and _kill_count == int(n):
        os.kill(os.getpid(), 9)  # SIGKILL: no cleanup, no finally blocks


def _maybe_hold(name: str) -> None:
    spec = os.environ.get(HOLD_AT_ENV)
    if not spec:
        return
    target, hold = spec.split(":", 1)
    while target in ("*", name) and os.path.exists(hold):
        time.sleep(0.2)  # a signal (e.g. Slurm's USR2) still runs its handler at once


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        _maybe_kill(path.name, "before")
        os.replace(tmp, path)
        _maybe_kill(path.name, "after")
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            # e.g. ENOSPC from write/fsync names no file: say which one (the old version is kept)
            raise type(exc)(
                exc.errno, f"{exc.strerror} (writing {path}; its previous version is intact)", str(path)
            ) from exc
        raise
    _maybe_hold(path.name)


def remove_stale_temps(run_dir: Path) -> list[Path]:
    """Delete the temporary files (``.<name>.*.tmp``) a killed writer left in ``run_dir`` and its
    ``.hydra/``. Call only while holding the run's lock: no live process is writing there then."""
    stale = [p for d in (Path(run_dir), Path(run_dir) / ".hydra") for p in d.glob(f".*{TMP_SUFFIX}")]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def keep_previous(path: Path, previous: Path) -> None:
    """Make ``previous`` the current version of ``path`` (a hard link, renamed into place: either the
    old ``previous`` or this one, never a torn file), before ``path`` is rewritten."""
    if not Path(path).is_file():
        return
    tmp = Path(previous).with_name(f".{Path(previous).name}.{os.getpid()}{TMP_SUFFIX}")
    tmp.unlink(missing_ok=True)
    os.link(path, tmp)
    os.replace(tmp, previous)


def tidy(run_dir: Path) -> list[Path]:
    """What a process killed in ``run_dir`` left behind, removed: its temporary files, and the
    ``last.pt`` of a complete run (a kill between ``COMPLETE`` and the removal of the resume state).
    Every tool that takes the run's lock (training, ``sweep.evaluate``, ``sweep.slim``) calls it once
    it holds the lock, so the next start of any of them finishes the job; it removes nothing else
    (an interrupted evaluation is flagged by :data:`EVALUATING` and redone by ``sweep.evaluate``).
    Returns the paths removed."""
    gone = remove_stale_temps(run_dir)
    for name in RESUME_FILES if is_complete(run_dir) else ():
        if (Path(run_dir) / name).is_file():
            (Path(run_dir) / name).unlink()
            gone.append(Path(run_dir) / name)
    return gone


def check_schema_version(run_dir: Path) -> None:
    """Raise :class:`SchemaVersionError` if ``run_dir``'s ``COMPLETE`` or ``run.parquet`` was written
    with another ``SCHEMA_VERSION``: this code must neither skip nor overwrite such a run."""
    run_dir = Path(run_dir)
    found = []
    if is_complete(run_dir):
        try:
            found.append(("COMPLETE", read_complete(run_dir).get("schema_version")))
        except (OSError, ValueError, AttributeError) as exc:
            found.append(("COMPLETE", f"unreadable ({exc})"))
    if (run_dir / "run.parquet").is_file():
        try:
            meta = pq.read_schema(run_dir / "run.parquet").metadata or {}
            raw = meta.get(b"vae_sweep.schema_version")
            found.append(("run.parquet", int(raw) if raw is not None else None))
        except Exception:  # unreadable: not a version question; a run that trains rewrites it
            pass
    bad = [f"{name}: schema version {v}" for name, v in found if v != SCHEMA_VERSION]
    if bad:
        raise SchemaVersionError(
            f"{run_dir} was written by an incompatible version of vae-sweep ({'; '.join(bad)}; this code "
            f"writes schema version {SCHEMA_VERSION}); it is neither skipped nor overwritten: move it away "
            "or use another results_dir / sweep_name"
        )


def write_parquet(
    path: Path,
    rows: list[dict[str, Any]] | pa.Table,
    columns: list[str] | None = None,
    *,
    compact: bool = False,
    identity: str | None = None,
) -> None:
    """Rows (or a table) → one parquet file with ``schema_version`` in every row and in the metadata.
    ``columns`` puts those first, in that order, missing ones as nulls. ``compact``: no column
    statistics and no dictionary pages (the same values in fewer bytes, for files that are read
    whole: what :mod:`sweep.slim` keeps). ``identity``: the run's identity stamp
    (:func:`sweep.keys.identity_digest`), stored under :data:`IDENTITY_KEY`; every writer of a run's
    file passes it (a table read back keeps the stamp its metadata holds)."""
    if isinstance(rows, pa.Table) and "schema_version" in rows.column_names:
        table = rows
    elif isinstance(rows, pa.Table):
        table = rows.add_column(0, "schema_version", pa.array([SCHEMA_VERSION] * rows.num_rows, pa.int64()))
    else:
        rows = [
            {"schema_version": SCHEMA_VERSION, **{k: v for k, v in r.items() if k != "schema_version"}}
            for r in rows
        ]
        if columns is not None:
            extra = [k for r in rows for k in r if k not in columns]
            columns = columns + list(dict.fromkeys(extra))
            rows = [{c: r.get(c) for c in columns} for r in rows]
        table = pa.Table.from_pylist(rows)
    meta = {**(table.schema.metadata or {}), b"vae_sweep.schema_version": str(SCHEMA_VERSION).encode()}
    if identity is not None:
        meta[IDENTITY_KEY] = identity.encode()
    table = table.replace_schema_metadata(meta)
    buf = io.BytesIO()
    options = {"write_statistics": False, "use_dictionary": False} if compact else {}
    pq.write_table(table, buf, compression="zstd", **options)
    atomic_write_bytes(path, buf.getvalue())


def identity_of(path: Path) -> str | None:
    """The identity stamp (:data:`IDENTITY_KEY`) of the parquet file ``path``, or None where it has
    none (written before stamps existed). Reads the footer only."""
    raw = (pq.read_schema(path).metadata or {}).get(IDENTITY_KEY)
    return raw.decode() if raw is not None else None


def write_yaml(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, yaml.safe_dump(obj, sort_keys=False).encode())


def save_torch(path: Path, obj: Any) -> None:
    import torch  # here, not at the top: sweep.status reads results without paying torch's import

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def write_complete(run_dir: Path, status: str) -> None:
    atomic_write_bytes(
        Path(run_dir) / COMPLETE, json.dumps({"status": status, "schema_version": SCHEMA_VERSION}).encode()
    )


def read_complete(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / COMPLETE).read_text())


def is_complete(run_dir: Path) -> bool:
    return (Path(run_dir) / COMPLETE).is_file()


# libyaml's safe loader where PyYAML was built with it: the same result, 8x faster (300 stored configs
# in 0.18 s instead of 1.5 s), which analysis and the grid check pay once per run
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StoredConfigError(ValueError):
    """A run directory's ``.hydra/config.yaml`` is not a readable config."""


def read_stored_config(run_dir: Path) -> dict[str, Any] | None:
    """The config a run directory stores, or None if it has none; :class:`StoredConfigError` (naming the
    file) if it is not a YAML mapping."""
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    try:
        cfg = yaml.load(path.read_text(), Loader=_SAFE_LOADER)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise StoredConfigError(f"{path} is not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(cfg, dict):
        raise StoredConfigError(f"{path} does not hold a config (a YAML mapping) but {type(cfg).__name__}")
    return cfg


# The resume state: the last epoch's checkpoint and the one before it (a cohort killed between its
# members' checkpoints restarts the members that got ahead from it: sweep/slot.py).
RESUME_FILES = ("last.pt", "prev.pt")
# A run directory that holds any of these has trained at least one epoch (or finished).
TRAINED_FILES = ("epochs.parquet", "last.pt", "best.pt", COMPLETE)


RUN_MARKERS = ("run.parquet", COMPLETE, ".hydra/config.yaml")  # what any started run has written


def enclosing_run(path: Path) -> Path | None:
    """The nearest directory above ``path`` (resolved) that holds a run, or None."""
    return next(
        (p for p in Path(path).resolve().parents if any((p / m).is_file() for m in RUN_MARKERS)), None
    )


# Every name a run writes in its own directory (results/README.md lists them), and the patterns of the
# names it writes more than one of: the moved-aside checkpoints, TensorBoard sessions, atomic writes'
# and path checks' temporary entries. Anything else is not this run's.
RUN_ENTRIES = (
    ".hydra",
    "epochs.parquet",
    "run.parquet",
    "eval.parquet",
    "dims.parquet",
    "latents.parquet",
    "pca.parquet",
    "best.pt",
    *RESUME_FILES,  # last.pt, and prev.pt: the epoch before, which a resumed cohort may step back to
    "recon.png",
    "samples.png",
    COMPLETE,
    "SLIMMED",
    EVALUATING,
    ".lock",
    "train.log",  # Hydra's job log, written by earlier versions
)
RUN_PATTERNS = ("*.corrupt*", "events.out.tfevents.*", f".*{TMP_SUFFIX}", ".write-check-*")


def foreign_entries(run_dir: Path) -> list[str]:
    """The names in ``run_dir`` that no run writes (sorted; none where it does not exist)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in run_dir.iterdir()
        if p.name not in RUN_ENTRIES and not any(fnmatch.fnmatchcase(p.name, pat) for pat in RUN_PATTERNS)
    )


def has_trained(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` got past its first epoch. One that did not (it failed or was
    stopped before) holds nothing to keep: its stored config does not hold the directory."""
    return any((Path(run_dir) / name).exists() for name in TRAINED_FILES)


def trained_config(run_dir: Path) -> dict[str, Any] | None:
    """The stored config of a run that has trained, which a relaunch must match; None where the
    directory is empty or its run never trained (its config, readable or not, is replaced)."""
    return read_stored_config(run_dir) if has_trained(run_dir) else None
