"""The runpod SDK's job loop: each job starts the moment it is taken, and the next is taken the moment
a slot frees, instead of on the SDK's 0.1 s and 1 s timers.

runpod-python's `JobScaler.run_jobs` (runpod/serverless/modules/rp_scale.py) looks at its queue of
taken jobs every 0.1 s: `asyncio.sleep(0.1)` while idle, `asyncio.wait(..., timeout=0.1)` while jobs
run. A job therefore waits 0-100 ms inside the worker before its handler starts, 50 ms on average,
and that is added to every time to first token, on RunPod as here. `PromptJobScaler` overrides that
one method: it waits on the queue itself, on the running jobs and on shutdown, whichever comes
first. Taking jobs, stopping them (`jobs_tasks`), heartbeats, concurrency and the drain at shutdown
stay the SDK's; `install()` makes the SDK's worker use it.

Taking has a stall of its own (runpod-python 1.12 `JobScaler.get_jobs`, same file): when the worker
is full it sleeps 1 s before it looks again, so a burst larger than the concurrency waits up to 1 s
after a slot frees before the next job-take goes out; and it counts a taken job twice (in its queue
and in `job_progress`) until the job starts, so it can think itself full when it is not.
`PromptJobScaler.get_jobs` keeps the SDK's one job-take request at a time (runpod-python PR #331
removed parallel takes as load on RunPod's platform) but counts each job once (`job_progress` holds
every job from its take to its end) and, when full, waits for a job to end rather than for a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from runpod.http_client import TooManyRequests
from runpod.serverless.modules import rp_scale

log = logging.getLogger("notus.worker")

RECHECK_S = 1.0  # the SDK may swap its queue when concurrency changes: look again at least this often
TOO_MANY_REQUESTS_S = 5.0  # the SDK's own back-off when RunPod answers a job-take with 429


class PromptJobScaler(rp_scale.JobScaler):  # type: ignore[misc]  # the SDK has no type hints
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self._slot_freed = asyncio.Event()  # set by each job's end: get_jobs, when full, waits on it

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

    async def get_jobs(self, session: Any) -> None:
        while self.is_alive():
            await self.set_scale()
            wanted = self.current_concurrency - self.job_progress.get_job_count()
            if wanted <= 0:
                self._slot_freed.clear()
                with contextlib.suppress(TimeoutError):
                    # a job's end sets it; the timeout only lets a changed concurrency be seen
                    await asyncio.wait_for(self._slot_freed.wait(), RECHECK_S)
                continue
            try:
                taken = await asyncio.wait_for(self.jobs_fetcher(session, wanted), timeout=self.jobs_fetcher_timeout)
            except TooManyRequests:
                await asyncio.sleep(TOO_MANY_REQUESTS_S)
                continue
            except (TimeoutError, TypeError):
                continue  # a long poll that ran out, or the SDK's own "no job" signal: ask again
            except Exception as error:  # the SDK logs and carries on too: a worker must outlive a bad poll
                log.error("job-take failed: %s", type(error).__name__)
                await asyncio.sleep(0)
                continue
            for job in taken or []:
                self.job_progress.add(job)  # before the queue: run_jobs may start it at once
                await self.jobs_queue.put(job)

    async def handle_job(self, session: Any, job: dict[str, Any]) -> None:
        try:
            await super().handle_job(session, job)
        finally:
            self._slot_freed.set()

    def _start(self, session: Any, job: dict[str, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(self.handle_job(session, job))
        self.jobs_tasks[job["id"]] = task
        return task


def install() -> None:
    """Make the SDK's worker (`runpod.serverless.worker.run_worker`) build a PromptJobScaler."""
    rp_scale.JobScaler = PromptJobScaler
