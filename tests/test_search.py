"""sweep.search: Optuna through Hydra's compose API; resumable, exact n_trials, failures and pruning."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest
from conftest import TINY
from optuna.trial import TrialState

import sweep.slot as slot_mod
import sweep.stack as stack_mod
from analysis import figures
from analysis.collect import load_sweep
from sweep import search as search_mod

SPACE = [
    "search.space={latent_dim:{type:categorical,choices:[2,4]},"
    "encoder:{type:categorical,choices:[dense1,conv1]},decoder:{type:categorical,choices:[dense1,conv1]}}"
]


def args(tmp_path, experiment="search_arch", *more):
    return [f"experiment={experiment}", f"results_dir={tmp_path}", *TINY, "epochs=2", *SPACE, *more]


@pytest.mark.slow
def test_an_interrupted_search_continues_and_ends_with_exactly_n_trials(tmp_path, monkeypatch):
    real = slot_mod.train_epoch
    seen = []

    def interrupt_third_trial(cohort, epoch):
        (cfg,) = cohort.cfgs
        seen.append((cfg["trial"], epoch))
        if cfg["trial"] == 2 and epoch == 1:
            raise KeyboardInterrupt
        return real(cohort, epoch)

    monkeypatch.setattr(slot_mod, "train_epoch", interrupt_third_trial)
    with pytest.raises(KeyboardInterrupt):
        search_mod.search(args(tmp_path, "search_arch", "search.n_trials=4", "search.pruner=none"))
    study = optuna.load_study(
        study_name="search_arch", storage=f"sqlite:///{tmp_path}/searches/search_arch/study.db"
    )
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]

    monkeypatch.setattr(slot_mod, "train_epoch", real)
    resumed = []
    monkeypatch.setattr(
        slot_mod, "train_epoch", lambda c, e: resumed.append((c.cfgs[0]["trial"], e)) or real(c, e)
    )
    study = search_mod.search(args(tmp_path, "search_arch", "search.n_trials=4", "search.pruner=none"))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert resumed[0] == (2, 1)  # trial 2 resumed from its checkpoint after epoch 1, not retrained
    assert [r for r in resumed if r[0] == 2] == [(2, 1)]
    assert search_mod.search(args(tmp_path, "search_arch", "search.n_trials=4")).trials.__len__() == 4
    runs = load_sweep(tmp_path / "searches" / "search_arch").runs
    assert sorted(runs["trial"]) == [0, 1, 2, 3] and (runs["status"] == "ok").all()
    assert all(name.endswith(f"_t{t}") for name, t in zip(runs["run_name"], runs["trial"], strict=True))


@pytest.mark.slow
def test_multi_objective_search_yields_a_pareto_set(tmp_path):
    study = search_mod.search(args(tmp_path, "search_pareto", "search.n_trials=3"))
    assert len(study.directions) == 2 and len(study.trials) == 3
    front = study.best_trials
    assert front and all(len(t.values) == 2 for t in front)
    vals = [t.values for t in study.trials if t.state == TrialState.COMPLETE]
    for t in front:  # nothing completed dominates a Pareto point
        assert not any(v[0] <= t.values[0] and v[1] <= t.values[1] and v != t.values for v in vals)
    # analysis of a search directory adds the Pareto front figure and the importance table
    root = tmp_path / "searches" / "search_pareto"
    assert figures.main([str(root)]) == 0
    out = root / "figures"
    assert (out / "search_front.png").stat().st_size > 0 and (out / "search_front.pdf").stat().st_size > 0
    imp = pd.read_csv(out / "search_importance.csv")
    assert set(imp["objective"]) == {"val/recon", "val/kl"}
    assert set(imp["parameter"]) == set(study.trials[0].params)
    assert imp.groupby("objective")["importance"].sum().round(6).eq(1.0).all()
    assert "search_front" in (out / "report.md").read_text()


def test_diverging_and_invalid_trials_are_failed_not_fatal_and_hopeless_ones_are_pruned(
    tmp_path, monkeypatch
):
    base = args(tmp_path, "search_arch", "search.n_trials=4", "search.pruner_startup_trials=1", "epochs=3")
    study = search_mod.make_study(search_mod.compose_cfg(base))
    study.enqueue_trial({"latent_dim": 4, "encoder": "dense1", "decoder": "dense1"})  # good
    study.enqueue_trial({"latent_dim": 4, "encoder": "dense1", "decoder": "conv1"})  # will be made to diverge
    study.enqueue_trial({"latent_dim": 2, "encoder": "conv1", "decoder": "conv1"})  # made hopeless: pruned
    study.enqueue_trial({"latent_dim": 2, "encoder": "dense1", "decoder": "conv1"})  # invalid batch size
    real_recon = stack_mod.recon_per_image

    def faults(*args):
        trial = faults.cfg["trial"]
        # trial 2 hopeless (5 × the loss) yet under the divergence bound (10 × 784 ln 2 nats)
        return real_recon(*args) * (float("nan") if trial == 1 else 5.0 if trial == 2 else 1.0)

    real_run = search_mod.run_trial

    def run_trial(study, trial, base_, sc):
        if trial.number == 3:
            base_ = [*base_, "batch_size=500"]
        return real_run(study, trial, base_, sc)

    real_epoch = slot_mod.train_epoch

    def epoch(cohort, e):
        (faults.cfg,) = cohort.cfgs
        return real_epoch(cohort, e)

    monkeypatch.setattr(stack_mod, "recon_per_image", faults)
    monkeypatch.setattr(slot_mod, "train_epoch", epoch)
    monkeypatch.setattr(search_mod, "run_trial", run_trial)
    study = search_mod.search(base)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, TrialState.FAIL]
    runs = load_sweep(tmp_path / "searches" / "search_arch").runs.set_index("trial")
    assert runs.loc[1, "status"] == "diverged" and runs.loc[2, "status"] == "pruned"
    assert 1 <= runs.loc[2, "epochs_done"] < 3  # stopped before its 3 epochs
    assert 3 not in runs.index  # rejected before anything was written


@pytest.mark.parametrize(
    "more, message",
    [
        (["search.sampler=grid"], "search.sampler='grid' is unknown; valid: tpe, nsga2, random"),
        (["search.n_trials=0"], "search.n_trials=0 is out of range"),
        (["search.directions=[minimize,maximize]"], "must pair up"),
    ],
)
def test_bad_search_config_is_named(tmp_path, more, message, capsys):
    assert search_mod.main(args(tmp_path, "search_arch", *more)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "searches").exists()


def test_a_non_search_experiment_is_refused(tmp_path, capsys):
    assert search_mod.main([f"results_dir={tmp_path}"]) == 2
    assert "no `search` node" in capsys.readouterr().err
