"""Benchmarks of the harness: ``python -m bench.throughput`` (training throughput against the stock loop)."""
