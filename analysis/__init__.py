"""vae-sweep analysis package: reads stored results only (never retrains, never loads a model)."""

from sweep import one_line_ctrl_c

one_line_ctrl_c()  # python -m analysis.<tool>: an uncaught Ctrl-C is one line (sweep/__init__.py)
