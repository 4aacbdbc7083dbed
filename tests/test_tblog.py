"""TensorBoard logging: event files read back with TensorBoard's own reader, resume, off switch, faults."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest
from conftest import interrupt_in_epoch, make_cfg
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from sweep.rules import ConfigError, validate
from sweep.train import train

EPOCH_TAGS = {"loss": "loss", "recon": "distortion", "kl": "rate", "neg_elbo": "neg_elbo"}


def read_events(run_dir):
    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    return ea


def scalar_steps(ea, tag):
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def hparams_of(ea) -> dict:
    content = ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}


def assert_epochs_match(ea, run_dir, epochs):
    """Every epoch scalar is in the log once per epoch, with epochs.parquet's value. TensorBoard stores
    scalars as float32, so the values agree to float32 rounding (relative 2**-24 ≈ 6e-8)."""
    rows = pq.read_table(run_dir / "epochs.parquet").to_pylist()
    for split in ("train", "val"):
        want = {r["epoch"]: r for r in rows if r["split"] == split}
        assert sorted(want) == list(range(1, epochs + 1))
        for key, tag in EPOCH_TAGS.items():
            got = scalar_steps(ea, f"{split}/{tag}")
            assert [s for s, _ in got] == list(range(1, epochs + 1)), (split, tag, got)
            for step, value in got:
                assert value == pytest.approx(want[step][key], rel=1e-6)
    assert [s for s, _ in scalar_steps(ea, "beta")] == list(range(1, epochs + 1))
    assert [s for s, _ in scalar_steps(ea, "seconds/train")] == list(range(1, epochs + 1))


def test_a_smoke_run_logs_epoch_scalars_eval_metrics_pictures_and_hparams(tmp_path):
    run = tmp_path / "run"
    row = train(make_cfg("epochs=2", "num_threads=1"), run)
    assert row["status"] == "ok"
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # in the run's own directory
    ea = read_events(run)
    assert_epochs_match(ea, run, 2)
    ev = pq.read_table(run / "eval.parquet").to_pylist()[0]
    for key in (
        "test/neg_elbo",
        "test/iwae_nll",
        "test/active_units",
        "latent/linear_probe_acc",
        "test/fid_prior",
    ):
        (step, value), *more = scalar_steps(ea, f"eval/{key}")
        assert not more and step == 2 and value == pytest.approx(ev[key], rel=1e-6)
    assert {"eval/recon", "eval/samples"} <= set(ea.Tags()["images"])
    hp = hparams_of(ea)
    assert hp["encoder"] == "dense1" and hp["decoder"] == "conv2"
    assert hp["latent_dim"] == 4 and hp["seed"] == 0
    assert hp["loss.reduction"] == "sum" and hp["data.subset"] == 200


def test_a_resumed_run_logs_no_step_twice(tmp_path, monkeypatch):
    """Session 1 logs epochs 1 and 2, then is interrupted; its last.pt is put back to epoch 1 (as if
    killed between logging epoch 2 and checkpointing it). The relaunch resumes after epoch 1: without
    the purge, TensorBoard would show epoch 2 twice (the old value and the new)."""
    cfg, run = make_cfg("epochs=3", "num_threads=1"), tmp_path / "run"
    saved = tmp_path / "last_epoch1.pt"
    keep = lambda epoch, val: epoch == 1 and shutil.copy(run / "last.pt", saved)  # noqa: E731
    interrupt_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, on_epoch=keep)
    monkeypatch.undo()
    assert [s for s, _ in scalar_steps(read_events(run), "val/neg_elbo")] == [1, 2]
    shutil.copy(saved, run / "last.pt")

    assert train(cfg, run)["status"] == "ok"
    assert len(list(run.glob("events.out.tfevents.*"))) == 2  # one per session
    ea = read_events(run)
    assert_epochs_match(ea, run, 3)
    assert hparams_of(ea)["encoder"] == "dense1"  # written by the first session, kept


def test_logger_none_writes_no_event_file_and_a_bad_logger_is_named(tmp_path):
    run = tmp_path / "run"
    assert train(make_cfg("logger=none", "num_threads=1"), run)["status"] == "ok"
    assert not list(run.glob("events.out.tfevents.*"))
    with pytest.raises(ConfigError, match=r"logger='wandb' is unknown; valid: tensorboard, none"):
        validate(make_cfg("logger=wandb"))


def test_a_failing_event_writer_never_breaks_the_run(tmp_path, monkeypatch):
    from torch.utils.tensorboard import SummaryWriter

    def broken(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SummaryWriter, "add_scalar", broken)
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="TensorBoard logging is off for this run .*No space left"):
        row = train(make_cfg("num_threads=1"), run)
    assert row["status"] == "ok" and (run / "COMPLETE").is_file()
