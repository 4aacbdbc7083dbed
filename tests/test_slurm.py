"""The Slurm path (``hydra/launcher=slurm``) against a real Slurm: the single-node cluster of ``.ci/slurm``.

    sudo .ci/slurm up && .venv/bin/python -m pytest -m slurm

Where ``sbatch`` is absent these tests are skipped with the reason; ``.ci/run`` brings the cluster up
first and sets ``VAE_SWEEP_SLURM=required``, so there a missing or unhealthy cluster fails them
instead. They run only on the test cluster (``ClusterName=vae``): they requeue and cancel their own
jobs and rely on its short requeue delay (``cred_expire=10``) and ``KillWait=5``.

Jobs run with the submitter's environment: the venv's interpreter and its editable install (or
``PYTHONPATH``) give every task this checkout's code.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import LAUNCHED, assert_same_results, launch, results_of, snapshot, trained

from analysis.collect import collect
from sweep import results

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.gpus_per_task=null",
    "hydra.launcher.timeout_min=10",
]
# one conv run long enough to interrupt: 6 epochs of 4-5 s on one core of a busy 2-core machine
LONG = [
    "experiment=smoke",
    "hydra.sweeper.params.encoder=conv5",
    "hydra.sweeper.params.decoder=conv5",
    *LAUNCHED,
    "data.subset=1000",
    "epochs=6",
]
LONG_RUN = "L8_conv5_conv5_s0"
# one dense run of two epochs of ~1 s: the time-limit test holds it at its checkpoint (VAE_SWEEP_HOLD_AT)
SHORT = [
    "experiment=smoke",
    "hydra.sweeper.params.encoder=dense2",
    "hydra.sweeper.params.decoder=dense2",
    *LAUNCHED,
]
SHORT_RUN = "L8_dense2_dense2_s0"
SKIP = ("train.log", ".lock")


@pytest.fixture(scope="module", autouse=True)
def cluster():
    required = os.environ.get("VAE_SWEEP_SLURM") == "required"
    if shutil.which("sbatch") is None:
        if required:
            pytest.fail("VAE_SWEEP_SLURM=required but sbatch is not on PATH: did '.ci/slurm up' run?")
        pytest.skip(
            "no Slurm on this machine (sbatch not on PATH); 'sudo .ci/slurm up' brings up a test cluster"
        )
    conf = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    name = re.search(r"^ClusterName\s*=\s*(\S+)", conf.stdout, re.M)
    if conf.returncode != 0 or name is None:
        pytest.fail(
            f"sbatch is here but slurmctld does not answer (scontrol show config): {conf.stderr.strip()}"
        )
    if name.group(1) != "vae":
        if required:
            pytest.fail(
                f"VAE_SWEEP_SLURM=required but this is cluster {name.group(1)!r}, not .ci/slurm's 'vae'"
            )
        pytest.skip(f"Slurm here is cluster {name.group(1)!r}, not the .ci/slurm test cluster 'vae'")
    state = subprocess.run(["sinfo", "-h", "-p", "debug", "-o", "%a %T"], capture_output=True, text=True)
    assert state.stdout.split()[:1] == ["up"], f"partition debug is not up: {state.stdout} {state.stderr}"


def finish(p: subprocess.Popen, ok: bool = True) -> tuple[str, str]:
    out, err = p.communicate(timeout=600)
    if ok:
        assert p.returncode == 0, (out[-2000:], err[-3000:])
    return out, err


def task_dirs(sweep_dir: Path) -> list[Path]:
    """One directory per task submitit wrote (``<job>_<task>`` in an array, ``<job>`` for a lone job),
    oldest job first."""
    dirs = [d.parent for d in (sweep_dir / ".submitit").glob("*/*_submitted.pkl")]
    return sorted(dirs, key=lambda d: tuple(int(x) for x in d.name.split("_")))


def task_logs(sweep_dir: Path, job: str | None = None) -> str:
    """Everything the tasks (of one array ``job``, or all) printed, requeued sessions included."""
    logs = [
        f.read_text()
        for d in task_dirs(sweep_dir)
        if job in (None, d.name.split("_")[0])
        for f in d.glob("*_log.out")
    ]
    return "\n".join(logs)


def epochs_done(run_dir: Path) -> int:
    try:
        table = pq.read_table(run_dir / "epochs.parquet").to_pandas()
    except OSError:
        return 0
    return int((table["split"] == "train").sum())


def wait_for(check, what: str, launcher: subprocess.Popen, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if launcher.poll() is not None:
            out, err = launcher.communicate()
            raise AssertionError(
                f"the launch ended (rc {launcher.returncode}) before {what}: {out[-2000:]} {err[-2000:]}"
            )
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The LONG run trained without interruption (basic launcher, this machine): started at once,
    awaited only when a test compares against it, so it trains while Slurm runs the others."""
    where = tmp_path_factory.mktemp("reference")
    p = launch("sweep.train", *LONG, f"results_dir={where}")

    def results_when_done() -> Path:
        finish(p)
        return where / "sweeps" / "smoke"

    yield results_when_done
    if p.poll() is None:
        p.kill()
        p.communicate()


