"""Scale-out: parallel launchers, relaunch, concurrent launches on one directory, dead lock holders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import conftest
import pyarrow.parquet as pq
import pytest
from conftest import LAUNCHED, ROOT, SMOKE_RUNS, trained
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


# One seconds-long run without an experiment's grid: the multirun's axes are the test's own.
ONE_RUN = [
    "encoder=dense1",
    "decoder=dense1",
    "latent_dim=2",
    "epochs=1",
    "logger=none",
    "data.subset=200",
    "batch_size=50",
    "eval.iwae_k=2",
    "eval.latents_n=50",
    "eval.probe_train=200",
    "eval.fid_samples=50",
    "eval.kid_subset_size=20",
    "progress=false",
    "device=cpu",
    "num_threads=1",
]


def multirun(tmp_path: Path, *axes: str):
    """The multirun config of ONE_RUN with ``axes`` (e.g. ``seed=0,1``), as Hydra hands it to a
    launcher; call inside ``initialize_config_dir`` (job composition needs Hydra's global state)."""
    from hydra import compose

    fixed = [f"results_dir={tmp_path}", *ONE_RUN]
    config = compose("config", overrides=fixed, return_hydra_config=True)
    config.hydra.overrides.task = [*fixed, *axes]
    return config


def test_the_slurm_launcher_finds_a_complete_run_in_its_own_datasets_directory(tmp_path):
    """A grid that sweeps ``data=`` writes each dataset's runs into its own sweep directory
    (``…/sweeps/default/`` and ``…/sweeps/default_fashion_mnist/``): a relaunch on Slurm must find a
    finished run where it was written, and not submit it again, as the cohort launcher and the grid
    check do. No cluster: this is the decision made before anything is submitted."""
    from hydra import initialize_config_dir
    from hydra.core.utils import JobStatus

    from sweep.config import CONF_DIR, to_plain
    from sweep.jobs import job_config, job_overrides, run_dir_of
    from sweep.slurm import split_complete
    from sweep.train import train

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        config = multirun(tmp_path, "data=mnist,fashion_mnist")
        jobs, cache = job_overrides(config), {}
        composed = [job_config(config, job, cache) for job in jobs]
        dirs = [run_dir_of(cfg) for cfg in composed]
        assert [d.parent.name for d in dirs] == ["default", "default_fashion_mnist"]
        assert train(to_plain(composed[1]), dirs[1])["status"] == "ok"  # the Fashion-MNIST run finished
        done, todo = split_complete(config, jobs)
    assert [i for i, _, _ in todo] == [0]  # only the MNIST run is left to submit
    assert done[0] is None and done[1].status == JobStatus.COMPLETED
    assert done[1].return_value == pq.read_table(dirs[1] / "run.parquet").column("val/neg_elbo")[0].as_py()


@pytest.mark.slow  # a fresh interpreter (the import of torch alone is seconds)
def test_a_slurm_task_of_several_runs_trains_them_in_a_process_that_imported_nothing_else(tmp_path):
    """An array task with ``runs_per_task`` > 1 (:class:`sweep.slurm.GroupTask`), pickled as submitit
    pickles it and called in a fresh interpreter that imports nothing first: the Hydra state it
    carries from the launch must hold what composing its jobs needs (the ``run_name`` resolver, the
    ``encoder=dense1`` shorthand), since that process never imports ``sweep.train``."""
    import cloudpickle
    from hydra import initialize_config_dir
    from hydra.core.singleton import Singleton

    from sweep import results
    from sweep.config import CONF_DIR
    from sweep.jobs import job_config, job_overrides, run_dir_of
    from sweep.slurm import GroupTask

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        config = multirun(tmp_path, "seed=0,1")
        jobs, cache = job_overrides(config), {}
        dirs = [run_dir_of(job_config(config, job, cache)) for job in jobs]
        (tmp_path / "task.pkl").write_bytes(
            cloudpickle.dumps(GroupTask(config, jobs, 0, Singleton.get_state()))
        )
    code = (
        "import pickle, sys; rets = pickle.load(open(sys.argv[1], 'rb'))(); "
        "print(' '.join(r.status.name for r in rets))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "task.pkl")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "COMPLETED COMPLETED"
    assert [d.name for d in dirs] == ["L2_dense1_dense1_s0", "L2_dense1_dense1_s1"]
    assert all(results.read_complete(d)["status"] == "ok" for d in dirs)


def test_the_cohort_launcher_trains_every_job_of_a_multirun_in_this_process(tmp_path):
    """``sweep.cohort_launch.launch`` (what ``hydra/launcher=cohort`` calls), in process: each job gets its
    own composed config and directory under the sweep directory, trains, and returns its result."""
    from hydra import compose, initialize_config_dir

    from sweep.cohort_launch import launch as cohort_launch
    from sweep.config import CONF_DIR

    args = [*conftest.SMALL, "epochs=1", *conftest.TINY, f"results_dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=args, return_hydra_config=True)
        cfg.hydra.overrides.task = [*args, "seed=0,1"]
        returns = cohort_launch(cfg, [[*args, "seed=0"], [*args, "seed=1"]], 0)
    sweep_dir = tmp_path / "sweeps" / "default"
    assert [r.status.name for r in returns] == ["COMPLETED", "COMPLETED"]
    assert [r.overrides[-1] for r in returns] == ["seed=0", "seed=1"]
    assert all(isinstance(r.return_value, float) and r.return_value > 0 for r in returns)
    runs = collect(sweep_dir).to_pandas()
    assert sorted(runs["run_name"]) == ["L4_dense1_conv2_s0", "L4_dense1_conv2_s1"]
    assert (runs["status"] == "ok").all()
