"""One slot of a launch (:mod:`sweep.engine`): the planned cohorts it takes from the launch's queue,
each trained epoch by epoch to its members' last epochs, evaluated and finalized.

A cohort's members open their run directories when it starts (:mod:`sweep.member`); those that
resume at the same epoch train as one :class:`~sweep.cohort.Cohort`. A member that diverges, is
pruned, fails or finishes leaves it; the rest go on as a cohort rebuilt from their in-memory
checkpoints. Finished members are evaluated together (:func:`sweep.evaluate.evaluate_stack`); the
CPU side of that evaluation runs in the launch's pool while the slot trains its next cohort, and the
runs are finalized (result row, ``COMPLETE``, lock released) once it is done.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import torch
from tqdm.auto import tqdm

from sweep import divergence
from sweep.cohort import Cohort, on_stream
from sweep.data import load_data
from sweep.device import cpu_threads, resolve_device
from sweep.evaluate import evaluate_stack, limit_worker_threads
from sweep.losses import Knobs
from sweep.member import Job, Member, StopRun
from sweep.models import build_model, count_params
from sweep.names import run_name_of
from sweep.stack import Stack, split_losses
from sweep.status import show_progress


class Halt(BaseException):
    """Another slot failed or the launch was interrupted: stop at the next epoch boundary."""


def train_epoch(cohort: Cohort, epoch: int) -> list[dict[str, float]]:
    """One epoch of a cohort (slots call it through this module, so tests can intercept it)."""
    return cohort.train_epoch(epoch)


class Context:
    """What the slots of one launch share: its :class:`~sweep.engine.Settings`, provenance, results
    (``out``, one entry per job), the halt flag, data on the device, the evaluation pool."""

    def __init__(self, settings, prov: dict[str, Any], out: list):
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

    def __init__(self, ctx: Context):
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
                rows = pending.finish()
            except Exception as exc:
                _finalize(members, self.ctx, exc)
            else:
                for m, row in zip(members, rows, strict=True):
                    if reason := divergence.of_evaluation(row, m.cfg["data"]["likelihood"]):
                        m.diverge(f"evaluation: {reason}", m.best["epoch"])
                _finalize(members, self.ctx)
        self.items = keep

    def abandon(self) -> None:
        """Release the locks of runs whose evaluation will not be finished (a relaunch redoes it)."""
        for members, _ in self.items:
            for m in members:
                m.release()
        self.items = []


def run_slot(tasks: queue.Queue, prepared: dict[int, Job], ctx: Context) -> None:
    """Take planned cohorts (lists of job indices into ``prepared``) from ``tasks`` and train each,
    until the queue is empty or the launch halts; then wait for the evaluations still running (unless
    halted: their runs' locks are released instead, and a relaunch redoes them)."""
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


def _run_chunk(
    jobs: Sequence[tuple[int, Job]], device: torch.device, ctx: Context, finisher: _Finisher
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
                _finalize([member], ctx, exc)
                continue
            members.append(member)
        # A kill between the members' checkpoints of one epoch leaves some one epoch ahead: they
        # restart from their previous checkpoint, so the cohort trains that epoch whole again.
        behind = min((m.epoch for m in members), default=0)
        for m in members:
            m.step_back(behind)
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


def _train_cohort(members: list[Member], device: torch.device, ctx: Context, finisher: _Finisher) -> None:
    """Train members that start at the same epoch as one cohort, each to its last epoch, then evaluate
    it. Members leave as they finish, diverge, are pruned or fail; the others go on."""
    cfg0 = members[0].cfg
    # jobs of one launch share a process: the thread count must not leak into the next
    threads = cfg0["num_threads"] if ctx.settings.slots <= 1 else None
    bar = tqdm(
        total=max(m.cfg["epochs"] for m in members),
        initial=members[0].epoch,
        desc=members[0].name + (f" +{len(members) - 1}" if len(members) > 1 else ""),
        disable=not show_progress(cfg0["progress"]),
        leave=False,
    )
    with cpu_threads(threads), bar:
        counts = _param_counts(cfg0)
        for m in members:
            m.start()
            m.out.update(counts)
        try:
            data = ctx.data(cfg0, device)
        except Exception as exc:
            _finalize(members, ctx, exc)
            return
        cohort = _Rebuilt(data, device, ctx.settings.graphs)
        try:
            _train_epochs(list(members), data, cohort, ctx, finisher, bar)
        finally:
            cohort.drop()


def _train_epochs(
    active: list[Member], data, cohort: _Rebuilt, ctx: Context, finisher: _Finisher, bar
) -> None:
    """Epoch after epoch of ``active`` as one cohort until none is left: the finished ones are
    evaluated together, the others end their epoch one by one."""
    while active:
        finisher.poll()
        finished = [m for m in active if m.epoch >= m.cfg["epochs"]]
        if finished:  # evaluated from their best checkpoints, together
            active = [m for m in active if m not in finished]
            _evaluate(finished, data, cohort.device, ctx, finisher)
            cohort.drop()
        if not active:
            break
        if ctx.halt.is_set():
            raise Halt()
        epoch = active[0].epoch
        try:
            epoch_rows, checkpoints = _epoch(cohort.of(active), epoch, data, active)
        except Exception as exc:  # the cohort's step failed: every member records it, a relaunch retries
            _finalize(active, ctx, exc)
            return
        going = [
            m
            for m, member_rows, ckpt in zip(active, epoch_rows, checkpoints, strict=True)
            if _end_epoch(m, epoch, member_rows, ckpt, ctx)
        ]
        if len(going) != len(active):
            cohort.drop()
        active = going
        bar.update(1)
        bar.set_postfix(val_neg_elbo=f"{epoch_rows[0][1]['neg_elbo']:.2f}")


def _end_epoch(m: Member, epoch: int, rows, checkpoint, ctx: Context) -> bool:
    """Record one member's epoch; True if it stays in the cohort (it goes on, or it is done training
    and waits to be evaluated), else it is finalized here (stopped, diverged, pruned or failed)."""
    try:
        outcome = m.end_epoch(epoch, rows, checkpoint)
    except StopRun as stop:
        m.stop(stop)
        outcome = "stopped"
    except Exception as exc:
        m.fail(exc)
        outcome = "failed"
    if outcome in ("continue", "done"):
        return True
    _finalize([m], ctx)
    return False


def _finalize(members: Sequence[Member], ctx: Context, exc: BaseException | None = None) -> None:
    """Each member's result row into the launch's results (its ``run.parquet`` and ``COMPLETE``
    written, its lock released), recording ``exc`` first as the reason it failed, if given."""
    for m in members:
        if exc is not None:
            m.fail(exc)
        ctx.out[m.index] = m.finalize()


class _Rebuilt:
    """The cohort of the members still training: built from their in-memory checkpoints when first
    needed, and dropped (its device memory released) whenever its membership changes."""

    def __init__(self, data, device: torch.device, graphs: bool):
        self.data, self.device, self.graphs = data, device, graphs
        self.cohort: Cohort | None = None

    def of(self, members: Sequence[Member]) -> Cohort:
        if self.cohort is None:
            self.cohort = Cohort(
                [m.cfg for m in members],
                self.data,
                self.device,
                [m.state for m in members],
                graphs=self.graphs,
            )
        return self.cohort

    def drop(self) -> None:
        if self.cohort is not None:
            self.cohort.release()
            self.cohort = None


def _param_counts(cfg: dict[str, Any]) -> dict[str, int]:
    """The parameter columns of a run's row, counted on a model built without memory."""
    with torch.device("meta"):
        arch = build_model(cfg)
    return {
        "params/encoder": count_params(arch.encoder),
        "params/decoder": count_params(arch.decoder),
        "params/total": count_params(arch),
    }


def _epoch(cohort: Cohort, epoch: int, data, members: Sequence[Member]):
    """Train one epoch and validate (and test, where asked) every member; returns per member its epoch
    rows and its checkpoint."""
    t = time.perf_counter()
    trs = train_epoch(cohort, epoch)
    t_train = time.perf_counter() - t
    betas = torch.tensor([tr["beta"] for tr in trs], dtype=torch.float32, device=cohort.device)
    knobs = Knobs(betas, cohort.knobs.free_bits, cohort.knobs.divisor)
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
    return rows, cohort.checkpoints()


def _evaluate(members: list[Member], data, device: torch.device, ctx: Context, finisher: _Finisher) -> None:
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
            [m.identity for m in members],
            losses["test"],
            ctx.pool(),
        )
        for m in members:
            m.out.update(status="ok", epochs_done=m.cfg["epochs"], wall_seconds=time.perf_counter() - m.t0)
            m.out["best/epoch"] = m.best["epoch"]
    except Exception as exc:
        _finalize(members, ctx, exc)
        return
    finisher.add(members, pending)
