"""Benchmarks: one script per measured thing, each writing JSON to benchmarks/results/."""
