"""Benchmarks of the harness: ``python -m bench.throughput`` (training throughput against the stock loop)."""

from sweep import one_line_ctrl_c

one_line_ctrl_c()  # python -m bench.<tool>: an uncaught Ctrl-C is one line (sweep/__init__.py)
