"""A RunPod serverless endpoint as a benchmark target, through its job API: a thin aiohttp driver of
the protocol's JobFollower (notus_cli.runpod.protocol.follow), the same sequence chat's client drives.

Each prompt becomes one streamed job: POST /run, then GET /stream until the job ends (TTFT is the
first poll that brings a chunk with content), then GET /status for RunPod's own `delayTime` and
`executionTime`, kept as the request's `queue` and `execution` phases. Those two split a slow
answer into waiting for a worker and the worker's own time, which the OpenAI route cannot show.

The job input takes one of two shapes (`job_route`): `openai-job`, an OpenAI chat request for the
worker's OpenAI route, which is what `notus chat` sends (so bench measures what chat users get), or
`native`, the worker's own shape (messages plus top-level sampling parameters).

A /stream poll hands over every chunk made since the last one, so ITL here is the gap between
polls that brought content (see ChunkTally). Polls are paced to RunPod's /stream limits (see
runpod.pacing.StreamPacer). The emulator holds a poll open until there is something new; a server
that answers at once is asked again after POLL_PAUSE, which bounds how precisely TTFT and ITL are
known.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any, Unpack

from notus_cli.bench.chunks import ChunkTally
from notus_cli.bench.metrics import RequestRecord
from notus_cli.bench.senders import HttpOptions, HttpTarget, native_input, transport_failures
from notus_cli.bench.workload import Prompt
from notus_cli.errors import BenchError, JobFailed
from notus_cli.runpod.pacing import StreamPacer
from notus_cli.runpod.protocol import routes
from notus_cli.runpod.protocol.bodies import Health, JobStatus, item_chunks, job_request, openai_job_input
from notus_cli.runpod.protocol.follow import (
    Call,
    CallRefused,
    FollowEvent,
    JobAccepted,
    JobEnded,
    JobFollower,
    RetryScheduled,
    StreamedItems,
    call,
)
from notus_cli.runpod.protocol.limits import RATE_LIMITED, RetryPolicy
from notus_cli.runpod.protocol.replies import error_message
from notus_cli.runpod.urls import RUNPOD_API_URL as DEFAULT_BASE_URL
from worker.job_errors import parse_job_error

POLL_PAUSE = 0.1  # between /stream polls a server answered at once with nothing new
# HTTP 429 (rate limit, full queue: nothing was queued) is waited out, Retry-After honoured up to 10 s,
# else 1 s, ten sends in all; then it counts as the request's failure. Other refusals fail at once:
# a load generator must not hide a failing server behind retries.
BENCH_RETRY = RetryPolicy(attempts=10, base=1.0, cap=10.0, factor=1.0, jitter=False, server_errors=False)
KEY_HINT = "set RUNPOD_API_KEY (for `notus serve`: use --local, which reads its key)"
JOB_ROUTES = ("openai-job", "native")


class RunPodTarget(HttpTarget):
    """Streamed jobs on one endpoint (RunPod, or `notus serve` / the emulator with `api_base`)."""

    kind = "runpod"

    def __init__(
        self,
        endpoint_id: str,
        *,
        api_base: str = DEFAULT_BASE_URL,
        job_route: str = "openai-job",
        **options: Unpack[HttpOptions],
    ) -> None:
        # One connection more than requests in flight: /health polls (cold start) must not wait for a slot.
        if options.get("max_connections"):
            options["max_connections"] = options["max_connections"] + 1
        super().__init__(**options)
        if job_route not in JOB_ROUTES:
            raise ValueError(f"job_route must be one of {', '.join(JOB_ROUTES)}; got {job_route!r}")
        self.endpoint_id = endpoint_id
        self.job_route = job_route
        self.base_url = routes.endpoint_base(api_base, endpoint_id)
        self.info: dict[str, Any] = {}
        self.stream_pacer = StreamPacer()  # every stream of the run shares RunPod's /stream budget

    async def prepare(self) -> dict[str, Any]:
        """Ask /health (it wakes no worker), so a wrong id or key fails at once.

        The served model's name is only known from the first answer, and the HTTP 429s waited out
        only as the run goes: both are filled into the returned dict then. Raises
        EndpointUnreachable or BenchError.
        """
        health = await self.health()
        self.info = {
            "kind": self.kind,
            "base_url": self.base_url,
            "endpoint_id": self.endpoint_id,
            "job_route": self.job_route,
            "model": None,
            "workers_at_start": health.workers,
            "rate_limited_retries": 0,  # HTTP 429s waited out and sent again
        }
        return self.info

    async def health(self) -> Health:
        """The endpoint's /health. Raises EndpointUnreachable, BenchError (key refused, unknown endpoint)."""
        url = self.base_url + routes.HEALTH.path
        status, body = await self.probe(
            url,
            unreachable_hint="check the endpoint's API base URL and your network (for notus serve: is it running?)",
            key_hint=KEY_HINT,
        )
        if status >= 400:
            raise BenchError(
                f"{url} answered HTTP {status}: {error_message(body)}",
                hint="check the endpoint id (`notus endpoints` lists yours)",
            )
        try:
            return Health.from_body(json.loads(body))
        except ValueError as exc:
            raise BenchError(f"{url} answered something other than a health report: {exc}") from None

    def job_input(self, prompt: Prompt) -> dict[str, Any]:
        """The job input for `prompt` in this target's job route.

        native: senders.native_input. openai-job: the OpenAI chat request chat sends (vLLM's defaults),
        with usage in the last chunk.
        """
        if self.job_route == "native":
            return native_input(prompt, self.sampling, ignore_eos=self.ignore_eos)
        request: dict[str, Any] = {"messages": prompt.messages, "max_tokens": prompt.max_tokens, "stream": True}
        request.update(self.sampling)
        request["stream_options"] = {"include_usage": True}
        if self.ignore_eos:
            request["ignore_eos"] = True
        return openai_job_input(request)

    async def send(self, prompt: Prompt, record: RequestRecord) -> None:
        record.max_tokens = prompt.max_tokens
        record.prompt_tokens = prompt.input_tokens
        record.sent_at = time.perf_counter()
        tally = ChunkTally(record, tokenizer=self.tokenizer, gap_per_chunk=False)
        follower = JobFollower(self.job_input(prompt), retry=BENCH_RETRY, poll_pause=POLL_PAUSE)
        with transport_failures(record, self.timeout):
            async for event, now in self.drive(follower):
                if isinstance(event, JobAccepted):
                    record.job_id = event.job_id
                elif isinstance(event, StreamedItems):
                    try:
                        for item in event.items:
                            for chunk in item_chunks(item):
                                tally.add(chunk, now)
                    except JobFailed as exc:
                        record.fail("stream_error", exc.message)
                        return
                elif isinstance(event, CallRefused):
                    record.fail(event.reply.cause, event.reply.describe())
                elif isinstance(event, JobEnded):
                    self._ended(record, tally, event.job)

    async def drive(self, follower: JobFollower) -> AsyncIterator[tuple[FollowEvent, float]]:
        """Send the follower's calls over the session; yields (event, time.perf_counter() it arrived).

        Transport failures propagate (the caller records them); a 429 waited out is counted in `info`.
        """
        while (sent := follower.next_call()) is not None:
            if sent.wait:
                await asyncio.sleep(sent.wait)
            asked = time.perf_counter()
            if sent.paced:
                async with self.stream_pacer.slot():
                    status, body, retry_after = await self.exchange(sent)
            else:
                status, body, retry_after = await self.exchange(sent)
            now = time.perf_counter()
            events: list[FollowEvent] = follower.receive(status, body, retry_after=retry_after, took=now - asked)
            for event in events:
                if isinstance(event, RetryScheduled) and event.reply is not None and event.reply.status == RATE_LIMITED:
                    self.info["rate_limited_retries"] = self.info.get("rate_limited_retries", 0) + 1
                yield event, now

    async def runsync(self, job_input: Any) -> JobStatus | None:
        """One /runsync job (no retries); None when it was refused or its answer is not a job."""
        status, body, _retry_after = await self.exchange(call(routes.RUNSYNC, body=job_request(job_input)))
        if status >= 400:
            return None
        try:
            return JobStatus.from_body(json.loads(body))
        except ValueError:
            return None

    async def exchange(self, sent: Call) -> tuple[int, bytes, str | None]:
        """Send one call as it is (no retries): (HTTP status, body, its Retry-After header)."""
        async with self.session.request(sent.method, self.base_url + sent.path, json=sent.body) as response:
            return response.status, await response.read(), response.headers.get("Retry-After")

    def _ended(self, record: RequestRecord, tally: ChunkTally, job: JobStatus) -> None:
        """The job's /status: its delayTime and executionTime become the `queue` and `execution` phases."""
        if job.delay_time_ms is not None:
            record.phases["queue"] = job.delay_time_ms / 1000
        if job.execution_time_ms is not None:
            record.phases["execution"] = job.execution_time_ms / 1000
        if job.status.without_result:
            _fail_job(record, job)
            return
        tally.finish()
        if tally.model and not self.info.get("model"):
            self.info["model"] = tally.model


def _fail_job(record: RequestRecord, job: JobStatus) -> None:
    """A job that did not complete: its cause is `job_<error type>` (FAILED) or `job_<state>`."""
    if job.status == "FAILED":
        error = job.error or parse_job_error(None)
        record.fail(f"job_{error.type}", f"{error.param}: {error.message}" if error.param else error.message)
    else:
        record.fail(f"job_{job.status.lower()}", f"job {job.id} ended {job.status}")
