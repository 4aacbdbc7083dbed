"""2-D PCA projections of stored latent means, for the paper's Figs. 6–7 (``analysis.figures``).

The projection and its compact per-run file live in :mod:`sweep.projection` (numpy and scikit-learn
only), so a slimmed run (``python -m sweep.slim``, which keeps ``pca.parquet`` in place of
``latents.parquet``) draws the same figure as the run before slimming.
"""

from sweep.projection import N_COMPONENTS, Projection, of_run, project

__all__ = ["N_COMPONENTS", "Projection", "of_run", "project"]
