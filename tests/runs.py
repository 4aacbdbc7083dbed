"""Shared helpers for tests that train tiny runs (imported by test modules; not a test module)."""

from __future__ import annotations

from hydra import compose, initialize_config_dir

from sweep.config import CONF_DIR, to_plain

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
