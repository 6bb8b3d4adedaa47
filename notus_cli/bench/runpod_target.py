"""A RunPod serverless endpoint as a benchmark target, through its native job API.

Each prompt becomes one streamed job: POST /run, then GET /stream until the job ends (TTFT is the
first poll that brings a chunk with content), then GET /status for RunPod's own `delayTime` and
`executionTime`, kept as the request's `queue` and `execution` phases. Those two split a slow
answer into waiting for a worker and the worker's own time, which the OpenAI route cannot show.

A /stream poll hands over every chunk made since the last one, so ITL here is the gap between
polls that brought content (see ChunkTally). Polls are paced to RunPod's /stream limits (see
StreamPacer). The emulator holds a poll open until there is
something new; a server that answers at once is asked again after POLL_PAUSE, which bounds how
precisely TTFT and ITL are known. The same works against `notus serve` and the emulator, which
speak the same protocol on loopback.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Unpack

from notus_cli.bench.chunks import ChunkTally
from notus_cli.bench.metrics import RequestRecord
from notus_cli.bench.senders import HttpOptions, HttpTarget, error_message, transport_failures
from notus_cli.bench.workload import Prompt
from notus_cli.errors import BenchError
from notus_cli.runpod.serverless import FINAL_STATES, Health, JobStatus, StreamPacer
from notus_cli.runpod.urls import RUNPOD_API_URL as DEFAULT_BASE_URL
from worker.job_errors import parse_job_error

POLL_PAUSE = 0.1  # between /stream polls a server answered at once with nothing new
RATE_LIMIT_PAUSE = 1.0  # after HTTP 429 without Retry-After
RATE_LIMIT_TRIES = 10  # then the 429 counts as the request's failure
KEY_HINT = "set RUNPOD_API_KEY (for `notus serve`: use --local, which reads its key)"


class RunPodTarget(HttpTarget):
    """Streamed jobs on one endpoint (RunPod, or `notus serve` / the emulator with `api_base`)."""

    kind = "runpod"

    def __init__(self, endpoint_id: str, *, api_base: str = DEFAULT_BASE_URL, **options: Unpack[HttpOptions]) -> None:
        # One connection more than requests in flight: /health polls (cold start) must not wait for a slot.
        if options.get("max_connections"):
            options["max_connections"] = options["max_connections"] + 1
        super().__init__(**options)
        self.endpoint_id = endpoint_id
        self.base_url = f"{api_base.rstrip('/')}/{endpoint_id}"
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
            "model": None,
            "workers_at_start": health.workers,
            "rate_limited_retries": 0,  # HTTP 429s waited out and sent again
        }
        return self.info

    async def health(self) -> Health:
        """The endpoint's /health. Raises EndpointUnreachable, BenchError (key refused, unknown endpoint)."""
        status, body = await self.probe(
            f"{self.base_url}/health",
            unreachable_hint="check the endpoint's API base URL and your network (for notus serve: is it running?)",
            key_hint=KEY_HINT,
        )
        if status >= 400:
            raise BenchError(
                f"{self.base_url}/health answered HTTP {status}: {error_message(body)}",
                hint="check the endpoint id (`notus endpoints` lists yours)",
            )
        data = json.loads(body)
        return Health(jobs=dict(data.get("jobs") or {}), workers=dict(data.get("workers") or {}))

    def job_input(self, prompt: Prompt) -> dict[str, Any]:
        """The native job input (Notus's worker shape): messages plus top-level sampling parameters.

        The worker's own defaults apply to the rest (temperature 0.7, top_p 0.9, stop ["</s>"]);
        asking for an exact length also clears that default stop string.
        """
        job: dict[str, Any] = {"messages": prompt.messages, "max_tokens": prompt.max_tokens, "stream": True}
        job.update(self.sampling)
        if self.ignore_eos:
            job.update(ignore_eos=True, stop=[])
        return job

    async def send(self, prompt: Prompt, record: RequestRecord) -> None:
        record.max_tokens = prompt.max_tokens
        record.prompt_tokens = prompt.input_tokens
        record.sent_at = time.perf_counter()
        tally = ChunkTally(record, tokenizer=self.tokenizer, gap_per_chunk=False)
        with transport_failures(record, self.timeout):
            status, body = await self._call("POST", "/run", {"input": self.job_input(prompt)})
            if status >= 400:
                record.fail(f"http_{status}", error_message(body))
                return
            job_id = json.loads(body).get("id")
            if not job_id:
                record.fail("bad_response", f"/run answered without a job id: {body[:200].decode(errors='replace')}")
                return
            record.job_id = str(job_id)
            final = await self._follow(record, tally)
            if final is None:
                return
            job = await self._status(record)
            if job is None:
                return
            if final == "COMPLETED":
                tally.finish()
                if tally.model and not self.info.get("model"):
                    self.info["model"] = tally.model
            else:
                _fail_job(record, job)

    async def _follow(self, record: RequestRecord, tally: ChunkTally) -> str | None:
        """Poll /stream until the job ends; returns its final state (None: the poll itself failed)."""
        path = f"/stream/{record.job_id}"
        while True:
            asked = time.perf_counter()
            async with self.stream_pacer.slot():
                status, body = await self._call("GET", path)
            now = time.perf_counter()
            if status >= 400:
                record.fail(f"http_{status}", f"/stream: {error_message(body)}")
                return None
            data = json.loads(body)
            items = data.get("stream") or []
            for item in items:
                output = item.get("output") if isinstance(item, dict) else None
                if isinstance(output, dict):
                    tally.add(output, now)
            state = str(data.get("status", ""))
            if state in FINAL_STATES and not items:
                return state
            if not items and now - asked < POLL_PAUSE:
                await asyncio.sleep(POLL_PAUSE)  # a server that does not hold the poll open

    async def _status(self, record: RequestRecord) -> JobStatus | None:
        """The job's /status; records its delayTime and executionTime as the `queue` and `execution` phases."""
        status, body = await self._call("GET", f"/status/{record.job_id}")
        if status >= 400:
            record.fail(f"http_{status}", f"/status: {error_message(body)}")
            return None
        job = JobStatus.from_body(json.loads(body))
        if job.delay_time_ms is not None:
            record.phases["queue"] = job.delay_time_ms / 1000
        if job.execution_time_ms is not None:
            record.phases["execution"] = job.execution_time_ms / 1000
        return job

    async def _call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """One request; HTTP 429 (rate limit, full queue: nothing was queued) waits and sends again."""
        for _ in range(RATE_LIMIT_TRIES):
            async with self.session.request(method, self.base_url + path, json=body) as response:
                data = await response.read()
                if response.status != 429:
                    return response.status, data
                retry_after = response.headers.get("Retry-After")
            self.info["rate_limited_retries"] = self.info.get("rate_limited_retries", 0) + 1
            await asyncio.sleep(_seconds(retry_after))
        return 429, data


def _seconds(retry_after: str | None) -> float:
    try:
        return min(max(float(retry_after or ""), 0.0), 10.0)
    except ValueError:
        return RATE_LIMIT_PAUSE


def _fail_job(record: RequestRecord, job: JobStatus) -> None:
    """A job that did not complete: its cause is `job_<error type>` (FAILED) or `job_<state>`."""
    if job.status == "FAILED":
        error = job.error or parse_job_error(None)
        record.fail(f"job_{error.type}", f"{error.param}: {error.message}" if error.param else error.message)
    else:
        record.fail(f"job_{job.status.lower()}", f"job {job.id} ended {job.status}")
