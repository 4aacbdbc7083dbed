"""Cohorts: runs of one architecture trained as one stacked model train what they train alone, keep
their own randomness, files, status and resume, and leave without disturbing the others."""

from __future__ import annotations

import math
import re

import pyarrow.parquet as pq
import pytest
import torch
from conftest import interrupt_in_epoch, kl_tolerance, make_cfg, spy_epochs

import sweep.cohort as cohort_mod
from sweep import results
from sweep.cohort import Cohort
from sweep.data import load_data
from sweep.device import tf32_on_cuda
from sweep.engine import Settings, train_jobs
from sweep.losses import recon_per_image
from sweep.member import Job
from sweep.models import build_model

CONV = ["encoder=conv", "encoder.depth=2", "decoder=conv", "decoder.depth=3", "latent_dim=4"]
CPU = torch.device("cpu")
# three members of one architecture whose loss knobs all differ: each must train as it does alone
KNOBS = [{}, {"beta": 2.0, "warmup_epochs": 1.5}, {"free_bits": 0.05, "reduction": "paper"}]


def members(*overrides, arch=None, seeds=(0, 1, 2)):
    base = make_cfg(*overrides) if arch is None else make_cfg(*overrides, arch=arch)
    return [{**base, "seed": s, "loss": {**base["loss"], **k}} for s, k in zip(seeds, KNOBS, strict=False)]


def _cancelled_by_batch_norm(cfg, data) -> set[str]:
    """Parameters whose gradient is zero in exact arithmetic, such as a bias ahead of a BatchNorm (through
    a skip connection too), which the norm's batch mean subtracts. Adam would step such an element by
    ±lr on rounding noise alone, the running means would follow, and a stacked and a lone run would
    part there by up to lr per step whatever the kernels: found as the gradients that vanish in float64
    (below 1e-9, where the others are above 1e-4). The models have none (sweep.models._bias)."""
    from sweep.losses import kl_per_dim

    torch.manual_seed(0)
    model = build_model(cfg).double().train()
    x = data.train.x[:50].double()
    logits, mu, logvar = model(x)
    (
        recon_per_image(logits, x, model.likelihood, getattr(model, "log_scale", None)).mean()
        + kl_per_dim(mu, logvar).sum(1).mean()
    ).backward()
    return {n for n, p in model.named_parameters() if float(p.grad.abs().max()) < 1e-9}


def test_each_member_draws_exactly_the_randomness_it_draws_alone():
    cfgs = members()
    data = load_data(cfgs[0], CPU)
    cohort = Cohort(cfgs, data, CPU)
    for epoch in range(2):  # the generators carry on from epoch to epoch
        cohort.draw_epoch()
        for i, cfg in enumerate(cfgs):
            alone = Cohort([cfg], data, CPU)
            for _ in range(epoch + 1):
                alone.draw_epoch()
            assert torch.equal(cohort.order[i], alone.order[0])
            assert torch.equal(cohort.bits[i], alone.bits[0])
            assert torch.equal(cohort.eps[i], alone.eps[0])
    assert not torch.equal(cohort.eps[0], cohort.eps[1])  # and the members' streams differ


# BatchNorm's running statistics are buffers updated in place under vmap, each member its own row; a
# learned likelihood scale is a parameter of the VAE outside encoder and decoder
RES_BN = ["encoder=res", "encoder.width=8", "decoder=res2", "decoder.width=8", "latent_dim=4", "norm=batch"]
LEARNED = ["encoder=dense", "encoder.width=32", "decoder=conv2", "latent_dim=4", "data.likelihood=logistic"]


