"""The runpod SDK's job loop, starting each job the moment it is taken instead of on a 0.1 s poll.

runpod-python's `JobScaler.run_jobs` (runpod/serverless/modules/rp_scale.py) looks at its queue of
taken jobs every 0.1 s: `asyncio.sleep(0.1)` while idle, `asyncio.wait(..., timeout=0.1)` while jobs
run. A job therefore waits 0-100 ms inside the worker before its handler starts, 50 ms on average,
and that is added to every time to first token, on RunPod as here. `PromptJobScaler` overrides that
one method: it waits on the queue itself, on the running jobs and on shutdown, whichever comes
first. Taking jobs, stopping them (`jobs_tasks`), heartbeats, concurrency and the drain at shutdown
stay the SDK's; `install()` makes the SDK's worker use it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from runpod.serverless.modules import rp_scale

log = logging.getLogger("notus.worker")

RECHECK_S = 1.0  # the SDK may swap its queue when concurrency changes: look again at least this often


class PromptJobScaler(rp_scale.JobScaler):  # type: ignore[misc]  # the SDK has no type hints
    async def run_jobs(self, session: Any) -> None:
        tasks: set[asyncio.Task[Any]] = set()
        shutdown = asyncio.ensure_future(self._shutdown_event.wait())
        try:
            while self.is_alive() or not self.jobs_queue.empty():
                while len(tasks) < self.current_concurrency and not self.jobs_queue.empty():
                    tasks.add(self._start(session, self.jobs_queue.get_nowait()))
                waiting: set[asyncio.Future[Any]] = {shutdown, *tasks}
                taking = None
                if len(tasks) < self.current_concurrency and self.is_alive():
                    taking = asyncio.ensure_future(self.jobs_queue.get())
                    waiting.add(taking)
                done, _ = await asyncio.wait(waiting, timeout=RECHECK_S, return_when=asyncio.FIRST_COMPLETED)
                for task in done & tasks:
                    if not task.cancelled():
                        task.exception()  # the SDK's handle_job has logged it; asyncio need not warn again
                tasks.difference_update(done)
                if taking is not None:
                    if taking.done():
                        tasks.add(self._start(session, taking.result()))
                    else:  # a cancelled get leaves its job in the queue for the next round
                        taking.cancel()
        finally:
            shutdown.cancel()
        # As the SDK does: let the remaining jobs finish; a stopped one ends in CancelledError.
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("a job failed while the worker shut down: %s", type(result).__name__)

    def _start(self, session: Any, job: dict[str, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(self.handle_job(session, job))
        self.jobs_tasks[job["id"]] = task
        return task


def install() -> None:
    """Make the SDK's worker (`runpod.serverless.worker.run_worker`) build a PromptJobScaler."""
    rp_scale.JobScaler = PromptJobScaler
