"""What makes a run ``diverged``: one definition, applied where a run's numbers are made (each epoch
of training, the evaluation of its best checkpoint, a re-evaluation) and stated in docs/protocol.md.

A run has diverged when

* a loss, distortion or rate of an epoch is not finite (a NaN/inf gradient makes the weights NaN);
* a −ELBO (nats per image, any split) exceeds :data:`NEG_ELBO_MULTIPLE` times the uniform-pixel
  baseline of its likelihood (:data:`BASELINE_NATS`): for binary pixels the −ELBO of a decoder that
  says p = 0.5 for every pixel with the posterior equal to the prior (rate 0); for intensities the
  uniform distribution over an 8-bit pixel's 256 values. A freshly initialised VAE sits near
  the baseline (its logits are O(1)) and training only lowers it (MNIST: 80–190 nats); a −ELBO ten
  times the baseline is a decoder wrong by about 6.9 nats on every pixel, which no model that
  learns gets to and an exploding one (``lr=1e3``: 1e24 nats, finite) passes at once;
* its mutual-information estimate is negative beyond its Monte Carlo error. The estimator
  (:func:`sweep.metrics.mutual_information`) averages one term per test image whose expectation is
  the information of the mixture of those images' posteriors, ≥ 0, so a collapsed run gives ≈ 0 ±
  its standard error (the committed ablation's collapsed runs: down to −2.6e-4 nats) and only a
  broken one (rounding beyond float64, posteriors far from the prior) gives a value below
  −(:data:`MI_SE_MULTIPLE` · SE + :data:`MI_ROUNDING_NATS`). A legitimate run falls below with
  probability Φ(−5) ≈ 3e-7.

Such runs are final (status ``diverged``, the reason in ``run.parquet``'s ``error``) and left out of
every analysis, as a NaN run is. Torch-free: :mod:`sweep.status` and the analysis may import it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

N_PIXELS = 28 * 28  # both datasets' images (sweep.models.N_PIXELS, without importing torch here)
# −ELBO of p = 0.5 on every pixel, rate 0, per likelihood: Bernoulli −log 0.5 per pixel; BCE with a
# continuous target t in [0, 1] is −t·log 0.5 − (1 − t)·log 0.5 = ln 2 per pixel as well. The
# likelihoods of [0, 1] intensities take the uniform distribution over the 256 values of an 8-bit pixel,
# ln 256 per pixel: exact for the discretised logistic; for a continuous density (continuous
# Bernoulli, Gaussian) the uniform density on [0, 1] is 0 nats, which no multiple can bound, so the
# same 8-bit scale stands in: ten times it is a decoder wrong by ≈ 55 nats on every pixel (a Gaussian
# of σ = 0.1 off by more than the whole intensity range), which no learning model reaches.
_BINARY, _EIGHT_BIT = N_PIXELS * math.log(2), N_PIXELS * math.log(256)
BASELINE_NATS = {
    "bernoulli": _BINARY,
    "bce": _BINARY,
    "continuous_bernoulli": _EIGHT_BIT,
    "gaussian": _EIGHT_BIT,
    "gaussian_learned": _EIGHT_BIT,
    "logistic": _EIGHT_BIT,
}
NEG_ELBO_MULTIPLE = 10.0
MI_SE_MULTIPLE = 5.0
# float64 rounding of the estimate's terms (differences of logs of magnitude < 1e6 nats: < 1e-9
# each), far below any MI the study reports
MI_ROUNDING_NATS = 1e-6


def neg_elbo_bound(likelihood: str) -> float:
    """The largest −ELBO (nats per image) a run of this likelihood may have and not be diverged."""
    if likelihood not in BASELINE_NATS:
        raise ValueError(
            f"no divergence baseline for likelihood {likelihood!r}; valid: {', '.join(BASELINE_NATS)}"
        )
    return NEG_ELBO_MULTIPLE * BASELINE_NATS[likelihood]


def _neg_elbo_reason(neg_elbo: float, likelihood: str, where: str) -> str | None:
    bound = neg_elbo_bound(likelihood)
    if neg_elbo > bound:
        return (
            f"{where} -ELBO {neg_elbo:.4g} nats beyond {bound:.5g} "
            f"({NEG_ELBO_MULTIPLE:g} x the uniform-pixel baseline {BASELINE_NATS[likelihood]:.5g} of {likelihood})"
        )
    return None


def of_epoch(epoch: int, rows: Iterable[Mapping[str, Any]], likelihood: str) -> str | None:
    """Why the run diverged in ``epoch`` (1-based), from that epoch's rows (train, val[, test]: each
    with ``split``, ``loss``, ``recon``, ``kl``, ``neg_elbo``), or None."""
    rows = list(rows)
    if not all(math.isfinite(r[k]) for r in rows for k in ("loss", "recon", "kl")):
        return f"non-finite loss in epoch {epoch}"
    for r in rows:
        if reason := _neg_elbo_reason(r["neg_elbo"], likelihood, f"{r['split']}"):
            return f"{reason} in epoch {epoch}"
    return None


def of_evaluation(row: Mapping[str, Any], likelihood: str) -> str | None:
    """Why an evaluated run diverged, from its ``eval.parquet`` row (``test/neg_elbo``,
    ``test/mutual_information`` and its ``_se``), or None. A missing value is not a reason."""
    neg_elbo, mi = row.get("test/neg_elbo"), row.get("test/mutual_information")
    for name, value in (("-ELBO", neg_elbo), ("mutual information", mi)):
        if value is not None and not math.isfinite(value):
            return f"non-finite test {name} ({value})"
    if neg_elbo is not None and (reason := _neg_elbo_reason(neg_elbo, likelihood, "test")):
        return reason
    se = row.get("test/mutual_information_se")
    floor = -(MI_SE_MULTIPLE * (se if se is not None and math.isfinite(se) else 0.0) + MI_ROUNDING_NATS)
    if mi is not None and mi < floor:
        return (
            f"negative mutual information {mi:.4g} nats (below {floor:.3g}: "
            f"{MI_SE_MULTIPLE:g} standard errors and the rounding floor)"
        )
    return None
