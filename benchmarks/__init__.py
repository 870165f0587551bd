"""Benchmarks: each ``bench_*.py`` module measures one target against a baseline run beside it."""
