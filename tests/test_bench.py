"""The throughput benchmark's output (``python -m bench.throughput --quick``), and that the training
path's speed changes train exactly what the plain loop trained."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from runs import make_cfg

from sweep.data import binarize
from sweep.losses import beta_at, kl_per_dim, objective, recon_per_image
from sweep.train import build_model, load_data, make_optimizer, tf32_on_cuda, train_epoch

REPO = Path(__file__).resolve().parent.parent
PATH_KEYS = {"samples_per_s", "runs_samples_per_s", "warmup_seconds", "compile_seconds"}


@pytest.fixture(autouse=True)
def one_thread():
    """One CPU thread: these tests compare runs in one process (any fixed count would do), and on a
    shared 2-core machine two threads stall each other's barriers far more than they help."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_quick_benchmark_writes_its_json_table_and_figure(tmp_path):
    out = tmp_path / "bench" / "cpu.json"
    cmd = [sys.executable, "-m", "bench.throughput", "--quick", "--device", "cpu", "--threads", "1"]
    proc = subprocess.run([*cmd, "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert {"schema_version", "created_at", "command", "device", "settings", "configs", "overall"} <= set(
        report
    )
    assert report["device"]["type"] == "cpu" and report["device"]["threads"] == 1
    assert report["device"]["torch"] == torch.__version__
    s = report["settings"]
    assert s["batch_size"] == 128 and s["quick"] is True and s["steps"] >= 1 and s["repeats"] >= 1
    assert len(s["load_average_before"]) == 3 and s["stock_loader_ms_per_batch"] > 0
    assert len(report["configs"]) >= 2
    for c in report["configs"]:
        assert c["params"] > 0 and c["flops_per_image"] > 0
        for path in ("stock", "harness"):
            assert PATH_KEYS <= set(c[path])
            assert c[path]["samples_per_s"] > 0 and c[path]["compile_seconds"] >= 0
            assert len(c[path]["runs_samples_per_s"]) == s["repeats"]
        assert c["ratio"] == pytest.approx(c["harness"]["samples_per_s"] / c["stock"]["samples_per_s"])
    o = report["overall"]
    rates = {k: [c[k]["samples_per_s"] for c in report["configs"]] for k in ("stock", "harness")}
    for k, r in rates.items():
        assert o[f"{k}_geomean_samples_per_s"] == pytest.approx(math.prod(r) ** (1 / len(r)))
        assert min(r) <= o[f"{k}_aggregate_samples_per_s"] <= max(r)
    assert o["ratio_aggregate"] == pytest.approx(
        o["harness_aggregate_samples_per_s"] / o["stock_aggregate_samples_per_s"]
    )
    est = report["full_estimate"]
    assert est["runs"] == 768 and len(est["per_config"]) == 256 and est["epochs"] == 50
    assert 0 < est["harness_hours"] and 0 < est["stock_hours"] and 0 < est["harness_iwae_hours"]
    png = out.with_name(est["figure"])
    assert png.name == "cpu_full_estimate.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "geomean" in proc.stdout and "aggregate" in proc.stdout
    assert not list(out.parent.glob("*.tmp"))


def reference_train_epoch(model, opt, data, cfg, epoch: int, g_data, g_noise) -> dict[str, float]:
    """``sweep.train.train_epoch`` as it was before the speed work, kept verbatim as the reference."""
    x_all, bs = data.train.x, cfg["batch_size"]
    n = x_all.shape[0]
    steps = math.ceil(n / bs)
    loss_cfg = cfg["loss"]
    bernoulli = cfg["data"]["likelihood"] == "bernoulli"
    perm = torch.randperm(n, generator=g_data, device=x_all.device)
    sums = torch.zeros(3, dtype=torch.float64, device=x_all.device)
    beta = loss_cfg["beta"]
    for step in range(steps):
        x = x_all[perm[step * bs : (step + 1) * bs]]
        if bernoulli:
            x = binarize(x, g_data)
        logits, mu, logvar = model(x, generator=g_noise)
        recon, kl_d = recon_per_image(logits, x), kl_per_dim(mu, logvar)
        beta = beta_at(loss_cfg["beta"], loss_cfg["warmup_epochs"], epoch + step / steps)
        loss = objective(
            recon, kl_d, reduction=loss_cfg["reduction"], beta=beta, free_bits=loss_cfg["free_bits"]
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sums += torch.stack([loss.detach() * x.shape[0], recon.detach().sum(), kl_d.detach().sum()]).double()
    loss, recon, kl = (sums / n).tolist()
    return {"loss": loss, "recon": recon, "kl": kl, "neg_elbo": recon + kl, "beta": beta}


def _train(cfg, epoch_fn, make_opt, epochs=2, state=None):
    """Train ``epochs`` epochs as ``_fit`` does; returns (per-epoch results, model, opt, generators)."""
    torch.manual_seed(cfg["seed"])
    data = load_data(cfg, torch.device("cpu"))
    model = build_model(cfg)
    opt = make_opt(model)
    g_data = torch.Generator().manual_seed(cfg["seed"])
    g_noise = torch.Generator().manual_seed(cfg["seed"] + 1_000_003)
    start = 0
    if state is not None:  # resume, as _fit does from last.pt
        state = torch.load(io.BytesIO(state), weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        g_data.set_state(state["g_data"])
        g_noise.set_state(state["g_noise"])
        start = state["epoch"]
    out = [epoch_fn(model, opt, data, cfg, e, g_data, g_noise) for e in range(start, epochs)]
    return out, model, opt, (g_data, g_noise)


def _plain_adam(model):
    return torch.optim.Adam(model.parameters(), lr=1e-3)


@pytest.mark.parametrize(
    "overrides",
    [
        ("data.likelihood=bernoulli",),
        ("data.likelihood=bce", "loss.reduction=paper"),
        ("loss.warmup_epochs=1.5", "loss.free_bits=0.05", "loss.beta=2"),
    ],
)
def test_train_epoch_trains_bitwise_what_the_reference_loop_trained(overrides):
    cfg = make_cfg(*overrides)
    got, model, _, _ = _train(cfg, train_epoch, _plain_adam)
    want, ref_model, _, _ = _train(cfg, reference_train_epoch, _plain_adam)
    assert got == want  # every float of every epoch, exactly
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_fused_adam_matches_plain_adam_within_float32_rounding_and_resumes_exactly():
    cfg = make_cfg("epochs=2")
    fused = lambda model: make_optimizer(model.parameters(), cfg["lr"])  # noqa: E731
    got, model, opt, gens = _train(cfg, train_epoch, fused)
    assert opt.defaults["fused"]  # this torch has fused Adam on CPU
    want, ref_model, _, _ = _train(cfg, train_epoch, _plain_adam)
    # tolerance: fused Adam rounds differently in the last float32 bits; after 8 steps the losses agree
    # to 1e-6 relative and the weights to 1e-5 absolute (measured: 9e-8 and 1.2e-7 at most)
    for g, w in zip(got, want, strict=True):
        for k in ("loss", "recon", "kl"):
            assert g[k] == pytest.approx(w[k], rel=1e-6)
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)
    # resuming a fused optimizer from a checkpoint after epoch 1 gives the uninterrupted run exactly
    first, m1, o1, (gd, gn) = _train(cfg, train_epoch, fused, epochs=1)
    buf = io.BytesIO()
    state = {"model": m1.state_dict(), "optimizer": o1.state_dict(), "epoch": 1}
    torch.save({**state, "g_data": gd.get_state(), "g_noise": gn.get_state()}, buf)
    second, m2, _, _ = _train(cfg, train_epoch, fused, epochs=2, state=buf.getvalue())
    assert first + second == got
    for p, q in zip(m2.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_tf32_is_on_only_while_training_on_cuda_and_restored_after():
    flags = lambda: (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)  # noqa: E731
    before = flags()
    with tf32_on_cuda(torch.device("cpu")):
        assert flags() == before
    with pytest.raises(KeyboardInterrupt):
        with tf32_on_cuda(torch.device("cuda")):  # flags only: no GPU needed
            assert flags() == (True, True)
            raise KeyboardInterrupt
    assert flags() == before


CONV = ["encoder=conv", "encoder.depth=2", "decoder=conv", "decoder.depth=3", "latent_dim=4"]


@pytest.mark.parametrize("arch", [None, CONV], ids=["dense-conv", "conv-conv"])
def test_stacked_seeds_train_what_separate_runs_train_within_float32_tolerance(arch):
    """The vmap prototype: S seeds as one batched model against S separate ``train_epoch`` runs with the
    same initial weights, data order, binarisation and noise. Tolerance: batched matmuls and grouped
    convolutions round differently from the per-model kernels, so after 8 steps losses agree to 1e-5
    relative and weights to 1e-4 absolute (float32), not bitwise (measured: 7e-7 and 2e-5 at most)."""
    sys.path.insert(0, str(REPO))  # bench/ is run from the repository root, not installed
    from bench.loops import stack_models, stacked_train_epoch

    cfg = make_cfg("epochs=2") if arch is None else make_cfg("epochs=2", arch=arch)
    seeds = [0, 1, 2]
    separate = [_train({**cfg, "seed": s}, train_epoch, _plain_adam) for s in seeds]
    models = []
    for s in seeds:
        torch.manual_seed(s)
        models.append(build_model(cfg))
    base, params = stack_models(models)
    opt = torch.optim.Adam(params.values(), lr=cfg["lr"])
    gens = [(torch.Generator().manual_seed(s), torch.Generator().manual_seed(s + 1_000_003)) for s in seeds]
    data = load_data(cfg, torch.device("cpu"))
    stacked = [stacked_train_epoch(base, params, opt, data, cfg, e, gens) for e in range(2)]
    for i, (want, model, _, _) in enumerate(separate):
        for e in range(2):
            got = stacked[e][i]
            assert got["beta"] == want[e]["beta"]
            for k in ("loss", "recon", "kl", "neg_elbo"):
                assert got[k] == pytest.approx(want[e][k], rel=1e-5), (i, e, k)
        for name, p in model.named_parameters():
            torch.testing.assert_close(params[name][i], p, rtol=0, atol=1e-4)
