"""The RunPod job handler: validate the input, relay it to vLLM on loopback, reshape the answer.

An async generator, so one function serves streamed and non-streamed jobs: with
`return_aggregate_stream` the SDK also returns everything yielded as the job's output.
A job that fails yields `{"error": "<JSON text>"}`; the SDK marks it FAILED and passes the text on
unchanged (it stringifies a dict with Python's repr, which clients could not parse).
Streamed jobs go through `worker.coalesce`: whatever vLLM produced while the SDK posted the
previous item goes out merged as the next one, so a slow network does not slow the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from worker import completions
from worker.coalesce import carries_output, coalesced, event_carries_output, merge_native, merge_sse
from worker.job_errors import JobError
from worker.params import (
    ChatRequest,
    InvalidRequest,
    OpenAIRequest,
    ReasoningPolicy,
    answer_pass_body,
    parse_job_input,
)
from worker.sse import DONE, encode, payloads
from worker.startup import STARTUP_QUERY
from worker.thinking_budget import budget_refused, budget_refused_event, without_budget

log = logging.getLogger("notus.worker")


def job_error(error: JobError) -> dict[str, str]:
    """What a handler yields to fail its job: RunPod carries `error` as text, so the JSON is a string."""
    return {"error": error.to_text()}


@dataclass
class JobStats:
    """What the worker logs about a job: sizes and timings, never content."""

    job_id: str
    kind: str = "invalid"
    stream: bool = False
    messages: int = 0
    input_chars: int = 0
    output_tokens: int = 0
    items: int = 0  # yielded, i.e. job-stream POSTs the SDK makes
    first_token_s: float | None = None
    answer_pass: bool = False  # the model ended inside its reasoning and was asked again for the answer
    outcome: str = "ok"
    started: float = field(default_factory=time.perf_counter)
    reported: bool = False

    def report(self) -> None:
        """Log the job's line, once."""
        if not self.reported:
            self.reported = True
            log.info(self.line())

    def report_if_cancelled(self, task: asyncio.Task[Any]) -> None:
        """The SDK stopped the job's task. Usually while it posted an item, with the handler parked at
        `yield`: no exception reaches the handler, whose `finally` would run only when the garbage
        collector finds the abandoned generator, so the job's line is written from here."""
        if task.cancelled():
            self.outcome = "cancelled"
            self.report()

    def line(self) -> str:
        elapsed_ms = (time.perf_counter() - self.started) * 1000
        ttft = f"{self.first_token_s * 1000:.0f}ms" if self.first_token_s is not None else "-"
        return (
            f"job {self.job_id} {self.outcome}: {self.kind} stream={str(self.stream).lower()} "
            f"messages={self.messages} input_chars={self.input_chars} output_tokens={self.output_tokens} "
            f"items={self.items} ttft={ttft} total={elapsed_ms:.0f}ms"
            + (" answer_pass=true" if self.answer_pass else "")
        )


