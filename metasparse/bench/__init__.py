"""Benchmarks (measured, never asserted in tests): ``python -m metasparse.bench.speed``."""
