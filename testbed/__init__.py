"""What the tests and the benchmarks share: the emulator harness, real vLLM and dockerd, stubs and fakes.

Both `tests/` and `benchmarks/` import from here; neither imports the other.
"""
