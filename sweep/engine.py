"""Train many runs in one process: the engine behind ``train()`` (one run) and ``hydra/launcher=cohort``
(a whole grid). A single run is a list of one job, trained by the same code.

    jobs ─ prepare ─▶ members ─ group by architecture ─▶ cohorts ─ biggest first ─▶ slots

* **prepare** (before anything is written): validate each config, refuse a directory of another
  schema version or another config, check the data's checksums. A job that fails here gets its
  exception as its result; the others go on.
* **members**: when its cohort starts, each run takes its directory's lock (a run another process
  holds is skipped, status ``locked``; a complete one is skipped untouched), writes its ``.hydra/``
  snapshot once, and loads its ``last.pt`` if it has one. From then on it has its own files, history,
  best checkpoint and status exactly as if it trained alone.
* **cohorts**: runs that differ only in seed, loss knobs (β, warm-up, free bits, reduction) and
  epoch count, at the same epoch, are stacked into one :class:`~sweep.cohort.Cohort` of at most
  ``engine.max_members``. A member that diverges, is pruned, fails or finishes leaves it; the rest
  go on as a cohort rebuilt from their in-memory checkpoints.
* **slots**: ``engine.slots`` cohorts train at once, each in its own thread on its own CUDA stream
  (kernels of different streams run concurrently, and a replayed CUDA graph releases the GIL); the
  biggest cohorts (members × FLOPs × epochs) start first. The CPU side of evaluation (probes) runs in
  ``engine.eval_workers`` processes. On CPU there is one slot and one member per cohort by default:
  there, stacking was measured slower than training runs one after another (``bench.throughput``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from sweep import results
from sweep.cohort import Cohort, on_stream
from sweep.config import config_diff, flatten, to_plain, validate
from sweep.data import check_data, load_mnist
from sweep.evaluate import evaluate_stack, limit_worker_threads, model_flops, skip_evaluation, split_losses
from sweep.lock import holder, note_holder, run_lock
from sweep.losses import Knobs
from sweep.models import build_model, count_params
from sweep.names import run_name_of
from sweep.stack import Stack


class ConfigMismatchError(RuntimeError):
    """The run directory already holds a run of a different configuration."""


class StopRun(Exception):
    """Raised by an ``on_epoch`` callback to end a run early with a final status (e.g. ``pruned``)."""

    def __init__(self, message: str, *, epoch: int, status: str = "pruned"):
        super().__init__(message)
        self.epoch, self.status = epoch, status


class _Halt(BaseException):
    """Another slot failed or the launch was interrupted: stop at the next epoch boundary."""


@dataclass
class Job:
    """One run to train: its validated config, its directory, and what its record keeps."""

    cfg: dict[str, Any]
    out_dir: Path
    overrides: list[str] = field(default_factory=list)
    hydra_cfg: Any = None
    on_epoch: Callable[[int, float], None] | None = None


@dataclass(frozen=True)
class Settings:
    """How the engine runs a launch (``engine.*`` in the config; not part of any run's identity)."""

    max_members: int
    slots: int
    graphs: bool
    eval_workers: int

    @classmethod
    def of(cls, cfg: dict[str, Any], device: torch.device) -> Settings:
        """``auto`` values: one member and one slot on CPU; on CUDA 32 members, 8 slots and up to 8
        evaluation workers (half the cores)."""
        ec, cuda = cfg.get("engine") or {}, device.type == "cuda"

        def pick(key: str, on_cuda: int, on_cpu: int) -> int:
            value = ec.get(key, "auto")
            return (on_cuda if cuda else on_cpu) if value == "auto" else value

        return cls(
            max_members=pick("max_members", 32, 1),
            slots=pick("slots", 8, 1),
            graphs=bool(ec.get("cuda_graphs", True)) and cuda,
            eval_workers=pick("eval_workers", min(8, max(1, (os.cpu_count() or 2) // 2)), 0),
        )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def load_data(cfg: dict[str, Any], device: torch.device):
    dc = cfg["data"]
    return load_mnist(
        device,
        likelihood=dc["likelihood"],
        val_size=dc["val_size"],
        split_seed=dc["split_seed"],
        binarize_seed=dc["binarize_seed"],
        subset=dc["subset"],
    )


def train_epoch(cohort: Cohort, epoch: int) -> list[dict[str, float]]:
    """One epoch of a cohort (the engine calls it through this module, so tests can intercept it)."""
    return cohort.train_epoch(epoch)


# Keys of a run config that cohort members may differ in; everything else must be equal.
_MEMBER_KEYS = (
    "seed",
    "loss",
    "epochs",
    "trial",
    "results_dir",
    "sweep_name",
    "progress",
    "search",
    "engine",
)


def cohort_key(cfg: dict[str, Any]) -> str:
    """Runs with the same key can be stacked into one cohort."""
    return json.dumps(
        {k: v for k, v in flatten(cfg).items() if k.split(".")[0] not in _MEMBER_KEYS},
        sort_keys=True,
        default=str,
    )


def cohort_cost(cfgs: Sequence[dict[str, Any]]) -> float:
    """Forward FLOPs of all members' training, for ordering (biggest first)."""
    with torch.device("meta"):
        model = build_model(cfgs[0])
    flops = sum(model_flops(model).values())
    return flops * sum(c["epochs"] for c in cfgs)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _show_progress(setting) -> bool:
    if setting == "auto":
        return sys.stderr.isatty() and not os.environ.get("CI")
    return bool(setting)


def _move_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.corrupt`` (``.corrupt1``, … if taken), never overwriting a file."""
    for i in range(1000):
        aside = path.with_name(f"{path.name}.corrupt{i or ''}")
        if not aside.exists():
            os.replace(path, aside)
            return aside
    raise FileExistsError(f"too many {path.name}.corrupt* files next to {path}")


@contextlib.contextmanager
def tf32_on_cuda(device: torch.device, enabled: bool = True):
    """TF32 matmuls and convolutions on CUDA (training and evaluation), or with ``enabled=False`` plain
    float32 for both; the previous flags come back afterwards. Elsewhere a no-op. The flags are
    process-wide, so the engine sets them once per launch."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ---------------------------------------------------------------------------------------- members
class Member:
    """One run inside a cohort: its directory, lock, history, best checkpoint and result row."""

    def __init__(self, job: Job, name: str, prov: dict[str, Any], device: torch.device, index: int = 0):
        self.job, self.cfg, self.name, self.out_dir, self.index = job, job.cfg, name, Path(job.out_dir), index
        self.row: dict[str, Any] = {
            "run_name": name,
            "status": "failed",
            "error": None,
            "diverged_epoch": None,
            "epochs_done": 0,
            "device": str(device),
            "overrides": " ".join(job.overrides or []),
            "started_at": _now(),
            **{
                k: prov[k] for k in ("torch_version", "python_version", "hostname", "git_commit", "git_dirty")
            },
        }
        self.out: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"epoch": None, "neg_elbo": math.inf}
        self.epoch, self.resumed_seconds = 0, 0.0
        self.state: dict[str, Any] | None = None  # the last checkpoint, in memory
        self.session_start = self.t0 = time.perf_counter()
        self._lock: contextlib.AbstractContextManager | None = None

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
            self.release()
            print(f"{self.name}: already complete ({row['status']}), skipped: {self.out_dir}")
            return row
        note_holder(self.out_dir)
        results.remove_stale_temps(self.out_dir)  # left by a process killed mid-write; we hold the lock
        if results.read_stored_config(self.out_dir) is None:  # written once, before anything else
            results.write_yaml(self.out_dir / ".hydra" / "config.yaml", self.cfg)
            results.write_yaml(self.out_dir / ".hydra" / "overrides.yaml", list(self.job.overrides or []))
            if self.job.hydra_cfg is not None:
                yaml_text = OmegaConf.to_yaml(self.job.hydra_cfg)
                results.atomic_write_bytes(self.out_dir / ".hydra" / "hydra.yaml", yaml_text.encode())
        return None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

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
        print(f"{self.name}: resuming after epoch {self.epoch}")

    def start(self) -> None:
        self.session_start = time.perf_counter()
        self.t0 = self.session_start - self.resumed_seconds  # wall time counts every session of the run

    # -------------------------------------------------------------- per epoch
    def end_epoch(self, epoch: int, rows: list[dict[str, Any]], checkpoint: dict[str, Any]) -> str:
        """Record one epoch (``rows``: train, val[, test]); returns 'diverged', 'done' or 'continue'.
        May raise :class:`StopRun` (from ``on_epoch``) or an ``OSError`` (a file it could not write)."""
        for r in rows:
            r.update(run_name=self.name, lr=self.cfg["lr"])
        self.history.extend(rows)
        results.write_parquet(self.out_dir / "epochs.parquet", self.history, results.EPOCH_COLUMNS)
        if not all(math.isfinite(r[k]) for r in rows for k in ("loss", "recon", "kl")):
            self.out.update(
                status="diverged",
                diverged_epoch=epoch + 1,
                epochs_done=epoch + 1,
                error=f"non-finite loss in epoch {epoch + 1}",
                wall_seconds=time.perf_counter() - self.t0,
            )
            skip_evaluation(self.out_dir, self.name, f"run diverged in epoch {epoch + 1}")
            return "diverged"
        val = rows[1]["neg_elbo"]
        if val < self.best["neg_elbo"]:
            self.best = {"epoch": epoch + 1, "neg_elbo": val}
            results.save_torch(
                self.out_dir / "best.pt",
                {"model": checkpoint["model"], "epoch": epoch + 1, "val/neg_elbo": val},
            )
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

    def stop(self, stop: StopRun) -> None:
        self.out.update(status=stop.status, error=str(stop), epochs_done=stop.epoch)
        skip_evaluation(self.out_dir, self.name, f"run {stop.status} after epoch {stop.epoch}: {stop}")

    def finalize(self) -> dict[str, Any]:
        """Write ``run.parquet`` (and ``COMPLETE`` unless it failed), release the lock, return the row.
        An error writing ``run.parquet`` propagates: a sweep cannot go on with a full disk."""
        try:
            row = {**self.row, **self.out}
            if "wall_seconds" not in self.out:  # it did not get to the end: this session's time only
                row["wall_seconds"] = time.perf_counter() - self.session_start
            row["finished_at"] = _now()
            flat = flatten(self.cfg)
            flat["device.requested"] = flat.pop("device")  # the row's ``device`` is the one actually used
            row = {**dict.fromkeys(results.RUN_COLUMNS), **row, **flat}
            results.write_parquet(self.out_dir / "run.parquet", [row], results.RUN_COLUMNS)
            if row["status"] != "failed":
                results.write_complete(self.out_dir, row["status"])
                (self.out_dir / "last.pt").unlink(missing_ok=True)  # resume state is not needed once complete
            print(f"{self.name}: {row['status']}; results in {self.out_dir}")
            return row
        finally:
            self.release()


# ---------------------------------------------------------------------------------------- launch
class _Context:
    """What the slots of one launch share: settings, results, data on the device, the evaluation pool."""

    def __init__(self, settings: Settings, prov: dict[str, Any], out: list):
        self.settings, self.prov, self.out = settings, prov, out
        self.halt = threading.Event()
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def data(self, cfg: dict[str, Any], device: torch.device):
        key = json.dumps([cfg["data"], str(device)], sort_keys=True)
        with self._lock:
            if key not in self._data:
                self._data[key] = load_data(cfg, device)
            return self._data[key]

    def pool(self):
        if self.settings.eval_workers <= 0:
            return None
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.settings.eval_workers,
                    mp_context=get_context("spawn"),
                    initializer=limit_worker_threads,
                )
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


class _Finisher:
    """A slot's evaluations whose CPU side still runs in the pool: their runs are finalized (result
    row, ``COMPLETE``, lock released) when it is done, while the slot trains its next cohort."""

    def __init__(self, ctx: _Context):
        self.ctx, self.items = ctx, []

    def add(self, members: list[Member], pending) -> None:
        self.items.append((members, pending))
        self.poll()

    def poll(self, wait: bool = False) -> None:
        keep = []
        for members, pending in self.items:
            if not (wait or pending.done()):
                keep.append((members, pending))
                continue
            try:
                pending.finish()
            except Exception as exc:
                for m in members:
                    m.fail(exc)
            for m in members:
                self.ctx.out[m.index] = m.finalize()
        self.items = keep

    def abandon(self) -> None:
        """Release the locks of runs whose evaluation will not be finished (a relaunch redoes it)."""
        for members, _ in self.items:
            for m in members:
                m.release()
        self.items = []


def prepare(job: Job) -> Job:
    """Validate a job before anything is written (raises on a bad value, a directory of another schema
    version or of another config, or corrupted data files)."""
    cfg = validate(to_plain(job.cfg))
    out_dir = Path(job.out_dir)
    results.check_schema_version(out_dir)  # a run of another schema version is neither skipped nor touched
    stored = results.read_stored_config(out_dir)
    if stored is not None and (diff := config_diff(stored, cfg)):
        raise ConfigMismatchError(
            f"{out_dir} already holds a run of a different configuration ({'; '.join(diff)}); "
            "choose another results_dir / --out, or move that run away"
        )
    if not results.is_complete(out_dir):
        check_data()  # checksums before anything is written (cached per process: load_data reuses it)
    return Job(cfg, out_dir, list(job.overrides or []), job.hydra_cfg, job.on_epoch)


def plan(jobs: Sequence[Job], max_members: int) -> list[list[int]]:
    """Indices of ``jobs`` grouped into cohorts of at most ``max_members`` (same :func:`cohort_key`),
    biggest first."""
    groups: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(cohort_key(job.cfg), []).append(i)
    chunks = [idx[j : j + max_members] for idx in groups.values() for j in range(0, len(idx), max_members)]
    cost = {tuple(c): cohort_cost([jobs[i].cfg for i in c]) for c in chunks}
    return sorted(chunks, key=lambda c: (-cost[tuple(c)], c[0]))


def train_jobs(jobs: Sequence[Job], settings: Settings | None = None) -> list[dict[str, Any] | BaseException]:
    """Train (or skip, or resume) every job; returns per job its ``run.parquet`` row, a ``locked``
    row, or the exception that refused it before anything was written."""
    out: list[dict[str, Any] | BaseException | None] = [None] * len(jobs)
    prepared: dict[int, Job] = {}
    for i, job in enumerate(jobs):
        try:
            prepared[i] = prepare(job)
        except Exception as exc:
            out[i] = exc
    if not prepared:
        return out  # type: ignore[return-value]
    first = next(iter(prepared.values())).cfg
    devices = {resolve_device(j.cfg["device"]) for j in prepared.values()}
    settings = settings or Settings.of(first, resolve_device(first["device"]))
    ctx = _Context(settings, results.provenance(), out)
    ready = list(prepared)
    todo = [[ready[i] for i in chunk] for chunk in plan([prepared[i] for i in ready], settings.max_members)]
    tasks: queue.Queue = queue.Queue()
    for chunk in todo:
        tasks.put(chunk)

    def slot() -> None:
        finisher = _Finisher(ctx)
        try:
            while not ctx.halt.is_set():
                try:
                    chunk = tasks.get_nowait()
                except queue.Empty:
                    break
                device = resolve_device(prepared[chunk[0]].cfg["device"])
                with on_stream(device):
                    _run_chunk([(i, prepared[i]) for i in chunk], device, ctx, finisher)
            finisher.poll(wait=not ctx.halt.is_set())
        finally:
            finisher.abandon()

    cuda = next((d for d in devices if d.type == "cuda"), torch.device("cpu"))
    threads = torch.get_num_threads()
    with tf32_on_cuda(cuda):
        try:
            if settings.slots <= 1 or len(todo) == 1:
                slot()
            else:
                # Each slot thread would start its own team of OpenMP threads for its few CPU tensor
                # ops (checkpoint copies): with 8 slots that is 8 teams spinning on the cores the
                # slots need to feed the GPU. One intra-op thread per slot instead.
                torch.set_num_threads(1)
                _run_threads(slot, min(settings.slots, len(todo)), ctx)
        finally:
            torch.set_num_threads(threads)
            ctx.close()
    return out  # type: ignore[return-value]


def _run_threads(slot: Callable[[], None], n: int, ctx: _Context) -> None:
    """Run ``slot`` in ``n`` threads; the first exception (or Ctrl-C here) halts the others at their
    next epoch boundary and is raised once they have stopped."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            slot()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)
            ctx.halt.set()

    threads = [threading.Thread(target=guarded, name=f"slot-{k}", daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)
    except BaseException:
        ctx.halt.set()
        for t in threads:
            t.join()
        raise
    real = [e for e in errors if not isinstance(e, _Halt)]
    if real:
        raise real[0]


def _run_chunk(
    jobs: Sequence[tuple[int, Job]], device: torch.device, ctx: _Context, finisher: _Finisher
) -> None:
    """Open every job of one planned cohort, then train its members (grouped by their resume epoch)."""
    members: list[Member] = []
    try:
        for index, job in jobs:
            member = Member(job, run_name_of(job.cfg), ctx.prov, device, index)
            done = member.open()
            if done is not None:
                ctx.out[index] = done
                continue
            try:
                member.resume()
            except Exception as exc:
                member.fail(exc)
                ctx.out[index] = member.finalize()
                continue
            members.append(member)
        by_epoch: dict[int, list[Member]] = {}
        for m in members:
            by_epoch.setdefault(m.epoch, []).append(m)
        for group in by_epoch.values():
            _train_cohort(group, device, ctx, finisher)
    finally:
        pending = {id(m) for ms, _ in finisher.items for m in ms}
        for m in members:
            if id(m) not in pending:
                m.release()


def _train_cohort(members: list[Member], device: torch.device, ctx: _Context, finisher: _Finisher) -> None:
    """Train members that start at the same epoch as one cohort, each to its last epoch, then evaluate
    it. Members leave as they finish, diverge, are pruned or fail; the others go on."""
    active = list(members)
    cfg0 = active[0].cfg
    threads = torch.get_num_threads()
    set_threads = ctx.settings.slots <= 1 and cfg0["num_threads"]
    if set_threads:  # jobs of one launch share a process: the thread count must not leak into the next
        torch.set_num_threads(cfg0["num_threads"])
    cohort: Cohort | None = None
    bar = tqdm(
        total=max(m.cfg["epochs"] for m in active),
        initial=active[0].epoch,
        desc=active[0].name + (f" +{len(active) - 1}" if len(active) > 1 else ""),
        disable=not _show_progress(cfg0["progress"]),
        leave=False,
    )

    def end(m: Member) -> None:
        ctx.out[m.index] = m.finalize()

    try:
        with torch.device("meta"):
            arch = build_model(cfg0)
        counts = {
            "params/encoder": count_params(arch.encoder),
            "params/decoder": count_params(arch.decoder),
            "params/total": count_params(arch),
        }
        for m in active:
            m.start()
            m.out.update(counts)
        try:
            data = ctx.data(cfg0, device)
        except Exception as exc:
            for m in active:
                m.fail(exc)
                end(m)
            return
        while active:
            finisher.poll()
            finished = [m for m in active if m.epoch >= m.cfg["epochs"]]
            if finished:  # evaluated from their best checkpoints, together
                active = [m for m in active if m not in finished]
                _evaluate(finished, data, device, ctx, finisher)
                if cohort is not None:
                    cohort.release()
                    cohort = None
            if not active:
                break
            if ctx.halt.is_set():
                raise _Halt()
            try:
                if cohort is None:  # (re)built from the members' checkpoints when its membership changes
                    cohort = Cohort(
                        [m.cfg for m in active],
                        data,
                        device,
                        [m.state for m in active],
                        graphs=ctx.settings.graphs,
                    )
                epoch = active[0].epoch
                epoch_rows, checkpoints = _epoch(cohort, epoch, data, active)
            except Exception as exc:  # the cohort's step failed: every member records it, a relaunch retries
                for m in active:
                    m.fail(exc)
                    end(m)
                return
            going = []
            for m, member_rows, ckpt in zip(active, epoch_rows, checkpoints, strict=True):
                try:
                    outcome = m.end_epoch(epoch, member_rows, ckpt)
                except StopRun as stop:
                    m.stop(stop)
                    outcome = "stopped"
                except Exception as exc:
                    m.fail(exc)
                    outcome = "failed"
                if outcome in ("continue", "done"):
                    going.append(m)
                else:
                    end(m)
            if len(going) != len(active) and cohort is not None:
                cohort.release()
                cohort = None
            active = going
            bar.update(1)
            bar.set_postfix(val_neg_elbo=f"{epoch_rows[0][1]['neg_elbo']:.2f}")
    finally:
        bar.close()
        if cohort is not None:
            cohort.release()
        if set_threads:
            torch.set_num_threads(threads)


def _epoch(cohort: Cohort, epoch: int, data, members: Sequence[Member]):
    """Train one epoch and validate (and test, where asked) every member; returns per member its epoch
    rows and its checkpoint."""
    t = time.perf_counter()
    trs = train_epoch(cohort, epoch)
    t_train = time.perf_counter() - t
    betas = torch.tensor([tr["beta"] for tr in trs], dtype=torch.float32, device=cohort.device)
    knobs = Knobs(betas, cohort.free_bits, cohort.divisor)
    seeds = [m.cfg["seed"] for m in members]
    test_too = cohort.cfgs[0]["train"]["eval_test_each_epoch"]
    splits = {"val": data.val, "test": data.test} if test_too else {"val": data.val}
    evals = {}
    for split_name, split in splits.items():
        t = time.perf_counter()
        evals[split_name] = (
            split_losses(cohort.stack, split, seeds=seeds, knobs=knobs),
            time.perf_counter() - t,
        )
    rows = []
    for s, tr in enumerate(trs):
        member_rows = [{"epoch": epoch + 1, "split": "train", **tr, "seconds": t_train}]
        for split_name, (losses, seconds) in evals.items():
            member_rows.append(
                {"epoch": epoch + 1, "split": split_name, **losses[s], "beta": tr["beta"], "seconds": seconds}
            )
        rows.append(member_rows)
    return rows, [cohort.member_checkpoint(s) for s in range(cohort.size)]


def _evaluate(members: list[Member], data, device: torch.device, ctx: _Context, finisher: _Finisher) -> None:
    """Evaluate members that finished training, from their best checkpoints, as one stack. The CPU
    side finishes in the pool; the finisher records the runs when it has."""
    try:
        models = []
        for m in members:
            with torch.device("meta"):
                model = build_model(m.cfg)
            state = torch.load(m.out_dir / "best.pt", map_location=device, weights_only=True)["model"]
            model.load_state_dict(state, assign=True)
            models.append(model)
        stack = Stack.of(models, trainable=False)
        cfgs = [m.cfg for m in members]
        knobs = Knobs.of([c["loss"] for c in cfgs], device, [m.history[-1]["beta"] for m in members])
        seeds = [c["seed"] for c in cfgs]
        losses = {s: split_losses(stack, getattr(data, s), seeds=seeds, knobs=knobs) for s in ("val", "test")}
        for s, m in enumerate(members):
            for split_name in ("val", "test"):
                m.out.update({f"{split_name}/{k}": v for k, v in losses[split_name][s].items()})
        pending = evaluate_stack(
            stack,
            data,
            cfgs[0],
            [m.out_dir for m in members],
            [m.name for m in members],
            losses["test"],
            ctx.pool(),
        )
        for m in members:
            m.out.update(status="ok", epochs_done=m.cfg["epochs"], wall_seconds=time.perf_counter() - m.t0)
            m.out["best/epoch"] = m.best["epoch"]
    except Exception as exc:
        for m in members:
            m.fail(exc)
            ctx.out[m.index] = m.finalize()
        return
    finisher.add(members, pending)
