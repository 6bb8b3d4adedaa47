"""Where answers come from: a RunPod endpoint's jobs, or any OpenAI-compatible server.

Both yield OpenAI `chat.completion.chunk` objects, so the rest of the chat knows one shape.

RunPod (a deployment, `--endpoint`, `--local`): each answer is a job sent with /run and read with
/stream. The job input is the worker's OpenAI route (`openai_route` + `openai_input`, streamed as
vLLM's own SSE events) when the worker serves it, else the native shape with `stream: true`. We use
/run + /stream rather than the HTTP OpenAI route because only a job id lets Ctrl-C /cancel the
job (so the GPU stops and billing ends), and only /status reports RunPod's own queue delay
(`delayTime`) and execution time for the stats line.

OpenAI-compatible servers (`--base-url`, and RunPod's load-balancing endpoints, whose workers serve
/v1 at the LB URL): POST /v1/chat/completions with `stream: true`; Ctrl-C closes the HTTP stream,
which makes vLLM abort the request (an LB worker passes the hang-up on to vLLM).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from notus_cli.errors import AuthError, ContextOverflow, JobFailed, RunPodQueryError, ServerError
from notus_cli.http_errors import unreachable
from notus_cli.runpod.protocol.bodies import item_chunks, openai_job_input
from notus_cli.runpod.protocol.follow import JobAccepted, JobEnded, StreamedItems
from notus_cli.runpod.protocol.replies import error_message
from notus_cli.runpod.serverless import ServerlessClient, sse_objects

OVERFLOW = re.compile(r"maximum context length|context length is|prompt is too long", re.IGNORECASE)
CANCEL_TIMEOUT = 10.0


@dataclass(frozen=True)
class ModelInfo:
    name: str | None
    max_model_len: int | None  # vLLM reports it in /v1/models; None when the server does not say


@dataclass(frozen=True)
class JobTiming:
    """RunPod's own figures for the last answer."""

    queue_ms: int | None
    execution_ms: int | None


class Backend(Protocol):
    label: str  # where answers come from, for /show (never a key)
    timing: JobTiming | None  # the last answer's, RunPod only

    async def prepare(self) -> ModelInfo:
        """Check the target answers (URL, key) and learn its model. Raises NotusError subclasses."""
        ...

    def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """chat.completion.chunk objects for an OpenAI chat body; raises ContextOverflow, JobFailed, ..."""
        ...

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """One chat.completion (not streamed)."""
        ...

    async def aclose(self) -> None: ...


def overflow_or(error: JobFailed) -> JobFailed:
    """ContextOverflow when the server's words say the prompt was too long, else the error itself."""
    if OVERFLOW.search(error.message):
        return ContextOverflow(
            error.message,
            hint="start a new conversation (/reset) or send a shorter message",
            job_id=error.job_id,
            status=error.status,
            error_type=error.error_type,
            param=error.param,
        )
    return error


def _model_info(models: list[dict[str, Any]]) -> ModelInfo:
    if not models:
        return ModelInfo(None, None)
    length = models[0].get("max_model_len")
    return ModelInfo(str(models[0].get("id")), length if isinstance(length, int) and length > 0 else None)


class RunPodJobs:
    """A RunPod serverless endpoint (or `notus serve`), answering through jobs."""

    def __init__(self, client: ServerlessClient, *, label: str) -> None:
        self.client = client
        self.label = label
        self.timing: JobTiming | None = None
        self.openai_route = True
        self.model: str | None = None

    async def prepare(self) -> ModelInfo:
        await self.client.health()  # a wrong URL or key fails here, without queueing a job
        try:
            info = _model_info(await self.client.models())
        except (JobFailed, RunPodQueryError):
            self.openai_route = False  # a worker without the OpenAI route: the native input shape
            return ModelInfo(None, None)
        self.model = info.name
        return info

    def _input(self, body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        if not self.openai_route:
            return {**body, "stream": stream}
        request = {**body, "stream": stream}
        if self.model:
            request["model"] = self.model
        if stream:
            request["stream_options"] = {"include_usage": True}
        return openai_job_input(request)

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self.timing = None
        job_id: str | None = None
        finished = False
        try:
            async for event in self.client.follow(self._input(body, stream=True)):
                if isinstance(event, JobAccepted):
                    job_id = event.job_id
                elif isinstance(event, StreamedItems):
                    for item in event.items:
                        for chunk in job_chunks(item):
                            yield chunk
                elif isinstance(event, JobEnded):
                    finished = True
                    self.timing = JobTiming(event.job.delay_time_ms, event.job.execution_time_ms)
                    event.job.raise_for_failure()
        except JobFailed as exc:
            finished = True
            raise overflow_or(exc) from None
        finally:
            if not finished and job_id is not None:  # Ctrl-C (task cancelled) or the consumer stopped reading
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self.client.cancel(job_id)), CANCEL_TIMEOUT)

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        self.timing = None
        try:
            job = await self.client.runsync(self._input(body, stream=False))
        except JobFailed as exc:
            raise overflow_or(exc) from None
        self.timing = JobTiming(job.delay_time_ms, job.execution_time_ms)
        result = job.result
        if not isinstance(result, dict):
            raise JobFailed(f"job {job.id} returned no chat.completion", job_id=job.id, status=job.status)
        return result

    async def aclose(self) -> None:
        await self.client.aclose()