@pytest.mark.parametrize(
    "arch", [None, CONV, RES_BN, LEARNED], ids=["dense-conv", "conv-conv", "res-res-batchnorm", "logistic"]
)
def test_a_member_trains_what_it_trains_alone_to_float32_rounding_over_its_first_epoch(arch):
    """Same initial weights, data order, binarisation, noise and knobs; only the batched kernels differ
    (bmm and grouped convolutions sum in another order than the one-model kernels). Compared over the
    first epoch (4 steps), before Adam can amplify a last-bit difference: an element whose gradient is
    ~0 may step by ±lr either way, so elementwise weight bounds depend on the CPU's kernels (seen:
    3e-4 on one Intel machine after 8 steps); the norm-relative difference is bounded (1e-4). What
    float32 rounding bounds is a sum's error relative to the magnitudes of the terms summed: about
    √n·u ≈ 5e-6 for n ≤ 6400 terms (u = 6e-8), hence 1e-5 of them. recon, loss and neg_elbo are sums
    of non-negative terms, so that is 1e-5 of the value itself. The KL is not: each term
    ½(μ² + σ² − 1 − log σ²) is a difference of O(1) numbers, and after cancellation the KL is 0.03
    nats here against ~6 nats of magnitudes (an AMD EPYC differed by 1.1e-5 of the 0.03), so it is
    held to 1e-5 of the magnitudes (:func:`conftest.kl_tolerance`)."""
    cfgs = members("epochs=1", arch=arch)
    data = load_data(cfgs[0], CPU)
    assert not _cancelled_by_batch_norm(cfgs[0], data)  # every parameter learns from the loss
    cohort = Cohort(cfgs, data, CPU)
    got = cohort.train_epoch(0)
    for i, cfg in enumerate(cfgs):
        alone = Cohort([cfg], data, CPU)
        want = alone.train_epoch(0)[0]
        assert got[i]["beta"] == want["beta"]
        for k in ("loss", "recon", "neg_elbo"):
            assert got[i][k] == pytest.approx(want[k], rel=1e-5), (i, k)
        tol = kl_tolerance(want["kl"], cfg["latent_dim"], rel=1e-5)
        assert got[i]["kl"] == pytest.approx(want["kl"], abs=tol), (i, "kl")
        a, b = cohort.checkpoints()[i], alone.checkpoints()[0]
        weights = [n for n in a["model"] if "running_" not in n and "num_batches" not in n]
        diff = math.sqrt(sum(float((a["model"][n] - b["model"][n]).pow(2).sum()) for n in weights))
        norm = math.sqrt(sum(float(b["model"][n].pow(2).sum()) for n in weights))
        assert diff / norm < 1e-4, (i, diff / norm)
        assert torch.equal(a["g_data"], b["g_data"]) and torch.equal(a["g_noise"], b["g_noise"])
        assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
        stats = [n for n in b["model"] if "running_" in n]
        assert bool(stats) == (arch is RES_BN)  # each member's running statistics, as alone
        for n in stats:  # batch statistics of agreeing weights: float32 rounding of their sums
            torch.testing.assert_close(a["model"][n], b["model"][n], rtol=1e-4, atol=1e-5)
        assert all(int(a["model"][n]) == cohort.steps for n in a["model"] if "num_batches" in n)
        # evaluation reads the running statistics: the member and the lone run evaluate alike too
        x = data.val.x[:200]
        evals = []
        for state in (a, b):
            model = build_model(cfg)
            model.load_state_dict(state["model"])
            with torch.no_grad():
                logits, mu, logvar = model.eval()(x, torch.Generator().manual_seed(0))  # one z draw
                evals.append(
                    float(
                        recon_per_image(logits, x, model.likelihood, getattr(model, "log_scale", None)).mean()
                    )
                )
        assert evals[0] == pytest.approx(evals[1], rel=1e-5), (i, evals)


def test_a_cohort_rebuilt_from_member_checkpoints_continues_exactly():
    cfgs = members("epochs=2")
    data = load_data(cfgs[0], CPU)
    straight = Cohort(cfgs, data, CPU)
    first = straight.train_epoch(0)
    states = straight.checkpoints()
    second = straight.train_epoch(1)
    rebuilt = Cohort(cfgs, data, CPU, states)
    assert rebuilt.train_epoch(1) == second
    for i in range(3):
        a, b = rebuilt.checkpoints()[i], straight.checkpoints()[i]
        assert all(torch.equal(a["model"][n], b["model"][n]) for n in a["model"])
    assert first != second


