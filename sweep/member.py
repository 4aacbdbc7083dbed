"""One run's life inside the engine: its directory, lock, resume, per-epoch records and result.

A :class:`Job` is what to train and where; :func:`prepare` refuses it before anything is written; a
:class:`Member` is the run once its cohort starts: it takes the run's lock, writes the ``.hydra/``
snapshot once, loads ``last.pt``, records each epoch (``epochs.parquet``, ``best.pt``, ``last.pt``),
and ends the run (``run.parquet``, then ``COMPLETE`` unless it failed) exactly as a run trained alone
always has. :mod:`sweep.engine` decides which members train together; this module never touches a
model.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from omegaconf import OmegaConf

from sweep import divergence, results
from sweep.config import config_diff, flatten, row_values, to_plain
from sweep.data import check_data, dataset_of
from sweep.device import resolve_device
from sweep.evaluate import eval_defaults, eval_profile, iwae_k_for, skip_evaluation
from sweep.fid_kid import check_classifier
from sweep.keys import comparable, identity_digest
from sweep.lock import holder, note_holder, run_lock
from sweep.paths import writable
from sweep.provenance import GIT_FIELDS, machine
from sweep.rules import validate
from sweep.tblog import RunLogger


class ConfigMismatchError(RuntimeError):
    """The run directory already holds a run of a different configuration."""


class StopRun(Exception):
    """Raised by an ``on_epoch`` callback to end a run early with a final status (e.g. ``pruned``)."""

    def __init__(self, message: str, *, epoch: int, status: str = "pruned"):
        super().__init__(message)
        self.epoch, self.status = epoch, status


@dataclass
class Job:
    """One run to train: its validated config, its directory, and what its record keeps."""

    cfg: dict[str, Any]
    out_dir: Path
    overrides: list[str] = field(default_factory=list)
    hydra_cfg: Any = None
    on_epoch: Callable[[int, float], None] | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _move_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.corrupt`` (``.corrupt1``, … if taken), never overwriting a file."""
    for i in range(1000):
        aside = path.with_name(f"{path.name}.corrupt{i or ''}")
        if not aside.exists():
            os.replace(path, aside)
            return aside
    raise FileExistsError(f"too many {path.name}.corrupt* files next to {path}")


def machines(history: list[dict[str, Any]]) -> str | None:
    """The machines that trained a run's epochs (``machine`` of its train rows), in order, each once,
    joined by `` + ``; an epoch stored before the column existed (resumed from such a checkpoint) counts
    as ``unknown``. None before its first epoch."""
    seen = dict.fromkeys(r.get("machine") or "unknown" for r in history if r.get("split") == "train")
    return " + ".join(seen) or None


