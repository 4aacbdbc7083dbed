"""Scale-out: parallel launchers, relaunch, concurrent launches on one directory, dead lock holders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import conftest
import pytest
from conftest import LAUNCHED, SMOKE_RUNS, trained
from omegaconf import OmegaConf

from analysis.collect import collect
from sweep.lock import run_lock
from sweep.status import scan
from sweep.train import launcher_threads

SMALL = ["experiment=smoke", "epochs=1", *LAUNCHED]


def launch(*args: str) -> subprocess.Popen:
    """The smoke grid, one epoch of tiny runs, launched in the background with ``args``."""
    return conftest.launch("sweep.train", *SMALL, *args)


def finish(p: subprocess.Popen) -> str:
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher",
    [
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
        ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"],
        ["hydra/launcher=cohort", "engine.slots=2"],
    ],
)
def test_parallel_launcher_trains_the_grid_and_a_relaunch_skips_it(tmp_path, launcher):
    out = finish(launch(f"results_dir={tmp_path}", *launcher))
    runs = collect(tmp_path / "sweeps" / "smoke").to_pandas()
    assert set(runs["run_name"]) == SMOKE_RUNS and (runs["status"] == "ok").all()
    st = scan(tmp_path / "sweeps" / "smoke")  # the grid as the launch recorded it, all of it ok
    assert st.source.startswith("grid.json") and {r.name for r in st.runs} == SMOKE_RUNS and st.all_ok
    if "submitit" not in launcher[0]:
        assert sorted(trained(out)) == sorted(SMOKE_RUNS)  # joblib workers' and cohort slots' prints reach us
    again = finish(launch(f"results_dir={tmp_path}", *launcher))
    assert trained(again) == []
    assert set(collect(tmp_path / "sweeps" / "smoke").to_pandas()["finished_at"]) == set(runs["finished_at"])


@pytest.mark.slow
@pytest.mark.parametrize("second", [[], ["hydra/launcher=cohort"]], ids=["basic+basic", "basic+cohort"])
def test_two_launches_at_once_train_each_run_exactly_once(tmp_path, second):
    a, b = launch(f"results_dir={tmp_path}"), launch(f"results_dir={tmp_path}", *second)
    out_a, out_b = finish(a), finish(b)
    both = trained(out_a) + trained(out_b)
    assert sorted(both) == sorted(SMOKE_RUNS)  # each run trained by exactly one of them
    runs = collect(tmp_path / "sweeps" / "smoke").to_pandas()
    assert len(runs) == 4 and (runs["status"] == "ok").all()
    assert not list(tmp_path.rglob("*.tmp"))


def test_the_lock_of_a_killed_holder_is_reclaimed(tmp_path):
    code = (
        "import sys, time; from sweep.lock import run_lock\n"
        "with run_lock(sys.argv[1]) as got:\n    print(got, flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "True"
    with run_lock(tmp_path) as got:
        assert got is False  # held by a live process
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    deadline = time.time() + 5
    while True:
        with run_lock(tmp_path) as got:
            if got or time.time() > deadline:
                break
    assert got is True


def test_parallel_launchers_split_the_cores_instead_of_oversubscribing():
    assert launcher_threads(OmegaConf.create({"launcher": {"cpus_per_task": 8}})) == 8
    assert launcher_threads(OmegaConf.create({"launcher": {"n_jobs": 2}})) == max(
        1, (os.cpu_count() or 1) // 2
    )
    assert launcher_threads(OmegaConf.create({"launcher": {"n_jobs": 1}})) is None
    assert launcher_threads(OmegaConf.create({"launcher": {}})) is None


@pytest.mark.slow
def test_the_cohort_launcher_stacks_seeds_and_matches_the_basic_launcher(tmp_path):
    """Two seeds of each architecture train as one cohort (engine.max_members=2 on CPU); every run
    ends where the same run launched one by one ends, to float32 rounding (1e-4 relative: the argument
    is in tests/test_cohort.py's engine test)."""
    seeds = ["seed=0,1", "hydra.sweeper.params.encoder=dense2"]  # x decoders dense2, conv5: 4 runs
    stacked = finish(
        launch(f"results_dir={tmp_path / 'c'}", *seeds, "hydra/launcher=cohort", "engine.max_members=2")
    )
    finish(launch(f"results_dir={tmp_path / 'b'}", *seeds))
    assert "cohort launcher: 4 jobs in one process" in stacked
    c = collect(tmp_path / "c" / "sweeps" / "smoke").to_pandas().set_index("run_name").sort_index()
    b = collect(tmp_path / "b" / "sweeps" / "smoke").to_pandas().set_index("run_name").sort_index()
    assert list(c.index) == list(b.index) and len(c) == 4 and (c["status"] == "ok").all()
    for k in ("val/neg_elbo", "test/neg_elbo"):
        assert c[k].to_numpy() == pytest.approx(b[k].to_numpy(), rel=1e-4), k


def test_without_accounting_task_states_come_from_squeue_and_forgotten_tasks_count_as_ended():
    """sweep/slurm.py's watcher, fed a real squeue answer (``--array --states=all --format=%i|%T|%N``):
    array tasks by their own ids, a cancelled one done, one slurmctld no longer lists ended too (so
    the launch never waits for ever on a task without a result), running and requeued ones not."""
    from sweep.slurm import squeue_watcher

    watcher = squeue_watcher()
    for job_id in ("41_0", "41_1", "41_2", "41_3", "42"):
        watcher.register_job(job_id)
    answer = "41_0|RUNNING|vm\n41_1|CANCELLED|vm\n41_3|PENDING|\n42|REQUEUED|\n"
    watcher._info_dict.update(watcher.read_info(answer.encode()))
    states = {j: watcher.get_state(j, mode="cache") for j in ("41_0", "41_1", "41_2", "41_3", "42")}
    assert states == {
        "41_0": "RUNNING",
        "41_1": "CANCELLED",
        "41_2": "ENDED",
        "41_3": "PENDING",
        "42": "REQUEUED",
    }
    assert [j for j in states if watcher.is_done(j, mode="cache")] == ["41_1", "41_2"]
    assert watcher._make_command()[0] == "squeue"
