"""vae-sweep analysis package: reads stored results only (never retrains, never loads a model)."""