class Member:
    """One run inside a cohort: its directory, lock, history, best checkpoint and result row."""

    def __init__(self, job: Job, name: str, prov: dict[str, Any], device: torch.device, index: int = 0):
        self.job, self.cfg, self.name, self.out_dir, self.index = job, job.cfg, name, Path(job.out_dir), index
        self.identity = identity_digest(job.cfg)  # stamped on each of its parquet files
        self.machine = machine(device)  # on each epoch row: a resumed run may have trained on several
        self.row: dict[str, Any] = {
            "run_name": name,
            "status": "failed",
            "error": None,
            "diverged_epoch": None,
            "epochs_done": 0,
            "device": str(device),
            "overrides": " ".join(job.overrides or []),
            "started_at": _now(),
            **{k: prov[k] for k in ("torch_version", "python_version", "hostname", *GIT_FIELDS)},
        }
        self.out: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"epoch": None, "neg_elbo": math.inf}
        self.epoch, self.resumed_seconds = 0, 0.0
        self.state: dict[str, Any] | None = None  # the last checkpoint, in memory
        self.session_start = self.t0 = time.perf_counter()
        self._lock: contextlib.AbstractContextManager | None = None
        self.tb: RunLogger | None = None  # TensorBoard, from start() on

    # -------------------------------------------------------------- lock and directory
    def open(self) -> dict[str, Any] | None:
        """Take the run's lock. Returns the final row when there is nothing to train (locked by
        another process, or already complete), else None with the lock held."""
        self._lock = run_lock(self.out_dir)
        if not self._lock.__enter__():
            self.release()
            print(
                f"{self.name}: being trained by another process ({holder(self.out_dir)}), skipped: {self.out_dir}"
            )
            return {**dict.fromkeys(results.RUN_COLUMNS), "run_name": self.name, "status": "locked"}
        if results.is_complete(self.out_dir):
            row = pq.read_table(self.out_dir / "run.parquet").to_pylist()[0]
            results.tidy(self.out_dir)  # what a kill after COMPLETE left (a last.pt); else nothing
            self.release()
            print(f"{self.name}: already complete ({row['status']}), skipped: {self.out_dir}")
            return row
        note_holder(self.out_dir, 0, self.cfg["epochs"])  # resume() and every epoch update the epoch
        results.tidy(self.out_dir)  # left by a process killed mid-write; we hold the lock
        if not results.has_trained(self.out_dir):  # written before anything else, kept once it trains
            results.write_yaml(self.out_dir / ".hydra" / "config.yaml", self.cfg)
            results.write_yaml(self.out_dir / ".hydra" / "overrides.yaml", list(self.job.overrides or []))
            if self.job.hydra_cfg is not None:
                yaml_text = OmegaConf.to_yaml(self.job.hydra_cfg)
                results.atomic_write_bytes(self.out_dir / ".hydra" / "hydra.yaml", yaml_text.encode())
        return None

    def release(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def step_back(self, epoch: int) -> bool:
        """Resume from ``prev.pt`` instead, if it holds ``epoch`` (one before ``last.pt``): it becomes
        ``last.pt`` (a rename), so the epoch after it is trained again (``epoch`` 0: from the start). Its cohort was killed between
        its members' checkpoints of one epoch, and the members must train that epoch together again,
        as they did uninterrupted (a differently stacked cohort rounds differently). Returns whether
        it stepped back."""
        prev = self.out_dir / "prev.pt"
        if self.epoch != epoch + 1:
            return False
        if epoch == 0:  # its first checkpoint: it starts afresh, as the others do
            (self.out_dir / "last.pt").unlink()
            self.state, self.history, self.epoch, self.resumed_seconds = None, [], 0, 0.0
            self.best = {"epoch": None, "neg_elbo": math.inf}
            print(f"{self.name}: back to the start, where the rest of its cohort stopped")
            return True
        if not prev.is_file():
            return False
        try:
            if torch.load(prev, map_location="cpu", weights_only=True)["epoch"] != epoch:
                return False
        except Exception:  # unreadable: the run goes on from last.pt, in a cohort of its own
            return False
        os.replace(prev, self.out_dir / "last.pt")
        self.resume()
        print(f"{self.name}: back to epoch {epoch}, where the rest of its cohort stopped")
        return True

    def resume(self) -> None:
        """Load ``last.pt`` if the run was interrupted; an unreadable one is moved aside and raises."""
        last = self.out_dir / "last.pt"
        if not last.is_file():
            return
        try:
            state = torch.load(last, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupted on disk (atomic writes never tear it): fail, keep it aside
            aside = _move_aside(last)
            raise RuntimeError(
                f"cannot resume: checkpoint {last} is unreadable ({type(exc).__name__}: {exc}); moved it to "
                f"{aside.name}, so a relaunch trains this run from the start"
            ) from exc
        self.state = {k: state[k] for k in ("model", "optimizer", "g_data", "g_noise")}
        self.history = list(state["history"])
        self.epoch, self.best, self.resumed_seconds = state["epoch"], state["best"], state["seconds"]
        with contextlib.suppress(OSError):  # the note is for humans and sweep.status, never a reason to fail
            note_holder(self.out_dir, self.epoch, self.cfg["epochs"])
        print(f"{self.name}: resuming after epoch {self.epoch}")

    def start(self) -> None:
        self.session_start = time.perf_counter()
        self.t0 = self.session_start - self.resumed_seconds  # wall time counts every session of the run
        self.tb = RunLogger(self.out_dir, self.cfg, self.name)
        self.tb.open(self.epoch, self.history)

    # -------------------------------------------------------------- per epoch
    def end_epoch(self, epoch: int, rows: list[dict[str, Any]], checkpoint: dict[str, Any]) -> str:
        """Record one epoch (``rows``: train, val[, test]); returns 'diverged', 'done' or 'continue'.
        May raise :class:`StopRun` (from ``on_epoch``) or an ``OSError`` (a file it could not write)."""
        for r in rows:
            r.update(run_name=self.name, lr=self.cfg["lr"], machine=self.machine)
        self.history.extend(rows)
        results.write_parquet(
            self.out_dir / "epochs.parquet", self.history, results.EPOCH_COLUMNS, identity=self.identity
        )
        if self.tb is not None:
            self.tb.epoch(epoch + 1, rows)
        if reason := divergence.of_epoch(epoch + 1, rows, self.cfg["data"]["likelihood"]):
            self.diverge(reason, epoch + 1, epochs_done=epoch + 1)
            skip_evaluation(
                self.out_dir, self.name, f"run diverged in epoch {epoch + 1}", identity=self.identity
            )
            return "diverged"
        val = rows[1]["neg_elbo"]
        if val < self.best["neg_elbo"]:
            self.best = {"epoch": epoch + 1, "neg_elbo": val}
            results.save_torch(
                self.out_dir / "best.pt",
                {"model": checkpoint["model"], "epoch": epoch + 1, "val/neg_elbo": val},
            )
        results.keep_previous(self.out_dir / "last.pt", self.out_dir / "prev.pt")
        results.save_torch(
            self.out_dir / "last.pt",
            {
                **checkpoint,
                "history": self.history,
                "epoch": epoch + 1,
                "best": self.best,
                "seconds": time.perf_counter() - self.t0,
            },
        )
        self.epoch, self.state = epoch + 1, checkpoint
        with contextlib.suppress(OSError):  # a heartbeat for sweep.status, never a reason to fail
            note_holder(self.out_dir, self.epoch, self.cfg["epochs"])
        if self.job.on_epoch is not None:
            self.job.on_epoch(epoch + 1, val)
        return "done" if self.epoch >= self.cfg["epochs"] else "continue"

    # -------------------------------------------------------------- endings
    def fail(self, exc: BaseException) -> None:
        self.out["status"] = "failed"
        self.row["error"] = (
            "".join(traceback.format_exception_only(exc)).strip()
            + "\n"
            + "".join(traceback.format_exception(exc, limit=-3))
        )
        print(f"{self.name}: FAILED: {exc}", file=sys.stderr)

    def diverge(self, reason: str, epoch: int | None, **more: Any) -> None:
        """End the run ``diverged`` (:mod:`sweep.divergence`): final, left out of every analysis."""
        self.out.update(
            status="diverged",
            diverged_epoch=epoch,
            error=reason,
            wall_seconds=time.perf_counter() - self.t0,
            **more,
        )
        print(f"{self.name}: diverged: {reason}", file=sys.stderr)

    def stop(self, stop: StopRun) -> None:
        self.out.update(status=stop.status, error=str(stop), epochs_done=stop.epoch)
        reason = f"run {stop.status} after epoch {stop.epoch}: {stop}"
        skip_evaluation(self.out_dir, self.name, reason, identity=self.identity)

    def finalize(self) -> dict[str, Any]:
        """Write ``run.parquet`` (and ``COMPLETE`` unless it failed), release the lock, return the row.
        An error writing ``run.parquet`` propagates: a sweep cannot go on with a full disk."""
        try:
            row = {**self.row, **self.out}
            if "wall_seconds" not in self.out:  # it did not get to the end: this session's time only
                row["wall_seconds"] = time.perf_counter() - self.session_start
            row["finished_at"] = _now()
            row["machines"] = machines(self.history)
            flat = row_values(flatten(self.cfg))
            flat["device.requested"] = flat.pop("device")  # the row's ``device`` is the one actually used
            row = {**dict.fromkeys(results.RUN_COLUMNS), **row, **flat}
            results.write_parquet(
                self.out_dir / "run.parquet", [row], results.RUN_COLUMNS, identity=self.identity
            )
            if self.tb is not None:
                self.tb.end(row)
            if row["status"] != "failed":
                results.write_complete(self.out_dir, row["status"])
                for name in results.RESUME_FILES:  # resume state is not needed once complete
                    (self.out_dir / name).unlink(missing_ok=True)
            print(f"{self.name}: {row['status']}; results in {self.out_dir}")
            return row
        finally:
            self.release()


def check_run_dir(cfg: dict[str, Any], out_dir: Path) -> None:
    """``out_dir`` may take the run ``cfg``: it is of this schema version and holds no run of another
    config (one that never trained does not count: a corrected relaunch replaces it). Raises
    :class:`~sweep.results.SchemaVersionError`, :class:`~sweep.results.StoredConfigError` or
    :class:`ConfigMismatchError`. A directory inside another run's directory is refused too: runs never
    nest, or the analysis of the outer run's sweep would count this one as well, and so is a directory
    that holds anything a run does not write (:func:`sweep.results.foreign_entries`). First of all it
    must be creatable (:func:`sweep.paths.writable`: :class:`~sweep.paths.PathError`)."""
    writable(out_dir, "the run directory")
    outer = results.enclosing_run(out_dir)
    if outer is not None:
        raise ConfigMismatchError(
            f"{out_dir} is inside {outer}, the directory of another run: runs never nest (that run's "
            "sweep would count this one too); valid: a hydra.sweep.dir, hydra.run.dir or --out outside "
            "every run directory"
        )
    foreign = results.foreign_entries(out_dir)
    if foreign:  # e.g. hydra.run.dir=/ or a home directory: a run never writes beside unrelated files
        more = f" and {len(foreign) - 1} more entries" if len(foreign) > 1 else ""
        raise ConfigMismatchError(
            f"{out_dir} holds {foreign[0]!r}{more}, which no run writes: a run directory holds only its "
            "run's own files; valid: a directory that does not exist yet, an empty one, or this run's own "
            "(hydra.run.dir, hydra.sweep.dir or --out elsewhere)"
        )
    results.check_schema_version(out_dir)  # a run of another schema version is neither skipped nor touched
    stored = results.trained_config(out_dir)
    if stored is not None and (diff := config_diff(stored, cfg)):
        raise ConfigMismatchError(
            f"{out_dir} already holds a run of a different configuration ({'; '.join(diff)}); "
            "choose another results_dir / --out, or move that run away"
        )


def evaluated_profile(out_dir: Path) -> dict[str, Any] | None:
    """The evaluation profile (:func:`sweep.evaluate.eval_profile`, as a dict) the complete, evaluated run
    in ``out_dir`` was scored with: its ``eval.parquet``'s ``eval/profile``, or, for an evaluation
    written before that was recorded, its stored config's. None if the run is not complete, was not
    evaluated (it diverged), or its files cannot be read (the checks that read them name that)."""
    import json

    if not results.is_complete(out_dir) or not (Path(out_dir) / "eval.parquet").is_file():
        return None
    try:
        row = pq.read_table(Path(out_dir) / "eval.parquet").to_pylist()[0]
        stored = results.read_stored_config(out_dir) or {}
    except Exception:  # noqa: BLE001 - unreadable: not this check's to name
        return None
    if row.get("eval/status") not in (None, "ok"):
        return None
    text = row.get("eval/profile") or eval_profile({**eval_defaults(), **stored.get("eval", {})})
    profile = json.loads(text)
    if profile.get("iwae_k") is None and row.get("test/iwae_k") is not None:
        profile["iwae_k"] = int(row["test/iwae_k"])  # null: the K its device chose, as recorded
    return profile


def check_evaluated_as(cfg: dict[str, Any], out_dir: Path, redo: str) -> None:
    """A run that is complete in ``out_dir`` is skipped, its numbers taken for this command's: refuse
    (:class:`ConfigMismatchError`) where they were evaluated with another profile than ``cfg`` asks
    for (``eval.iwae_images``, ``eval.knn_k``, …: e.g. ``sweep.rerun L25_dense1_conv4_s7``, composed with
    the defaults, after ``sweep.rerun L25_dense1_conv4 seed=7`` trained that run with the stored
    reproduction's profile). ``redo`` names the option that trains elsewhere. A launch of a sweep checks
    its protocol against the sweep's settings instead (:mod:`sweep.grid`), and leaves a run that
    ``sweep.evaluate`` re-evaluated alone."""
    have = evaluated_profile(out_dir)
    if have is None:
        return
    import json

    ec = {**eval_defaults(), **cfg.get("eval", {})}
    want = json.loads(eval_profile(ec))
    if want.get("iwae_k") is None and have.get("iwae_k") is not None:  # null: the K this device takes
        want["iwae_k"] = iwae_k_for(ec, resolve_device(cfg.get("device", "auto")))
    diff = [k for k in sorted({*have, *want}) if comparable(have.get(k)) != comparable(want.get(k))]
    if diff:
        spelled = lambda v: "null" if v is None else repr(v)  # noqa: E731 - as a config spells it
        shown = "; ".join(f"eval.{k}={spelled(have.get(k))} there, {spelled(want.get(k))} asked" for k in diff)
        asked = " ".join(f"eval.{k}={'null' if want.get(k) is None else want.get(k)}" for k in diff)
        raise ConfigMismatchError(
            f"{out_dir} already holds this run, complete, evaluated with another profile ({shown}): it "
            f"would be skipped and its numbers taken for this command's; valid: the same eval settings, "
            f"{redo} elsewhere, or re-evaluate it: python -m sweep.evaluate {out_dir} {asked}"
        )


def check_job(cfg: dict[str, Any], out_dir: Path, *, here: bool = True) -> dict[str, Any]:
    """Everything that must hold before a run may write to ``out_dir``: every key of its config (with
    ``here``, this machine's devices too; :func:`sweep.rules.validate`) and :func:`check_run_dir`.
    Returns the validated plain config."""
    cfg = validate(to_plain(cfg), here=here)
    check_run_dir(cfg, Path(out_dir))
    return cfg


def prepare(job: Job) -> Job:
    """Validate a job before anything is written (raises on a bad value, a device this machine lacks, a
    directory of another schema version or of another config, or corrupted data files)."""
    out_dir = Path(job.out_dir)
    cfg = check_job(job.cfg, out_dir)
    if not results.is_complete(out_dir):
        # checksums before anything is written (cached per process: load_data reuses it), and the
        # feature classifier that evaluation's FID needs (sweep/fid_kid.py)
        check_data(dataset_of(cfg))
        check_classifier(dataset_of(cfg))
    return Job(cfg, out_dir, list(job.overrides or []), job.hydra_cfg, job.on_epoch)
