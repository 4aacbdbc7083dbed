"""The thresholds that turn evaluation numbers into the study's verdicts (active unit, collapsed), in
one torch-free module: evaluation (:mod:`sweep.metrics`) applies them and writes them into every
``eval.parquet``; analysis draws and states them without importing torch."""

from __future__ import annotations

ACTIVE_UNIT_THRESHOLD = 0.01  # Var_x(μ_d) above this → unit d active (Burda et al. 2016)
COLLAPSE_RATE_THRESHOLD = 0.1  # nats per image; `collapsed` needs a rate below this
PAPER_COLLAPSE_THRESHOLD = 1e-6  # nats per image; the paper's collapse floor
THRESHOLDS = {
    "active_unit_threshold": ACTIVE_UNIT_THRESHOLD,
    "collapse_rate_threshold": COLLAPSE_RATE_THRESHOLD,
    "paper_collapse_threshold": PAPER_COLLAPSE_THRESHOLD,
}
