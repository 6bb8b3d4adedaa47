"""An async httpx client for a RunPod serverless endpoint's data plane: RunPod itself or `notus serve`.

    async with ServerlessClient(endpoint_id, api_key, base_url=...) as client:
        job = await client.runsync({"messages": [...]})
        completion = job.result                      # the aggregate-stream list unwrapped
        async for event in client.follow(job_input):  # JobAccepted, StreamedItems..., JobEnded
            ...

This module only moves bytes: routes, bodies, the /run -> /stream -> /status sequence, the retry
policy and the error each answer becomes all come from notus_cli.runpod.protocol, which the bench's
aiohttp sender and the emulator use too. /stream polls go through a StreamPacer (runpod.pacing) so
that however many streams one client follows, it stays inside RunPod's /stream limits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pydantic import SecretStr

from notus_cli.http_errors import unreachable
from notus_cli.runpod.pacing import StreamPacer
from notus_cli.runpod.protocol import routes
from notus_cli.runpod.protocol.bodies import Health, JobStatus, job_request, purged_count
from notus_cli.runpod.protocol.follow import (
    AnswerLost,
    Call,
    CallRefused,
    FollowEvent,
    JobAccepted,
    JobEnded,
    JobFollower,
    Retrying,
    StreamedItems,
    StreamGap,
    answer_lost,
    call,
)
from notus_cli.runpod.protocol.limits import RUNSYNC_DEFAULT_WAIT_MS, RetryPolicy
from notus_cli.runpod.protocol.replies import ErrorReply
from notus_cli.runpod.serverless_openai import EndpointOpenAIRoute, sse_objects
from notus_cli.runpod.urls import RUNPOD_API_URL as DEFAULT_BASE_URL

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
POLL_PAUSE = 0.2  # between /stream polls a server answered at once with nothing new


class ServerlessClient(EndpointOpenAIRoute):
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
        self.base_url = routes.endpoint_base(base_url, endpoint_id)
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
        return routes.openai_base(self.base_url)

    # ---- jobs ------------------------------------------------------------------------------------

    async def run(
        self, job_input: Any, *, webhook: str | None = None, policy: dict[str, Any] | None = None
    ) -> JobStatus:
        """Queue a job; returns at once with its id (status IN_QUEUE)."""
        body = job_request(job_input, webhook=webhook, policy=policy)
        sent = call(routes.RUN, body=body)
        return self._job(sent, await self._json(sent))

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
        started = asyncio.get_running_loop().time()
        params = {"wait": str(wait_ms)} if wait_ms is not None else None
        read = (wait_ms or RUNSYNC_DEFAULT_WAIT_MS) / 1000 + 30.0
        sent = call(routes.RUNSYNC, body=job_request(job_input, policy=policy), params=params)
        job = self._job(sent, await self._json(sent, read_timeout=read))
        if not job.final:
            left = None if max_wait is None else max(0.0, max_wait - (asyncio.get_running_loop().time() - started))
            job = await self.wait(job.id, max_wait=left)
        return job.raise_for_failure()

    async def status(self, job_id: str) -> JobStatus:
        sent = call(routes.STATUS, job_id=job_id)
        return self._job(sent, await self._json(sent))

    async def wait(self, job_id: str, *, max_wait: float | None = None, poll: float = 0.25) -> JobStatus:
        """Poll /status until the job ends; TimeoutError after `max_wait` seconds (None: no limit)."""
        loop = asyncio.get_running_loop()
        deadline = None if max_wait is None else loop.time() + max_wait
        pause = poll
        while True:
            job = await self.status(job_id)
            if job.final:
                return job
            if deadline is not None and loop.time() + pause > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {max_wait:.0f} s")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 2.0)

    async def follow(self, job_input: Any = None, *, job_id: str | None = None) -> AsyncIterator[FollowEvent]:
        """Send a job (or follow a known `job_id`) to its end, yielding the protocol's events.

        Ends with JobEnded; raises the NotusError of a call refused for good, EndpointUnreachable when
        the endpoint stops answering. A JobEnded job may still have failed: see `JobStatus.failure()`.
        """
        follower = JobFollower(job_input, job_id=job_id, retry=self.retry_policy, poll_pause=POLL_PAUSE)
        while (sent := follower.next_call()) is not None:
            if sent.wait:
                await asyncio.sleep(sent.wait)
            loop = asyncio.get_running_loop()
            asked = loop.time()
            try:
                if sent.paced:
                    async with self.stream_pacer.slot():
                        response = await self._send(sent)
                else:
                    response = await self._send(sent)
            except httpx.HTTPError as exc:
                events = follower.connection_failed(connected=not isinstance(exc, httpx.ConnectError))
                for event in events:
                    if isinstance(event, AnswerLost):
                        raise event.to_error(self.base_url) from None
                if not follower.pending:
                    raise unreachable(self.base_url, exc) from None
                for event in events:
                    yield event
                continue
            retry_after = response.headers.get("retry-after")
            events = follower.receive(
                response.status_code, response.content, retry_after=retry_after, took=loop.time() - asked
            )
            for event in events:
                if isinstance(event, CallRefused):
                    raise event.reply.to_error(self.endpoint_id)
                if isinstance(event, StreamGap):
                    raise event.to_error()
                yield event

    async def stream(self, job_id: str) -> AsyncIterator[Any]:
        """Each item a queued job yields, as it arrives. Raises JobFailed if the job does not complete."""
        async for event in self.follow(job_id=job_id):
            if isinstance(event, StreamedItems):
                for item in event.items:
                    yield item
            elif isinstance(event, JobEnded):
                event.job.raise_for_failure()

    async def cancel(self, job_id: str) -> JobStatus:
        sent = call(routes.CANCEL, job_id=job_id)
        return self._job(sent, await self._json(sent))

    async def retry(self, job_id: str) -> JobStatus:
        """Queue a FAILED or TIMED_OUT job again under the same id."""
        sent = call(routes.RETRY, job_id=job_id)
        return self._job(sent, await self._json(sent))

    async def health(self) -> Health:
        sent = call(routes.HEALTH)
        body = await self._json(sent)
        try:
            return Health.from_body(body)
        except ValueError as exc:
            raise ErrorReply.malformed(str(exc), sent.asked).to_error() from None

    async def purge_queue(self) -> int:
        """Remove every queued job; returns how many."""
        return purged_count(await self._json(call(routes.PURGE_QUEUE)))

    # ---- transport -------------------------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.get_secret_value()}", "Accept": "application/json"}

    async def _send(self, sent: Call, *, read_timeout: float | None = None) -> httpx.Response:
        timeout = self._timeout
        if read_timeout is not None:
            timeout = httpx.Timeout(connect=timeout.connect, read=read_timeout, write=timeout.write, pool=timeout.pool)
        return await self._http.request(
            sent.method,
            self.base_url + sent.path,
            json=sent.body,
            params=dict(sent.params) if sent.params else None,
            headers=self.headers(),
            timeout=timeout,
        )

    async def request(self, sent: Call, *, read_timeout: float | None = None) -> httpx.Response:
        """Send with the retry policy's retries; returns a 2xx response or raises a NotusError."""
        retrying = Retrying(self.retry_policy)
        while True:
            try:
                response = await self._send(sent, read_timeout=read_timeout)
            except httpx.HTTPError as exc:
                connected = not isinstance(exc, httpx.ConnectError)
                how = "timed out" if isinstance(exc, httpx.TimeoutException) else "the connection broke"
                lost = answer_lost(sent, connected=connected, cause=f"{how}: {type(exc).__name__}")
                if lost is not None:  # a /runsync may have queued its job
                    raise lost.to_error(self.base_url) from None
                again = retrying.after_failure(sent, connected=connected)
                if again is None:
                    raise unreachable(self.base_url, exc) from None
                await asyncio.sleep(again.wait)
                continue
            retry_after = response.headers.get("retry-after")
            again = retrying.after_reply(sent, response.status_code, retry_after)
            if again is not None:
                await asyncio.sleep(again.wait)
                continue
            if response.status_code >= 400:
                reply = ErrorReply.read(response.status_code, response.content, retry_after=retry_after)
                raise reply.to_error(self.endpoint_id)
            return response

    async def _json(self, sent: Call, *, read_timeout: float | None = None) -> Any:
        response = await self.request(sent, read_timeout=read_timeout)
        try:
            return response.json()
        except ValueError:
            raise ErrorReply.malformed("the answer is not JSON", sent.asked).to_error() from None

    @staticmethod
    def _job(sent: Call, body: Any) -> JobStatus:
        try:
            return JobStatus.from_body(body)
        except ValueError as exc:
            raise ErrorReply.malformed(str(exc), sent.asked).to_error() from None


__all__ = [
    "Health",
    "JobAccepted",
    "JobEnded",
    "JobStatus",
    "RetryPolicy",
    "ServerlessClient",
    "StreamPacer",
    "StreamedItems",
    "sse_objects",
]
