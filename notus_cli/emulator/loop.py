"""What the parts below the account need from it: where it listens, and a way onto its event loop.

The scaler and the worker pools take this protocol instead of the Account itself, so they sit below
account.py (which owns them) rather than in a circle with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class AccountLoop(Protocol):
    url: str | None  # the emulator's base URL once a server listens; workers are pointed at it

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the account's event loop; safe from any thread."""