def test_grid_trains_each_run_once_across_two_launches_and_a_relaunch_submits_nothing(tmp_path):
    """Two launches on one sweep at once, one a task per run (one task at a time), the other two runs
    per task as cohorts (hydra.launcher.runs_per_task=2): every run trained exactly once, all ok;
    then a relaunch submits no job at all."""
    grid = [
        "experiment=smoke",
        "hydra.sweeper.params.encoder=dense2",
        "seed=0,1",
        *LAUNCHED,
        "engine.max_members=2",  # both launches: runs.parquet of one sweep must agree on the column's type
        f"results_dir={tmp_path}",
    ]
    runs = {f"L8_dense2_{d}_s{s}" for d in ("dense2", "conv5") for s in (0, 1)}
    sweep_dir = tmp_path / "sweeps" / "smoke"
    a = launch("sweep.train", *grid, *SLURM, "hydra.launcher.array_parallelism=1")
    b = launch("sweep.train", *grid, *SLURM, "hydra.launcher.runs_per_task=2")
    out_a, _ = finish(a)
    out_b, _ = finish(b)
    assert "4 to submit as 4 array task(s)" in out_a and "task states come from squeue" in out_a
    assert "Bypassing sacct error" not in out_a + out_b  # accounting is off here: squeue, quietly
    jobs = sorted({d.name.split("_")[0] for d in task_dirs(sweep_dir)}, key=int)
    assert len(jobs) == 2 and len(task_dirs(sweep_dir)) == 4 + 2
    logs = task_logs(sweep_dir)
    assert sorted(trained(logs)) == sorted(runs)  # each run trained by exactly one task of one launch
    assert logs.count("cohort launcher: 2 jobs in one process") == 2  # the runs_per_task=2 launch's tasks
    table = collect(sweep_dir).to_pandas()
    assert set(table["run_name"]) == runs and (table["status"] == "ok").all()

    again, _ = finish(launch("sweep.train", *grid, *SLURM))
    assert "4 complete (not submitted), 0 to submit" in again
    assert len(task_dirs(sweep_dir)) == 6  # nothing submitted
    assert set(collect(sweep_dir).to_pandas()["finished_at"]) == set(table["finished_at"])


def test_a_requeued_task_resumes_from_its_last_checkpoint_and_ends_as_an_uninterrupted_run(
    tmp_path, reference
):
    """`scontrol requeue` (what preemption does) while the run trains: Slurm kills the task and starts
    it again; the run resumes from its own last.pt and ends exactly where the uninterrupted run ends."""
    p = launch("sweep.train", *LONG, *SLURM, f"results_dir={tmp_path}")
    sweep_dir = tmp_path / "sweeps" / "smoke"
    (task,) = wait_for(lambda: sweep_dir.exists() and task_dirs(sweep_dir), "the task's directory", p)
    wait_for(lambda: epochs_done(sweep_dir / LONG_RUN) >= 2, "two epochs", p)
    subprocess.run(["scontrol", "requeue", task.name], check=True)
    finish(p)
    logs = task_logs(sweep_dir)
    resumed = [int(n) for n in re.findall(rf"{LONG_RUN}: resuming after epoch (\d+)", logs)]
    assert len(resumed) == 1 and 2 <= resumed[0] < 6, logs[-3000:]
    assert trained(logs) == [LONG_RUN]
    assert_same_results(results_of(sweep_dir), results_of(reference()))


def timeouts(logs: str) -> int:
    """How many time-outs submitit caught (one per session that Slurm signalled at its time limit)."""
    return len(re.findall(r"^submitit WARNING .* this job is timed-out", logs, re.M))


