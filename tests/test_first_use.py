"""What a new user hits first (issue 35): Ctrl-C ends any training command with one line saying where
each run stopped and the command that resumes it (exit 130); that same command then resumes the run,
even where a run of its name exists elsewhere; no run leaves an empty log behind; a grid launch ends
with one line saying how its runs ended, where they are and what to run next."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY_RUN, interrupt_in_epoch, make_cfg, search_args, train_in_process

from sweep import rerun
from sweep import search as search_mod

NAME = "L2_dense1_dense1_s0"
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
