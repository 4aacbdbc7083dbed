"""What a new user hits first (issue 35): Ctrl-C ends any training command with one line saying where
each run stopped and the command that resumes it (exit 130); that same command then resumes the run,
even where a run of its name exists elsewhere; no run leaves an empty log behind; a grid launch ends
with one line saying how its runs ended, where they are and what to run next."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import TINY_RUN, interrupt_in_epoch, make_cfg, search_args, train_in_process

from sweep import rerun, results
from sweep import search as search_mod

NAME = "L2_dense1_dense1_s0"
ROOT = Path(__file__).resolve().parent.parent
SETTINGS = [o for o in TINY_RUN[3:] if not o.startswith("epochs=")]  # TINY_RUN without its architecture


def _train(monkeypatch, root: Path, *more: str) -> int:
    flags = [a for a in more if a.startswith("-")]
    rest = [a for a in more if a not in flags]
    return train_in_process(monkeypatch, *flags, f"results_dir={root}", *TINY_RUN, "epochs=2", *rest)


def _rerun(monkeypatch, root: Path, *more: str) -> int:
    return rerun.main([NAME, f"results_dir={root}", *SETTINGS, "epochs=2", *more])


def _search(monkeypatch, root: Path, *more: str) -> int:
    return search_mod.main(search_args(root, "epochs=2", "search.n_trials=1", *more))


def interrupted(command, *args) -> int:
    """``command(*args)``'s exit status, where Ctrl-C escaping it (a traceback) fails the test."""
    try:
        return command(*args)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped the entry point: the user sees a traceback")


# (entry point, extra arguments, the run directory below the results directory, the command shown)
COMMANDS = [
    (_train, [], f"runs/{NAME}", "python -m sweep.train results_dir=<r>"),
    (_train, ["-m", "seed=0,1"], f"sweeps/default/{NAME}", "python -m sweep.train -m results_dir=<r>"),
    (_rerun, [], f"runs/{NAME}", f"python -m sweep.rerun {NAME} results_dir=<r>"),
    (_search, [], "searches/search_arch/L*_t0", "python -m sweep.search experiment=search_arch results_dir=<r>"),
]


