"""python -m sweep.status on synthetic sweeps: every state a run can be in, files it cannot read, an
empty sweep, the exit code, the retry command, and the progress line of a launch."""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import make_cfg
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sweep import results
from sweep.config import CONF_DIR
from sweep.grid import SweepProgress, write_grid_file
from sweep.lock import note_holder, run_lock
from sweep.status import main, render, scan
from sweep.train import train

ROOT = Path(__file__).resolve().parent.parent


def write_run(sweep: Path, name: str, state: str, seconds: float = 10.0, error: str | None = None) -> Path:
    """A run directory in ``state`` (ok, diverged, pruned, failed, interrupted), written with the
    harness's own writers; ``not started`` writes nothing."""
    run = sweep / name
    if state == "not started":
        return run
    results.write_yaml(run / ".hydra" / "config.yaml", {"run_name": name})
    if state == "interrupted":
        results.write_parquet(run / "epochs.parquet", [{"run_name": name, "epoch": 1}])
        return run
    row = {"run_name": name, "status": state, "error": error, "wall_seconds": seconds}
    results.write_parquet(run / "run.parquet", [row], results.RUN_COLUMNS)
    if state != "failed":
        results.write_complete(run, state)
    return run


def make(sweep: Path, states: dict[str, str], grid: list[str] | None = None, **kw) -> Path:
    for name, state in states.items():
        write_run(sweep, name, state, **kw.get(name, {}))
    sweep.mkdir(parents=True, exist_ok=True)
    names = grid if grid is not None else list(states)
    write_grid_file(sweep, [sweep / n for n in names], ["sweep/train.py", "experiment=x"])
    return sweep


def by_state(st) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in st.runs:
        out.setdefault(r.state, []).append(r.name)
    return out


def test_a_complete_sweep_counts_its_runs_and_exits_zero(tmp_path, capsys):
    sweep = make(
        tmp_path / "s",
        {f"r{i}": "ok" for i in range(3)},
        r0={"seconds": 10},
        r1={"seconds": 30},
        r2={"seconds": 20},
    )
    st = scan(sweep)
    assert by_state(st) == {"ok": ["r0", "r1", "r2"]}
    assert st.all_ok and st.settled and st.median_seconds() == 20
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert (
        "3 runs in the grid (from grid.json" in out
        and "launched with: python -m sweep.train experiment=x" in out
    )
    assert "ok 3 · diverged 0 · pruned 0" in out and "median 20.0 s per ok run (3 runs)" in out
    assert "retry" not in out
    one = make(tmp_path / "one", {"r0": "ok"}, r0={"seconds": 10})
    assert main([str(one)]) == 0 and "median 10.0 s per ok run (1 run)" in capsys.readouterr().out


