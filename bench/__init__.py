"""Benchmarks, run from the repository root as modules: ``python -m bench.bench_gnn`` (``make bench``
runs every ``bench_*`` module). The top layer of tests/test_layers.py: it may import anything from
recbench, and nothing in recbench imports it."""
