"""Benchmarks of pim-hub; `make bench` runs them all and rewrites docs/benchmarks.md."""