def test_a_member_with_nan_weights_spoils_no_other_member():
    cfgs = members("epochs=1")
    data = load_data(cfgs[0], CPU)
    clean = Cohort(cfgs, data, CPU)
    poisoned = Cohort(cfgs, data, CPU)
    with torch.no_grad():
        for v in poisoned.stack.params.values():
            v[1].fill_(float("nan"))
    want, got = clean.train_epoch(0), poisoned.train_epoch(0)
    assert math.isnan(got[1]["loss"])
    for i in (0, 2):
        assert got[i] == want[i]  # the same batched kernels: bit for bit
        a, b = poisoned.checkpoints()[i], clean.checkpoints()[i]
        assert all(torch.equal(a["model"][n], b["model"][n]) for n in a["model"])


# ---------------------------------------------------------------------------------------- engine
def jobs_of(tmp_path, cfgs):
    return [Job(c, tmp_path / f"s{c['seed']}") for c in cfgs]


STACKED = Settings(max_members=8, slots=1, graphs=False, eval_workers=0)
ALONE = Settings(max_members=1, slots=1, graphs=False, eval_workers=0)


def epochs_table(run_dir):
    return pq.read_table(run_dir / "epochs.parquet").to_pandas().drop(columns=["seconds"])


def test_the_engine_stacks_members_and_each_run_ends_as_it_does_alone(tmp_path):
    """Whole runs (8-12 steps in these engine tests) end within 1e-4 relative of their lone twins.
    Why rounding stays that small: Adam divides each gradient by its own magnitude, so a per-step
    gradient difference of ~√n·u ≈ 5e-6 relative moves a weight by ~5e-6·lr per step, ~1e-7 over 12
    steps; the elements whose ~0 gradient flips sign step by ±lr, but the loss is stationary in them,
    so they change it only at second order (lr² ≈ 1e-6 times the curvature). Measured on an AMD
    EPYC: at most 1.3e-7 relative. neg_elbo is a sum of non-negative terms, so its bound is relative
    to its value; the KL's is relative to the magnitudes it cancels (:func:`conftest.kl_tolerance`)."""
    cfgs = members("epochs=2")
    with pytest.MonkeyPatch.context() as mp:
        calls = spy_epochs(mp)
        stacked = train_jobs(jobs_of(tmp_path / "stacked", cfgs), STACKED)
    assert calls == [(3, 0), (3, 1)]  # one cohort of three, two epochs
    alone = train_jobs(jobs_of(tmp_path / "alone", cfgs), ALONE)
    for row_s, row_a in zip(stacked, alone, strict=True):
        assert row_s["status"] == row_a["status"] == "ok" and row_s["run_name"] == row_a["run_name"]
        for k in ("val/neg_elbo", "test/neg_elbo"):
            assert row_s[k] == pytest.approx(row_a[k], rel=1e-4), k
        tol = kl_tolerance(row_a["test/kl"], cfgs[0]["latent_dim"], rel=1e-4)
        assert row_s["test/kl"] == pytest.approx(row_a["test/kl"], abs=tol)
    for c in cfgs:
        s, a = tmp_path / "stacked" / f"s{c['seed']}", tmp_path / "alone" / f"s{c['seed']}"
        files = lambda d: sorted(re.sub(r"tfevents\..*", "tfevents", p.name) for p in d.iterdir())  # noqa: E731
        assert files(s) == files(a)  # event file names hold a time stamp and a pid
        assert not (s / "last.pt").exists() and results.read_complete(s)["status"] == "ok"
        ts, ta = epochs_table(s), epochs_table(a)
        assert list(ts["split"]) == list(ta["split"]) and list(ts["beta"]) == list(ta["beta"])
        assert ts["loss"].to_numpy() == pytest.approx(ta["loss"].to_numpy(), rel=1e-4)


