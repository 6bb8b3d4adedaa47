"""A vLLM that refuses the thinking budget: the worker sends the request again without it.

The worker adds `thinking_token_budget` to requests with thinking on (worker/params.py). vLLM refuses
that field with HTTP 400 when it runs without a reasoning parser (`--reasoning-parser` unset: a
deployment of another model, or an external vLLM set up by hand). Here that vLLM is real: the CPU
build on the tiny model, started with an empty reasoning parser.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.vllm import MAX_MODEL_LEN, SERVED_NAME, VllmServer, start_vllm
from worker.handler import ChatHandler

pytestmark = [pytest.mark.vllm, pytest.mark.anyio]

HELLO = [{"role": "user", "content": "What does the Bible say about wisdom?"}]
JOB = {"messages": HELLO, "max_tokens": 8, "seed": 3}


@pytest.fixture(scope="module")
def plain_vllm(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    server = start_vllm(tiny_model, tmp_path_factory.mktemp("plain-vllm") / "vllm.log", reasoning_parser="")
    yield server
    server.stop()


@pytest.fixture
async def handler(plain_vllm: VllmServer) -> AsyncIterator[ChatHandler]:
    chat = ChatHandler(base_url=plain_vllm.base_url, served_model_name=SERVED_NAME, max_model_len=MAX_MODEL_LEN)
    yield chat
    await chat.aclose()


async def run(handler: ChatHandler, job_input: Any) -> list[Any]:
    return [item async for item in handler.handle({"id": "job-b", "input": job_input})]


def test_this_vllm_does_refuse_the_budget(plain_vllm: VllmServer) -> None:
    """The premise: without it the tests below would not reach the fallback."""
    body = {"model": SERVED_NAME, "messages": HELLO, "max_tokens": 4, "thinking_token_budget": 2}
    refused = httpx.post(f"{plain_vllm.base_url}/v1/chat/completions", json=body, timeout=60)
    assert refused.status_code == 400
    assert "thinking_token_budget" in refused.text


async def test_native_jobs_are_answered_without_the_budget(handler: ChatHandler) -> None:
    (answer,) = await run(handler, JOB)
    assert answer["object"] == "chat.completion", answer
    assert answer["usage"]["completion_tokens"] > 0

    streamed = await run(handler, {**JOB, "stream": True})
    assert all(item["object"] == "chat.completion.chunk" for item in streamed), streamed[:2]
    assert streamed[-1]["usage"]["completion_tokens"] > 0


async def test_openai_route_jobs_are_answered_without_the_budget(handler: ChatHandler) -> None:
    body = {"model": SERVED_NAME, **JOB}
    (answer,) = await run(handler, {"openai_route": "/v1/chat/completions", "openai_input": body})
    assert answer["object"] == "chat.completion", answer

    route = {"openai_route": "/v1/chat/completions", "openai_input": {**body, "stream": True}}
    text = "".join(await run(handler, route))
    assert text.rstrip().endswith("data: [DONE]"), text[-300:]
    assert '"chat.completion.chunk"' in text
