"""Benchmarks: `make bench` (python -m bench). Each scenario prints a table and a JSON line."""
