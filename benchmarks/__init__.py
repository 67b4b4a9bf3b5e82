"""Serving benchmarks (`make bench`, `make soak`): reported figures, never timed tests."""
