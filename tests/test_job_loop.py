"""The worker's job loop (worker/job_loop.py) inside the runpod SDK's own JobScaler.

Nothing is taken from or posted to RunPod here: jobs are put on the scaler's queue as its job-take
loop would, and the job handler is a stand-in that records what runs (the SDK's `handle_job` around
it is real). Whether a job has started is checked after a few turns of the event loop, never after a
wait on the clock: a loop that polls on a timer has not looked by then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from runpod.serverless.modules import rp_scale

from worker.job_loop import PromptJobScaler

pytestmark = pytest.mark.anyio


class Jobs:
    """A stand-in for the SDK's job handler: each job runs until it is released."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}
        self.ending = False

    async def handle(self, _session: Any, _config: Any, job: dict[str, Any]) -> None:
        self.started.append(job["id"])
        if job["id"].startswith("broken"):
            raise RuntimeError("a handler that fails")
        if self.ending:
            return
        await self.release.setdefault(job["id"], asyncio.Event()).wait()

    def finish(self, job_id: str) -> None:
        self.release.setdefault(job_id, asyncio.Event()).set()

    def finish_all(self) -> None:
        """Let every job finish, those that start from now on too."""
        self.ending = True
        for job_id in self.started:
            self.finish(job_id)


def scaler(cls: type[rp_scale.JobScaler], jobs: Jobs, concurrency: int) -> rp_scale.JobScaler:
    made = cls({"handler": None, "concurrency_modifier": lambda _current: concurrency})
    made.current_concurrency = concurrency
    made.jobs_queue = asyncio.Queue(maxsize=concurrency)
    made.jobs_handler = jobs.handle
    return made


async def take(made: rp_scale.JobScaler, *job_ids: str) -> None:
    """What the SDK's job-take loop does with the jobs it is given."""
    for job_id in job_ids:
        job = {"id": job_id, "input": {}}
        await made.jobs_queue.put(job)
        made.job_progress.add(job)


@dataclass
class Worker:
    scaler: rp_scale.JobScaler
    jobs: Jobs
    loop: asyncio.Task[None]


@contextlib.asynccontextmanager
async def running(cls: type[rp_scale.JobScaler], concurrency: int) -> AsyncIterator[Worker]:
    """The scaler's job loop running; at the end it is told to shut down and every job is let finish."""
    jobs = Jobs()
    made = scaler(cls, jobs, concurrency)
    worker = Worker(made, jobs, asyncio.create_task(made.run_jobs(None)))
    try:
        yield worker
    finally:
        made.kill_worker()
        jobs.finish_all()
        await asyncio.wait_for(worker.loop, 5)


async def turns(count: int = 20) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_taken_job_starts_at_once_idle_or_busy() -> None:
    async with running(PromptJobScaler, concurrency=4) as worker:
        await turns()
        await take(worker.scaler, "a")
        await turns()
        assert worker.jobs.started == ["a"], "an idle worker starts the job it took"
        await take(worker.scaler, "b")
        await turns()
        assert worker.jobs.started == ["a", "b"], "a busy worker starts the next job too, not on a timer"


async def test_the_sdk_loop_polls_which_is_why_ours_exists() -> None:
    """If this fails, the SDK no longer waits for its 0.1 s poll and worker/job_loop.py can go."""
    async with running(rp_scale.JobScaler, concurrency=4) as worker:
        await turns()
        await take(worker.scaler, "a")
        await turns()
        assert worker.jobs.started == []


async def test_no_more_jobs_run_than_the_concurrency_allows() -> None:
    async with running(PromptJobScaler, concurrency=2) as worker:
        await take(worker.scaler, "a", "b")
        await turns()
        queued = asyncio.create_task(take(worker.scaler, "c"))
        await turns()
        assert worker.jobs.started == ["a", "b"]
        worker.jobs.finish("a")
        await turns()
        assert worker.jobs.started == ["a", "b", "c"]
        await queued


