"""The tools that rewrite finished runs or a report (``sweep.evaluate``, ``sweep.slim``,
``analysis.figures``, and a training relaunch over a complete run): they take the run's lock as
training does, refuse a directory they cannot write before they compute anything, and finish or clean
up on their next start what their own kill left (temporary files, a ``last.pt``, a half-written
evaluation or report)."""

from __future__ import annotations

import errno
import os
import shutil
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import cli, make_cfg, one_error_line, snapshot

from analysis import figures
from analysis.collect import collect, load_sweep
from sweep import evaluate, results, slim
from sweep.lock import run_lock
from sweep.names import run_name_of
from sweep.train import train

CFG = ("num_threads=1", "seed=3")
NAME = run_name_of(make_cfg(*CFG))
TOOLS = {
    "evaluate": lambda run: evaluate.main([str(run)]),
    "slim": lambda run: slim.main([str(run)]),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tools") / "sweep"
    assert train(make_cfg(*CFG), root / NAME)["status"] == "ok"
    return root


@pytest.fixture
def sweep_dir(pristine, tmp_path) -> Path:
    shutil.copytree(pristine, tmp_path / "sweep")
    return tmp_path / "sweep"


# ---------------------------------------------------------------- item 6: the run lock
@pytest.mark.parametrize("tool", TOOLS)
def test_a_run_another_process_holds_is_left_untouched(sweep_dir, tool, capsys):
    run = sweep_dir / NAME
    before = snapshot(run, skip=(".lock",))
    with run_lock(run) as held:  # as a training, evaluate or slim process would
        assert held
        code = TOOLS[tool](run)
    assert snapshot(run, skip=(".lock",)) == before
    out = capsys.readouterr()
    if tool == "evaluate":  # not done: it says so and fails, so a script does not go on
        assert code == 1 and f"{NAME}: used by another process" in out.err
    else:  # slim lists what it left, as it does for unfinished runs
        assert code == 0 and "left as it is: another process holds its lock" in out.out


@pytest.mark.parametrize("tool", TOOLS)
def test_every_file_a_tool_rewrites_is_written_under_the_run_lock(sweep_dir, tool, monkeypatch):
    run = sweep_dir / NAME
    real, unlocked = results.atomic_write_bytes, []

    def checked(path, data):
        if Path(path).parent == run:
            with run_lock(run) as free:  # a second holder must be refused while the tool works
                if free:
                    unlocked.append(Path(path).name)
        real(path, data)

    monkeypatch.setattr(results, "atomic_write_bytes", checked)
    assert TOOLS[tool](run) == 0
    written = {"eval.parquet", "latents.parquet"} if tool == "evaluate" else {"SLIMMED", "pca.parquet"}
    assert not unlocked, unlocked
    assert written <= {p.name for p in run.iterdir()}


def test_evaluate_refuses_a_run_slimmed_after_its_check_once_it_holds_the_lock(
    sweep_dir, monkeypatch, capsys
):
    """slim takes the run between evaluate's up-front check and its lock: evaluate must not compute
    latents beside slim's pca.parquet (before, it wrote fresh latents into a run marked SLIMMED)."""
    run = sweep_dir / NAME
    real = evaluate.reevaluation_config

    def then_slimmed(run_dir, overrides):
        cfg = real(run_dir, overrides)
        slim.slim(run_dir)
        return cfg

    monkeypatch.setattr(evaluate, "reevaluation_config", then_slimmed)
    assert evaluate.main([str(run)]) == 1
    assert "was slimmed" in capsys.readouterr().err
    names = {p.name for p in run.iterdir()}
    assert {"SLIMMED", "pca.parquet"} <= names and not names & {"latents.parquet", results.EVALUATING}


# ---------------------------------------------------------------- item 11: writability up front
@pytest.mark.parametrize("tool", TOOLS)
def test_a_read_only_run_directory_is_refused_in_one_line_before_any_work(
    sweep_dir, tool, monkeypatch, capsys
):
    """What a read-only mount does, simulated at the OS calls that create entries (as root, chmod
    would not stop a write): one ``error:`` line naming the directory, exit 2, nothing computed."""
    run = sweep_dir / NAME

    def deny(path):
        if str(path).startswith(str(sweep_dir)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    real_mkdir, real_open = os.mkdir, os.open
    monkeypatch.setattr(os, "mkdir", lambda p, *a, **k: deny(p) or real_mkdir(p, *a, **k))
    monkeypatch.setattr(os, "open", lambda p, *a, **k: deny(p) or real_open(p, *a, **k))
    computed = []
    monkeypatch.setattr(evaluate, "evaluate_run", lambda *a, **k: computed.append(1))
    before = snapshot(sweep_dir)
    assert TOOLS[tool](run) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.out + captured.err)
    assert f"the run directory {run} cannot be written" in line and "Read-only file system" in line
    assert not computed and snapshot(sweep_dir) == before


# ---------------------------------------------------------------- item 12: leftovers of a kill
LEFTOVERS = [  # (tool that starts next, leftover file names in the complete run)
    ("train", [".eval.parquet.k1ll3d.tmp", ".hydra/.config.yaml.k1ll3d.tmp", "last.pt"]),
    ("evaluate", [".latents.parquet.k1ll3d.tmp", "last.pt"]),
    ("slim", [".SLIMMED.k1ll3d.tmp", ".pca.parquet.k1ll3d.tmp"]),
]


@pytest.mark.parametrize("tool, leftovers", LEFTOVERS, ids=[t for t, _ in LEFTOVERS])
def test_the_next_start_removes_what_a_kill_left_in_a_complete_run(sweep_dir, tool, leftovers):
    """A kill mid-write leaves ``.<name>.*.tmp``; one between ``COMPLETE`` and the removal of the
    resume state leaves ``last.pt`` (tests/test_kill.py makes both for real)."""
    run = sweep_dir / NAME
    for name in leftovers:
        (run / name).write_bytes((run / "best.pt").read_bytes() if name == "last.pt" else b"torn")
    if tool == "train":
        assert train(make_cfg(*CFG), run)["status"] == "ok"  # already complete: skipped, tidied
    else:
        assert TOOLS[tool](run) == 0
    assert [n for n in leftovers if (run / n).exists()] == []


def _killed_evaluation(run: Path, monkeypatch) -> None:
    """An evaluation stopped like a kill right before its last file, eval.parquet: no cleanup runs."""
    real = results.write_parquet

    def stop_at_eval(path, *a, **k):
        if Path(path).name == "eval.parquet":
            raise KeyboardInterrupt
        return real(path, *a, **k)

    monkeypatch.setattr(results, "write_parquet", stop_at_eval)
    with pytest.raises(KeyboardInterrupt):
        evaluate.main([str(run), "eval.seed=7"])
    monkeypatch.undo()


def test_a_killed_evaluation_is_flagged_left_by_slim_skipped_by_analysis_and_redone_by_evaluate(
    sweep_dir, monkeypatch, capsys
):
    run = sweep_dir / NAME
    old_eval = (run / "eval.parquet").read_bytes()
    _killed_evaluation(run, monkeypatch)
    assert (run / "eval.parquet").read_bytes() == old_eval  # new latents beside the old row ...
    assert (run / results.EVALUATING).exists()  # ... flagged
    capsys.readouterr()
    got = load_sweep(sweep_dir)
    assert "eval/status" not in got.runs and got.dims.empty  # not evaluated, as far as analysis knows
    skipped = got.skipped + collect(sweep_dir, "latents").skipped
    assert {Path(p).name for p, why in skipped if "evaluation was interrupted" in why} == {
        "eval.parquet",
        "dims.parquet",
        "latents.parquet",
    }
    assert slim.slim(sweep_dir)["left"][0][1].startswith("its evaluation was interrupted")
    assert evaluate.main([str(run), "eval.seed=7"]) == 0
    assert not (run / results.EVALUATING).exists()
    assert load_sweep(sweep_dir).runs["eval/status"].tolist() == ["ok"]


def test_a_killed_report_is_marked_and_the_next_run_finishes_it(sweep_dir, tmp_path, monkeypatch):
    out = tmp_path / "report"
    real = figures.report.write_report
    monkeypatch.setattr(
        figures.report, "write_report", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)
    )
    with pytest.raises(KeyboardInterrupt):
        figures.main([str(sweep_dir), "--out", str(out)])
    assert (out / figures.IN_PROGRESS).exists() and (out / "fig1_rate_sorted.png").exists()
    monkeypatch.setattr(figures.report, "write_report", real)
    (out / ".report.md.k1ll3d.tmp").write_bytes(b"torn")
    (out / ".grid.json.l1v3.tmp").write_bytes(b"a launch's")  # not this tool's: kept
    assert figures.main([str(sweep_dir), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob(".*")) == [".grid.json.l1v3.tmp"]
    assert not (out / figures.IN_PROGRESS).exists() and (out / "report.md").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "point", ["dims.parquet:1:after", "latents.parquet:1:after", "eval.parquet:1:before"]
)
def test_a_sigkilled_evaluate_is_flagged_and_its_next_start_redoes_it(sweep_dir, point):
    run = sweep_dir / NAME
    killed = cli("sweep.evaluate", str(run), timeout=300, VAE_SWEEP_KILL_AT=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (run / results.EVALUATING).exists()
    again = cli("sweep.evaluate", str(run), timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert not (run / results.EVALUATING).exists() and not list(run.rglob("*.tmp"))
    for p in run.glob("*.parquet"):
        pq.read_table(p)
