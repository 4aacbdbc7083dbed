"""Nothing wrong is ever silent (issue 23), here: a resumed search explores instead of replaying its first
trials, refuses a relaunch that changes what the stored study optimises, checks its objectives and its
sampler seed before any trial trains.
"""

from __future__ import annotations

import shlex

import optuna
import pytest
from conftest import one_error_line, search_args, snapshot
from optuna.trial import TrialState

from sweep import search as search_mod


def load(tmp_path, name: str = "search_arch") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/searches/{name}/study.db")


# ------------------------------------------------------------ class 1: a resumed search explores


def test_a_resumed_search_draws_a_new_trial(tmp_path):
    """The default tier's half of the test below (the two-objective study resumes there): a second
    launch with n_trials = 2 adds one trial with parameters the first did not draw."""
    for n in (1, 2):
        search_mod.search(search_args(tmp_path, f"search.n_trials={n}"))
    trials = load(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert trials[0].params != trials[1].params


@pytest.mark.slow  # six launches per study
@pytest.mark.parametrize("experiment", ["search_arch", "search_pareto"])
def test_a_search_relaunched_one_trial_at_a_time_never_replays_a_trial(tmp_path, experiment):
    """Launched with n_trials = 1, 2, 3 (the issue's case), each launch adds one trial with new
    parameters; the same three launches over a fresh directory draw the same three (reproducible)."""
    extra = [] if experiment == "search_arch" else ["search.space.encoder.choices=[dense1]"]
    for root in (tmp_path / "a", tmp_path / "b"):
        for n in (1, 2, 3):
            search_mod.search(search_args(root, f"search.n_trials={n}", *extra, experiment=experiment))
    a, b = load(tmp_path / "a", experiment), load(tmp_path / "b", experiment)
    assert [t.state for t in a.trials] == [TrialState.COMPLETE] * 3
    params = [tuple(sorted(t.params.items())) for t in a.trials]
    assert len(set(params)) == 3, params
    assert params == [tuple(sorted(t.params.items())) for t in b.trials]


STUDY_MISMATCH = [
    (
        ["search.directions=[maximize]"],
        ["search.directions=['maximize'] disagrees with the study", "minimize"],
    ),
    (
        ["search.objectives=[val/kl]"],
        ["search.objectives=['val/kl'] disagrees with the study", "valid: ['val/neg_elbo']"],
    ),
    (
        ["search.objectives=[val/recon,val/kl]", "search.directions=[minimize,minimize]"],
        ["search.objectives=['val/recon', 'val/kl'] disagrees with the study"],
    ),
]


@pytest.fixture(scope="module")
def one_trial_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    search_mod.search(search_args(root, "search.n_trials=1"))
    return root


@pytest.mark.parametrize("more, needles", STUDY_MISMATCH, ids=[" ".join(m) for m, _ in STUDY_MISMATCH])
def test_a_relaunch_that_changes_what_the_study_optimises_is_refused(one_trial_study, capsys, more, needles):
    before = snapshot(one_trial_study)
    assert search_mod.main(search_args(one_trial_study, "search.n_trials=2", *more)) == 2
    line = one_error_line(capsys.readouterr().err)
    for needle in needles:
        assert needle in line, (needle, line)
    assert snapshot(one_trial_study) == before
    assert len(load(one_trial_study).trials) == 1


# ------------------------------------- class 4: a search's objectives are checked before it trains

BAD_OBJECTIVES = [
    (
        ["search.objectives=[val/no_such_metric]"],
        "search.objectives='val/no_such_metric' is not a numeric column",
    ),
    (["search.objectives=[run_name]"], "search.objectives='run_name' is not a numeric column"),
    (["search.objectives=[eval/status]"], "search.objectives='eval/status' is not a numeric column"),
    (["search.objectives=[val/neg_elbo/]"], "valid: epochs_done, params/encoder"),
    (["search.objectives=val/neg_elbo"], "search.objectives='val/neg_elbo' must be a list"),
    (["search.directions=minimize"], "search.directions='minimize' must be a list"),
    (
        ["search.objectives=[val/kl,val/kl]", "search.directions=[minimize,minimize]"],
        "search.objectives=['val/kl', 'val/kl'] repeats an objective",
    ),
    (["search.objectives=[]", "search.directions=[]"], "must pair up"),
    (["search.directions=[minimise]"], "search.directions='minimise' is unknown; valid: minimize, maximize"),
]


@pytest.mark.parametrize("more, needle", BAD_OBJECTIVES, ids=[" ".join(m) for m, _ in BAD_OBJECTIVES])
def test_a_bad_objective_is_refused_before_any_trial_trains_or_the_study_is_written(
    tmp_path, capsys, more, needle
):
    (tmp_path / "keep").write_text("x\n")
    before = snapshot(tmp_path)
    assert search_mod.main(search_args(tmp_path, "search.n_trials=1", *more)) == 2
    assert needle in one_error_line(capsys.readouterr().err)
    assert snapshot(tmp_path) == before and not (tmp_path / "searches").exists()


@pytest.mark.parametrize("value", [2**32, 2**64])
def test_a_search_seed_beyond_the_samplers_range_is_refused_by_its_key(tmp_path, capsys, value):
    assert search_mod.main(search_args(tmp_path, f"search.seed={value}")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: search.seed={value} is out of range; valid: 0..4294967295"]
    assert not tmp_path.joinpath("searches").exists()


# ------------------------- issue 35: a search refuses what it cannot continue, leaving the study as it is
SPACE_CHANGES = [
    (["search.space.latent_dim.choices=[8,16]"], "search.space.latent_dim={'type': 'categorical', 'choices': [8, 16]} disagrees with the study"),
    (["search.space.lr.high=0.01"], "search.space.lr={'type': 'float', 'low': 0.0001, 'high': 0.01, 'log': True} disagrees"),
    (
        ["search.space.latent_dim.type=int", "+search.space.latent_dim.low=2", "+search.space.latent_dim.high=4"],
        "whose trial 0 drew latent_dim from CategoricalDistribution(choices=(2, 4))",
    ),
    (["+search.space.seed={type:categorical,choices:[0,1]}"], "search.space.seed={'type': 'categorical', 'choices': [0, 1]} is not in the study"),
    (["search.n_trials=100000000000000000000000"], "search.n_trials=100000000000000000000000 is out of range; valid: 1..9223372036854775807"),
]


@pytest.mark.parametrize("more, needle", SPACE_CHANGES, ids=[" ".join(m)[:50] for m, _ in SPACE_CHANGES])
def test_a_relaunch_with_a_changed_space_is_refused_by_its_key_and_the_study_is_untouched(
    one_trial_study, capsys, more, needle
):
    before = snapshot(one_trial_study)
    assert search_mod.main(search_args(one_trial_study, "search.n_trials=2", *more)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert needle in line, line
    assert snapshot(one_trial_study) == before  # no RUNNING trial asked for, no trial directory
    assert [t.state for t in load(one_trial_study).trials] == [TrialState.COMPLETE]


def _sqlite_without_optuna(path):
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (x)")


def _another_study(path):
    optuna.create_study(study_name="other", storage=f"sqlite:///{path}")


# (what study.db holds before the first launch, the needle): each refused, the file left as it was
NOT_A_STUDY = [
    (lambda p: p.write_bytes(b""), "study.db is empty (0 bytes): no search wrote it so; valid: move it away"),
    (lambda p: p.write_bytes(b"not a database\n"), "study.db is not an SQLite database"),
    (_sqlite_without_optuna, "study.db is not an Optuna study database (no such table: studies)"),
    (_another_study, "study.db holds no study named 'search_arch'"),
]


@pytest.mark.parametrize("make, needle", NOT_A_STUDY, ids=["0 bytes", "not SQLite", "no Optuna tables", "another study"])
def test_a_study_db_that_is_not_this_searchs_study_is_refused_and_left_as_it_is(tmp_path, capsys, make, needle):
    db = tmp_path / "searches" / "search_arch" / "study.db"
    db.parent.mkdir(parents=True)
    make(db)
    before = db.read_bytes()
    assert search_mod.main(search_args(tmp_path, "search.n_trials=1")) == 2
    assert needle in one_error_line(capsys.readouterr().err)
    assert db.read_bytes() == before and sorted(p.name for p in db.parent.iterdir()) == ["study.db"]


def test_two_searches_starting_one_study_at_once_share_it(tmp_path):
    """Both create the study at the same moment (a barrier): each gets it, and there is one study."""
    import threading

    cfg = search_mod.compose_cfg(search_args(tmp_path, "search.n_trials=1"))
    barrier, got, errors = threading.Barrier(2), [], []

    def open_it():
        barrier.wait()
        try:
            got.append(search_mod.make_study(cfg)._study_id)
        except Exception as exc:  # noqa: BLE001 - the test's subject
            errors.append(exc)

    for _ in range(3):  # three fresh starts: the race is not won the same way each time
        for p in (tmp_path / "searches").glob("*/*"):
            p.unlink()
        threads = [threading.Thread(target=open_it) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == [] and len(got) == 6
    study = load(tmp_path)
    assert study.metric_names == ["val/neg_elbo"] and study.trials == []
    assert sorted(p.name for p in (tmp_path / "searches" / "search_arch").iterdir()) == ["study.db"]


def test_a_search_that_fails_after_a_trial_trained_says_so_and_how_to_go_on(tmp_path, monkeypatch, capsys):
    """Not "nothing was started": the trial trained, and the same command resumes it."""

    def broken(*args):
        raise OSError("No space left on device")

    monkeypatch.setattr(search_mod, "objective_values", broken)
    args = search_args(tmp_path, "search.n_trials=1")
    assert search_mod.main(args) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line == (
        "error: the search stopped in trial 0 (OSError: No space left on device); the study keeps its "
        f"trials: `{shlex.join(['python', '-m', 'sweep.search', *args])}` goes on from there"
    )
    monkeypatch.undo()
    assert search_mod.main(args) == 0  # the trial left running is resumed
    assert [t.state for t in load(tmp_path).trials] == [TrialState.COMPLETE]
