"""TensorBoard event files in each run directory (``logger=tensorboard``, the default; ``logger=none``).

    tensorboard --logdir results/sweeps/paper     # every run's curves; its HParams tab lists every run

Per epoch (step = the 1-based epoch): ``{train,val[,test]}/{loss,distortion,rate,neg_elbo}``, ``beta``
and ``seconds/{train,val[,test]}``, from the numbers the engine has already brought to the host at the
epoch boundary (no extra device sync). At the end of a run that finished ok: its evaluation metrics
(``eval.parquet``'s numbers, same step as the last epoch) and the ``recon.png`` / ``samples.png`` grids.
When the run starts, its config as TensorBoard HParams (``encoder``, ``decoder`` as family names such
as ``conv4``, ``latent_dim``, ``seed`` and every other key that shapes what it trains), so the HParams
table can sort and filter the runs of a sweep by them.

A resumed run reopens its event log with ``purge_step`` at its resume epoch and writes that epoch again
from the history in ``last.pt``: TensorBoard drops every event of that step and later from the earlier
session, so a relaunch never shows a step twice (and a run killed after its evaluation was logged but
before ``COMPLETE`` logs it once). Any error from writing them turns TensorBoard off for that run with
one warning: the run itself never fails because of it.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

from sweep.config import identity

TAGS = {"loss": "loss", "recon": "distortion", "kl": "rate", "neg_elbo": "neg_elbo"}
# eval.parquet columns shown as scalars and as the HParams table's metric columns
EVAL_METRICS = (
    "test/neg_elbo",
    "test/iwae_nll",
    "test/rate",
    "test/distortion",
    "test/active_units",
    "test/mutual_information",
    "test/psnr",
    "latent/linear_probe_acc",
    "latent/knn_acc",
    "test/fid_prior",
    "test/kid_prior",
    "test/fid_recon",
)
HPARAM_METRICS = ("val/neg_elbo", *(f"eval/{m}" for m in EVAL_METRICS))


def hparams_of(cfg: dict[str, Any]) -> dict[str, str | int | float]:
    """The run's config as HParams: family names first, then every identity key (dotted)."""
    hp: dict[str, str | int | float] = {
        role: f"{cfg[role]['kind']}{cfg[role]['depth']}" for role in ("encoder", "decoder")
    }
    hp.update(latent_dim=cfg["latent_dim"], seed=cfg["seed"])
    for key, value in identity(cfg).items():
        if key in hp:
            continue
        if isinstance(value, bool) or value is None or not isinstance(value, int | float | str):
            value = str(value).lower() if isinstance(value, bool) or value is None else str(value)
        hp[key] = value
    return hp


class RunLogger:
    """One run's TensorBoard writer. Every method is a no-op once logging is off or has failed."""

    def __init__(self, run_dir: Path, cfg: dict[str, Any], name: str):
        self.run_dir, self.cfg, self.name = Path(run_dir), cfg, name
        self.on = cfg.get("logger", "tensorboard") == "tensorboard"
        self.writer = None

    def _failed(self, exc: BaseException) -> None:
        warnings.warn(
            f"{self.name}: TensorBoard logging is off for this run ({type(exc).__name__}: {exc}); "
            "the run goes on",
            stacklevel=3,
        )
        self.on = False
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - already failing; the warning says so
                pass

    def open(self, epoch: int, history: list[dict[str, Any]]) -> None:
        """Start (``epoch`` 0) or resume after ``epoch`` with the run's ``history`` (epochs.parquet rows)."""
        if not self.on:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams

            had_events = any(self.run_dir.glob("events.out.tfevents.*"))
            self.writer = SummaryWriter(
                log_dir=str(self.run_dir), purge_step=max(epoch, 1) if had_events else None, flush_secs=3600
            )
            if not had_events or epoch == 0:  # a fresh log, or the run restarts from scratch
                hp = hparams_of(self.cfg)
                for summary in hparams(hp, dict.fromkeys(HPARAM_METRICS, math.nan)):
                    self.writer.file_writer.add_summary(summary)
            if epoch > 0:  # the resume epoch was purged above: write it again from the history
                self._epoch(epoch, [r for r in history if r["epoch"] == epoch])
            self.writer.flush()
        except Exception as exc:  # noqa: BLE001 - TensorBoard never breaks a run
            self._failed(exc)

    def _epoch(self, epoch: int, rows: list[dict[str, Any]]) -> None:
        w = self.writer
        for r in rows:
            for key, tag in TAGS.items():
                w.add_scalar(f"{r['split']}/{tag}", r[key], epoch)
            w.add_scalar(f"seconds/{r['split']}", r["seconds"], epoch)
            if r["split"] == "train":
                w.add_scalar("beta", r["beta"], epoch)

    def epoch(self, epoch: int, rows: list[dict[str, Any]]) -> None:
        """Log one finished epoch (``rows``: its epochs.parquet rows, train, val[, test])."""
        if self.writer is None:
            return
        try:
            self._epoch(epoch, rows)
            self.writer.flush()
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def end(self, row: dict[str, Any]) -> None:
        """At the end of the run (``row``: its run.parquet row): evaluation metrics and pictures if it
        finished ok, then close."""
        if self.writer is None:
            return
        try:
            step = row.get("epochs_done") or 0
            if row.get("status") == "ok" and (self.run_dir / "eval.parquet").is_file():
                import numpy as np
                import pyarrow.parquet as pq
                from PIL import Image

                ev = pq.read_table(self.run_dir / "eval.parquet").to_pylist()[0]
                for key in EVAL_METRICS:
                    if isinstance(ev.get(key), int | float) and not isinstance(ev[key], bool):
                        self.writer.add_scalar(f"eval/{key}", ev[key], step)
                for picture in ("recon", "samples"):
                    path = self.run_dir / f"{picture}.png"
                    if path.is_file():
                        with Image.open(path) as im:
                            pixels = np.asarray(im.convert("RGB"))
                        self.writer.add_image(f"eval/{picture}", pixels, step, dataformats="HWC")
            self.writer.close()
            self.writer = None
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception as exc:  # noqa: BLE001
                self._failed(exc)
            self.writer = None
