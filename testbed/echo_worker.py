"""A runpod SDK worker with a trivial handler: the emulator's tests and its throughput benchmark use it.

It is a real worker process (the unmodified SDK polling the emulator); only the handler is trivial,
so the tests exercise the queue protocol in seconds, without vLLM. Job input (all optional):

    {"echo": value, "items": n, "delay": s, "sleep": s, "fail": "message", "env": "NAME"}

yields n items `{"index": i, "echo": value}` `delay` seconds apart after sleeping `sleep` seconds;
`fail` makes the job fail with that message; `env` yields `{"env": value of that variable}` (how
deploy tests see what a template's env became inside the worker). ECHO_CONCURRENCY sets the jobs it
runs at once.

A chat input (`messages`, `max_tokens`, as Notus's worker takes it, or the same as an OpenAI request
for the worker's OpenAI route, `{"openai_route": "/v1/chat/completions", "openai_input": {...}}`,
which is streamed as SSE text items as the real worker relays vLLM's events) is answered like the real
worker streams: `max_tokens` chat.completion.chunk objects of one word each, the last with usage,
after ECHO_FIRST_TOKEN_DELAY seconds and ECHO_TOKEN_DELAY seconds apart (the benchmark's RunPod
tests rely on these known timings). A last message starting with "FAIL" fails the job as the real
worker does with bad input.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any


async def handler(job: dict[str, Any]) -> AsyncIterator[Any]:
    data = job.get("input")
    if not isinstance(data, dict):
        yield {"index": 0, "echo": data}
        return
    if "messages" in data:
        async for chunk in chat(data):
            yield chunk
        return
    if data.get("openai_route") == "/v1/chat/completions" and isinstance(data.get("openai_input"), dict):
        async for chunk in chat(data["openai_input"]):
            if "error" in chunk:  # the job fails, as the real worker's does on refused input
                yield chunk
                return
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"
        return
    if data.get("sleep"):
        await asyncio.sleep(float(data["sleep"]))
    if data.get("env"):
        yield {"env": os.environ.get(str(data["env"]))}
        return
    if data.get("fail"):
        yield {"error": str(data["fail"])}
        return
    for index in range(int(data.get("items", 1))):
        if index and data.get("delay"):
            await asyncio.sleep(float(data["delay"]))
        yield {"index": index, "echo": data.get("echo")}


async def chat(data: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    last = str(data["messages"][-1].get("content", "")) if data["messages"] else ""
    if last.startswith("FAIL"):
        error = {"type": "invalid_request", "param": "messages", "message": f"refused: {last[:40]}"}
        yield {"error": json.dumps(error)}
        return
    tokens = int(data.get("max_tokens", 16))
    first, gap = float(os.environ.get("ECHO_FIRST_TOKEN_DELAY", "0")), float(os.environ.get("ECHO_TOKEN_DELAY", "0"))
    await asyncio.sleep(first)
    for index in range(tokens):
        if index:
            await asyncio.sleep(gap)
        chunk: dict[str, Any] = {
            "id": "notus-echo",
            "object": "chat.completion.chunk",
            "model": "echo",
            "choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": None}],
        }
        if index == tokens - 1:
            chunk["choices"][0]["finish_reason"] = "length"
            chunk["usage"] = {"prompt_tokens": len(last.split()), "completion_tokens": tokens}
        yield chunk


def main() -> None:
    import runpod  # late: it reads RUNPOD_* variables on import

    concurrency = int(os.environ.get("ECHO_CONCURRENCY", "8"))
    sys.argv = sys.argv[:1]
    runpod.serverless.start(
        {"handler": handler, "concurrency_modifier": lambda _current: concurrency, "return_aggregate_stream": True}
    )


if __name__ == "__main__":
    main()
