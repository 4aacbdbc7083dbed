"""Nothing wrong is ever silent (issue 23): what the per-key rules do not reach.

A resumed search explores instead of replaying its first trials and refuses objectives or directions
the stored study does not optimise; a multirun whose runs failed exits non-zero; the analysis counts
every run exactly once or names the file it skipped; Hydra's own errors, bad paths, launcher settings
and limits that depend on the data or a library are refused in one ``error:`` line, exit 2, before
anything is written; the read-only tools refuse what they cannot read instead of crashing. Each case
is a row of a table: the exit code, the one line (its needles name the key or path), files unchanged.
"""

from __future__ import annotations

import sys

import optuna
import pytest
from faults import snapshot
from hydra.core.global_hydra import GlobalHydra
from optuna.trial import TrialState

import sweep.engine as engine_mod
import sweep.stack as stack_mod
import sweep.train as train_mod
from sweep import search as search_mod
from sweep import status

# a search trial that trains in about a second: 64 images, one epoch, nothing logged
TINY_SEARCH = [
    "epochs=1",
    "data.subset=64",
    "data.val_size=64",
    "batch_size=32",
    "eval.iwae_k=2",
    "eval.latents_n=32",
    "eval.probe_train=64",
    "eval.fid_samples=16",
    "eval.kid_subset_size=8",
    "eval.kid_subsets=2",
    "logger=none",
    "progress=false",
    "device=cpu",
    "num_threads=1",
    "search.pruner=none",
    # dense1/dense1 only, as in the issue: every trial differs in latent_dim, lr and beta alone
    "search.space.encoder.choices=[dense1]",
    "search.space.decoder.choices=[dense1]",
    "search.space.latent_dim.choices=[2,4]",
]


def search_args(tmp_path, *more: str, experiment: str = "search_arch") -> list[str]:
    return [f"experiment={experiment}", f"results_dir={tmp_path}", *TINY_SEARCH, *more]


def load(tmp_path, name: str = "search_arch") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/searches/{name}/study.db")


# ------------------------------------------------------------ class 1: a resumed search explores


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
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    assert snapshot(one_trial_study) == before
    assert len(load(one_trial_study).trials) == 1


# ----------------------------------------------------- class 3: a multirun whose runs failed exits 1

TINY_RUN = [
    "encoder=dense1",
    "decoder=dense1",
    "latent_dim=2",
    "epochs=1",
    "data.subset=64",
    "data.val_size=64",
    "batch_size=32",
    "eval.iwae_k=2",
    "eval.latents_n=32",
    "eval.probe_train=64",
    "eval.fid_samples=16",
    "eval.kid_subset_size=8",
    "eval.kid_subsets=2",
    "logger=none",
    "progress=false",
    "device=cpu",
    "num_threads=1",
]


def multirun_in_process(monkeypatch, *args: str) -> int:
    """``python -m sweep.train -m <args>`` in this process (Hydra's basic launcher runs its jobs here, so
    a test can inject a fault); returns its exit status."""

    monkeypatch.setattr(sys, "argv", ["sweep.train", "-m", *args])
    GlobalHydra.instance().clear()
    try:
        train_mod.main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        GlobalHydra.instance().clear()
    return 0


def _fail_seeds(*seeds: int):
    """A ``train_epoch`` that raises for runs of these seeds (a fault no check can foresee)."""

    real = engine_mod.train_epoch

    def train_epoch(cohort, epoch):
        for cfg in cohort.cfgs:
            if cfg["seed"] in seeds:
                raise ValueError(f"an injected fault in seed {cfg['seed']}")
        return real(cohort, epoch)

    return train_epoch


@pytest.mark.parametrize(
    "failing, code, needle",
    [
        (None, 0, None),
        (1, 1, "error: 1 of 2 runs of the grid failed (L2_dense1_dense1_s1: ValueError: an injected fault"),
        (0, 1, "error: 1 of 2 runs of the grid failed (L2_dense1_dense1_s0: ValueError: an injected fault"),
        (
            "all",
            1,
            "error: 2 of 2 runs of the grid failed (L2_dense1_dense1_s0: ValueError: an injected fault",
        ),
        ("diverged", 0, None),  # a diverged run is a result (a single run that diverged exits 0 too)
    ],
    ids=["all ok", "the last run failed", "the first run failed", "every run failed", "a run diverged"],
)
def test_a_multirun_exits_1_when_a_run_failed_and_sweep_status_agrees(
    tmp_path, monkeypatch, capsys, failing, code, needle
):

    if failing == "diverged":
        real = stack_mod.recon_per_image
        monkeypatch.setattr(stack_mod, "recon_per_image", lambda logits, x: real(logits, x) * float("inf"))
    elif failing is not None:
        monkeypatch.setattr(
            engine_mod, "train_epoch", _fail_seeds(*((0, 1) if failing == "all" else (failing,)))
        )
    got = multirun_in_process(monkeypatch, f"results_dir={tmp_path}", *TINY_RUN, "seed=0,1")
    err = capsys.readouterr().err.strip().splitlines()
    assert got == code, err[-5:]
    if needle is not None:
        assert needle in err[-1] and "python -m sweep.rerun --failed" in err[-1], err[-1]
    assert status.main([str(tmp_path / "sweeps" / "default")]) == code
