"""The waiting half of the /stream budget: protocol.limits.PollBudget does the arithmetic, this sleeps.

Both clients (runpod.serverless for chat, bench.runpod_target for bench) share one StreamPacer per
endpoint, however many streams they follow, so together they stay inside RunPod's /stream limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from notus_cli.runpod.protocol.limits import PollBudget


class StreamPacer:
    """Holds each /stream poll until its turn under a PollBudget, then one of its concurrent slots."""

    def __init__(self, per_second: float | None = None, burst: int | None = None, concurrent: int | None = None):
        default = PollBudget()
        self.budget = PollBudget(
            per_second=default.per_second if per_second is None else per_second,
            burst=default.burst if burst is None else burst,
            concurrent=default.concurrent if concurrent is None else concurrent,
        )
        self._slots: asyncio.Semaphore | None = None  # made on first use, inside the running loop

    @property
    def per_second(self) -> float:
        return self.budget.per_second

    @property
    def burst(self) -> int:
        return self.budget.burst

    @property
    def concurrent(self) -> int:
        return self.budget.concurrent

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.budget.concurrent)
        wait = self.budget.reserve(time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)
        async with self._slots:
            yield
