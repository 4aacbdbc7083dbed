"""The throughput benchmark's output (``python -m bench.throughput --quick``), and that the training
path's speed changes train exactly what the plain loop trained."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import LAUNCHED, kl_tolerance, make_cfg

from sweep.cohort import Cohort, make_optimizer
from sweep.data import binarize, load_data
from sweep.device import tf32_on_cuda
from sweep.losses import beta_at, kl_per_dim, objective, recon_per_image
from sweep.models import build_model

REPO = Path(__file__).resolve().parent.parent
PATH_KEYS = {"samples_per_s", "runs_samples_per_s", "warmup_seconds", "compile_seconds"}


@pytest.mark.slow
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
    assert len(report["configs"]) >= 2 and s["members"] == 3 and s["slots"] == 1
    for c in report["configs"]:
        assert c["params"] > 0 and c["flops_per_image"] > 0
        assert "graph" not in c  # CUDA only
        for path in ("stock", "harness", "cohort"):
            assert PATH_KEYS <= set(c[path])
            assert c[path]["samples_per_s"] > 0 and c[path]["compile_seconds"] >= 0
            assert len(c[path]["runs_samples_per_s"]) == s["repeats"]
        assert c["ratio"] == pytest.approx(c["harness"]["samples_per_s"] / c["stock"]["samples_per_s"])
        assert c["cohort_ratio"] == pytest.approx(c["cohort"]["samples_per_s"] / c["stock"]["samples_per_s"])
        assert c["cohort_vs_eager"] == pytest.approx(
            c["cohort"]["samples_per_s"] / c["harness"]["samples_per_s"]
        )
        assert c["cohort"]["members"] == 3 and c["cohort"]["graphs"] is False
    o = report["overall"]
    rates = {k: [c[k]["samples_per_s"] for c in report["configs"]] for k in ("stock", "harness", "cohort")}
    for k, r in rates.items():
        assert o[f"{k}_geomean_samples_per_s"] == pytest.approx(math.prod(r) ** (1 / len(r)))
        assert min(r) <= o[f"{k}_aggregate_samples_per_s"] <= max(r)
    assert o["ratio_aggregate"] == pytest.approx(
        o["harness_aggregate_samples_per_s"] / o["stock_aggregate_samples_per_s"]
    )
    est = report["full_estimate"]
    assert est["runs"] == 768 and len(est["per_config"]) == 256 and est["epochs"] == 50
    assert est["paths"] == ["stock", "harness", "cohort"]
    assert 0 < est["harness_hours"] and 0 < est["stock_hours"] and 0 < est["harness_iwae_hours"]
    assert est["cohort_hours"] > 0
    png = out.with_name(est["figure"])
    assert png.name == "cpu_full_estimate.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "geomean" in proc.stdout and "aggregate" in proc.stdout
    assert not list(out.parent.glob("*.tmp"))


def test_the_benchmark_in_process_measures_each_path_and_writes_its_json_and_figure(tmp_path, capsys):
    """``bench.throughput.main`` on one tiny config, one step each (the subprocess test above checks the
    whole report of the quick sample): every CPU path is timed and the estimate is drawn."""
    from bench import throughput

    out = tmp_path / "cpu.json"
    argv = ["--quick", "--configs", "L8_dense1_dense1", "--steps", "1", "--device", "cpu", "--out", str(out)]
    assert throughput.main([*argv, "--members", "2"]) == 0
    report = json.loads(out.read_text())
    (c,) = report["configs"]
    assert c["config"] == "L8_dense1_dense1" and c["cohort"]["members"] == 2 and "graph" not in c
    assert all(c[k]["samples_per_s"] > 0 for k in ("stock", "harness", "cohort"))
    assert report["overall"]["ratio_aggregate"] == pytest.approx(c["ratio"])
    assert report["full_estimate"]["runs"] == 768
    assert out.with_name(report["full_estimate"]["figure"]).read_bytes()[:4] == b"\x89PNG"
    assert "L8_dense1_dense1" in capsys.readouterr().out


def test_the_grid_benchmark_finds_the_sweep_directory_and_needs_its_separator(tmp_path, capsys):
    """``bench.grid``'s in-process parts (its launch is a subprocess: the slow test above)."""
    from bench import grid as bench_grid

    args = ["experiment=smoke", "hydra/launcher=cohort", "hydra.launcher.slots=2", f"results_dir={tmp_path}"]
    assert bench_grid.sweep_dir_of(args) == tmp_path / "sweeps" / "smoke"
    assert bench_grid.main(["--out", str(tmp_path / "g.json")]) == 2  # no "--": the usage line
    assert "usage: python -m bench.grid" in capsys.readouterr().err
    assert bench_grid.main(["--help"]) == 0  # help, not the usage error
    assert "-- <sweep.train overrides>" in capsys.readouterr().out
    sampler = bench_grid.GpuSampler(0.05)
    assert sampler.stop()["available"] is (shutil.which("nvidia-smi") is not None)


