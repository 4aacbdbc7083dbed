"""bench/cpu_session.sh, the open sweeps on a CPU machine: two workers walk one queue of sweeps, share
each sweep through the per-run locks (no run trained twice), stop on SIGTERM to their process groups and
resume from the runs' checkpoints; a bad command is refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, one_error_line

SCRIPT = ROOT / "bench" / "cpu_session.sh"


def session(tmp_path: Path, command: str, **extra: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ, "PY": sys.executable, "SWEEPS": "smoke", "RESULTS": str(tmp_path / "results"),
        "RUNTREE": str(tmp_path / "tree"), "LOGS": str(tmp_path / "logs"), **extra,
    }  # fmt: skip
    return subprocess.run(
        ["bash", str(SCRIPT), command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("command", ["bogus", "stop"])
def test_an_unknown_command_or_a_stop_without_workers_is_refused_in_one_line(tmp_path, command):
    got = session(tmp_path, command)
    line = one_error_line(got.stdout + got.stderr)
    assert got.returncode == 2 and ("'bogus'" in line if command == "bogus" else "stop after start" in line)
    assert "valid:" in line and not (tmp_path / "results").exists() and not (tmp_path / "tree").exists()


@pytest.mark.parametrize(
    "extra, needle",
    [({"SWEEPS": "smoke nosuch"}, "experiment 'nosuch', which conf/experiment lacks; valid: "),
     ({"PY": "/nonexistent/python"}, "PY=/nonexistent/python is not an executable python")],
    ids=["unknown-experiment", "no-python"],
)  # fmt: skip
def test_a_start_that_could_not_train_is_refused_before_any_worker_starts(tmp_path, extra, needle):
    got = session(tmp_path, "start", **extra)
    assert got.returncode == 2 and needle in one_error_line(got.stdout + got.stderr)
    assert not (tmp_path / "logs").exists() and not (tmp_path / "tree").exists()


def _wait(predicate, timeout: float = 600.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(1.0)


@pytest.mark.slow
def test_two_workers_share_a_sweep_stop_and_resume_without_training_a_run_twice(tmp_path):
    sweep = tmp_path / "results" / "sweeps" / "smoke"
    complete = lambda: sorted(p.parent.name for p in sweep.glob("*/COMPLETE"))  # noqa: E731
    # epochs=4: long enough that the stop finds runs in flight
    started = session(tmp_path, "start", OVERRIDES="epochs=4")
    assert started.returncode == 0 and "started 2 workers" in started.stdout, started.stdout + started.stderr
    again = session(tmp_path, "start")
    assert again.returncode == 2 and "already running" in one_error_line(again.stdout + again.stderr)
    _wait(lambda: len(complete()) >= 1)
    stopped = session(tmp_path, "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    listed = stopped.stdout.split("resume):")[-1].split()
    unfinished = sorted(p.name for p in sweep.glob("L*") if not (p / "COMPLETE").exists())
    assert (
        unfinished and listed == unfinished
    )  # what stop names is what is left, and no worker lives on to finish it
    time.sleep(2.0)
    assert sorted(p.name for p in sweep.glob("L*") if not (p / "COMPLETE").exists()) == unfinished
    assert not (tmp_path / "tree").exists()
    checkpointed = [name for name in unfinished if (sweep / name / "last.pt").exists()]
    # relaunched, the two finish the grid: every run once, each epoch trained once
    assert session(tmp_path, "start", OVERRIDES="epochs=4").returncode == 0
    logs = tmp_path / "logs"
    _wait(lambda: "experiment=smoke exited" in "".join(p.read_text() for p in logs.glob("worker*.log"))
          and len(complete()) == 4)  # fmt: skip
    _wait(lambda: session(tmp_path, "status").stdout.startswith("workers: \n"), timeout=120)
    assert len(complete()) == 4
    for run in sweep.glob("L*"):
        epochs = pd.read_parquet(run / "epochs.parquet")
        assert sorted(set(epochs["epoch"])) == list(range(1, 5)), run.name
        assert not epochs.duplicated(subset=["epoch", "split"]).any(), run.name
    text = "".join(p.read_text() for p in logs.glob("worker*.log"))
    trained = [line.split(":")[0] for line in text.splitlines() if ": ok; results in" in line]
    assert sorted(trained) == complete()  # each run trained to the end by exactly one worker
    for name in checkpointed:  # a run stopped after an epoch resumed from its checkpoint
        assert f"{name}: resuming after epoch" in text, name
    assert session(tmp_path, "stop").returncode == 0


def test_status_names_the_run_each_worker_is_on(tmp_path):
    # a worker's last event is the run it launched last (a "skipped" line about an earlier run, whose
    # lock another worker held, must not be what status shows), then a result line once one follows
    logs = tmp_path / "logs"
    logs.mkdir()
    launch = "[2026-12-06 18:11:04,301][HYDRA] \t#{} : seed=0 latent_dim=200 encoder={} decoder=dense1 experiment=smoke num_threads=1 results_dir=/r"
    held = "L200_conv2_dense1_s0: being trained by another process (vm 5139), skipped: /r/L200_conv2_dense1_s0"
    (logs / "worker1.log").write_text("\n".join(["== 2026-12-06T17:25:39Z worker 1: experiment=smoke",
                                                  launch.format(94, "conv2"), held, launch.format(95, "conv4")]) + "\n")  # fmt: skip
    (logs / "worker2.log").write_text(launch.format(93, "conv1") + "\nL200_conv1_dense1_s0: ok; results in /r\n")
    sweep = tmp_path / "results" / "examples" / "smoke"  # one of its launched grid's 4 runs complete
    (sweep / "L2_dense1_dense1_s0").mkdir(parents=True)
    (sweep / "L2_dense1_dense1_s0" / "COMPLETE").write_text("{}")
    (sweep / "grid.json").write_text(json.dumps({"runs": [f"L2_dense1_dense1_s{s}" for s in range(4)]}))
    got = session(tmp_path, "status")
    lines = got.stdout.splitlines()
    assert got.returncode == 0 and lines[0] == "workers: ", got.stdout + got.stderr
    assert lines[3] == f"smoke: 1 of 4 runs complete in {sweep}", lines
    assert lines[1] == "worker 1: on #95: seed=0 latent_dim=200 encoder=conv4 decoder=dense1", lines
    assert lines[2] == "worker 2: L200_conv1_dense1_s0: ok; results in /r", lines
