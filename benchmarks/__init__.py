"""Benchmarks, each a module run from the repository's root as `python -m benchmarks.<name>`.

They import what they share with the tests from `testbed/`, never from `tests/`, and write their
figures to docs/results/ through `benchmarks.results`.
"""
