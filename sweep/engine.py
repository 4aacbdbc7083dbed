"""Train many runs in one process: the engine behind ``train()`` (one run) and ``hydra/launcher=cohort``
(a whole grid). A single run is a list of one job, trained by the same code.

    jobs ─ prepare ─▶ members ─ group by architecture ─▶ cohorts ─ biggest first ─▶ slots

* **prepare** (before anything is written): validate each config (:func:`sweep.member.check_job`, the
  checks every entry point makes), refuse a directory of another schema version or holding a run of
  another config that trained, check the data's checksums. A job that fails here gets its
  exception as its result; the others go on.
* **members** (:mod:`sweep.member`): when its cohort starts, each run takes its directory's lock (a
  run another process holds is skipped, status ``locked``; a complete one is skipped untouched),
  writes its ``.hydra/`` snapshot once, and loads its ``last.pt`` if it has one. From then on it has
  its own files, history, best checkpoint and status exactly as if it trained alone.
* **cohorts**: runs that differ only in seed, loss knobs (β, warm-up, free bits, reduction) and
  epoch count, at the same epoch, are stacked into one :class:`~sweep.cohort.Cohort` of at most
  ``engine.max_members``. A member that diverges, is pruned, fails or finishes leaves it; the rest
  go on as a cohort rebuilt from their in-memory checkpoints.
* **slots** (:mod:`sweep.slot`, which trains, evaluates and finalizes each cohort it takes):
  ``engine.slots`` cohorts train at once, each in its own thread on its own CUDA stream
  (kernels of different streams run concurrently, and a replayed CUDA graph releases the GIL); the
  biggest cohorts (members × FLOPs × epochs) start first. The CPU side of evaluation (probes) runs in
  ``engine.eval_workers`` processes. On CPU there is one slot and one member per cohort by default:
  there, stacking was measured slower than training runs one after another (``bench.throughput``).
"""

from __future__ import annotations

import functools
import json
import os
import queue
import shlex
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sweep import results
from sweep.config import PER_MEMBER_KEYS, flatten
from sweep.device import cpu_threads, resolve_device, tf32_on_cuda
from sweep.lock import read_note
from sweep.member import Job, prepare
from sweep.metrics import vae_flops
from sweep.provenance import provenance
from sweep.slot import Context, Halt, run_slot


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


def cohort_key(cfg: dict[str, Any]) -> str:
    """Runs with the same key can be stacked into one cohort: they agree on every key whose role
    (:data:`sweep.config.KEY_ROLES`) is not per member."""
    return json.dumps(
        {k: v for k, v in flatten(cfg).items() if k.split(".")[0] not in PER_MEMBER_KEYS},
        sort_keys=True,
        default=str,
    )


def cohort_cost(cfgs: Sequence[dict[str, Any]]) -> float:
    """Forward FLOPs of all members' training, for ordering (biggest first)."""
    return sum(vae_flops(cfgs[0])) * sum(c["epochs"] for c in cfgs)


# ---------------------------------------------------------------------------------------- Ctrl-C
class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a launch: ``stopped`` holds (run directory, epochs done, epochs) of each run it
    left unfinished after it had started (each resumes from its last epoch's checkpoint)."""

    def __init__(self, stopped: list[tuple[Path, int | None, int | None]]):
        super().__init__()
        self.stopped = stopped


def _stopped(jobs: dict[int, Job], out: list) -> list[tuple[Path, int | None, int | None]]:
    """The started runs among ``jobs`` that have no result yet, with how far their holder note says
    they got."""
    return stopped_runs([Path(job.out_dir) for i, job in jobs.items() if out[i] is None])


def stopped_runs(run_dirs: Sequence[Path]) -> list[tuple[Path, int | None, int | None]]:
    """(run directory, epochs done, epochs) of each of ``run_dirs`` that has started (it holds what any
    started run writes first) and is not complete, with how far its holder note says it got (None
    where it has no note)."""
    got = []
    for run_dir in run_dirs:
        started = any((run_dir / m).is_file() for m in results.RUN_MARKERS)
        if started and not results.is_complete(run_dir):
            note = read_note(run_dir) or {}
            got.append((Path(run_dir), note.get("epoch"), note.get("epochs")))
    return got


def interrupted_line(exc: KeyboardInterrupt, command: list[str]) -> str:
    """The one line an entry point prints on Ctrl-C (then it exits with status 130): where each run
    stopped, and the command that resumes it (``command``: the entry point's argv, the same command)."""
    again = "`" + shlex.join(command) + "`"
    stopped = getattr(exc, "stopped", [])
    where = [
        f"{d.name} stopped after epoch {e} of {n} ({d})" if e is not None else f"{d.name} stopped ({d})"
        for d, e, n in stopped
    ]
    if not where:
        return f"interrupted: no run was left half-trained; {again} goes on where it stopped"
    them = "it" if len(where) == 1 else "them"
    return f"interrupted: {'; '.join(where)}; {again} resumes {them} from the last finished epoch"


# ---------------------------------------------------------------------------------------- launch
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
    ctx = Context(settings, provenance({j.cfg["results_dir"] for j in prepared.values()}), out)
    ready = list(prepared)
    todo = [[ready[i] for i in chunk] for chunk in plan([prepared[i] for i in ready], settings.max_members)]
    tasks: queue.Queue = queue.Queue()
    for chunk in todo:
        tasks.put(chunk)

    slot = functools.partial(run_slot, tasks, prepared, ctx)
    cuda = next((d for d in devices if d.type == "cuda"), torch.device("cpu"))
    with tf32_on_cuda(cuda):
        try:
            if settings.slots <= 1 or len(todo) == 1:
                slot()
            else:
                # Each slot thread would start its own team of OpenMP threads for its few CPU tensor
                # ops (checkpoint copies): with 8 slots that is 8 teams spinning on the cores the
                # slots need to feed the GPU. One intra-op thread per slot instead.
                with cpu_threads(1):
                    _run_threads(slot, min(settings.slots, len(todo)), ctx)
        except KeyboardInterrupt as exc:  # the runs' locks are released: say where each one stopped
            raise Interrupted(getattr(exc, "stopped", None) or _stopped(prepared, out)) from None
        finally:
            ctx.close()
    return out  # type: ignore[return-value]


def _run_threads(slot: Callable[[], None], n: int, ctx: Context) -> None:
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
    real = [e for e in errors if not isinstance(e, Halt)]
    if real:
        raise real[0]
