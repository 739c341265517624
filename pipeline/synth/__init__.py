"""Synthetic medical records for demos, tests and benchmarks."""
