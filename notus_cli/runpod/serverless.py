"""An async client for a RunPod serverless endpoint's data plane: RunPod itself or `notus serve`.

    async with ServerlessClient(endpoint_id, api_key, base_url=...) as client:
        job = await client.runsync({"messages": [...]})
        completion = job.result                      # the aggregate-stream list unwrapped
        async for chunk in client.chat_stream({"model": ..., "messages": [...]}):
            ...

Every HTTP answer becomes a typed result or a NotusError in one place (`_raise_for_status`).
/stream polls are paced to stay inside RunPod's limits for the endpoint (2,000 per 10 s, 400 at
once; runpod/docs serverless/endpoints/send-requests.mdx) however many streams a client follows.
Retries: HTTP 429 is retried with backoff (honouring Retry-After) on every call; HTTP 5xx and
timeouts only where sending twice is harmless (reads, cancel, purge), because a retried /run
could queue the same work twice. A connection that could not be opened is retried everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from notus_cli.errors import (
    AuthError,
    EndpointUnreachable,
    JobFailed,
    RunPodError,
    RunPodQueryError,
    RunPodRateLimited,
)
from notus_cli.runpod.urls import RUNPOD_API_URL as DEFAULT_BASE_URL
from worker.job_errors import WORKER_LOST, JobError, parse_job_error
from worker.sse import DONE, payloads

FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: base x 2^attempt, at most `cap` seconds, `attempts` tries in all."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 8.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.cap)
            except ValueError:
                pass
        return float(min(self.cap, self.base * 2**attempt)) * random.uniform(0.5, 1.0)


@dataclass
class StreamPacer:
    """Keeps one client's /stream polls within RunPod's limits: `per_second` on average with bursts
    of up to `burst` (a token bucket), and at most `concurrent` at once.

    RunPod allows 2,000 /stream requests per 10 s and 400 concurrent ones per endpoint
    (runpod/docs serverless/endpoints/send-requests.mdx, "Rate limits"): a count over a window, so
    a burst is allowed. Any 10 s then hold at most `burst` + 10 x `per_second` polls; the defaults
    give 1,900. A burst lets the first polls of many streams started together go at once (no
    stream's first token waits behind the others' turns); a poll returns everything streamed since
    the last one, so a slower poll later costs latency, never output.
    """

    per_second: float = 2000 / 10 * 0.9
    burst: int = 100
    concurrent: int = 400
    _tokens: float = field(init=False, repr=False)  # the bucket starts full
    _updated: float = field(default=0.0, init=False, repr=False)
    _slots: asyncio.Semaphore | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for this poll's turn, then hold one of the concurrent slots while it runs."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrent)
        now = time.monotonic()
        saved = self._tokens + (now - self._updated) * self.per_second
        self._tokens, self._updated = min(float(self.burst), saved) - 1, now
        if self._tokens < 0:  # in debt: wait until the bucket has refilled this poll's token
            await asyncio.sleep(-self._tokens / self.per_second)
        async with self._slots:
            yield


@dataclass(frozen=True)
class JobStatus:
    """A job as /run, /runsync, /status, /cancel or /retry describe it."""

    id: str
    status: str
    delay_time_ms: int | None = None
    execution_time_ms: int | None = None
    output: Any = None
    error: JobError | None = None
    worker_id: str | None = None

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> JobStatus:
        error = body.get("error")
        return cls(
            id=str(body.get("id", "")),
            status=str(body.get("status", "")),
            delay_time_ms=body.get("delayTime"),
            execution_time_ms=body.get("executionTime"),
            output=body.get("output"),
            error=parse_job_error(error) if error is not None else None,
            worker_id=body.get("workerId"),
        )

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES

    @property
    def result(self) -> Any:
        """The output, with a one-item aggregate-stream list unwrapped (a non-streamed chat.completion).

        A worker whose output is the bare object (not a generator's list) is taken as it is."""
        if isinstance(self.output, list) and len(self.output) == 1:
            return self.output[0]
        return self.output

    def raise_for_failure(self) -> JobStatus:
        """Return self if the job completed (or is still running); raises JobFailed otherwise."""
        if self.status in ("FAILED", "CANCELLED", "TIMED_OUT"):
            raise job_failed(self.id, self.status, self.error)
        return self


@dataclass(frozen=True)
class Health:
    jobs: dict[str, int]
    workers: dict[str, int]

    @property
    def in_queue(self) -> int:
        return self.jobs.get("inQueue", 0)

    @property
    def in_progress(self) -> int:
        return self.jobs.get("inProgress", 0)

    @property
    def ready_workers(self) -> int:
        return self.workers.get("idle", 0) + self.workers.get("running", 0)


def job_failed(job_id: str, status: str, error: JobError | None) -> JobFailed:
    """The JobFailed for a job that ended without a result, with a hint for its cause."""
    what = {"CANCELLED": "was cancelled", "TIMED_OUT": "timed out"}.get(status, "failed")
    message = f"job {job_id} {what}" + (f": {error.message}" if error else "")
    hint = None
    if error is not None and error.type == "invalid_request" and error.param:
        hint = f"fix the request's {error.param}"
    elif (error is not None and error.type == WORKER_LOST) or status == "TIMED_OUT":
        hint = f"send it again: POST /retry/{job_id}"
    elif error is not None and error.type == "engine_error":
        hint = "the model server failed; the worker's log says why"
    return JobFailed(
        message,
        hint=hint,
        job_id=job_id,
        status=status,
        error_type=error.type if error else None,
        param=error.param if error else None,
    )


class ServerlessClient:
    """One endpoint's data plane. Pass `http` to share a connection pool (or, in tests, a transport)."""

    def __init__(
        self,
        endpoint_id: str,
        api_key: SecretStr | str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        http: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.endpoint_id = endpoint_id
        self.base_url = f"{base_url.rstrip('/')}/{endpoint_id}"
        self._key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(limits=httpx.Limits(max_connections=512, max_keepalive_connections=64))
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout, connect=10.0)
        self.retry_policy = retry or RetryPolicy()
        self.stream_pacer = StreamPacer()

    async def __aenter__(self) -> ServerlessClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    @property
    def openai_base_url(self) -> str:
        """The base URL any OpenAI client can use for this endpoint."""
        return f"{self.base_url}/openai/v1"

    # ---- jobs ------------------------------------------------------------------------------------

    async def run(
        self, job_input: Any, *, webhook: str | None = None, policy: dict[str, Any] | None = None
    ) -> JobStatus:
        """Queue a job; returns at once with its id (status IN_QUEUE)."""
        response = await self._request("POST", "/run", json=_job_body(job_input, webhook, policy), idempotent=False)
        return JobStatus.from_body(response.json())

    async def runsync(
        self,
        job_input: Any,
        *,
        wait_ms: int | None = None,
        max_wait: float | None = None,
        policy: dict[str, Any] | None = None,
    ) -> JobStatus:
        """Run a job and wait for its end (polling /status if /runsync returns first).

        Raises JobFailed if it fails, is cancelled or times out; TimeoutError after `max_wait` seconds.
        """
        started = time.monotonic()
        params = {"wait": str(wait_ms)} if wait_ms is not None else None
        read = (wait_ms or 90_000) / 1000 + 30.0
        response = await self._request(
            "POST",
            "/runsync",
            json=_job_body(job_input, None, policy),
            params=params,
            idempotent=False,
            read_timeout=read,
        )
        job = JobStatus.from_body(response.json())
        if not job.final:
            left = None if max_wait is None else max(0.0, max_wait - (time.monotonic() - started))
            job = await self.wait(job.id, max_wait=left)
        return job.raise_for_failure()

    async def status(self, job_id: str) -> JobStatus:
        response = await self._request("GET", f"/status/{job_id}")
        return JobStatus.from_body(response.json())

    async def wait(self, job_id: str, *, max_wait: float | None = None, poll: float = 0.25) -> JobStatus:
        """Poll /status until the job ends; TimeoutError after `max_wait` seconds (None: no limit)."""
        deadline = None if max_wait is None else time.monotonic() + max_wait
        pause = poll
        while True:
            job = await self.status(job_id)
            if job.final:
                return job
            if deadline is not None and time.monotonic() + pause > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {max_wait:.0f} s")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 2.0)

    async def stream(self, job_id: str) -> AsyncIterator[Any]:
        """Each item the job yields, as it arrives. Raises JobFailed if the job does not complete."""
        while True:
            asked = time.monotonic()
            async with self.stream_pacer.slot():
                body = (await self._request("GET", f"/stream/{job_id}")).json()
            items = body.get("stream") or []
            for item in items:
                yield item.get("output") if isinstance(item, dict) else item
            status = str(body.get("status", ""))
            if status in FINAL_STATES and not items:
                if status != "COMPLETED":
                    error = body.get("error")
                    if error is None:
                        error = (await self._request("GET", f"/status/{job_id}")).json().get("error")
                    raise job_failed(job_id, status, parse_job_error(error) if error is not None else None)
                return
            if not items and time.monotonic() - asked < 0.2:
                await asyncio.sleep(0.2)  # a server that does not hold the poll open

    async def cancel(self, job_id: str) -> JobStatus:
        response = await self._request("POST", f"/cancel/{job_id}")
        return JobStatus.from_body(response.json())

    async def retry(self, job_id: str) -> JobStatus:
        """Queue a FAILED or TIMED_OUT job again under the same id."""
        response = await self._request("POST", f"/retry/{job_id}", idempotent=False)
        return JobStatus.from_body(response.json())

    async def health(self) -> Health:
        body = (await self._request("GET", "/health")).json()
        return Health(jobs=dict(body.get("jobs") or {}), workers=dict(body.get("workers") or {}))

    async def purge_queue(self) -> int:
        """Remove every queued job; returns how many."""
        return int((await self._request("POST", "/purge-queue")).json().get("removed", 0))

    # ---- the OpenAI route ------------------------------------------------------------------------

    async def models(self) -> list[dict[str, Any]]:
        body = (await self._request("GET", "/openai/v1/models")).json()
        return list(body.get("data") or [])

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """A chat.completion through the OpenAI route (not streamed)."""
        request = {**body, "stream": False}
        response = await self._request("POST", "/openai/v1/chat/completions", json=request, idempotent=False)
        result: dict[str, Any] = response.json()
        return result

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """chat.completion.chunk objects through the OpenAI route, as the server sends them."""
        request = {**body, "stream": True}
        url = f"{self.base_url}/openai/v1/chat/completions"
        for attempt in range(self.retry_policy.attempts):
            try:
                async with self._http.stream(
                    "POST", url, json=request, headers=self._headers(), timeout=self._timeout
                ) as response:
                    if response.status_code == 429 and attempt + 1 < self.retry_policy.attempts:
                        await response.aread()
                        await asyncio.sleep(self.retry_policy.delay(attempt, response.headers.get("retry-after")))
                        continue
                    if response.status_code >= 400:
                        await response.aread()
                        _raise_for_status(response)
                    async for chunk in sse_objects(response):
                        yield chunk
                    return
            except httpx.ConnectError as exc:
                if attempt + 1 >= self.retry_policy.attempts:
                    raise unreachable(self.base_url, exc) from None
                await asyncio.sleep(self.retry_policy.delay(attempt))
            except httpx.HTTPError as exc:
                raise unreachable(self.base_url, exc) from None

    # ---- transport -------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.get_secret_value()}", "Accept": "application/json"}

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        idempotent: bool = True,
        read_timeout: float | None = None,
    ) -> httpx.Response:
        """Send with retries (see the module docstring); returns a 2xx response or raises a NotusError."""
        timeout = self._timeout
        if read_timeout is not None:
            timeout = httpx.Timeout(connect=timeout.connect, read=read_timeout, write=timeout.write, pool=timeout.pool)
        attempts = self.retry_policy.attempts
        for attempt in range(attempts):
            last = attempt + 1 >= attempts
            try:
                response = await self._http.request(
                    method, self.base_url + path, json=json, params=params, headers=self._headers(), timeout=timeout
                )
            except httpx.ConnectError as exc:
                if last:
                    raise unreachable(self.base_url, exc) from None
                await asyncio.sleep(self.retry_policy.delay(attempt))
                continue
            except httpx.HTTPError as exc:
                if last or not idempotent:
                    raise unreachable(self.base_url, exc) from None
                await asyncio.sleep(self.retry_policy.delay(attempt))
                continue
            retryable = response.status_code == 429 or (idempotent and response.status_code >= 500)
            if retryable and not last:
                await asyncio.sleep(self.retry_policy.delay(attempt, response.headers.get("retry-after")))
                continue
            _raise_for_status(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover


def _job_body(job_input: Any, webhook: str | None, policy: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"input": job_input}
    if webhook is not None:
        body["webhook"] = webhook
    if policy is not None:
        body["policy"] = policy
    return body


async def sse_objects(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of an OpenAI-style SSE response, up to `[DONE]`; an `error` event raises JobFailed."""
    async for payload in payloads(response.aiter_bytes()):
        if payload == DONE:
            return
        event = json.loads(payload)
        if isinstance(event, dict) and "error" in event:
            detail = event["error"] if isinstance(event["error"], dict) else {"message": str(event["error"])}
            raise job_failed("(stream)", "FAILED", parse_job_error(detail))
        yield event


def _message(response: httpx.Response) -> str:
    """The server's own words: RunPod's {"error": "..."}, OpenAI's {"error": {"message": ...}}, or text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or body)[:300]


def _raise_for_status(response: httpx.Response) -> None:
    """The one place an HTTP answer from the endpoint becomes an error."""
    code = response.status_code
    if code < 400:
        return
    message = _message(response)
    if code == 401:
        raise AuthError(
            "the endpoint rejected the API key (HTTP 401)",
            hint="check RUNPOD_API_KEY, or use the key `notus serve` printed",
        )
    if code == 404:
        raise _not_found(response.request.url.path, message)
    if code == 413:
        raise RunPodQueryError(
            f"the request is too large (HTTP 413): {message}", hint="/run takes 10 MB, /runsync 20 MB"
        )
    if code == 429:
        raise RunPodRateLimited(
            f"rate limited (HTTP 429) after retrying: {message}", hint="send fewer requests per second"
        )
    if code >= 500:
        raise RunPodError(
            f"the endpoint failed (HTTP {code}): {message}", hint="try again; if it persists, check its workers"
        )
    raise RunPodQueryError(f"the endpoint refused the request (HTTP {code}): {message}")


JOB_ROUTES = ("status", "stream", "cancel", "retry")


def _not_found(path: str, message: str) -> RunPodQueryError:
    """A 404 names what is unknown: a job (its result may have expired) or the endpoint itself.

    RunPod answers 404 for an unknown endpoint and for a job it does not know or no longer keeps
    (https://docs.runpod.io/serverless/endpoints/operation-reference: results are kept 30 min after
    /run, 1 min after /runsync); the route the request took tells which."""
    parts = path.strip("/").split("/")  # v2, endpoint id, route, [job id]
    endpoint = parts[1] if len(parts) > 1 else "?"
    # the server's words, unless they only repeat "not found"
    words = f": {message}" if "not found" not in message.lower() and message.strip() else ""
    if len(parts) > 3 and parts[2] in JOB_ROUTES:
        return RunPodQueryError(
            f"job {parts[3]} is not known to endpoint {endpoint} (HTTP 404){words}",
            hint="job results are kept 30 min after /run and 1 min after /runsync",
        )
    return RunPodQueryError(
        f"there is no endpoint {endpoint} (HTTP 404){words}", hint="`notus endpoints` lists your endpoints' ids"
    )


def unreachable(url: str, exc: httpx.HTTPError) -> EndpointUnreachable:
    """The error for a server that could not be reached (or did not answer in time)."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "is unreachable"
    return EndpointUnreachable(
        f"{url} {kind} ({type(exc).__name__})", hint="check the URL, your network, and that the endpoint is running"
    )