def job_chunks(item: Any) -> list[dict[str, Any]]:
    """The chunks in one streamed job item (protocol.bodies.item_chunks); a too long prompt raises ContextOverflow."""
    try:
        return item_chunks(item)
    except JobFailed as exc:
        raise overflow_or(exc) from None


@dataclass(frozen=True)
class ServerHints:
    """What to tell the user when the server refuses the key or has no chat route: it depends on what
    the server is (any server named by --base-url, or a RunPod LB endpoint found by its id)."""

    key: str = "set OPENAI_API_KEY to a key it accepts (RunPod's own hosts get RUNPOD_API_KEY)"
    route: str = "--base-url is the part before /v1/chat/completions"


class OpenAIServer:
    """Any OpenAI-compatible server: `vllm serve`, RunPod's OpenAI route, an LB endpoint, ..."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: SecretStr | None,
        http: httpx.AsyncClient | None = None,
        label: str | None = None,
        hints: ServerHints | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.label = label or self.base_url
        self.timing: JobTiming | None = None
        self.model: str | None = None
        self.hints = hints or ServerHints()
        self._key = api_key
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0))

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.get_secret_value()}"} if self._key else {}

    async def prepare(self) -> ModelInfo:
        response = await self._send("GET", "/models")
        try:
            info = _model_info(list(response.json().get("data") or []))
        except (ValueError, AttributeError):
            info = ModelInfo(None, None)
        if info.name is None:
            raise ServerError(f"{self.base_url}/models lists no model", hint="is this an OpenAI-compatible server?")
        self.model = info.name
        return info

    def _body(self, body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        request = {**body, "model": self.model, "stream": stream}
        if stream:
            request["stream_options"] = {"include_usage": True}
        return request

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        url = f"{self.base_url}/chat/completions"
        try:
            async with self._http.stream(
                "POST", url, json=self._body(body, stream=True), headers=self._headers()
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for_status(response, self.hints)
                try:
                    async for chunk in sse_objects(response):
                        yield chunk
                except JobFailed as exc:
                    raise overflow_or(exc) from None
        except httpx.HTTPError as exc:
            raise unreachable(self.base_url, exc) from None

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._send("POST", "/chat/completions", json=self._body(body, stream=False))
        result: dict[str, Any] = response.json()
        return result

    async def _send(self, method: str, path: str, *, json: Any = None) -> httpx.Response:
        try:
            response = await self._http.request(method, self.base_url + path, json=json, headers=self._headers())
        except httpx.HTTPError as exc:
            raise unreachable(self.base_url, exc) from None
        _raise_for_status(response, self.hints)
        return response

    async def aclose(self) -> None:
        await self._http.aclose()


def _raise_for_status(response: httpx.Response, hints: ServerHints) -> None:
    """The one place an OpenAI-compatible server's HTTP answer becomes an error."""
    code = response.status_code
    if code < 400:
        return
    message = error_message(response.content) if response.content else response.reason_phrase
    if code in (401, 403):
        raise AuthError(
            f"the server rejected the API key (HTTP {code})",
            hint=hints.key,
        )
    if code == 404:
        words = f": {message}" if message.strip().lower() != "not found" else ""
        raise ServerError(
            f"{response.request.url} is not an OpenAI chat route (HTTP 404){words}",
            hint=hints.route,
        )
    raise overflow_or(JobFailed(f"the server refused the request (HTTP {code}): {message}", status=str(code)))
