"""A latent-quality measure whose capacity does not grow with the latent size: a linear classifier on a
fixed number of principal components of the stored latents.

The linear probe of the evaluation reads the whole latent mean (25 to 200 features), so its accuracy can
rise with the latent size through the probe's own capacity. Here every run gets the same input size: the
2-D PCA projection of its stored test subset (``sweep.projection``, the same numbers as Figs. 6–7, kept
by slimmed runs), classified by linear discriminant analysis (closed form, deterministic) with
stratified ``FOLDS``-fold cross-validation over those images; the column is ``latent/pc2_probe_acc``.

    from analysis import pc_probe
    runs = pc_probe.with_pc2_probe(sweep)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMN = "latent/pc2_probe_acc"
FOLDS = 5


def accuracy(xy: np.ndarray, labels: np.ndarray) -> float:
    """Cross-validated accuracy of LDA on ``xy`` (n, k) for ``labels`` (n,); NaN when any row is not
    finite, the projection does not vary, or a class has fewer rows than folds."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    xy, labels = np.asarray(xy, dtype=float), np.asarray(labels)
    if not len(xy) or not np.isfinite(xy).all() or not np.any(xy.std(axis=0) > 0):
        return float("nan")
    if np.unique(labels, return_counts=True)[1].min() < FOLDS:
        return float("nan")
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=False)
    return float(cross_val_score(LinearDiscriminantAnalysis(), xy, labels, cv=folds).mean())


_CACHE: dict = {}  # the last sweep's result: the claims table and the budget's test rows share it


def with_pc2_probe(sweep) -> pd.DataFrame:
    """``sweep.runs`` with ``COLUMN`` added (NaN where a run stored no latents); a copy each call."""
    if _CACHE.get("sweep") is sweep:
        return _CACHE["runs"].copy()
    runs = sweep.runs.copy()
    values = []
    for run_dir in runs["run_dir"] if "run_dir" in runs.columns else []:
        proj = sweep.projection(str(run_dir))
        values.append(np.nan if proj is None else accuracy(proj.xy, proj.labels))
    runs[COLUMN] = pd.Series(values, index=runs.index, dtype=float)
    _CACHE.clear()
    _CACHE.update(sweep=sweep, runs=runs)
    return runs.copy()
