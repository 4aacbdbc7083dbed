"""Kill anywhere (guarantee 1) and concurrent launches (guarantee 5) of issue 7, as subprocesses.

The kill points are deterministic where they can be: ``VAE_SWEEP_KILL_AT=<file>:<n>:<before|after>``
(read by ``sweep.results.atomic_write_bytes``, inert when unset) makes the sweep SIGKILL itself right
before or after the rename of the n-th write of that file, which covers checkpointing, evaluation
and result writing exactly; a few seeded timer kills land anywhere else (start-up, mid-epoch,
mid-evaluation). After every launch the directory must hold only readable files, every finished run
must be untouched and not retrained; at the end the results must equal an uninterrupted sweep's.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import LAUNCHED, SMOKE_RUNS, assert_same_results, cli, launch, results_of, snapshot, trained

from sweep import results
from sweep.lock import run_lock

SWEEP = ["sweep.train", "experiment=smoke", *LAUNCHED]  # 4 runs x 2 epochs
# (file, moment): training checkpoints, evaluation files, result records, the config snapshot
HOOK_POINTS = [
    ("config.yaml", "after"),
    ("hydra.yaml", "before"),
    ("epochs.parquet", "before"),
    ("epochs.parquet", "after"),
    ("best.pt", "before"),
    ("best.pt", "after"),
    ("last.pt", "before"),
    ("last.pt", "after"),
    ("dims.parquet", "before"),
    ("latents.parquet", "after"),
    ("recon.png", "before"),
    ("samples.png", "after"),
    ("eval.parquet", "before"),
    ("eval.parquet", "after"),
    ("run.parquet", "before"),
    ("run.parquet", "after"),
    ("COMPLETE", "before"),
    ("COMPLETE", "after"),
    ("*", "before"),
    ("*", "after"),
]
N_TIMER_KILLS = 4
SKIP = ("train.log", ".lock")  # appended by Hydra's logging / rewritten by a lock holder: not results
# a kill between COMPLETE and the removal of the resume state (last.pt, prev.pt) leaves it; the next launch
# removes it (and nothing else)
FINISHED_SKIP = (*SKIP, *results.RESUME_FILES)


def complete_runs(sweep_dir: Path) -> set[str]:
    return {p.parent.name for p in sweep_dir.glob(f"*/{results.COMPLETE}")}


def check_invariants(sweep_dir: Path, finished: dict[str, dict], out: str, before: set[str]) -> None:
    for p in sweep_dir.rglob("*.parquet"):
        pq.read_table(p)  # never torn
    done = complete_runs(sweep_dir)
    for tmp in sweep_dir.rglob("*.tmp"):  # only a run in progress when the kill came may hold one
        run = tmp.parent.parent if tmp.parent.name == ".hydra" else tmp.parent
        assert run.name not in done, tmp
    for name, snap in finished.items():  # finished runs are never touched again ...
        assert snapshot(sweep_dir / name, skip=FINISHED_SKIP) == snap, name
    for name in before:  # ... nor retrained or resumed
        assert not any(
            line.startswith(f"{name}: ") and "already complete" not in line for line in out.splitlines()
        ), out
    for name in done - set(finished):
        finished[name] = snapshot(sweep_dir / name, skip=FINISHED_SKIP)


def launch_killed(results_dir: Path, kind: str, arg) -> tuple[int, str]:
    """One launch of the sweep, SIGKILLed by the hook spec or after ``arg`` seconds; (rc, stdout)."""
    if kind == "hook":
        p = launch(*SWEEP, f"results_dir={results_dir}", VAE_SWEEP_KILL_AT=arg, PYTHONUNBUFFERED="1")
        out, err = p.communicate(timeout=600)
    else:
        p = launch(*SWEEP, f"results_dir={results_dir}", PYTHONUNBUFFERED="1")
        try:
            out, err = p.communicate(timeout=arg)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            out, err = p.communicate(timeout=60)
    assert p.returncode in (0, -signal.SIGKILL), (kind, arg, err[-3000:])
    return p.returncode, out


@pytest.mark.slow
def test_sigkill_at_seeded_points_then_relaunch_loses_nothing_and_matches_a_straight_sweep(tmp_path):
    straight = cli(*SWEEP, f"results_dir={tmp_path / 'straight'}", timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    want = results_of(tmp_path / "straight" / "sweeps" / "smoke")

    rng = random.Random(20261121)
    plan = [("hook", f"{f}:{rng.randint(1, 3) if f == '*' else 1}:{m}") for f, m in HOOK_POINTS]
    plan += [("timer", rng.uniform(3.0, 10.0)) for _ in range(N_TIMER_KILLS)]
    rng.shuffle(plan)

    kills, passes = [], 0

    def finish_pass(results_dir: Path, finished: dict) -> None:
        sweep_dir = results_dir / "sweeps" / "smoke"
        before = set(finished)
        last = cli(*SWEEP, f"results_dir={results_dir}", timeout=600)
        assert last.returncode == 0, last.stderr[-3000:]
        check_invariants(sweep_dir, finished, last.stdout, before)
        assert complete_runs(sweep_dir) == SMOKE_RUNS
        assert not list(sweep_dir.rglob("*.tmp")) and not list(sweep_dir.rglob("last.pt"))
        assert_same_results(results_of(sweep_dir), want)

    results_dir, finished = tmp_path / "killed0", {}
    for kind, arg in plan:  # one directory per pass; a pass ends when its sweep is complete
        sweep_dir = results_dir / "sweeps" / "smoke"
        before = set(finished)
        rc, out = launch_killed(results_dir, kind, arg)
        if rc == -signal.SIGKILL:
            kills.append((kind, arg))
        check_invariants(sweep_dir, finished, out, before)
        if complete_runs(sweep_dir) == SMOKE_RUNS:
            finish_pass(results_dir, finished)
            passes += 1
            results_dir, finished = tmp_path / f"killed{passes}", {}
    if (results_dir / "sweeps").exists():
        finish_pass(results_dir, finished)
    assert len(kills) >= 20, kills


def _holder_pid(sweep_dir: Path) -> dict[int, Path]:
    """pid → run dir, for runs that a live writer holds and that are mid-training (not complete)."""
    out = {}
    for lock in sweep_dir.glob("*/.lock"):
        run = lock.parent
        if (run / "epochs.parquet").is_file() and not (run / results.COMPLETE).exists():
            try:
                out[int(lock.read_text().split()[1])] = run
            except (IndexError, ValueError, OSError):
                pass
    return out


@pytest.mark.slow
def test_four_launches_at_once_train_each_run_once_and_a_killed_one_leaves_no_lock(tmp_path):
    procs = [launch(*SWEEP, f"results_dir={tmp_path}", PYTHONUNBUFFERED="1") for _ in range(4)]
    sweep_dir = tmp_path / "sweeps" / "smoke"
    victim, victim_run = None, None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline and any(p.poll() is None for p in procs):
        held = _holder_pid(sweep_dir) if sweep_dir.exists() else {}
        for p in procs:
            if p.pid in held and p.poll() is None:
                p.send_signal(signal.SIGKILL)
                victim, victim_run = p, held[p.pid]
                resumable = (victim_run / "last.pt").is_file()
                break
        time.sleep(0.05)
    assert victim is not None, "no launch was ever seen mid-training"
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p is victim:
            assert p.returncode == -signal.SIGKILL
        else:
            assert p.returncode == 0, err[-3000:]
            outs.append(out)
    for run in sweep_dir.iterdir():  # the OS dropped the killed holder's lock
        if run.is_dir():
            with run_lock(run) as got:
                assert got, run
    again = cli(*SWEEP, f"results_dir={tmp_path}", timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    outs.append(again.stdout)
    assert complete_runs(sweep_dir) == SMOKE_RUNS
    names = [n for out in outs for n in trained(out)]
    assert sorted(names) == sorted(SMOKE_RUNS)  # each run trained to the end by exactly one process
    finisher = [out for out in outs if f"{victim_run.name}: ok; results in" in out]
    assert len(finisher) == 1
    if resumable:  # killed after a checkpoint: the run was resumed, not restarted
        assert f"{victim_run.name}: resuming after epoch" in finisher[0]
    assert not (victim_run / "last.pt.corrupt").exists()  # no checkpoint torn by the kill
    assert not list(sweep_dir.rglob("*.tmp"))
    for p in sweep_dir.rglob("*.parquet"):
        pq.read_table(p)


def test_the_hold_hook_holds_after_the_write_of_its_file_until_the_hold_file_goes(tmp_path, monkeypatch):
    """``VAE_SWEEP_HOLD_AT=<file name>:<hold file>`` (the Slurm time-limit test's hook): the write
    completes, then the writer waits while the hold file exists; other files are not held."""
    hold = tmp_path / "hold"
    hold.touch()
    monkeypatch.setenv(results.HOLD_AT_ENV, f"last.pt:{hold}")
    results.atomic_write_bytes(tmp_path / "best.pt", b"b")  # another name: returns at once
    writer = threading.Thread(target=results.atomic_write_bytes, args=(tmp_path / "last.pt", b"l"))
    writer.start()
    writer.join(timeout=1.0)
    assert writer.is_alive() and (tmp_path / "last.pt").read_bytes() == b"l"  # written, then held
    hold.unlink()
    writer.join(timeout=10)
    assert not writer.is_alive()


COHORT_SWEEP = [*SWEEP, "seed=0,1", "hydra/launcher=cohort", "engine.max_members=2"]  # 4 cohorts of 2


@pytest.mark.slow
def test_a_cohort_launch_sigkilled_between_its_members_checkpoints_resumes_to_a_straight_sweeps_numbers(
    tmp_path,
):
    """The cohort launcher, SIGKILLed at seeded writes of ``last.pt`` (``after`` the n-th: one member of
    a cohort has its epoch's checkpoint, the other not yet), relaunched until complete: every run's
    numbers equal an uninterrupted cohort sweep's, bit for bit."""
    straight = cli(*COHORT_SWEEP, f"results_dir={tmp_path / 'straight'}", timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    want = results_of(tmp_path / "straight" / "sweeps" / "smoke")
    rng = random.Random(20261205)
    points = sorted(rng.sample(range(1, 16), 3))  # 16 last.pt writes: 8 runs x 2 epochs
    kills = 0
    for n in points:
        killed = launch(
            *COHORT_SWEEP, f"results_dir={tmp_path / 'killed'}", VAE_SWEEP_KILL_AT=f"last.pt:{n}:after"
        )
        _, err = killed.communicate(timeout=600)
        assert killed.returncode in (0, -signal.SIGKILL), err[-3000:]
        kills += killed.returncode == -signal.SIGKILL
    assert kills >= 1  # the first launch writes all 16
    last = cli(*COHORT_SWEEP, f"results_dir={tmp_path / 'killed'}", timeout=600)
    assert last.returncode == 0, last.stderr[-3000:]
    sweep_dir = tmp_path / "killed" / "sweeps" / "smoke"
    assert not list(sweep_dir.rglob("*.tmp")) and not list(sweep_dir.rglob("last.pt"))
    assert_same_results(results_of(sweep_dir), want)
