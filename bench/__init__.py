"""Benchmarks (docs/benchmarks.md): one script per figure, JSON out, --quick for CI."""
