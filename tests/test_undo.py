"""sweep.undo: a refused submission puts back what its launch wrote and is still its own, and nothing of
another launch's (tests/test_refusals_limits.py drives it through a real refused Slurm launch)."""

from __future__ import annotations

import fcntl
import json
import os

from conftest import tree

from sweep import undo
from sweep.layout import GRID_FILE
from sweep.lock import GRID_LOCK_NAME


def launch_writes(sweep, grid=b'{"launch": "mine"}') -> None:
    """What a launch writes before it submits: grid.json, the lock file, multirun.yaml."""
    sweep.mkdir(parents=True, exist_ok=True)
    (sweep / GRID_FILE).write_bytes(grid)
    os.close(os.open(sweep / GRID_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644))  # as sweep.lock opens it
    (sweep / "multirun.yaml").write_text("hydra: mine\n")


def test_a_created_sweep_directory_is_removed_and_an_existing_one_put_back_byte_for_byte(tmp_path):
    fresh = tmp_path / "results" / "sweeps" / "new"
    undo.remember([fresh])
    launch_writes(fresh)
    undo.wrote()
    undo.submitting(fresh / ".submitit")
    (fresh / ".submitit").mkdir()
    (fresh / ".submitit" / "abc_submitted.pkl").write_bytes(b"x")
    undo.undo()
    assert not (tmp_path / "results").exists()  # every directory it created, once empty

    old = tmp_path / "old"
    launch_writes(old, b'{"launch": "first"}')
    (old / ".submitit").mkdir()
    (old / ".submitit" / "1_0").mkdir()  # an earlier launch's task logs
    before = tree(old)
    undo.remember([old])
    launch_writes(old)
    undo.wrote()
    undo.submitting(old / ".submitit")
    (old / ".submitit" / "def_submitted.pkl").write_bytes(b"x")
    undo.undo()
    assert tree(old) == before


def test_what_another_launch_wrote_meanwhile_stays(tmp_path):
    # remembered absent; then this launch and another write into it before the refusal comes back
    sweep = tmp_path / "results" / "sweep"
    undo.remember([sweep])
    launch_writes(sweep)
    undo.wrote()
    undo.submitting(sweep / ".submitit")
    other = {"launch": "other"}
    (sweep / GRID_FILE).write_text(json.dumps(other))  # the other launch's record, written since
    (sweep / "L25_dense1_dense1_s0").mkdir()
    (sweep / "L25_dense1_dense1_s0" / "COMPLETE").write_text("{}")  # a run it trained
    (sweep / ".submitit").mkdir()
    (sweep / ".submitit" / "ghi_submitted.pkl").write_bytes(b"mine")
    held = os.open(sweep / GRID_LOCK_NAME, os.O_RDWR)  # and it holds the sweep's lock file
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        changed = undo._remove_unheld_lock(sweep / GRID_LOCK_NAME)
        assert changed is False and (sweep / GRID_LOCK_NAME).exists()  # held: kept
    finally:
        fcntl.flock(held, fcntl.LOCK_UN)
        os.close(held)
    undo.undo()
    assert json.loads((sweep / GRID_FILE).read_text()) == other  # rewritten since: theirs
    assert (sweep / "L25_dense1_dense1_s0" / "COMPLETE").exists()  # never a recursive delete
    assert not (sweep / ".submitit").exists()  # this submission's file, and the folder it made
    assert not (sweep / "multirun.yaml").exists()  # still this launch's: removed


def test_after_a_submission_went_through_only_the_later_batch_s_files_go(tmp_path):
    sweep = tmp_path / "sweep"
    undo.remember([sweep])
    launch_writes(sweep)
    undo.wrote()
    undo.submitting(sweep / ".submitit")
    (sweep / ".submitit").mkdir()
    (sweep / ".submitit" / "7_0").mkdir()  # batch 1's tasks: submitted, running
    undo.forget()
    assert undo.submitted()
    undo.wrote()
    undo.submitting(sweep / ".submitit")
    (sweep / ".submitit" / "jkl_submitted.pkl").write_bytes(b"x")  # batch 2's, refused
    undo.undo()
    assert sorted(p.name for p in (sweep / ".submitit").iterdir()) == ["7_0"]
    assert (sweep / GRID_FILE).read_bytes() == b'{"launch": "mine"}' and (sweep / "multirun.yaml").exists()


def test_a_refused_later_batch_says_the_earlier_ones_run_on():
    from submitit.core.utils import FailedJobError

    from sweep import slurm

    exc = FailedJobError("sbatch: error: QOSMaxSubmitJobPerUserLimit")
    first = str(slurm.refused_submission(exc, {"partition": "gpu"}))
    later = str(slurm.refused_submission(exc, {"partition": "gpu"}, earlier=True))
    assert "; nothing was submitted. Sent: hydra.launcher.partition='gpu'" in first
    assert "; this batch was not submitted (earlier batches were, and run on). Sent:" in later
