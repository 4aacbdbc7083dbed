"""Shared helpers for tests that train tiny runs (imported by test modules; not a test module)."""

from __future__ import annotations

from hydra import compose, initialize_config_dir

from sweep.config import CONF_DIR, to_plain
from sweep.hydra_setup import register

register()  # the tests that use these helpers compose as sweep.train does

SMALL = ["encoder=dense", "encoder.width=32", "decoder=conv", "decoder.depth=2", "latent_dim=4"]
COMMON = [
    "epochs=1",
    "batch_size=50",
    "data.subset=200",
    "device=cpu",
    "progress=false",
    "eval.iwae_k=8",
    "eval.latents_n=100",
    "eval.probe_train=200",
]


def make_cfg(*overrides: str, arch: list[str] = SMALL) -> dict:
    """A composed, resolved config for a seconds-long run; ``overrides`` win."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*arch, *COMMON, *overrides])
    return to_plain(cfg)


def interrupt_in_epoch(monkeypatch, epoch: int) -> None:
    """Make the engine raise KeyboardInterrupt (like Ctrl-C, not caught, not recorded) as it starts
    training ``epoch`` (0-based) of any cohort."""
    import sweep.engine as engine_mod

    real = engine_mod.train_epoch

    def interrupted(cohort, e):
        if e == epoch:
            raise KeyboardInterrupt
        return real(cohort, e)

    monkeypatch.setattr(engine_mod, "train_epoch", interrupted)


def spy_epochs(monkeypatch) -> list[tuple[int, int]]:
    """Record (cohort size, epoch) of every epoch the engine trains; returns the growing list."""
    import sweep.engine as engine_mod

    real, seen = engine_mod.train_epoch, []
    monkeypatch.setattr(engine_mod, "train_epoch", lambda c, e: seen.append((c.size, e)) or real(c, e))
    return seen
