"""Coalescing streamed items while the SDK posts the previous one (worker/coalesce.py), without vLLM.

The source here is a plain async generator standing in for vLLM's event stream and the consumer's
sleep stands in for the SDK's job-stream POST; the same code runs against the real vLLM and the
real SDK in test_handler.py and test_local_stack.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from worker.coalesce import (
    carries_output,
    coalesced,
    event_carries_output,
    merge_chunks,
    merge_native,
    merge_sse,
)

pytestmark = pytest.mark.anyio


def chunk(delta: dict[str, Any], *, finish: str | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "notus-1",
        "object": "chat.completion.chunk",
        "created": 7,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        out["usage"] = usage
    return out


def test_merged_chunk_concatenates_text_and_keeps_finish_and_usage_last() -> None:
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "let me "}),
        chunk({"reasoning_content": "think"}),
        chunk({"content": "Hello"}),
        chunk({"content": ", world"}, finish="stop"),
        {**chunk({}), "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}},
    ]
    merged = merge_chunks(chunks)
    assert merged["id"] == "notus-1"
    assert merged["object"] == "chat.completion.chunk"
    assert (merged["created"], merged["model"]) == (7, "m")
    (choice,) = merged["choices"]
    assert choice["delta"] == {"role": "assistant", "content": "Hello, world", "reasoning_content": "let me think"}
    assert choice["finish_reason"] == "stop"
    assert merged["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


def test_tool_call_fragments_join_by_their_index() -> None:
    first = {"index": 0, "id": "call_a", "type": "function", "function": {"name": "lookup", "arguments": ""}}
    second = {"index": 1, "id": "call_b", "type": "function", "function": {"name": "add", "arguments": '{"x"'}}
    arguments_a = ['{"q": ', '"wis', 'dom"}']
    chunks = [
        chunk({"tool_calls": [first]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments_a[0]}}]}),
        chunk({"tool_calls": [second]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments_a[1]}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": ": 1}"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments_a[2]}}]}, finish="tool_calls"),
    ]
    (choice,) = merge_chunks(chunks)["choices"]
    calls = choice["delta"]["tool_calls"]
    assert [call["index"] for call in calls] == [0, 1]
    assert calls[0] == {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "lookup", "arguments": "".join(arguments_a)},
    }
    assert json.loads(calls[0]["function"]["arguments"]) == {"q": "wisdom"}
    assert json.loads(calls[1]["function"]["arguments"]) == {"x": 1}
    assert calls[1]["id"] == "call_b"
    assert choice["finish_reason"] == "tool_calls"
    assert first["function"]["arguments"] == "", "merging must not change the chunks it was given"


def test_several_choices_stay_apart() -> None:
    a = chunk({"content": "a"})
    b = {**chunk({}), "choices": [{"index": 1, "delta": {"content": "b"}, "finish_reason": None}]}
    merged = merge_chunks([a, b, chunk({"content": "A"})])
    assert [(c["index"], c["delta"]["content"]) for c in merged["choices"]] == [(0, "aA"), (1, "b")]


def test_errors_are_never_merged_and_order_is_kept() -> None:
    error = {"error": '{"type": "engine_error"}'}
    out = merge_native([chunk({"content": "a"}), chunk({"content": "b"}), error, chunk({"content": "c"})])
    assert [item.get("error") or item["choices"][0]["delta"]["content"] for item in out] == ["ab", error["error"], "c"]
    assert merge_sse(["data: 1\n\n", "data: 2\n\n", error]) == ["data: 1\n\ndata: 2\n\n", error]


def test_the_role_announcement_is_not_output() -> None:
    assert not carries_output(chunk({"role": "assistant", "content": ""}))
    assert carries_output(chunk({"content": "x"}))
    assert carries_output(chunk({}, finish="length"))
    assert carries_output({"error": "x"})
    assert not event_carries_output('data: {"object": "chat.completion.chunk", "choices": [{"delta": {"role": "a"}}]}')
    assert event_carries_output("data: [DONE]\n\n")


async def tokens(count: int, gap: float, log: list[str] | None = None) -> AsyncIterator[dict[str, Any]]:
    try:
        yield chunk({"role": "assistant", "content": ""})
        for index in range(count):
            await asyncio.sleep(gap)
            last = index == count - 1
            usage = {"prompt_tokens": 1, "completion_tokens": count, "total_tokens": count + 1} if last else None
            yield chunk({"content": f"t{index} "}, finish="length" if last else None, usage=usage)
    finally:
        if log is not None:
            log.append("source closed")


def text_of(items: list[dict[str, Any]]) -> str:
    return "".join(c["delta"].get("content", "") for item in items for c in item["choices"])


async def test_a_slow_post_gets_everything_that_arrived_meanwhile() -> None:
    """A 40 ms 'POST' per item while tokens come every 2 ms: far fewer items, nothing lost or reordered."""
    items = []
    async for item in coalesced(tokens(60, 0.002), merge_native, carries_output):
        items.append(item)
        await asyncio.sleep(0.04)
    assert text_of(items) == "".join(f"t{i} " for i in range(60))
    assert 2 <= len(items) <= 20
    assert all("usage" not in item for item in items[:-1])
    assert items[-1]["usage"]["completion_tokens"] == 60
    assert items[-1]["choices"][0]["finish_reason"] == "length"
    assert items[0]["choices"][0]["delta"]["role"] == "assistant"


async def test_a_fast_post_keeps_the_stream_token_by_token() -> None:
    items = [item async for item in coalesced(tokens(20, 0.01), merge_native, carries_output)]
    # the role announcement waits for the first token; after that one item per token
    assert len(items) == 20
    assert items[0]["choices"][0]["delta"] == {"role": "assistant", "content": "t0 "}


async def test_the_first_token_is_not_held_back() -> None:
    async def late_tail() -> AsyncIterator[dict[str, Any]]:
        yield chunk({"role": "assistant", "content": ""})
        yield chunk({"content": "first"})
        await asyncio.sleep(1.0)
        yield chunk({"content": " second"})

    started = time.monotonic()
    stream = coalesced(late_tail(), merge_native, carries_output)
    first = await anext(stream)
    assert time.monotonic() - started < 0.5
    assert first["choices"][0]["delta"]["content"] == "first"
    assert text_of([item async for item in stream]) == " second"


async def test_a_failing_source_raises_after_what_it_produced() -> None:
    async def broken() -> AsyncIterator[dict[str, Any]]:
        yield chunk({"content": "a"})
        yield chunk({"content": "b"})
        raise ConnectionError("vLLM went away")

    seen: list[dict[str, Any]] = []

    async def consume() -> None:
        async for item in coalesced(broken(), merge_native):
            seen.append(item)

    with pytest.raises(ConnectionError):
        await consume()
    assert text_of(seen) == "ab"


async def test_cancelling_the_consumer_while_it_posts_stops_the_source_at_once() -> None:
    """The SDK cancels a job's task while it awaits the stream POST, with the generator suspended at
    a `yield`: the producer must stop then, not when the generator is garbage-collected."""
    log: list[str] = []
    stream = coalesced(tokens(10_000, 0.001, log), merge_native, carries_output)

    async def consume() -> None:
        async for _item in stream:
            await asyncio.sleep(30)  # the POST

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    assert log == ["source closed"]
    await stream.aclose()
