"""C6, "larger latents degrade latent-space quality yet stay separable at moderate sizes"
(docs/protocol.md "Claims check"): decided on the kNN accuracy, whose capacity does not grow with the
latent size (Spearman rho with the latent size, latent sizes shuffled within encoder × decoder), with the
separability of its mean at moderate sizes (:func:`decide`); the linear probe on the full latent, the
linear probe on the 2-D PCA projection and the PCA silhouette are supporting rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import permutation
from analysis.claim_stats import (
    CORR,
    INCONCLUSIVE,
    MIN_CORR_RUNS,
    NOT_REPRODUCED,
    REPRODUCED,
    Verdict,
    across,
    by_test,
    corr,
    design,
    directional,
    fmt3,
    n_runs,
    numeric,
    result,
    robust_columns,
    row,
    seed_text,
    strata,
)

C6_MODERATE_LATENT = 100  # latent sizes up to this are "moderate"
C6_MIN_ACC = 0.90  # "separable": kNN accuracy at moderate sizes
C6_DECIDING = "latent/knn_acc"  # a neighbourhood measure: its capacity does not grow with the latent size
C6_MEASURES = {
    "latent/knn_acc": "kNN accuracy",
    "latent/linear_probe_acc": "linear probe on the whole latent (input grows with the latent size)",
    "latent/pc2_probe_acc": "linear probe on the 2-D PCA projection",
    "latent/pca_silhouette": "silhouette of the 2-D PCA projection",
}


def c6(u, seeds, note: str) -> list[Verdict]:
    statement = "Larger latents degrade latent-space quality yet stay separable at moderate sizes."
    latent = numeric(u, "latent_dim")
    if not len(u) or latent.dropna().nunique() < 2:
        why = f"fewer than two latent sizes among the ok configurations: the factor has one level{note}"
        return [row("C6", C6_MEASURES[C6_DECIDING], C6_DECIDING, statement, "", why, decides=True)]
    rows = []
    for col, name in C6_MEASURES.items():
        test = (
            f"Spearman rho(latent size, {name}) over the configurations; one-sided permutation (latent sizes "
            f"shuffled within encoder × decoder: rho = 0 against rho < 0)."
        )
        if col == C6_DECIDING:
            test += (
                f" Decides C6 with the separability of its mean at latent <= {C6_MODERATE_LATENT} (bootstrap "
                f"interval at or above {C6_MIN_ACC}): reproduced if both hold, not reproduced if either fails."
            )
        per_seed = {seed: corr(numeric(g, "latent_dim"), numeric(g, col), "spearman") for seed, g in seeds}
        est = across(per_seed, 0.0, CORR)
        robust = robust_columns(est, lambda a, b: directional(a, b, 0.0, "below"))
        keep = u[np.isfinite(numeric(u, col)) & np.isfinite(latent)]
        if len(keep) < MIN_CORR_RUNS or numeric(keep, "latent_dim").nunique() < 2:
            why = f"{name}: not stored for enough configurations of two latent sizes{note}"
            rows.append(row("C6", name, col, statement, test, why, null=0.0, side="below", **robust))
            continue
        d = design(keep)
        res = permutation.correlation(
            d["_seed"], numeric(d, "latent_dim"), numeric(d, col), strata(d, ["family/encoder", "family/decoder"]),
            d["_cluster"], d["_latent"], method="spearman", side="less", gen=permutation.rng(),
        )  # fmt: skip
        why = f"rho = {res.text()}; {seed_text(est, 'rho')}{note}."
        rows.append(result(
            "C6", name, col, statement, test, res, by_test(res, 0.0, "below"), why, n_runs=n_runs(keep),
            in_family=True, null=0.0, side="below", **robust,
        ))  # fmt: skip
    return rows


def _separability(u) -> tuple[str, str]:
    """C6's second half on the deciding measure: (verdict, text) of its mean at moderate latent sizes."""
    m, acc = C6_MODERATE_LATENT, C6_MIN_ACC
    mod = u[(numeric(u, "latent_dim") <= m) & np.isfinite(numeric(u, C6_DECIDING))]
    if not len(mod):
        return INCONCLUSIVE, f"no configuration with latent <= {m}"
    d = design(mod)
    sep = permutation.mean(
        d["_seed"], numeric(d, C6_DECIDING), d["_cluster"], d["_latent"], gen=permutation.rng()
    )
    verdict = _separable(sep.ci_low, sep.ci_high)
    text = (
        f"{C6_MEASURES[C6_DECIDING]} at latent <= {m}: {fmt3(sep.statistic)}, bootstrap 95 % CI "
        f"[{fmt3(sep.ci_low)}, {fmt3(sep.ci_high)}] against {acc} (separability: {verdict})"
    )
    return verdict, text


def _separable(low, high) -> str:
    """C6's separability rule on an interval of the moderate-size accuracy."""
    if low is None or not np.isfinite(low):
        return INCONCLUSIVE
    acc = C6_MIN_ACC
    return REPRODUCED if low >= acc else NOT_REPRODUCED if high < acc else INCONCLUSIVE


def _both(degrade: str, separable: str) -> str:
    """C6's verdict from its two parts: not reproduced if either fails, reproduced if both hold."""
    if NOT_REPRODUCED in (degrade, separable):
        return NOT_REPRODUCED
    return REPRODUCED if degrade == separable == REPRODUCED else INCONCLUSIVE


def decide(verdicts: list[Verdict], u: pd.DataFrame) -> None:
    """C6's deciding row: the kNN degradation (Holm-decided) and its separability at moderate sizes."""
    for v in verdicts:
        if v.claim == "C6" and v.metric == C6_DECIDING:
            v.decides = True
            if v.statistic is None:
                continue
            sep, text = _separability(u)
            v.why = f"{v.why.rstrip('.')}; {text}."
            v.verdict = _both(v.verdict, sep)