def test_a_task_past_its_time_limit_is_requeued_by_submitit_and_resumes_until_it_completes(tmp_path):
    """A one-minute time limit, and a run that cannot finish within it whatever the machine's speed: the
    test hook VAE_SWEEP_HOLD_AT (sweep/results.py) holds every session after its first write of last.pt
    for as long as the test's hold file exists. Slurm signals USR2 signal_delay_s before the limit
    (slurmctld checks every 30 s, so 5-35 s before), submitit checkpoints the call and requeues the
    task; once a session has been signalled while a checkpoint existed, the test releases the hold, so
    the next session resumes from last.pt and completes. Each session needs only its start-up and one
    epoch of a tiny dense run to make progress; max_num_timeout leaves room for a session signalled
    before its first checkpoint. (That a resumed run ends exactly as an uninterrupted one is the requeue
    test's check.)"""
    hold = tmp_path / "hold"
    hold.touch()
    limits = [
        "hydra.launcher.timeout_min=1",
        "hydra.launcher.signal_delay_s=5",
        "hydra.launcher.max_num_timeout=4",
    ]
    p = launch(
        "sweep.train",
        *SHORT,
        *SLURM,
        *limits,
        f"results_dir={tmp_path}",
        VAE_SWEEP_HOLD_AT=f"last.pt:{hold}",
    )
    sweep_dir = tmp_path / "sweeps" / "smoke"
    last = sweep_dir / SHORT_RUN / "last.pt"
    wait_for(lambda: last.exists(), "the first checkpoint", p)
    before = timeouts(task_logs(sweep_dir))  # the session now held at last.pt has not been signalled yet
    wait_for(lambda: timeouts(task_logs(sweep_dir)) > before, "a time-out while last.pt exists", p)
    hold.unlink()
    finish(p)
    logs = task_logs(sweep_dir)
    assert 1 <= timeouts(logs) <= 4, logs[-3000:]
    # the session after the time-out of a held session resumes from that session's checkpoint
    assert 1 <= len(re.findall(rf"{SHORT_RUN}: resuming after epoch", logs)) <= timeouts(logs), logs[-3000:]
    assert trained(logs) == [SHORT_RUN]
    runs = collect(sweep_dir).to_pandas()
    assert list(runs["status"]) == ["ok"] and epochs_done(sweep_dir / SHORT_RUN) == 2


def test_scancel_of_one_task_leaves_its_run_unfinished_and_the_relaunch_trains_only_it(tmp_path):
    """scancel sends SIGTERM, which submitit ignores, and SIGKILL KillWait (5 s) later: the runs are
    long enough (an epoch and the evaluation still to go) to be killed mid-training."""
    grid = [
        "experiment=smoke",
        "hydra.sweeper.params.decoder=conv5",
        *LAUNCHED,
        "data.subset=1000",
        "epochs=3",
    ]
    grid.append(f"results_dir={tmp_path}")
    order = ["L8_dense2_conv5_s0", "L8_conv5_conv5_s0"]  # array task k trains order[k]
    sweep_dir = tmp_path / "sweeps" / "smoke"
    p = launch("sweep.train", *grid, *SLURM)

    def mid_training():
        return next((k for k, r in enumerate(order) if 1 <= epochs_done(sweep_dir / r) < 3), None)

    victim = wait_for(lambda: (k := mid_training()) is not None and [k], "a run mid-training", p)[0]
    job = task_dirs(sweep_dir)[0].name.split("_")[0]
    subprocess.run(["scancel", f"{job}_{victim}"], check=True)
    out, err = finish(p, ok=False)
    assert p.returncode != 0  # the launch reports the task that did not finish ...
    assert f"task {job}_{victim} ({order[victim]}) ended without a result" in out, (out[-2000:], err[-2000:])
    done = {r for r in order if (sweep_dir / r / results.COMPLETE).exists()}
    assert done == set(order) - {order[victim]}  # ... whose run is unfinished; the others are complete
    before = {r: snapshot(sweep_dir / r, skip=SKIP) for r in done}

    again, _ = finish(launch("sweep.train", *grid, *SLURM))
    assert "1 complete (not submitted), 1 to submit" in again
    new_job = task_dirs(sweep_dir)[-1].name.split("_")[0]
    assert trained(task_logs(sweep_dir, new_job)) == [order[victim]]
    assert {r: snapshot(sweep_dir / r, skip=SKIP) for r in done} == before  # untouched
    table = collect(sweep_dir).to_pandas()
    assert set(table["run_name"]) == set(order) and (table["status"] == "ok").all()