def test_a_diverging_member_is_marked_and_dropped_and_the_others_finish(tmp_path, monkeypatch):
    cfgs = members("epochs=2")
    real_build = cohort_mod.build_model

    def nan_for_seed_1(cfg):
        model = real_build(cfg)
        if cfg["seed"] == 1:
            with torch.no_grad():
                next(model.decoder.parameters()).fill_(float("nan"))
        return model

    monkeypatch.setattr(cohort_mod, "build_model", nan_for_seed_1)
    sizes = spy_epochs(monkeypatch)
    rows = train_jobs(jobs_of(tmp_path, cfgs), STACKED)
    assert [r["status"] for r in rows] == ["ok", "diverged", "ok"]
    assert rows[1]["diverged_epoch"] == 1 and rows[1]["epochs_done"] == 1
    assert sizes == [(3, 0), (2, 1)]  # the diverged member left after epoch 1
    assert pq.read_table(tmp_path / "s1" / "eval.parquet").to_pylist()[0]["eval/status"] == "skipped"
    monkeypatch.undo()
    alone = train_jobs(jobs_of(tmp_path / "alone", [cfgs[0], cfgs[2]]), ALONE)
    for got, want in zip([rows[0], rows[2]], alone, strict=True):
        assert got["test/neg_elbo"] == pytest.approx(want["test/neg_elbo"], rel=1e-4)


def test_members_with_different_lengths_leave_as_they_finish(tmp_path):
    short, long_ = members("epochs=1")[0], {**members("epochs=3")[1]}
    rows = train_jobs(jobs_of(tmp_path, [short, long_]), STACKED)
    assert [r["status"] for r in rows] == ["ok", "ok"] and [r["epochs_done"] for r in rows] == [1, 3]
    alone = train_jobs(jobs_of(tmp_path / "alone", [short, long_]), ALONE)
    for got, want in zip(rows, alone, strict=True):
        assert got["test/neg_elbo"] == pytest.approx(want["test/neg_elbo"], rel=1e-4)


def test_an_interrupted_cohort_resumes_each_member_from_its_own_checkpoint(tmp_path, monkeypatch):
    cfgs = members("epochs=3")
    straight = train_jobs(jobs_of(tmp_path / "straight", cfgs), STACKED)
    with pytest.MonkeyPatch.context() as mp:
        interrupt_in_epoch(mp, 2)
        with pytest.raises(KeyboardInterrupt):
            train_jobs(jobs_of(tmp_path / "resumed", cfgs), STACKED)
    for c in cfgs:
        assert (
            torch.load(tmp_path / "resumed" / f"s{c['seed']}" / "last.pt", weights_only=False)["epoch"] == 2
        )
    resumed_epochs = spy_epochs(monkeypatch)
    rows = train_jobs(jobs_of(tmp_path / "resumed", cfgs), STACKED)
    assert resumed_epochs == [(3, 2)]  # one cohort, only the unfinished epoch
    drop = {"wall_seconds", "started_at", "finished_at"}
    for got, want in zip(rows, straight, strict=True):
        assert {k: v for k, v in got.items() if k not in drop} == {
            k: v for k, v in want.items() if k not in drop
        }


@pytest.mark.slow
def test_slots_train_cohorts_in_threads_with_the_same_results(tmp_path):
    cfgs = members("epochs=1", seeds=(0,)) + members("epochs=1", arch=CONV, seeds=(0,))
    jobs = lambda root: [Job(c, root / str(i)) for i, c in enumerate(cfgs)]  # noqa: E731
    one = train_jobs(jobs(tmp_path / "one"), ALONE)
    both = train_jobs(jobs(tmp_path / "two"), Settings(max_members=1, slots=2, graphs=False, eval_workers=0))
    drop = {"wall_seconds", "started_at", "finished_at"}
    for got, want in zip(both, one, strict=True):
        assert got["status"] == "ok"
        assert {k: v for k, v in got.items() if k not in drop} == {
            k: v for k, v in want.items() if k not in drop
        }


