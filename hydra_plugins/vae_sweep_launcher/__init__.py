"""vae-sweep's Hydra launcher plugin (``hydra/launcher=cohort``); the logic lives in :mod:`sweep.cohort_launch`."""
