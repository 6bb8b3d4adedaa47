"""The worker's job loop (worker/job_loop.py) inside the runpod SDK's own JobScaler.

Nothing is taken from or posted to RunPod here: jobs are put on the scaler's queue as its job-take
loop would, and the job handler is a stand-in that records what runs (the SDK's `handle_job` around
it is real). Whether a job has started is checked after a few turns of the event loop, never after a
wait on the clock: a loop that polls on a timer has not looked by then.
"""

from __future__ import annotations

import asyncio
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

    async def handle(self, _session: Any, _config: Any, job: dict[str, Any]) -> None:
        self.started.append(job["id"])
        if job["id"].startswith("broken"):
            raise RuntimeError("a handler that fails")
        await self.release.setdefault(job["id"], asyncio.Event()).wait()

    def finish(self, job_id: str) -> None:
        self.release.setdefault(job_id, asyncio.Event()).set()


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


async def turns(count: int = 20) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_taken_job_starts_at_once_idle_or_busy() -> None:
    jobs = Jobs()
    made = scaler(PromptJobScaler, jobs, concurrency=4)
    loop = asyncio.create_task(made.run_jobs(None))
    await turns()
    await take(made, "a")
    await turns()
    assert jobs.started == ["a"], "an idle worker starts the job it took"
    await take(made, "b")
    await turns()
    assert jobs.started == ["a", "b"], "a busy worker starts the next job too, not on a timer"
    made.kill_worker()
    jobs.finish("a")
    jobs.finish("b")
    await asyncio.wait_for(loop, 5)


async def test_the_sdk_loop_polls_which_is_why_ours_exists() -> None:
    """If this fails, the SDK no longer waits for its 0.1 s poll and worker/job_loop.py can go."""
    jobs = Jobs()
    made = scaler(rp_scale.JobScaler, jobs, concurrency=4)
    loop = asyncio.create_task(made.run_jobs(None))
    await turns()
    await take(made, "a")
    await turns()
    assert jobs.started == []
    made.kill_worker()
    jobs.finish("a")
    await asyncio.wait_for(loop, 5)


async def test_no_more_jobs_run_than_the_concurrency_allows() -> None:
    jobs = Jobs()
    made = scaler(PromptJobScaler, jobs, concurrency=2)
    loop = asyncio.create_task(made.run_jobs(None))
    await take(made, "a", "b")
    await turns()
    queued = asyncio.create_task(take(made, "c"))
    await turns()
    assert jobs.started == ["a", "b"]
    jobs.finish("a")
    await turns()
    assert jobs.started == ["a", "b", "c"]
    await queued
    made.kill_worker()
    jobs.finish("b")
    jobs.finish("c")
    await asyncio.wait_for(loop, 5)


async def test_a_stopped_job_ends_and_the_others_go_on() -> None:
    jobs = Jobs()
    made = scaler(PromptJobScaler, jobs, concurrency=2)
    loop = asyncio.create_task(made.run_jobs(None))
    await take(made, "a", "b")
    await turns()
    stopped = made.jobs_tasks["a"]
    assert await made.stop_job("a")
    await turns()
    assert stopped.cancelled()
    assert not made.jobs_tasks["b"].done()
    await take(made, "c")
    await turns()
    assert jobs.started == ["a", "b", "c"], "the stopped job's slot is free again"
    made.kill_worker()
    jobs.finish("b")
    jobs.finish("c")
    await asyncio.wait_for(loop, 5)


async def test_shutdown_lets_running_jobs_finish() -> None:
    jobs = Jobs()
    made = scaler(PromptJobScaler, jobs, concurrency=2)
    loop = asyncio.create_task(made.run_jobs(None))
    await take(made, "a")
    await turns()
    made.kill_worker()
    await turns()
    assert not loop.done(), "a running job is waited for"
    jobs.finish("a")
    await asyncio.wait_for(loop, 5)
    assert made.jobs_tasks == {}


async def test_a_job_that_raises_does_not_stop_the_loop() -> None:
    jobs = Jobs()
    made = scaler(PromptJobScaler, jobs, concurrency=1)
    loop = asyncio.create_task(made.run_jobs(None))
    await take(made, "broken-1", "a")
    await turns()
    assert jobs.started == ["broken-1", "a"]
    assert not loop.done()
    made.kill_worker()
    jobs.finish("a")
    await asyncio.wait_for(loop, 5)
