"""The deterministic 2-D PCA projection of a run's stored latent means (the paper's Figs. 6–7), and its
compact per-run file, ``pca.parquet``, which :mod:`sweep.slim` keeps in place of ``latents.parquet``.

NumPy and scikit-learn only (no torch), so the analysis reads it without loading torch.

The projection is scikit-learn's exact SVD (``svd_solver="full"``), then each component's sign flipped
so that its largest-magnitude loading is positive, so the same μ always gives the same picture,
whatever the SVD library's sign convention. Its coordinates are rounded to float16, whether they come
from ``latents.parquet`` (computed at analysis time) or from ``pca.parquet`` (computed when the run
was slimmed): a figure drawn from either is the same figure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

N_COMPONENTS = 2
LATENTS_FILE, PCA_FILE = "latents.parquet", "pca.parquet"
_RATIO_KEY = b"vae_sweep.explained_variance_ratio"


def project(mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """μ (n, L) → (xy (n, 2) float64, explained variance ratio (2,)).

    With L = 1 (or a single image) there is only one component: the second column and its ratio are 0.
    A μ with no variance at all (a fully collapsed encoder) projects to the origin with ratios 0.
    """
    from sklearn.decomposition import PCA

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


@dataclass
class Projection:
    """What Figs. 6–7 draw for one run: ``xy`` (n, 2) float32 (NaN rows where ``finite`` is False,
    and all NaN when any row is: a partial projection would mislead), ``ratio`` (2,), ``labels`` (n,),
    ``finite`` (n,) whether each image's stored μ was finite."""

    xy: np.ndarray
    ratio: np.ndarray
    labels: np.ndarray
    finite: np.ndarray

    @property
    def all_finite(self) -> bool:
        return bool(self.finite.all())


def of_latents(mu: np.ndarray, labels: np.ndarray) -> Projection:
    """The :class:`Projection` of stored μ (n, L); its coordinates rounded to float16 (stored as
    float32): μ itself is stored as float16, and a panel is ~150 pixels wide, so nothing visible is lost,
    and ``pca.parquet`` holds 4 bytes per image and coordinate less."""
    finite = np.isfinite(mu).all(axis=1)
    if finite.all():
        xy, ratio = project(mu)
        with np.errstate(over="ignore"):
            x16 = xy.astype(np.float16)
        xy = (x16 if np.isfinite(x16).all() else xy).astype(np.float32)  # float32 beyond float16's range
    else:
        xy, ratio = np.full((len(mu), N_COMPONENTS), np.nan, np.float32), np.zeros(N_COMPONENTS)
    return Projection(xy, ratio, np.asarray(labels), finite)


def read_latents(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(μ (n, L) float32, labels (n,)) of a ``latents.parquet``."""
    t = pq.read_table(path, columns=["label", "mu"])
    mu = np.stack(t.column("mu").to_numpy(zero_copy_only=False)).astype(np.float32)
    return mu, t.column("label").to_numpy()


def compact_table(p: Projection) -> pa.Table:
    """``pca.parquet``: one row per stored test image (label int8, finite, pc1, pc2), the explained
    variance ratios in the schema metadata (JSON: floats round-trip exactly). The test images are the
    run's ``latents.parquet`` ones, in its order (a fixed seeded subset, the same for every run)."""
    t = pa.table(
        {
            "label": pa.array(p.labels, pa.int8()),
            "finite": pa.array(p.finite, pa.bool_()),
            "pc1": pa.array(p.xy[:, 0], pa.float32()),
            "pc2": pa.array(p.xy[:, 1], pa.float32()),
        }
    )
    return t.replace_schema_metadata({_RATIO_KEY: json.dumps([float(r) for r in p.ratio]).encode()})


def read_compact(path: Path) -> Projection:
    t = pq.read_table(path)
    ratio = np.array(json.loads((t.schema.metadata or {})[_RATIO_KEY]), dtype=np.float64)
    xy = np.stack([t.column("pc1").to_numpy(), t.column("pc2").to_numpy()], axis=1).astype(np.float32)
    return Projection(xy, ratio, t.column("label").to_numpy().astype(np.int64), t.column("finite").to_numpy())


def of_run(run_dir: Path) -> Projection | None:
    """The run's projection: from ``latents.parquet`` when it is there, else from ``pca.parquet``
    (a slimmed run), else None. Raises what pyarrow raises on an unreadable file."""
    run_dir = Path(run_dir)
    if (run_dir / LATENTS_FILE).is_file():
        return of_latents(*read_latents(run_dir / LATENTS_FILE))
    if (run_dir / PCA_FILE).is_file():
        return read_compact(run_dir / PCA_FILE)
    return None
