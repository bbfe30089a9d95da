"""Benchmarks: speed is measured here (python -m bench [name ...]), never asserted in tests."""
