"""Benchmarks that print ratios against a baseline measured in the same run.

Run them all with `python -m bench` (or `make bench`).
"""