def reference_train_epoch(model, opt, data, cfg, epoch: int, g_data, g_noise) -> dict[str, float]:
    """One epoch as PROTOCOL-level pseudo-code, written independently of the harness: the epoch's
    randomness drawn up front from the run's two generators (data order, then the binarisation of the
    training images in that order, from ``g_data``; the reparameterisation noise from ``g_noise``),
    then plain steps over slices of it through the ordinary ``VAE`` modules."""
    x_all, bs = data.train.x, cfg["batch_size"]
    n = x_all.shape[0]
    steps = math.ceil(n / bs)
    loss_cfg = cfg["loss"]
    perm = torch.randperm(n, generator=g_data)
    xs = x_all[perm]
    if cfg["data"]["likelihood"] == "bernoulli":
        xs = binarize(xs, g_data)
    eps_all = torch.randn((n, model.latent_dim), generator=g_noise)
    sums = torch.zeros(3, dtype=torch.float64)
    beta = loss_cfg["beta"]
    for step in range(steps):
        x, eps = xs[step * bs : (step + 1) * bs], eps_all[step * bs : (step + 1) * bs]
        mu, logvar = model.encoder(x)
        logits = model.decoder(mu + eps * torch.exp(0.5 * logvar))
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


def _reference(cfg, make_opt, epochs=2):
    """Train ``epochs`` epochs with the reference loop; returns (per-epoch results, model)."""
    torch.manual_seed(cfg["seed"])
    data = load_data(cfg, torch.device("cpu"))
    model = build_model(cfg)
    opt = make_opt(model.parameters())
    g_data = torch.Generator().manual_seed(cfg["seed"])
    g_noise = torch.Generator().manual_seed(cfg["seed"] + 1_000_003)
    return [reference_train_epoch(model, opt, data, cfg, e, g_data, g_noise) for e in range(epochs)], model


def _harness(cfg, epochs=2):
    """Train ``epochs`` epochs as a run does: a cohort of one."""
    cohort = Cohort([cfg], load_data(cfg, torch.device("cpu")), torch.device("cpu"))
    got = [cohort.train_epoch(e)[0] for e in range(epochs)]
    return got, cohort.checkpoints()[0]["model"]


def _fused(params):
    return make_optimizer(params, 1e-3)


def _plain(params):
    return torch.optim.Adam(params, lr=1e-3)


@pytest.mark.parametrize(
    "overrides",
    [
        ("data.likelihood=bernoulli",),
        ("data.likelihood=bce", "loss.reduction=paper"),
        ("loss.warmup_epochs=1.5", "loss.free_bits=0.05", "loss.beta=2"),
    ],
)
def test_the_harness_trains_bitwise_what_the_reference_loop_trains(overrides):
    cfg = make_cfg("epochs=2", *overrides)
    got, weights = _harness(cfg)
    want, ref_model = _reference(cfg, _fused)
    assert got == want  # every float of every epoch, exactly
    for name, p in ref_model.state_dict().items():
        assert torch.equal(weights[name], p), name


def test_fused_adam_matches_plain_adam_within_float32_rounding():
    cfg = make_cfg("epochs=2")
    got, fused_model = _reference(cfg, _fused)
    want, ref_model = _reference(cfg, _plain)
    assert make_optimizer([torch.zeros(1, requires_grad=True)], 1e-3).defaults["fused"]  # CPU has fused Adam
    # tolerance: the same gradients at the first step, then updates that differ in the last float32 bits
    # (u = 6e-8 relative to |w| and to lr per step), so after 8 steps the weights differ by ~8·u ≈ 5e-7
    # of their O(1) size (1e-5 absolute), and the losses, sums of non-negative terms, by ~1e-7 of
    # themselves (1e-6); the KL cancels O(1) terms, so its bound is relative to them (kl_tolerance)
    for g, w in zip(got, want, strict=True):
        for k in ("loss", "recon"):
            assert g[k] == pytest.approx(w[k], rel=1e-6)
        assert g["kl"] == pytest.approx(w["kl"], abs=kl_tolerance(w["kl"], cfg["latent_dim"], rel=1e-6))
    for p, q in zip(fused_model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)


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


@pytest.mark.slow
def test_grid_benchmark_times_a_real_launch_and_reports_each_run(tmp_path):
    out = tmp_path / "grid.json"
    train_args = [
        "experiment=smoke",
        "hydra/launcher=cohort",
        f"results_dir={tmp_path / 'res'}",
        "epochs=1",
        *LAUNCHED,
    ]
    cmd = [sys.executable, "-m", "bench.grid", "--out", str(out), "--", *train_args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    report = json.loads(out.read_text())
    assert report["command"] == "python -m sweep.train " + " ".join(train_args)
    assert report["returncode"] == 0 and report["timed_out"] is False
    assert report["runs_finished_in_launch"] == report["runs_complete"] == 4 and report["statuses"] == {
        "ok": 4
    }
    assert 0 < report["first_run_finished_seconds"] <= report["wall_seconds"]
    assert report["runs_per_hour"] == pytest.approx(3600 * 4 / report["wall_seconds"])
    assert report["sweep_dir"] == str(tmp_path / "res" / "sweeps" / "smoke")
    assert len(report["per_run"]) == 4
    for r in report["per_run"]:
        assert r["status"] == "ok" and r["train_seconds"] > 0 and r["eval_seconds"] > 0
        assert r["wall_seconds"] >= r["train_seconds"]
    assert report["gpu"]["available"] is (shutil.which("nvidia-smi") is not None)
    assert "bench.grid: 4 runs in" in proc.stdout
