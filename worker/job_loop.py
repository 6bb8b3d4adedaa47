"""The runpod SDK's job loops, taking jobs as they arrive and starting each the moment it is taken.

runpod-python 1.12's `JobScaler` (runpod/serverless/modules/rp_scale.py) delays jobs twice:
- `run_jobs` looks at its queue of taken jobs every 0.1 s (`asyncio.sleep(0.1)` while idle,
  `asyncio.wait(..., timeout=0.1)` while jobs run): 0-100 ms before a taken job's handler starts.
- `get_jobs` keeps one job-take long poll open at a time. RunPod answers it with the first job that
  arrives, and jobs that arrive while the answer travels and the next poll comes back wait for that
  poll: up to a whole round trip to RunPod's API, for most of a burst of requests sent together.
`PromptJobScaler` overrides those two methods: jobs start when they are put on the queue, and up
to TAKES_IN_FLIGHT polls stay open at once, which between them ask for no more jobs than the worker
has free slots (the SDK's 1.0-1.3 `JobScaler.get_jobs` kept up to 100 job-take requests open at
once). Stopping jobs (`jobs_tasks`), heartbeats, concurrency and the drain at shutdown stay the
SDK's; `install()` makes the SDK's worker use it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from runpod.http_client import TooManyRequests
from runpod.serverless.modules import rp_scale

log = logging.getLogger("notus.worker")

RECHECK_S = 1.0  # the SDK may swap its queue when concurrency changes: look again at least this often
TAKES_IN_FLIGHT = 8  # job-take polls open at once (never more than free slots)
TOO_MANY_REQUESTS_PAUSE_S = 5.0  # as the SDK: no new poll for this long after a 429
FAILED_TAKE_PAUSE_S = 1.0  # after any other failure, so an unreachable API is not asked in a tight loop


def split(free: int, polls: int) -> list[int]:
    """How many jobs each of `polls` new job-take polls asks for, `free` slots between them."""
    polls = min(polls, free)
    return [free // polls + (1 if i < free % polls else 0) for i in range(polls)] if polls > 0 else []


class PromptJobScaler(rp_scale.JobScaler):  # type: ignore[misc]  # the SDK has no type hints
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self._slot_freed = asyncio.Event()  # a job ended: get_jobs may ask for another

    async def get_jobs(self, session: Any) -> None:
        polls: dict[asyncio.Future[Any], int] = {}  # open job-take polls -> jobs each asked for
        shutdown = asyncio.ensure_future(self._shutdown_event.wait())
        loop = asyncio.get_running_loop()
        paused_until = 0.0  # no new poll before this (loop time), after a refusal
        try:
            while self.is_alive():
                await self.set_scale()
                if loop.time() >= paused_until:
                    free = self.current_concurrency - self.current_occupancy() - sum(polls.values())
                    for ask in split(free, TAKES_IN_FLIGHT - len(polls)):
                        fetch = asyncio.wait_for(self.jobs_fetcher(session, ask), self.jobs_fetcher_timeout)
                        polls[asyncio.ensure_future(fetch)] = ask
                self._slot_freed.clear()
                freed = asyncio.ensure_future(self._slot_freed.wait())
                pause_left = paused_until - loop.time()
                timeout = min(RECHECK_S, pause_left) if pause_left > 0 else RECHECK_S
                done, _ = await asyncio.wait(
                    {*polls, freed, shutdown}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                freed.cancel()
                for poll in done & polls.keys():
                    del polls[poll]
                    if pause := await self._queue_taken(poll):
                        paused_until = loop.time() + pause
        finally:
            shutdown.cancel()
            for poll in polls:  # cut off at shutdown: RunPod gives no job to a request that went away
                poll.cancel()

    async def _queue_taken(self, poll: asyncio.Future[Any]) -> float:
        """Put what one job-take poll brought on the queue, as the SDK's get_jobs does; returns how
        long to open no new poll (0: none)."""
        try:
            jobs = poll.result() or []
        except TooManyRequests:
            log.warning("RunPod answered a job-take with 429: no new poll for %.0f s", TOO_MANY_REQUESTS_PAUSE_S)
            return TOO_MANY_REQUESTS_PAUSE_S
        except TimeoutError:
            return 0.0  # the long poll outlived the SDK's jobs_fetcher_timeout: ask again
        except Exception as exc:
            log.error("a job-take failed: %s: %s", type(exc).__name__, exc)
            return FAILED_TAKE_PAUSE_S
        for job in jobs:
            await self.jobs_queue.put(job)
            self.job_progress.add(job)
        return 0.0

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
                if done & tasks:
                    self._slot_freed.set()
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