class ChatHandler:
    """Holds the loopback HTTP client to vLLM; `handle` is what the runpod SDK calls."""

    def __init__(
        self,
        *,
        base_url: str,
        served_model_name: str,
        max_model_len: int | None,
        log_content: bool = False,
        request_timeout: float = 900.0,
        max_connections: int = 256,
        startup: Mapping[str, float | None] | None = None,
        coalesce: bool = True,
        reasoning: ReasoningPolicy | None = None,
    ) -> None:
        self.reasoning = reasoning or ReasoningPolicy()
        self.base_url = base_url
        self.startup = dict(startup or {})  # vLLM's start-up phases, answered to STARTUP_QUERY
        self.coalesce = coalesce  # off: one item per vLLM event (the old behaviour, for comparison)
        self.model = served_model_name
        self.max_model_len = max_model_len
        self.log_content = log_content
        self._timeout = httpx.Timeout(request_timeout, connect=10.0)
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        # Made on first use, inside the SDK's event loop.
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self.base_url, timeout=self._timeout, limits=self._limits)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def handle(self, job: dict[str, Any], *, coalesce: bool | None = None) -> AsyncGenerator[Any]:
        """Answer one job: what the runpod SDK calls on a queue endpoint, and `worker.lb` per HTTP request.

        `coalesce` (default: the handler's setting) merges streamed items while the consumer is busy;
        the LB server turns it off, since its writes do not wait a round trip.
        """
        stats = JobStats(job_id=str(job.get("id", "?")))
        if job.get("input") == STARTUP_QUERY:
            stats.kind = "startup"
            stats.report()
            yield {"startup": self.startup}
            return
        try:
            request = parse_job_input(
                job.get("input"), model=self.model, max_model_len=self.max_model_len, reasoning=self.reasoning
            )
        except InvalidRequest as exc:
            stats.outcome = f"failed invalid_request param={exc.param}"
            stats.report()
            yield job_error(exc.to_error())
            return
        self._describe(request, stats)
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(stats.report_if_cancelled)
        try:
            if isinstance(request, OpenAIRequest):
                stream = self._relay_openai(request, stats)
            elif request.stream:
                stream = self._stream_chat(request, stats)
            else:
                stream = self._complete_chat(request, stats)
            if request.stream and (self.coalesce if coalesce is None else coalesce):
                openai = isinstance(request, OpenAIRequest)
                stream = coalesced(
                    stream,
                    merge_sse if openai else merge_native,
                    event_carries_output if openai else carries_output,
                )
            async for item in stream:
                stats.items += 1
                yield item
        except (asyncio.CancelledError, GeneratorExit):
            stats.outcome = "cancelled"
            raise
        except Exception as exc:  # a broken engine must fail the job, not the worker
            stats.outcome = f"failed engine_error {type(exc).__name__}"
            yield job_error(JobError(type="engine_error", message=f"vLLM request failed: {type(exc).__name__}"))
        finally:
            stats.report()
            if task is not None:
                task.remove_done_callback(stats.report_if_cancelled)

    async def _complete_chat(self, request: ChatRequest, stats: JobStats) -> AsyncIterator[dict[str, Any]]:
        response = await self.http.post("/v1/chat/completions", json=request.body)
        if budget_refused(request.body, response.status_code, response.content):
            response = await self.http.post("/v1/chat/completions", json=without_budget(request.body))
        if response.status_code >= 400:
            yield self._failed(stats, response.status_code, response.content)
            return
        raw = response.json()
        result = completions.completion(raw, completion_id=completions.new_completion_id(), model=self.model)
        if result["choices"] and completions.stopped_in_reasoning(result["choices"][0]):
            await self._answer_pass(request, result, stats)
        completions.settle_answers(result)
        stats.output_tokens = result["usage"]["completion_tokens"]
        stats.first_token_s = time.perf_counter() - stats.started
        if self.log_content:
            log.info("job %s output: %s", stats.job_id, json.dumps(result["choices"], ensure_ascii=False))
        yield result

    async def _answer_pass(self, request: ChatRequest, result: dict[str, Any], stats: JobStats) -> None:
        """The model ended inside its reasoning: ask once more, thinking off, for the answer (in place)."""
        body = answer_pass_body(request.body, result["usage"]["completion_tokens"])
        if body is None:
            return
        stats.answer_pass = True
        response = await self.http.post("/v1/chat/completions", json=body)
        if response.status_code >= 400:
            return  # the first pass's reasoning stands; settle_answers marks it unanswered
        answer = completions.completion(response.json(), completion_id=result["id"], model=self.model)
        if answer["choices"]:
            choice, found = result["choices"][0], answer["choices"][0]
            choice["message"]["content"] = found["message"]["content"]
            choice["finish_reason"] = found["finish_reason"]
        result["usage"] = completions.add_usage(result["usage"], answer["usage"])

    async def _stream_chat(self, request: ChatRequest, stats: JobStats) -> AsyncIterator[dict[str, Any]]:
        """Chunks as vLLM streams them; the closing ones (finish_reason, usage) are held until it is known
        whether the model answered: if it ended inside its reasoning, an answer pass streams on first."""
        completion_id = completions.new_completion_id()
        watch = completions.AnswerWatch()
        held: list[dict[str, Any]] = []
        async for out in self._chunks(request.body, completion_id, stats, watch):
            if completions.is_closing(out):
                held.append(out)
            else:
                yield out
            if "error" in out:
                return
        more: dict[str, Any] | None = None
        if watch.stopped_in_reasoning(held):
            body = answer_pass_body(request.body, completions.held_usage(held)["completion_tokens"])
            if body is not None:
                stats.answer_pass = True
                second = completions.AnswerWatch()
                closing: list[dict[str, Any]] = []
                async for out in self._chunks(body, completion_id, stats, second):
                    if "error" in out:
                        break  # the first pass's reasoning stands, marked unanswered below
                    if completions.is_closing(out):
                        closing.append(out)
                        out = completions.without_closing(out)
                    if carries_output(out):  # not the pass's own role announcement
                        watch.see(out)
                        yield out
                more = completions.held_usage(closing) if closing else None
                if second.answered():
                    finish = completions.held_finish(closing)
                    completions.set_finish(held, finish)
        completions.settle_stream(held, watch, more)
        if held and "usage" in held[-1]:
            stats.output_tokens = held[-1]["usage"]["completion_tokens"]
        for out in held:
            yield out

    async def _chunks(
        self, body: dict[str, Any], completion_id: str, stats: JobStats, watch: completions.AnswerWatch
    ) -> AsyncIterator[dict[str, Any]]:
        """One streamed vLLM request as chat.completion.chunk objects (or one job error, which ends it)."""
        async with contextlib.aclosing(self._sse_payloads("/v1/chat/completions", body, stats)) as payloads:
            async for payload in payloads:
                if isinstance(payload, dict):  # the job failed
                    yield payload
                    return
                if payload == DONE:
                    return
                event = json.loads(payload)
                if "error" in event:
                    yield self._failed(stats, 500, payload.encode())
                    return
                out = completions.chunk(event, completion_id=completion_id, model=self.model)
                watch.see(out)
                if stats.first_token_s is None and out["choices"] and out["choices"][0]["delta"].keys() - {"role"}:
                    stats.first_token_s = time.perf_counter() - stats.started
                if "usage" in out:
                    stats.output_tokens = out["usage"]["completion_tokens"]
                if self.log_content:
                    log.info("job %s chunk: %s", stats.job_id, json.dumps(out["choices"], ensure_ascii=False))
                yield out

    async def _relay_openai(self, request: OpenAIRequest, stats: JobStats) -> AsyncIterator[Any]:
        """RunPod's OpenAI route: vLLM's own answer; streams as whole SSE events, which RunPod relays as text."""
        if request.body is None:
            response = await self.http.get(request.route)
            if response.status_code >= 400:
                yield self._failed(stats, response.status_code, response.content)
                return
            yield response.json()
            return
        if not request.stream:
            response = await self.http.post(request.route, json=request.body)
            if budget_refused(request.body, response.status_code, response.content):
                response = await self.http.post(request.route, json=without_budget(request.body))
            if response.status_code >= 400:
                yield self._failed(stats, response.status_code, response.content)
                return
            result = response.json()
            stats.output_tokens = (result.get("usage") or {}).get("completion_tokens", 0)
            yield result
            return
        async with contextlib.aclosing(self._sse_payloads(request.route, request.body, stats)) as payloads:
            async for payload in payloads:
                if isinstance(payload, dict):  # the job failed
                    yield payload
                    return
                if stats.first_token_s is None:
                    stats.first_token_s = time.perf_counter() - stats.started
                # A quoted key followed by an object cannot occur inside a JSON string (its quotes are
                # escaped there), so this finds the usage chunk without parsing every event.
                if '"usage":{' in payload:
                    event = json.loads(payload)
                    stats.output_tokens = (event.get("usage") or {}).get("completion_tokens", 0)
                    if request.hide_usage and not event.get("choices"):
                        continue  # asked for by the worker to count tokens, not by the client
                yield encode(payload)

    async def _sse_payloads(
        self, route: str, body: dict[str, Any], stats: JobStats
    ) -> AsyncGenerator[str | dict[str, str]]:
        """The data payloads of one streamed vLLM request, or a single job error if vLLM refused it.

        A refused thinking budget is dropped and the request sent again: vLLM refuses it with HTTP
        400, or, once the stream has begun, with an error as the stream's first event."""
        async with (
            self.http.stream("POST", route, json=body) as response,
            _abort_when_stopped(response),
        ):
            if response.status_code >= 400:
                content = await response.aread()
                refused = budget_refused(body, response.status_code, content)
                if not refused:
                    yield self._failed(stats, response.status_code, content)
            else:
                async with contextlib.aclosing(payloads(response.aiter_bytes())) as events:
                    first = await anext(events, None)
                    refused = first is not None and budget_refused_event(body, first)
                    if not refused:
                        if first is not None:
                            yield first
                        async for payload in events:
                            yield payload
        if refused:
            async for retried in self._sse_payloads(route, without_budget(body), stats):
                yield retried

    def _failed(self, stats: JobStats, status: int, body: bytes) -> dict[str, str]:
        error = completions.upstream_error(status, body)
        stats.outcome = f"failed {error.type} status={status}"
        return job_error(error)

    def _describe(self, request: ChatRequest | OpenAIRequest, stats: JobStats) -> None:
        body = request.body or {}
        messages = body.get("messages") or []
        stats.kind = "openai " + request.route if isinstance(request, OpenAIRequest) else "chat"
        stats.stream = request.stream
        stats.messages = len(messages)
        stats.input_chars = sum(len(m["content"]) if isinstance(m.get("content"), str) else 0 for m in messages)
        if self.log_content:
            log.info("job %s input: %s", stats.job_id, json.dumps(messages, ensure_ascii=False))


_closing: set[asyncio.Future[None]] = set()


@contextlib.asynccontextmanager
async def _abort_when_stopped(response: httpx.Response) -> AsyncIterator[None]:
    """Close vLLM's stream the moment the SDK stops the job's task.

    The SDK cancels a job's task wherever it is waiting, usually while it posts a streamed item,
    with this generator suspended at a `yield`: the CancelledError never reaches the handler, and
    vLLM would go on generating until the generator is garbage-collected. Closing the response
    ends the request, and vLLM aborts a request whose client went away.
    """
    task = asyncio.current_task()

    def stopped(done: asyncio.Task[Any]) -> None:
        if done.cancelled() and not response.is_closed:
            closing = asyncio.ensure_future(response.aclose())
            _closing.add(closing)
            closing.add_done_callback(_closing.discard)

    if task is not None:
        task.add_done_callback(stopped)
    try:
        yield
    finally:
        if task is not None:
            task.remove_done_callback(stopped)
