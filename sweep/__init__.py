"""vae-sweep training package: data, models, losses, training, evaluation, results I/O."""