async def test_a_stopped_job_ends_and_the_others_go_on() -> None:
    async with running(PromptJobScaler, concurrency=2) as worker:
        await take(worker.scaler, "a", "b")
        await turns()
        stopped = worker.scaler.jobs_tasks["a"]
        assert await worker.scaler.stop_job("a")
        await turns()
        assert stopped.cancelled()
        assert not worker.scaler.jobs_tasks["b"].done()
        await take(worker.scaler, "c")
        await turns()
        assert worker.jobs.started == ["a", "b", "c"], "the stopped job's slot is free again"


async def test_a_job_that_raises_does_not_stop_the_loop() -> None:
    async with running(PromptJobScaler, concurrency=1) as worker:
        await take(worker.scaler, "broken-1", "a")
        await turns()
        assert worker.jobs.started == ["broken-1", "a"]
        assert not worker.loop.done()


async def test_shutdown_lets_running_jobs_finish() -> None:
    async with running(PromptJobScaler, concurrency=2) as worker:
        await take(worker.scaler, "a")
        await turns()
        worker.scaler.kill_worker()
        await turns()
        assert not worker.loop.done(), "a running job is waited for"
        worker.jobs.finish("a")
        await asyncio.wait_for(worker.loop, 5)
        assert worker.scaler.jobs_tasks == {}


class Takes:
    """A stand-in for RunPod's job-take (the `jobs_fetcher` the SDK calls): each call is recorded with
    how many jobs it asked for, and answered once the test hands it jobs."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._answers: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()

    async def take(self, _session: Any, wanted: int) -> list[dict[str, Any]]:
        self.asked.append(wanted)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self._answers.get()
        finally:
            self.in_flight -= 1

    def answer(self, *job_ids: str) -> None:
        self._answers.put_nowait([{"id": job_id, "input": {}} for job_id in job_ids])


@contextlib.asynccontextmanager
async def taking(cls: type[rp_scale.JobScaler], concurrency: int) -> AsyncIterator[tuple[Worker, Takes]]:
    """The scaler's job-take loop and job loop running against `Takes`."""
    takes = Takes()
    async with running(cls, concurrency) as worker:
        worker.scaler.job_progress.clear()  # a process-wide singleton in the SDK
        worker.scaler.jobs_fetcher = takes.take
        getter = asyncio.create_task(worker.scaler.get_jobs(None))
        try:
            yield worker, takes
        finally:
            worker.scaler.kill_worker()
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter


async def test_the_next_job_is_taken_as_soon_as_a_slot_frees() -> None:
    """A full worker has no job-take open; the end of a job sends one at once (not after the SDK's
    1 s sleep), asking for exactly the free slots, and there is never more than one in flight."""
    async with taking(PromptJobScaler, concurrency=2) as (worker, takes):
        await turns()
        assert takes.asked == [2]
        takes.answer("a")
        await turns()
        assert takes.asked == [2, 1], "a taken job is counted once: one slot is still free"
        takes.answer("b")
        await turns()
        assert worker.jobs.started == ["a", "b"]
        assert takes.asked == [2, 1], "a full worker does not ask for more"
        worker.jobs.finish("a")
        await turns()
        assert takes.asked == [2, 1, 1], "the freed slot is asked for at once"
        assert takes.most_in_flight == 1


async def test_the_sdks_take_loop_sleeps_when_full_which_is_why_ours_exists() -> None:
    """If this fails, the SDK no longer sleeps 1 s when full and PromptJobScaler.get_jobs can go."""
    async with taking(rp_scale.JobScaler, concurrency=1) as (worker, takes):
        await turns()
        takes.answer("a")
        await asyncio.sleep(0.3)  # the SDK's job loop starts jobs on its own 0.1 s poll
        assert worker.jobs.started == ["a"]
        worker.jobs.finish("a")
        await asyncio.sleep(0.3)
        assert takes.asked == [1], "the SDK waits out its 1 s sleep before the next job-take"
