"""The search's figures and tables (:mod:`analysis.search`) read from a ``study.db`` made here with known
trials, no training: every trial in the table once with its values and parameters, the importance of a
parameter the objective depends on above one it ignores, the Pareto front drawn, and a directory that is
not a search left alone."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from analysis import search

optuna.logging.set_verbosity(optuna.logging.WARNING)
# sweep.search names the objectives the same way
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
DISTS = {"lr": FloatDistribution(1e-4, 1e-2, log=True), "beta": FloatDistribution(0.5, 2.0)}


def stored_study(root, *, values, params, directions, names, states=None):
    """A study in ``root/study.db`` holding the given trials (one per entry of ``values``)."""
    storage = f"sqlite:///{root / search.STUDY_FILE}"
    study = optuna.create_study(study_name="s", storage=storage, directions=directions)
    study.set_metric_names(names)
    for i, (v, p) in enumerate(zip(values, params, strict=True)):
        state = states[i] if states else TrialState.COMPLETE
        done = state == TrialState.COMPLETE
        study.add_trial(create_trial(state=state, values=v if done else None, params=p, distributions=DISTS))
    return study


def test_a_two_objective_study_gives_its_trials_front_and_importances(tmp_path):
    rng = np.random.default_rng(0)
    params = [
        {"lr": float(10 ** rng.uniform(-4, -2)), "beta": float(rng.uniform(0.5, 2.0))} for _ in range(24)
    ]
    # the first objective depends on lr only, the second on beta only
    values = [[abs(np.log10(p["lr"]) + 3), (p["beta"] - 1) ** 2] for p in params]
    states = [TrialState.COMPLETE] * 23 + [TrialState.FAIL]
    stored_study(
        tmp_path,
        values=values,
        params=params,
        directions=["minimize", "minimize"],
        names=["val/distortion", "val/kl"],
        states=states,
    )
    figures, tables = search.search_outputs(tmp_path, tmp_path / "out")

    trials = tables["search_trials"]
    assert list(trials["trial"]) == list(range(24))
    assert list(trials["state"]) == ["complete"] * 23 + ["fail"]
    assert trials.loc[3, "val/distortion"] == pytest.approx(values[3][0])
    assert trials.loc[3, "param/beta"] == pytest.approx(params[3]["beta"])
    assert trials.loc[23, ["val/distortion", "val/kl"]].isna().all()

    imp = tables["search_importance"].pivot(index="objective", columns="parameter", values="importance")
    assert imp.loc["val/distortion", "lr"] > imp.loc["val/distortion", "beta"]
    assert imp.loc["val/kl", "beta"] > imp.loc["val/kl", "lr"]
    # fANOVA is seeded: the table is the same on a second read
    again = search.search_outputs(tmp_path, tmp_path / "again")[1]["search_importance"]
    assert again.equals(tables["search_importance"])

    assert figures["search_front"].is_file() and figures["search_front"].suffix == ".png"


def test_the_front_drawn_through_two_objectives_is_the_non_dominated_trials(tmp_path):
    values = [[1.0, 4.0], [2.0, 2.0], [3.0, 3.0], [4.0, 1.0], [5.0, 5.0]]  # [3,3] and [5,5] dominated
    params = [{"lr": 1e-3, "beta": 1.0 + i / 10} for i in range(5)]
    study = stored_study(
        tmp_path, values=values, params=params, directions=["minimize"] * 2, names=["a", "b"]
    )
    fig = search.fig_search_front.__wrapped__(search.load_study(tmp_path))
    (front,) = fig.axes[0].get_lines()
    assert list(front.get_xdata()) == [1.0, 2.0, 4.0] and list(front.get_ydata()) == [4.0, 2.0, 1.0]
    assert len(fig.axes[0].collections[0].get_offsets()) == 5  # every finished trial as a dot
    assert search.objective_names(study) == ["a", "b"]


def test_one_objective_and_one_finished_trial_gives_the_history_and_a_note_for_importances(tmp_path):
    stored_study(
        tmp_path,
        values=[[7.0], [0.0]],
        params=[{"lr": 1e-3, "beta": 1.0}, {"lr": 2e-3, "beta": 1.5}],
        directions=["maximize"],
        names=["val/elbo"],
        states=[TrialState.COMPLETE, TrialState.FAIL],
    )
    figures, tables = search.search_outputs(tmp_path, tmp_path / "out")
    assert figures["search_front"].is_file()
    assert tables["search_importance"]["note"].item() == "1 finished trial(s): importances need at least 2"


def test_a_directory_without_a_study_is_not_a_search(tmp_path):
    assert search.load_study(tmp_path) is None
    assert search.search_outputs(tmp_path, tmp_path / "out") == ({}, {})
    assert not (tmp_path / "out").exists()
