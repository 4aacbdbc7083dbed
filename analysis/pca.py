"""2-D PCA projections of stored latent means, for the paper's Figs. 6–7 (``analysis.figures``).

The projection is deterministic: scikit-learn's exact SVD (``svd_solver="full"``), then each component's
sign flipped so that its largest-magnitude loading is positive, so the same μ always gives the same
picture, whatever the SVD library's sign convention.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

N_COMPONENTS = 2


def project(mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """μ (n, L) → (xy (n, 2) float64, explained variance ratio (2,)).

    With L = 1 (or a single image) there is only one component: the second column and its ratio are 0.
    A μ with no variance at all (a fully collapsed encoder) projects to the origin with ratios 0.
    """
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 2:
        raise ValueError(f"mu must be (n, L), got shape {mu.shape}")
    n, latent = mu.shape
    xy = np.zeros((n, N_COMPONENTS))
    ratio = np.zeros(N_COMPONENTS)
    k = min(N_COMPONENTS, latent, n)
    if k == 0 or not np.any(mu.var(axis=0) > 0):
        return xy, ratio
    pca = PCA(n_components=k, svd_solver="full").fit(mu)
    comps = pca.components_  # (k, L)
    largest = comps[np.arange(k), np.abs(comps).argmax(axis=1)]
    comps = comps * np.where(largest < 0, -1.0, 1.0)[:, None]
    xy[:, :k] = (mu - pca.mean_) @ comps.T
    ratio[:k] = np.nan_to_num(pca.explained_variance_ratio_)
    return xy, ratio