def test_failed_and_diverged_runs_are_named_with_their_first_error_line_and_the_retry_command(
    tmp_path, capsys
):
    sweep = make(
        tmp_path / "s",
        {"a": "ok", "b": "failed", "c": "diverged", "d": "pruned", "e": "not started"},
        b={"error": "RuntimeError: CUDA out of memory\nTraceback (most recent call last):\n  ..."},
        c={"error": "non-finite loss in epoch 7"},
        d={"error": "pruned by median at validation -ELBO 99.000"},
    )
    st = scan(sweep)
    assert by_state(st) == {
        "ok": ["a"],
        "failed": ["b"],
        "diverged": ["c"],
        "pruned": ["d"],
        "not started": ["e"],
    }
    assert main([str(sweep)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"\n  failed +b  RuntimeError: CUDA out of memory\n", out)  # the first line only
    assert re.search(r"\n  diverged +c  non-finite loss in epoch 7\n", out)
    assert f"retry only the failed runs: python -m sweep.rerun --failed {sweep}" in out
    assert (
        "train the rest (skips complete runs, resumes interrupted ones): python -m sweep.train experiment=x"
        in out
    )


def test_a_run_locked_by_a_live_process_is_training_with_host_pid_and_epoch(tmp_path):
    sweep = make(
        tmp_path / "s",
        {"a": "ok", "b": "interrupted", "c": "not started", "d": "not started"},
        a={"seconds": 100},
    )
    with run_lock(sweep / "b") as got:
        assert got
        note_holder(sweep / "b", 3, 4)
        st = scan(sweep)
        (b,) = [r for r in st.runs if r.name == "b"]
        assert (b.state, b.detail, b.epoch, b.epochs) == (
            "training",
            f"{socket.gethostname()} pid {os.getpid()}",
            3,
            4,
        )
        # left: a quarter of b, and c and d, at one run at a time, at the median 100 s per run
        assert st.eta_seconds() == pytest.approx(100 * (0.25 + 2))
        assert "ETA 0:03:45 at 1 run at a time" in render(st)
        assert main([str(sweep)]) == 1
        (sweep / "b" / ".lock").write_text("garbled\n")  # the kernel's lock table still says it is held
        (b,) = [r for r in scan(sweep).runs if r.name == "b"]
        assert (b.state, b.detail) == ("training", "holder unknown")
    assert by_state(scan(sweep))["interrupted"] == ["b"]  # released: no longer training


def test_the_stale_lock_of_a_dead_holder_is_an_interrupted_run(tmp_path):
    sweep = make(tmp_path / "s", {"a": "interrupted"})
    code = (
        "import sys; from sweep.lock import run_lock, note_holder\n"
        "import os\nwith run_lock(sys.argv[1]) as got:\n    note_holder(sys.argv[1], 2, 5); print(got, os.getpid())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(sweep / "a")], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    got, pid = done.stdout.split()
    assert got == "True", done.stderr
    (a,) = scan(sweep).runs
    assert a.state == "interrupted"
    assert a.detail == f"last held by {socket.gethostname()} pid {pid}, not running"


def test_a_holder_on_another_machine_is_live_while_its_heartbeat_is_fresh(tmp_path):
    sweep = make(tmp_path / "s", {"a": "interrupted"})
    (sweep / "a" / ".lock").write_text("node17 4242 12 50\n")  # as note_holder writes it, on node17
    (a,) = scan(sweep).runs
    assert (a.state, a.detail, a.epoch, a.epochs) == ("training", "node17 pid 4242", 12, 50)
    old = time.time() - 3600
    os.utime(sweep / "a" / ".lock", (old, old))
    assert scan(sweep).runs[0].state == "interrupted"
    assert scan(sweep, stale_after=7200).runs[0].state == "training"


def test_unreadable_files_are_named_and_do_not_stop_the_table(tmp_path, capsys):
    sweep = make(tmp_path / "s", {"a": "ok", "b": "ok", "c": "failed", "d": "ok"})
    (sweep / "a" / "COMPLETE").write_text("{not json")
    (sweep / "b" / "run.parquet").write_bytes(b"PAR1 torn")
    (sweep / "c" / "run.parquet").write_bytes(b"")
    st = scan(sweep)
    assert by_state(st) == {"unreadable": ["a", "b", "c"], "ok": ["d"]}
    details = {r.name: r.detail for r in st.runs}
    assert details["a"].startswith("COMPLETE: JSONDecodeError")
    assert details["b"].startswith("run.parquet: ") and details["c"].startswith("run.parquet: ")
    assert main([str(sweep)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"\n  unreadable +3   named below\n", out)
    assert "\n  unreadable a  COMPLETE: JSONDecodeError" in out  # state, name, first line of the problem


def test_a_missing_sweep_is_refused(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def _unrelated(d: Path) -> None:
    (d / "notes.txt").write_text("x\n")
    (d / "sub").mkdir()


# a directory that is not a sweep is refused in one line (it reported "0 runs"); one run's directory
# is shown as that run: (what the directory holds, exit status, the needle of stdout or the error line)
NOT_SWEEPS = [
    (lambda d: None, 2, "holds no sweep: no grid.json, multirun.yaml or run directory"),
    (_unrelated, 2, "holds no sweep: no grid.json, multirun.yaml or run directory"),
    (lambda d: write_run(d.parent, d.name, "ok"), 0, "/d: one run directory, shown alone"),
    (lambda d: write_run(d.parent, d.name, "failed", error="ValueError: x"), 1, "  failed     d  ValueError: x"),
    (lambda d: write_run(d.parent, d.name, "interrupted"), 1, "  interrupted       1"),
]


@pytest.mark.parametrize(
    "setup, code, needle", NOT_SWEEPS, ids=["empty", "unrelated files", "a run", "a failed run", "interrupted run"]
)
def test_a_directory_without_a_sweep_is_refused_and_one_run_is_shown(tmp_path, capsys, setup, code, needle):
    d = tmp_path / "d"
    d.mkdir()
    setup(d)
    assert main([str(d)]) == code
    captured = capsys.readouterr()
    if code == 2:
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: sweep_dir={d} ") and needle in lines[0]
        assert captured.out == ""
    else:
        assert needle in captured.out, captured.out
        assert "0 runs" not in captured.out


def test_without_grid_json_the_runs_on_disk_are_the_grid_and_others_are_counted(tmp_path, capsys):
    sweep = make(tmp_path / "s", {"a": "ok", "n/b": "failed"})  # nested, as ablations are
    (sweep / "grid.json").unlink()
    assert by_state(scan(sweep)) == {"ok": ["a"], "failed": ["n/b"]}
    sweep2 = make(tmp_path / "t", {"a": "ok", "old": "ok"}, grid=["a", "new"])
    st = scan(sweep2)
    assert by_state(st) == {"ok": ["a"], "not started": ["new"]} and st.outside == ["old"]
    main([str(sweep2)])
    assert "1 run directory on disk is not in this grid" in capsys.readouterr().out


def test_without_grid_json_the_grid_comes_from_hydras_multirun_yaml(tmp_path):
    """A sweep launched before grid.json existed: the jobs of the launch Hydra recorded."""
    over = ["experiment=smoke", f"results_dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=over, return_hydra_config=True)
    cfg.hydra.overrides.task = over
    sweep = tmp_path / "sweeps" / "smoke"
    sweep.mkdir(parents=True)
    OmegaConf.save(cfg, sweep / "multirun.yaml")
    write_run(sweep, "L8_conv5_dense2_s0", "ok")
    st = scan(sweep)
    assert st.source == "Hydra's multirun.yaml of the last launch"
    assert by_state(st) == {
        "not started": ["L8_dense2_dense2_s0", "L8_dense2_conv5_s0", "L8_conv5_conv5_s0"],
        "ok": ["L8_conv5_dense2_s0"],
    }
    assert st.command == f"python -m sweep.train experiment=smoke results_dir={tmp_path}"


def test_the_progress_line_counts_finished_runs_against_the_grid(tmp_path):
    sweep = make(tmp_path / "s", {"a": "ok", "b": "failed", "c": "not started"})
    progress = SweepProgress(interval=3600)
    progress.start(sweep, disable=True)
    try:
        assert (progress.bar.n, progress.bar.total) == (2, 3)
        write_run(sweep, "c", "ok")
        progress.poll()
        assert (progress.bar.n, progress.bar.total) == (3, 3)
        assert "0 training, 1 failed" in str(progress.bar.postfix)
    finally:
        progress.on_multirun_end()


def test_the_progress_line_pickles_while_it_runs(tmp_path):
    """The submitit launcher pickles the launch's callbacks with each job."""
    progress = SweepProgress(interval=7)
    progress.start(make(tmp_path / "s", {"a": "ok"}), disable=True)
    try:
        copy = pickle.loads(pickle.dumps(progress))
    finally:
        progress.on_multirun_end()
    assert copy.interval == 7 and copy.bar is None


def test_the_progress_line_is_quiet_outside_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    progress = SweepProgress()
    progress.on_multirun_start(config={"progress": "auto", "hydra": {"sweep": {"dir": str(tmp_path)}}})
    assert progress.bar is None
    progress.on_multirun_end()


@pytest.mark.slow  # python -m sweep.rerun as a subprocess
def test_rerun_failed_retrains_exactly_the_failed_runs_in_place(tmp_path):
    cfg = make_cfg("num_threads=1", f"results_dir={tmp_path}")
    sweep = make(tmp_path / "s", {"ok_run": "ok", "bad": "failed"}, bad={"error": "RuntimeError: boom"})
    results.write_yaml(sweep / "bad" / ".hydra" / "config.yaml", cfg)
    results.write_yaml(sweep / "bad" / ".hydra" / "overrides.yaml", ["num_threads=1"])
    before = (sweep / "ok_run" / "run.parquet").stat().st_mtime_ns
    done = subprocess.run(
        [sys.executable, "-m", "sweep.rerun", "--failed", str(sweep)],
        cwd=ROOT,
        env={**os.environ, "CI": "true"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "retrying 1 failed runs" in done.stdout
    assert by_state(scan(sweep)) == {"ok": ["ok_run", "bad"]}
    assert (sweep / "ok_run" / "run.parquet").stat().st_mtime_ns == before  # untouched
    assert yaml.safe_load((sweep / "bad" / ".hydra" / "overrides.yaml").read_text()) == ["num_threads=1"]
    assert json.loads((sweep / "bad" / "COMPLETE").read_text())["status"] == "ok"


def test_a_run_training_in_this_process_shows_its_epoch_then_its_result(tmp_path):
    """The engine's own lock and holder note, seen by the status while the run trains (from its
    per-epoch callback) and after it finished."""
    sweep = make(tmp_path / "s", {"r": "not started"})
    seen = []
    row = train(
        make_cfg("epochs=2", "num_threads=1"),
        sweep / "r",
        on_epoch=lambda epoch, val: seen.append(scan(sweep).runs[0]),
    )
    assert [(r.state, r.epoch, r.epochs) for r in seen] == [("training", 1, 2), ("training", 2, 2)]
    assert seen[0].detail == f"{socket.gethostname()} pid {os.getpid()}"
    (done,) = scan(sweep).runs
    assert (done.state, done.seconds) == ("ok", pytest.approx(row["wall_seconds"]))


def test_watch_refreshes_until_nothing_is_left_to_train(tmp_path, capsys):
    sweep = make(tmp_path / "s", {"a": "ok", "b": "interrupted"})
    finisher = threading.Timer(0.5, lambda: write_run(sweep, "b", "ok"))  # another process finishes b
    finisher.start()
    try:
        assert main([str(sweep), "--watch", "--interval", "0.05"]) == 0
    finally:
        finisher.join()
    tables = capsys.readouterr().out.split("sweep ")[1:]
    assert len(tables) >= 2 and "interrupted       1" in tables[0] and "ok 2 ·" in tables[-1]


# ------------------------------------------------------------ each run against the sweep's settings (issue 35)
@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("epochs", 3, "epochs=3 where grid.json has 2"),
        ("data.name", "fashion_mnist", "data.name=fashion_mnist where grid.json has mnist"),
    ],
)
def test_a_run_whose_protocol_is_not_the_sweeps_settings_is_named_and_not_complete(
    tmp_path, key, value, shown
):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from synthetic import make_sweep

    sweep_dir = make_sweep(tmp_path, seeds=(0,), latents=(25,))
    names = sorted(p.name for p in sweep_dir.glob("L*"))
    write_grid_file(
        sweep_dir, [sweep_dir / n for n in names], ["sweep.train"], {"epochs": 2, "data.name": "mnist"}
    )
    assert scan(sweep_dir).finished
    path = sweep_dir / names[0] / "run.parquet"  # one run of another protocol in the sweep
    t = pq.read_table(path)
    t = t.set_column(t.column_names.index(key), key, pa.array([value]))
    results.write_parquet(path, t)
    st = scan(sweep_dir)
    assert [(r.name, r.state) for r in st.runs if r.state != "ok"] == [(names[0], "mismatched")]
    assert shown in st.of("mismatched")[0].detail and not st.finished
    text = render(st)
    assert "mismatched" in text and names[0] in text


def test_a_directory_of_several_sweeps_shows_each_against_its_own_grid(tmp_path, capsys):
    """Merged, two sweeps read as one grid (one count, one ETA): each is its own table; a sweep nested
    in another is shown too, and a run that lies in none is shown with its state and counts for the
    exit code."""
    make(tmp_path / "a", {"r1": "ok", "r2": "ok"})
    make(tmp_path / "b", {"r1": "ok"}, grid=["r1", "r2", "r3"])
    make(tmp_path / "a" / "inner" / "c", {"r5": "ok"})
    write_run(tmp_path / "loose", "r9", "ok")
    assert main([str(tmp_path)]) == 1  # b is not complete
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path}: 3 sweeps, each shown against its own grid")
    for sweep, n in (("a", 2), ("a/inner/c", 1), ("b", 3)):
        assert f"sweep {tmp_path / sweep}: {n} run{'s' if n > 1 else ''} in the grid" in out
    assert re.findall(r"not started +(\d+)", out) == ["0", "0", "2"]
    assert out.rstrip().endswith(f"1 run directory below {tmp_path} lies in no sweep: ok 1")
    (tmp_path / "b" / "grid.json").unlink()
    write_grid_file(tmp_path / "b", [tmp_path / "b" / "r1"], ["sweep/train.py", "experiment=x"])
    assert main([str(tmp_path)]) == 0
    write_run(tmp_path / "loose", "r8", "interrupted")  # a run in no sweep, left to train
    assert main([str(tmp_path)]) == 1
    assert f"  interrupted {tmp_path / 'loose' / 'r8'}" in capsys.readouterr().out
    assert main([str(tmp_path / "a")]) == 0  # a sweep with one inside: both
    assert "a: 2 sweeps" in capsys.readouterr().out
    (tmp_path / "a" / "inner" / "up").symlink_to(tmp_path, target_is_directory=True)  # a cycle
    assert main([str(tmp_path)]) == 1 and f"{tmp_path}: 3 sweeps" in capsys.readouterr().out  # each once
    # from a: the link leads above it, to b and the loose runs, which are not below a
    assert main([str(tmp_path / "a")]) == 0 and "a: 2 sweeps" in capsys.readouterr().out
    assert main([str(tmp_path / "b")]) == 0  # a sweep alone: its table, as ever
    assert capsys.readouterr().out.startswith(f"sweep {tmp_path / 'b'}: 1 run in the grid")


def test_a_directory_that_cannot_be_read_is_named_and_skipped(tmp_path, capsys, monkeypatch):
    import sweep.layout as layout

    make(tmp_path / "a", {"r1": "ok"})
    make(tmp_path / "b", {"r1": "ok"})
    (tmp_path / "locked").mkdir()
    real = layout.is_run_dir

    def no_permission(path):  # as a directory without read permission answers to a non-root user
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(layout, "is_run_dir", no_permission)
    assert main([str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert f"warning: {tmp_path / 'locked'} cannot be read (Permission denied); skipped" in captured.err
    assert f"{tmp_path}: 2 sweeps" in captured.out


def test_watch_returns_when_no_launch_trains_the_runs_left(tmp_path, capsys):
    """A launcher that died leaves runs interrupted and not started, and nothing trains them: --watch
    returns (exit 1, naming why) after --idle-after seconds instead of waiting forever."""
    sweep = make(tmp_path / "s", {"a": "ok", "b": "interrupted"})
    assert main([str(sweep), "--watch", "--interval", "0.05", "--idle-after", "0.3"]) == 1
    out = capsys.readouterr().out
    assert out.count("interrupted       1") >= 2  # it watched, then gave up
    assert out.rstrip().endswith("relaunch the sweep's command (above) to train the rest")
    assert "nothing has trained for 0.3 s with runs left" in out