def test_jobs_refused_before_training_keep_their_error_and_the_others_train(tmp_path):
    good = members("epochs=1", seeds=(0,))[0]
    bad = {**good, "seed": -1}
    rows = train_jobs([Job(good, tmp_path / "good"), Job(bad, tmp_path / "bad")], STACKED)
    assert rows[0]["status"] == "ok"
    assert isinstance(rows[1], ValueError) and "seed=-1" in str(rows[1])
    assert not (tmp_path / "bad").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_a_graphed_cohort_trains_what_the_eager_one_trains_on_cuda():
    """Replaying the captured step runs the same kernels as the eager step; cuDNN's backward may use
    atomics, so compare to float32 rounding (as on CPU)."""
    cuda = torch.device("cuda")
    cfgs = members("epochs=2", "device=cuda", arch=CONV)
    data = load_data(cfgs[0], cuda)
    with tf32_on_cuda(cuda), cohort_mod.on_stream(cuda):
        eager, graphed = Cohort(cfgs, data, cuda), Cohort(cfgs, data, cuda, graphs=True)
        for epoch in range(2):
            want, got = eager.train_epoch(epoch), graphed.train_epoch(epoch)
            for g, w in zip(got, want, strict=True):
                for k in ("loss", "recon"):
                    assert g[k] == pytest.approx(w[k], rel=1e-4), (epoch, k)
                tol = kl_tolerance(w["kl"], cfgs[0]["latent_dim"], rel=1e-4)
                assert g["kl"] == pytest.approx(w["kl"], abs=tol), (epoch, "kl")
        assert graphed._graphs  # the step was captured and replayed


@pytest.mark.parametrize(
    "killed_at",
    [(2, 1), (2, 2), (1, 2)],
    ids=["epoch2-after-member1", "epoch2-after-member2", "epoch1-after-member2"],
)
def test_a_cohort_killed_between_its_members_checkpoints_resumes_to_the_uninterrupted_numbers(
    tmp_path, monkeypatch, killed_at
):
    """A kill after the ``last.pt`` of some members of a cohort's epoch and before the others'
    (stopped here like a kill: a KeyboardInterrupt nothing records) left members one epoch apart; the
    relaunch trained them as two cohorts, and stacking rounds differently from training apart, so
    the runs drifted from an uninterrupted sweep. Now the ahead members restart from their previous
    checkpoint (``prev.pt``) and the cohort trains that epoch again, whole: the same numbers, bit for bit."""
    epoch, after = killed_at
    cfgs = members("epochs=3")
    straight = train_jobs(jobs_of(tmp_path / "straight", cfgs), STACKED)
    real, seen = results.save_torch, []

    def killed(path, obj):
        real(path, obj)
        if path.name == "last.pt" and obj["epoch"] == epoch:
            seen.append(path)
            if len(seen) == after:
                raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(results, "save_torch", killed)
        with pytest.raises(KeyboardInterrupt):
            train_jobs(jobs_of(tmp_path / "resumed", cfgs), STACKED)
    resumed_epochs = spy_epochs(monkeypatch)
    rows = train_jobs(jobs_of(tmp_path / "resumed", cfgs), STACKED)
    assert resumed_epochs == [(3, e) for e in range(epoch - 1, 3)]  # one cohort of all three, again
    drop = {"wall_seconds", "started_at", "finished_at"}
    for got, want in zip(rows, straight, strict=True):
        assert {k: v for k, v in got.items() if k not in drop} == {
            k: v for k, v in want.items() if k not in drop
        }
    for c in cfgs:
        run = tmp_path / "resumed" / f"s{c['seed']}"
        assert not (run / "last.pt").exists() and not (run / "prev.pt").exists()
        pd_got, pd_want = epochs_table(run), epochs_table(tmp_path / "straight" / f"s{c['seed']}")
        assert pd_got.equals(pd_want)