@pytest.mark.parametrize(
    "command, more, run, shown", COMMANDS, ids=["sweep.train", "sweep.train -m", "sweep.rerun", "sweep.search"]
)
def test_ctrl_c_prints_where_the_run_stopped_and_the_same_command_resumes_it(
    tmp_path, monkeypatch, capsys, command, more, run, shown
):
    root = tmp_path / "results"
    with monkeypatch.context() as m:
        interrupt_in_epoch(m, 1)  # Ctrl-C as the second of two epochs starts
        assert interrupted(command, monkeypatch, root, *more) == 130
    (run_dir,) = root.glob(run)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"interrupted: {run_dir.name} stopped after epoch 1 of 2 ({run_dir}); `"), line
    assert f"{shown.replace('<r>', str(root))} " in line and line.endswith("resumes it from the last finished epoch")
    assert command(monkeypatch, root, *more) == 0  # the same command again
    out = capsys.readouterr().out
    assert f"{run_dir.name}: resuming after epoch 1" in out and f"{run_dir.name}: ok; results in" in out


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A results directory that already holds a finished run named NAME, in a sweep of its own."""
    from sweep.train import train

    root = tmp_path / "results"
    cfg = make_cfg(*SETTINGS, "epochs=2", f"results_dir={root}", arch=TINY_RUN[:3])
    assert train(cfg, root / "sweeps" / "a" / NAME)["status"] == "ok"
    return root


def test_rerunning_the_interrupted_command_resumes_its_run_where_another_run_has_its_name(
    elsewhere, monkeypatch, capsys
):
    root = elsewhere
    with monkeypatch.context() as m:
        interrupt_in_epoch(m, 1)
        assert interrupted(rerun.main, [NAME, f"results_dir={root}"]) == 130
    capsys.readouterr()
    assert rerun.main([NAME, f"results_dir={root}"]) == 0  # was: "2 runs are named … pick one with --from"
    out = capsys.readouterr().out
    mine, other = root / "runs" / NAME, root / "sweeps" / "a" / NAME
    assert f"config: {mine} (an unfinished rerun of this name: resuming it, not {other}; --from DIR" in out
    assert f"{NAME}: resuming after epoch 1" in out
    # once it is complete, the name is ambiguous again: refused, naming both
    assert rerun.main([NAME, f"results_dir={root}"]) == 2
    assert f"2 runs are named {NAME} under {root}: {mine}, {other}; pick one with --from DIR" in capsys.readouterr().err


def test_an_interrupted_rerun_is_resumed_only_by_its_own_command(elsewhere, monkeypatch, capsys):
    """Its config is that command's (here 3 epochs): another command of the name, with other overrides,
    neither trains with it nor resumes it, also with --out elsewhere."""
    root = elsewhere
    mine, other = root / "runs" / NAME, root / "sweeps" / "a" / NAME
    with monkeypatch.context() as m:
        interrupt_in_epoch(m, 1)
        assert interrupted(rerun.main, [NAME, f"results_dir={root}", "epochs=3", "lr=0.002"]) == 130
    capsys.readouterr()
    assert rerun.main([NAME, f"results_dir={root}"]) == 2  # the sweep's run (2 epochs) is meant
    err = capsys.readouterr().err
    assert f"{mine} already holds a run of a different configuration (" in err and "epochs" in err, err
    out = root / "runs" / "two"
    assert rerun.main([NAME, f"results_dir={root}", "--out", str(out)]) == 0
    assert f"config: {other}; training into {out}" in capsys.readouterr().out
    assert results.read_stored_config(out)["epochs"] == 2
    # its own command resumes it, in any order and spelling, also where it is the one run of its name
    # (else the command composes its config from the name: the tiny run's data subset lost, refused)
    shutil.rmtree(other)
    assert rerun.main([NAME, "lr=2e-3", "epochs=3", f"results_dir={root}/"]) == 0
    assert f"{NAME}: resuming after epoch 1" in capsys.readouterr().out


def test_a_complete_run_evaluated_with_another_profile_is_not_skipped_as_this_commands(elsewhere, capsys):
    """``rerun L…_s7`` (composed) and ``rerun L… seed=7`` (a stored config) can name one directory with
    two evaluation profiles: the second must not pass the first's numbers off as its own."""
    root = elsewhere
    run = root / "sweeps" / "a" / NAME
    args = [NAME, f"results_dir={root}", "--from", str(run), "--out", str(run)]
    assert rerun.main([*args, "eval.knn_k=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {run} already holds this run, complete, evaluated with another profile ")
    assert "(eval.knn_k=5 there, 3 asked)" in err and err.endswith(f"python -m sweep.evaluate {run} eval.knn_k=3")
    assert not (root / "runs").exists()
    assert rerun.main(args) == 0 and f"{NAME}: already complete (ok), skipped" in capsys.readouterr().out
    from sweep import evaluate

    assert evaluate.main([str(run), "eval.knn_k=3"]) == 0  # the command the refusal names
    assert rerun.main([*args, "eval.knn_k=3"]) == 0
    assert f"{NAME}: already complete (ok), skipped" in capsys.readouterr().out


def test_a_single_run_relaunched_with_another_evaluation_profile_is_refused(tmp_path, monkeypatch, capsys):
    root = tmp_path / "results"
    assert _train(monkeypatch, root) == 0
    capsys.readouterr()
    assert _train(monkeypatch, root, "eval.knn_k=3") == 2
    err = capsys.readouterr().err.strip()
    assert "evaluated with another profile (eval.knn_k=5 there, 3 asked)" in err and "hydra.run.dir elsewhere" in err
    assert _train(monkeypatch, root) == 0 and "already complete (ok), skipped" in capsys.readouterr().out


def test_a_null_iwae_k_is_the_k_its_device_chose(tmp_path, monkeypatch, capsys):
    """eval.iwae_k=null means 100 importance samples on a CPU (5000 on a GPU): the same numbers as an
    explicit 100 here, never those of a GPU's 5000."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "results"
    assert _train(monkeypatch, root, "eval.iwae_k=null") == 0
    assert _train(monkeypatch, root, "eval.iwae_k=100") == 0 and "already complete" in capsys.readouterr().out
    assert _train(monkeypatch, root, "eval.iwae_k=50") == 2
    assert "(eval.iwae_k=100 there, 50 asked)" in capsys.readouterr().err
    path = root / "runs" / NAME / "eval.parquet"  # as if a GPU had evaluated it with the null K
    table = pq.read_table(path)
    k = table.schema.get_field_index("test/iwae_k")
    pq.write_table(table.set_column(k, table.schema.field(k), pa.array([5000], table.schema.field(k).type)), path)
    assert _train(monkeypatch, root, "eval.iwae_k=null") == 2
    assert "(eval.iwae_k=5000 there, 100 asked)" in capsys.readouterr().err


@pytest.mark.parametrize("package", ["sweep", "analysis", "bench"])
def test_a_ctrl_c_no_tool_catches_is_one_line_under_python_m(package):
    """Python's -m sets sys.argv[0] to "-m" while it imports the package, as a Ctrl-C during the import
    of torch finds it: one line and SIGINT's exit status, no traceback. As a library: Python's hook."""
    import signal
    import subprocess
    import sys

    code = f"import sys; sys.argv = ['-m']; import {package}; raise KeyboardInterrupt"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode in (-signal.SIGINT, 128 + signal.SIGINT)
    assert done.stderr.startswith("interrupted: stopped by Ctrl-C;") and len(done.stderr.splitlines()) == 1
    # a Ctrl-C while an error was being handled: Python's report, the error not hidden
    during = f"import sys; sys.argv = ['-m']; import {package}\ntry:\n    1 / 0\nfinally:\n    raise KeyboardInterrupt"
    done = subprocess.run([sys.executable, "-c", during], capture_output=True, text=True, cwd=ROOT)
    assert "ZeroDivisionError" in done.stderr and "Traceback" in done.stderr
    library = f"import sys; import {package}; assert sys.excepthook is sys.__excepthook__"
    assert subprocess.run([sys.executable, "-c", library], cwd=ROOT).returncode == 0


LAUNCHES = {"a single run": ([], f"runs/{NAME}"), "a grid": (["-m", "seed=0,1"], "sweeps/default")}


@pytest.mark.parametrize("launch", list(LAUNCHES))
def test_a_launch_leaves_no_empty_log_and_a_grid_ends_with_one_summary_line(tmp_path, monkeypatch, capsys, launch):
    more, where = LAUNCHES[launch]
    root = tmp_path / "results"
    assert _train(monkeypatch, root, *more) == 0
    empty = [  # flock files (a run's .lock, a sweep's .grid.lock) are empty by design
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.stat().st_size == 0 and not p.name.endswith(".lock")
    ]
    assert empty == [] and not list(root.rglob("train.log"))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    sweep = root / where
    if more:
        assert last == (
            f"sweep done: 2 of 2 runs ok, 0 failed, in {sweep}; next: python -m sweep.status {sweep} · "
            f"python -m analysis.figures {sweep}"
        )
    else:
        assert last == f"{NAME}: ok; results in {sweep}"


# ------------------------------- Ctrl-C where the runs train in other processes (the joblib launcher)
def _grid_in_states(sweep: Path) -> dict[str, tuple[int | None, int | None] | None]:
    """A sweep whose grid.json lists a run in each state; returns what Ctrl-C must say of each:
    (epochs done, epochs) for a started, unfinished run, None for one it must not name."""
    from sweep import results
    from sweep.grid import write_grid_file
    from sweep.lock import note_holder

    states = {
        "complete": None,
        "training": (1, 2),  # its holder note says how far it got
        "started_no_note": (None, None),  # its config snapshot only
        "failed": (2, 2),  # run.parquet, no COMPLETE: the same command retries it
        "not_started": None,
    }
    for name in states:
        (sweep / name).mkdir(parents=True)
    for name in ("complete", "training", "started_no_note", "failed"):
        results.write_yaml(sweep / name / ".hydra" / "config.yaml", {"seed": 0})
    results.write_complete(sweep / "complete", "ok")
    note_holder(sweep / "training", 1, 2)
    note_holder(sweep / "failed", 2, 2)
    results.write_parquet(sweep / "failed" / "run.parquet", [{"run_name": "failed", "status": "failed"}])
    write_grid_file(sweep, [sweep / n for n in states], ["sweep.train"])
    results.write_yaml(sweep.parent / "elsewhere" / ".hydra" / "config.yaml", {"seed": 0})  # not of the grid
    return states


def test_the_runs_a_ctrl_c_names_are_the_started_unfinished_runs_of_the_grid(tmp_path):
    from sweep.grid import unfinished_runs

    sweep = tmp_path / "sweeps" / "s"
    states = _grid_in_states(sweep)
    want = [(sweep / n, *at) for n, at in states.items() if at is not None]
    assert unfinished_runs([sweep]) == want


def _as_a_process_launcher_parent(monkeypatch) -> None:
    """Ctrl-C as the parent of a process launcher (joblib) sees it: a plain KeyboardInterrupt, with no
    word from the engine, which ran in a worker, on where its runs stopped."""
    import sweep.train as train_mod

    real = train_mod.train_jobs

    def in_a_worker(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None

    monkeypatch.setattr(train_mod, "train_jobs", in_a_worker)


def test_ctrl_c_names_the_grids_unfinished_runs_where_they_trained_in_other_processes(
    tmp_path, monkeypatch, capsys
):
    root = tmp_path / "results"
    with monkeypatch.context() as m:
        interrupt_in_epoch(m, 1)
        _as_a_process_launcher_parent(m)
        assert interrupted(_train, monkeypatch, root, "-m", "seed=0,1") == 130
    run_dir = root / "sweeps" / "default" / NAME
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(
        f"interrupted: {NAME} stopped after epoch 1 of 2 ({run_dir}); `python -m sweep.train -m"
    )
    assert line.endswith("` resumes it from the last finished epoch") and "_s1" not in line


@pytest.mark.slow  # a real SIGINT to a joblib multirun of the smoke grid, and its workers
def test_a_real_ctrl_c_under_the_joblib_launcher_names_the_unfinished_runs(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import LAUNCHED, ROOT, env

    from sweep.results import RUN_MARKERS, is_complete

    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    args = ["sweep.train", "experiment=smoke", "epochs=100", *LAUNCHED, f"results_dir={tmp_path}", *launcher]
    # SIGINT at its default, as in a terminal: a test run started in the background (`nohup … &`) hands
    # its children SIGINT ignored, and a Python started so never raises KeyboardInterrupt
    default_sigint = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    p = subprocess.Popen(  # its own process group, as a terminal's foreground job: Ctrl-C reaches every process
        [sys.executable, "-c", default_sigint, "-m", *args], cwd=ROOT, env=env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    sweep = tmp_path / "sweeps" / "smoke"
    deadline = time.monotonic() + 300
    # both workers training (each run has written an epoch): Ctrl-C in the middle of a grid, not while a
    # worker process is still starting
    while len(list(sweep.glob("*/epochs.parquet"))) < 2 and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=300)  # a machine under load: the stopped runs still save their state
    assert p.returncode == 130, err[-3000:]
    line = next(x for x in err.splitlines() if x.startswith("interrupted: "))
    unfinished = [
        d
        for d in sorted(sweep.iterdir())
        if any((d / m).is_file() for m in RUN_MARKERS) and not is_complete(d)
    ]
    assert unfinished and "no run was left half-trained" not in line
    for d in unfinished:
        assert f"{d.name} stopped after epoch " in line and f"({d})" in line
    assert line.endswith(
        f"`python -m {' '.join(args)}` resumes {'it' if len(unfinished) == 1 else 'them'} from the last finished epoch"
    )


# which of several same-named stored runs a bare `sweep.rerun NAME` means: the one whose stored config is
# the one its name composes to, if exactly one is (the committed conditions each hold L25_dense1_conv4_s0)
SAME_NAME = [
    ("one default, one of another condition", [[], ["epochs=30"]], 0),
    ("one default, one of another width", [["encoder.width=64"], []], 1),
    ("none default", [["epochs=30"], ["encoder.width=64"]], None),
    ("two default copies", [[], []], None),
]


@pytest.mark.parametrize("case, stored, meant", SAME_NAME, ids=[c[0] for c in SAME_NAME])
def test_a_bare_rerun_name_means_the_run_with_the_config_its_name_composes_to(tmp_path, case, stored, meant):
    import yaml
    from hydra import compose, initialize_config_dir

    from sweep.config import CONF_DIR, to_plain
    from sweep.names import parse_run_name
    from sweep.rules import ConfigError

    name = "L25_dense1_conv4_s0"
    dirs = []
    for i, overrides in enumerate(stored):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = to_plain(compose("config", overrides=parse_run_name(name).overrides() + overrides))
        d = tmp_path / "examples" / f"sweep{i}" / name
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
        dirs.append(d)
    if meant is None:
        with pytest.raises(ConfigError, match=f"2 runs are named {name} under .*; pick one with --from DIR"):
            rerun.build_config("L25_dense1_conv4", [], tmp_path)
        return
    cfg, source = rerun.build_config("L25_dense1_conv4", ["lr=0.01"], tmp_path)
    assert source.startswith(f"{dirs[meant]} (of the 2 runs of this name, the one with the config its name composes to")
    assert f"not {dirs[1 - meant]}" in source
    assert cfg["lr"] == 0.01  # the overrides go on top of the run it means
