"""Training end to end, in process: files and columns, skip, resume, determinism, divergence, failure."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from conftest import make_cfg

import sweep.member as member_mod
import sweep.slot as slot_mod
import sweep.stack as stack_mod
from sweep import provenance, results
from sweep.train import ConfigMismatchError, train

README = Path(__file__).resolve().parent.parent / "results" / "README.md"


def metrics(run_dir: Path) -> tuple[pd.DataFrame, dict]:
    epochs = pd.read_parquet(run_dir / "epochs.parquet").drop(columns="seconds")
    row = pq.read_table(run_dir / "run.parquet").to_pylist()[0]
    keep = {k: v for k, v in row.items() if re.match(r"(val|test|best|params)/", k)}
    return epochs, keep


def documented_columns(heading: str) -> list[str]:
    """Column names from the table under ``heading`` in results/README.md (first column, in backticks)."""
    text = README.read_text().split(heading, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", text, flags=re.M)


def test_one_epoch_writes_every_file_with_the_documented_columns(tmp_path):
    cfg = make_cfg()
    row = train(cfg, tmp_path / "run", overrides=["latent_dim=4"])
    run = tmp_path / "run"
    assert row["status"] == "ok"
    for name in (
        "epochs.parquet",
        "run.parquet",
        "best.pt",
        "COMPLETE",
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
    ):
        assert (run / name).is_file(), name
    assert not (run / "last.pt").exists()  # resume state is dropped once complete
    assert not list(run.glob("**/*.tmp"))
    epochs = pq.read_table(run / "epochs.parquet")
    assert epochs.column_names == results.EPOCH_COLUMNS == documented_columns("## `epochs.parquet`")
    assert epochs.column("split").to_pylist() == ["train", "val"]
    run_t = pq.read_table(run / "run.parquet")
    assert run_t.column_names[: len(results.RUN_COLUMNS)] == results.RUN_COLUMNS
    assert documented_columns("## `run.parquet`") == results.RUN_COLUMNS
    for key in ("encoder.kind", "decoder.depth", "latent_dim", "loss.reduction", "data.likelihood", "seed"):
        assert key in run_t.column_names
    assert run_t.schema.metadata[b"vae_sweep.schema_version"] == str(results.SCHEMA_VERSION).encode()
    assert run_t.column("schema_version").to_pylist() == [results.SCHEMA_VERSION]
    assert epochs.column("schema_version").to_pylist() == [results.SCHEMA_VERSION] * 2
    got = run_t.to_pylist()[0]
    assert got["run_name"] == "L4_dense1_conv2_s0" and got["device"] == "cpu" and got["epochs_done"] == 1
    assert got["test/neg_elbo"] == pytest.approx(got["test/recon"] + got["test/kl"])
    assert 0 < got["test/kl"] and 100 < got["test/neg_elbo"] < 800  # nats per image, not per pixel


def test_second_identical_launch_skips_the_finished_run(tmp_path):
    cfg = make_cfg()
    first = train(cfg, tmp_path)
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    again = train(cfg, tmp_path)
    assert again["finished_at"] == first["finished_at"]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamp


def test_a_different_config_in_the_same_directory_is_refused_and_nothing_changes(tmp_path):
    train(make_cfg(), tmp_path)
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(ConfigMismatchError, match=r"epochs: 1 -> 2"):
        train(make_cfg("epochs=2"), tmp_path)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamp


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(tmp_path):
    cfg = make_cfg("epochs=2")
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    train(make_cfg("epochs=2", "seed=1"), tmp_path / "c")
    ea, ma = metrics(tmp_path / "a")
    eb, mb = metrics(tmp_path / "b")
    _, mc = metrics(tmp_path / "c")
    pd.testing.assert_frame_equal(ea, eb)
    assert ma == mb
    assert ma["test/neg_elbo"] != mc["test/neg_elbo"]


def test_interrupted_run_resumes_from_its_checkpoint_with_the_same_metrics(tmp_path, monkeypatch):
    cfg = make_cfg("epochs=3", "data.likelihood=bernoulli")
    train(cfg, tmp_path / "straight")

    real_epoch = slot_mod.train_epoch
    done = []

    def killed_in_third_epoch(cohort, epoch):
        if epoch == 2:
            raise KeyboardInterrupt  # like Ctrl-C or SIGINT mid-epoch: not caught, not recorded
        done.append(epoch)
        return real_epoch(cohort, epoch)

    monkeypatch.setattr(slot_mod, "train_epoch", killed_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed")
    assert done == [0, 1]
    assert (tmp_path / "resumed" / "last.pt").is_file() and not (tmp_path / "resumed" / "COMPLETE").exists()
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["epoch"] == 2

    monkeypatch.setattr(slot_mod, "train_epoch", real_epoch)
    calls = []
    monkeypatch.setattr(slot_mod, "train_epoch", lambda *a: calls.append(a[1]) or real_epoch(*a))
    train(cfg, tmp_path / "resumed")
    assert calls == [2]  # only the unfinished epoch is trained
    es, ms = metrics(tmp_path / "straight")
    er, mr = metrics(tmp_path / "resumed")
    pd.testing.assert_frame_equal(es, er)
    assert ms == mr


def test_forced_nan_records_diverged_and_the_next_run_still_trains(tmp_path, monkeypatch):
    real = stack_mod.recon_per_image
    monkeypatch.setattr(stack_mod, "recon_per_image", lambda *a: real(*a) * float("nan"))
    row = train(make_cfg("epochs=3"), tmp_path / "nan")
    assert row["status"] == "diverged" and row["diverged_epoch"] == 1 and row["epochs_done"] == 1
    assert "non-finite" in row["error"]
    assert row["test/neg_elbo"] is None  # a diverged run is not evaluated
    assert (tmp_path / "nan" / "COMPLETE").read_text().count("diverged") == 1
    monkeypatch.setattr(stack_mod, "recon_per_image", real)
    nxt = train(make_cfg("seed=1"), tmp_path / "next")
    assert nxt["status"] == "ok" and nxt["test/neg_elbo"] > 0


def test_an_exception_records_failed_without_a_marker_so_a_relaunch_retries(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(slot_mod, "train_epoch", boom)
    row = train(make_cfg(), tmp_path)
    assert row["status"] == "failed" and "CUDA out of memory (simulated)" in row["error"]
    assert pq.read_table(tmp_path / "run.parquet").to_pylist()[0]["status"] == "failed"
    assert not (tmp_path / "COMPLETE").exists()
    monkeypatch.undo()
    assert train(make_cfg(), tmp_path)["status"] == "ok"


def test_ref_pytorch_example_trains_its_784_400_20_model_with_test_rows(tmp_path):
    cfg = make_cfg("experiment=ref_pytorch_example", "epochs=1", "data.subset=300", arch=[])
    row = train(cfg, tmp_path)
    # 784-400-20 (+ log-variance head) and 20-400-784, as pytorch/examples vae/main.py
    assert row["params/encoder"] == 784 * 400 + 400 + 400 * 40 + 40
    assert row["params/decoder"] == 20 * 400 + 400 + 400 * 784 + 784
    splits = pq.read_table(tmp_path / "epochs.parquet").column("split").to_pylist()
    assert splits == ["train", "val", "test"]


# ---------------------------------------------------------------- design keys: norm, res, likelihoods
RES = ["encoder=res", "encoder.width=8", "decoder=res2", "decoder.width=8"]
# every new value trains on the tiny settings, four runs covering them all (each side, each likelihood)
DESIGN_RUNS = [
    ([*RES, "norm=batch", "data.likelihood=logistic"], "L4_res1bn_res2bn_s0_logistic"),
    (["norm=layer", "data.likelihood=continuous_bernoulli"], "L4_dense1ln_conv2ln_s0_cb"),
    (["encoder.norm=group", "data.likelihood=gaussian_learned"], "L4_dense1gn_conv2_s0_gausslearned"),
    (
        ["decoder=res", "decoder.width=8", "decoder.norm=group", "data.likelihood=gaussian"],
        "L4_dense1_res2gn_s0_gauss",
    ),
]


@pytest.mark.parametrize(("overrides", "name"), DESIGN_RUNS, ids=[n for _, n in DESIGN_RUNS])
def test_every_norm_kind_and_likelihood_trains_and_is_evaluated_as_a_normalised_likelihood(
    tmp_path, overrides, name
):
    from sweep.names import parse_run_name, run_name_of

    cfg = make_cfg(*overrides)
    assert run_name_of(cfg) == name and parse_run_name(name).name == name
    rid = parse_run_name(name)
    assert (rid.enc_norm, rid.dec_norm, rid.likelihood) == (
        cfg["encoder"]["norm"],
        cfg["decoder"]["norm"],
        cfg["data"]["likelihood"],
    )
    row = train(cfg, tmp_path / name)
    assert row["status"] == "ok"
    ev = pq.read_table(tmp_path / name / "eval.parquet").to_pylist()[0]
    bits = 784 * __import__("math").log(2.0)
    assert ev["test/iwae_null_reason"] is None
    assert ev["test/iwae_nll"] <= ev["test/neg_elbo"] + 3 * ev["test/iwae_nll_se"]
    assert ev["test/iwae_bpd"] == pytest.approx(ev["test/iwae_nll"] / bits)
    assert ev["test/neg_elbo_bpd"] == pytest.approx(ev["test/neg_elbo"] / bits)
    assert row["params/total"] == row["params/encoder"] + row["params/decoder"] + (
        cfg["data"]["likelihood"] in ("gaussian_learned", "logistic")
    )
    assert ev["flops/encoder"] > 0 and ev["flops/decoder"] > 0


def test_batch_norm_evaluates_each_image_alone_with_its_running_statistics():
    """In evaluation mode every image's −ELBO is its own (the running statistics, not the batch's), so a
    split's losses do not depend on how it is batched; a training step's would."""
    from sweep.data import load_data
    from sweep.losses import Knobs
    from sweep.models import build_model
    from sweep.stack import Stack, split_losses

    cfg = make_cfg(*RES, "norm=batch")
    data = load_data(cfg, "cpu")
    torch.manual_seed(0)
    model = build_model(cfg).train()
    with torch.no_grad():
        for i in range(0, 200, 50):  # running statistics away from their initial 0 and 1
            model(data.train.x[i : i + 50])
    stack = Stack.of([model], trainable=False)
    knobs = Knobs.of([cfg["loss"]], "cpu")
    whole = split_losses(stack, data.val, seeds=[0], knobs=knobs, batch=1000)[0]
    pieces = split_losses(stack, data.val, seeds=[0], knobs=knobs, batch=7)[0]
    for k in whole:  # sums of ~200 non-negative float32 terms per image, accumulated in float64
        assert pieces[k] == pytest.approx(whole[k], rel=1e-5), k
    assert not stack.base.training
    eps = torch.zeros(1, 14, 4)
    x = data.val.target

    def one(xs, train):
        return stack.losses(
            xs, eps[:, : len(xs)], knobs.beta, knobs.free_bits, knobs.divisor, shared_x=True, train=train
        )[1]

    assert float(one(x[:7], False)) == pytest.approx(
        float(one(x[:14], False) - one(x[7:14], False)), rel=1e-5
    )
    assert float(one(x[:7], True)) != pytest.approx(float(one(x[:14], True) - one(x[7:14], True)), rel=1e-5)


@pytest.mark.parametrize(
    "legacy", [False, True], ids=["resumed-elsewhere", "resumed-from-an-older-checkpoint"]
)
def test_each_epoch_records_the_machine_that_computed_it_and_the_run_every_one(tmp_path, monkeypatch, legacy):
    """A run resumed on another machine (here: another name for it) was computed by both: each epoch row
    names its own, run.parquet names them in order; epochs of a checkpoint written before the column
    existed read unknown."""
    cfg = make_cfg("epochs=3")
    real_epoch = slot_mod.train_epoch

    def killed_in_third_epoch(cohort, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(cohort, epoch)

    monkeypatch.setattr(slot_mod, "train_epoch", killed_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run")
    here = provenance.machine("cpu")
    assert here and "(" in here  # a CPU's model and its kernels' instruction set
    last = tmp_path / "run" / "last.pt"
    if legacy:  # as written before epochs recorded their machine
        state = torch.load(last, weights_only=False)
        state["history"] = [{k: v for k, v in r.items() if k != "machine"} for r in state["history"]]
        torch.save(state, last)
    monkeypatch.setattr(slot_mod, "train_epoch", real_epoch)
    monkeypatch.setattr(member_mod, "machine", lambda device: "Other CPU (AVX512)")
    train(cfg, tmp_path / "run")
    epochs = pd.read_parquet(tmp_path / "run" / "epochs.parquet")
    first = None if legacy else here
    epochs["machine"] = epochs["machine"].astype(object).where(epochs["machine"].notna(), None)
    assert epochs.groupby("epoch")["machine"].agg(lambda m: set(m.tolist())).tolist() == [
        {first},
        {first},
        {"Other CPU (AVX512)"},
    ]
    got = pd.read_parquet(tmp_path / "run" / "run.parquet")["machines"].tolist()
    assert got == [f"{'unknown' if legacy else here} + Other CPU (AVX512)"]
