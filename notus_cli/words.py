"""Counting in messages: `1 turn`, `2 turns` (libraries and commands alike; no I/O, no imports)."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """`1 turn`, `2 turns`, `0 files`: a count with its noun (regular plurals only)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
