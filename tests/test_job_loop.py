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


class Polls:
    """A stand-in for the SDK's job-take request (rp_job.get_job): each poll stays open until it is
    answered, as RunPod's long poll does while no job is queued."""

    def __init__(self) -> None:
        self.open: list[tuple[int, asyncio.Future[list[dict[str, Any]] | None]]] = []

    async def fetch(self, _session: Any, num_jobs: int) -> list[dict[str, Any]] | None:
        entry = (num_jobs, asyncio.get_running_loop().create_future())
        self.open.append(entry)
        try:
            return await entry[1]
        finally:
            self.open.remove(entry)

    def asked(self) -> list[int]:
        return sorted(num_jobs for num_jobs, _ in self.open)

    def answer(self, *job_ids: str) -> None:
        """The oldest poll not yet answered gets these jobs."""
        self._oldest().set_result([{"id": job_id, "input": {}} for job_id in job_ids])

    def refuse(self, error: BaseException) -> None:
        self._oldest().set_exception(error)

    def _oldest(self) -> asyncio.Future[list[dict[str, Any]] | None]:
        return next(answer for _, answer in self.open if not answer.done())


@dataclass
class TakingWorker(Worker):
    polls: Polls
    taking: asyncio.Task[None]


@contextlib.asynccontextmanager
async def taking(cls: type[rp_scale.JobScaler], concurrency: int) -> AsyncIterator[TakingWorker]:
    """Both of the scaler's loops running, job-take answered by hand."""
    async with running(cls, concurrency) as worker:
        polls = Polls()
        worker.scaler.jobs_fetcher = polls.fetch
        worker.scaler.job_progress.clear()  # the SDK's is one per process
        loop = asyncio.create_task(worker.scaler.get_jobs(None))
        try:
            yield TakingWorker(worker.scaler, worker.jobs, worker.loop, polls, loop)
        finally:
            worker.scaler.kill_worker()
            await asyncio.wait_for(loop, 5)
            assert polls.open == [], "no poll is left open at shutdown"


@pytest.mark.parametrize(("concurrency", "asked"), [(32, [4] * 8), (12, [1] * 4 + [2] * 4), (3, [1, 1, 1])])
async def test_polls_stay_open_together_and_ask_for_no_more_than_the_free_slots(
    concurrency: int, asked: list[int]
) -> None:
    async with taking(PromptJobScaler, concurrency) as worker:
        await turns()
        assert worker.polls.asked() == asked


async def test_jobs_that_arrive_together_all_start_at_once() -> None:
    async with taking(PromptJobScaler, concurrency=16) as worker:
        await turns()
        for job_id in "abcd":  # four requests sent together, each answering the poll that was waiting
            worker.polls.answer(job_id)
        await turns()
        assert sorted(worker.jobs.started) == ["a", "b", "c", "d"]
        assert sum(worker.polls.asked()) == 16 - 2 * 4, "new polls ask for the rest (the SDK counts a queued job twice)"


async def test_the_sdk_keeps_one_poll_open_which_is_why_ours_exists() -> None:
    """If this fails, the SDK keeps several job-take polls open itself and get_jobs can go."""
    async with taking(rp_scale.JobScaler, concurrency=16) as worker:
        await turns()
        assert worker.polls.asked() == [16]
        worker.scaler.kill_worker()
        worker.polls.answer()  # the SDK's poll outlives a shutdown until RunPod answers it


async def test_a_full_worker_asks_again_as_soon_as_a_job_ends() -> None:
    async with taking(PromptJobScaler, concurrency=2) as worker:
        await turns()
        worker.polls.answer("a")
        worker.polls.answer("b")
        await turns()
        assert worker.polls.asked() == [], "no poll while every slot is taken"
        worker.jobs.finish("a")
        await turns()
        assert worker.polls.asked() == [1], "a slot freed: asked again at once, not on the next recheck"


async def test_a_refused_poll_pauses_new_polls_and_a_failed_one_is_not_lost() -> None:
    from runpod.http_client import TooManyRequests

    async with taking(PromptJobScaler, concurrency=4) as worker:
        await turns()
        worker.polls.refuse(TooManyRequests(None, (), status=429))
        await turns()
        assert worker.polls.asked() == [1, 1, 1], "no new poll after a 429 (the SDK pauses 5 s too)"
        worker.polls.answer("a")
        await turns()
        assert worker.jobs.started == ["a"], "the polls still open are served during the pause"
