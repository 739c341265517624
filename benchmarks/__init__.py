"""Benchmarks: entries run from one command each, with pass/fail requirements."""
