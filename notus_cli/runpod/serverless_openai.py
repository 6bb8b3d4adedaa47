"""The OpenAI route of a serverless endpoint (`.../v2/{id}/openai/v1`), as ServerlessClient speaks it.

RunPod queues each request as a job for the worker's OpenAI route and answers in OpenAI's shapes:
a chat.completion, or SSE `chat.completion.chunk` events up to `[DONE]` (runpod/docs
serverless/vllm/openai-compatibility.mdx). A mixin of ServerlessClient, kept apart because it is
a second protocol (OpenAI's) on the same endpoint.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from notus_cli.http_errors import unreachable
from notus_cli.runpod.protocol import routes
from notus_cli.runpod.protocol.follow import Call, Retrying, openai_call
from notus_cli.runpod.protocol.limits import RetryPolicy
from notus_cli.runpod.protocol.replies import ErrorReply, job_failed
from worker.job_errors import parse_job_error
from worker.sse import DONE, payloads


class EndpointOpenAIRoute:
    """What ServerlessClient adds for the OpenAI route; it supplies the transport below."""

    base_url: str
    retry_policy: RetryPolicy
    _http: httpx.AsyncClient
    _timeout: httpx.Timeout

    def headers(self) -> dict[str, str]:
        raise NotImplementedError

    async def request(self, sent: Call, *, read_timeout: float | None = None) -> httpx.Response:
        raise NotImplementedError

    async def models(self) -> list[dict[str, Any]]:
        body = (await self.request(openai_call("GET", routes.OPENAI_MODELS))).json()
        return list(body.get("data") or []) if isinstance(body, dict) else []

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """A chat.completion through the OpenAI route (not streamed)."""
        sent = openai_call("POST", routes.OPENAI_CHAT_COMPLETIONS, {**body, "stream": False})
        result: dict[str, Any] = (await self.request(sent)).json()
        return result

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """chat.completion.chunk objects through the OpenAI route, as the server sends them."""

        sent = openai_call("POST", routes.OPENAI_CHAT_COMPLETIONS, {**body, "stream": True})
        retrying = Retrying(self.retry_policy)
        while True:
            try:
                async with self._http.stream(
                    sent.method,
                    self.base_url + sent.path,
                    json=sent.body,
                    headers=self.headers(),
                    timeout=self._timeout,
                ) as response:
                    retry_after = response.headers.get("retry-after")
                    again = retrying.after_reply(sent, response.status_code, retry_after)
                    if again is not None:
                        await response.aread()
                        await asyncio.sleep(again.wait)
                        continue
                    if response.status_code >= 400:
                        content = await response.aread()
                        raise ErrorReply.read(response.status_code, content, retry_after=retry_after).to_error()
                    async for chunk in sse_objects(response):
                        yield chunk
                    return
            except httpx.HTTPError as exc:
                retry = retrying.after_failure(sent, connected=not isinstance(exc, httpx.ConnectError))
                if retry is None:
                    raise unreachable(self.base_url, exc) from None
                await asyncio.sleep(retry.wait)


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
