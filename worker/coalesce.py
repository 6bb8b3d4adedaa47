"""Streamed items merged while the previous one is on its way to RunPod.

The runpod SDK posts each item a generator handler yields to RunPod's job-stream API and awaits
that POST before it asks the handler for the next item (runpod-python `rp_job.handle_job`). Yielding
one item per vLLM event caps a stream at one token per round trip: 33 tokens/s at 30 ms. So a
producer task reads vLLM into a buffer while the POST is in flight, and the next item the SDK asks
for is everything that arrived meanwhile, merged. At most one job-stream POST per job is ever in
flight (the SDK's loop guarantees it), nothing waits for a timer, and when the POST returns faster
than vLLM decodes the buffer holds one event: the stream stays token by token.

Merging keeps the output contract: native jobs get one valid `chat.completion.chunk` (content and
reasoning concatenated, tool-call fragments joined by their index, the last finish_reason, usage
from the last chunk that had it); OpenAI-route jobs get several whole SSE events in one text item.
An error item is never merged: it goes out on its own, after what came before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, TypeVar

T = TypeVar("T")

CHUNK = "chat.completion.chunk"
_REPLACED = ("index", "type", "role")  # kept from the first fragment, not concatenated


async def coalesced(
    source: AsyncIterator[T],
    merge: Callable[[list[T]], list[T]],
    substantive: Callable[[T], bool] = lambda _item: True,
) -> AsyncGenerator[T]:
    """Yield `merge(everything buffered)` each time the consumer asks, waiting only while nothing is.

    Items for which `substantive` is false (vLLM's opening role-only event) are held until the
    first item that is, so the first token does not wait behind a POST of an empty chunk. If the
    task consuming this generator is cancelled, even while it is suspended at a `yield` (the SDK
    stopping a job while it posts), the producer is cancelled at once, which closes vLLM's stream.
    """
    buffer: list[T] = []
    ready = asyncio.Event()
    state: dict[str, Any] = {"done": False, "error": None, "started": False}

    async def produce() -> None:
        try:
            async for item in source:
                buffer.append(item)
                if state["started"] or substantive(item):
                    state["started"] = True
                    ready.set()
        except Exception as exc:  # handed to the consumer, after what was read before it
            state["error"] = exc
        finally:
            state["done"] = True
            ready.set()

    producer = asyncio.ensure_future(produce())
    owner = asyncio.current_task()

    def owner_stopped(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            producer.cancel()

    if owner is not None:
        owner.add_done_callback(owner_stopped)
    try:
        while True:
            await ready.wait()
            ready.clear()
            items = buffer[:]
            del buffer[:]
            for item in merge(items) if items else []:
                yield item
            if state["done"] and not buffer:
                if state["error"] is not None:
                    raise state["error"]
                return
    finally:
        if owner is not None:
            owner.remove_done_callback(owner_stopped)
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer


def merge_runs(items: list[Any], mergeable: Callable[[Any], bool], join: Callable[[list[Any]], Any]) -> list[Any]:
    """Join each run of adjacent mergeable items; anything else stays on its own, in order."""
    out: list[Any] = []
    run: list[Any] = []
    for item in items:
        if mergeable(item):
            run.append(item)
            continue
        if run:
            out.append(join(run) if len(run) > 1 else run[0])
            run = []
        out.append(item)
    if run:
        out.append(join(run) if len(run) > 1 else run[0])
    return out


def merge_native(items: list[Any]) -> list[Any]:
    """Native jobs: adjacent chat.completion.chunk objects become one; error items stay apart."""
    return merge_runs(items, lambda item: isinstance(item, dict) and item.get("object") == CHUNK, merge_chunks)


def merge_sse(items: list[Any]) -> list[Any]:
    """OpenAI-route jobs: adjacent SSE event texts become one text; anything else stays apart."""
    return merge_runs(items, lambda item: isinstance(item, str), "".join)


def merge_chunks(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """One chunk equal to what a client accumulating `chunks` one by one would have built."""
    first = chunks[0]
    merged: dict[str, Any] = {key: first[key] for key in ("id", "object", "created", "model") if key in first}
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            index = choice.get("index", 0)
            into = choices.setdefault(index, {"index": index, "delta": {}, "finish_reason": None})
            _accumulate(into["delta"], choice.get("delta") or {})
            if choice.get("finish_reason") is not None:
                into["finish_reason"] = choice["finish_reason"]
        if chunk.get("usage"):
            usage = chunk["usage"]
    merged["choices"] = list(choices.values())
    if usage is not None:
        merged["usage"] = usage
    return merged


def _accumulate(into: dict[str, Any], delta: dict[str, Any]) -> None:
    """Add `delta` to `into` as OpenAI's stream accumulators do: strings concatenate, fragments of a
    list join by their `index`, and index/type/role keep their first value."""
    for key, value in delta.items():
        if value is None:
            continue
        have = into.get(key)
        if have is None:
            into[key] = json.loads(json.dumps(value)) if isinstance(value, dict | list) else value
        elif key in _REPLACED:
            continue
        elif isinstance(have, str) and isinstance(value, str):
            into[key] = have + value
        elif isinstance(have, dict) and isinstance(value, dict):
            _accumulate(have, value)
        elif isinstance(have, list) and isinstance(value, list):
            _join_indexed(have, value)
        else:
            into[key] = value


def _join_indexed(have: list[Any], fragments: list[Any]) -> None:
    for fragment in fragments:
        if not isinstance(fragment, dict):
            have.append(fragment)
            continue
        index = fragment.get("index")
        same = next((entry for entry in have if isinstance(entry, dict) and entry.get("index") == index), None)
        if same is None:
            have.append(json.loads(json.dumps(fragment)))
        else:
            _accumulate(same, fragment)


def carries_output(chunk: Any) -> bool:
    """False only for a chunk with nothing a client shows (vLLM's opening role announcement)."""
    if not isinstance(chunk, dict) or chunk.get("object") != CHUNK:
        return True
    if chunk.get("usage"):
        return True
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if choice.get("finish_reason") is not None or any(delta.get(key) for key in delta if key != "role"):
            return True
    return False


def event_carries_output(text: Any) -> bool:
    """`carries_output` for an SSE event text of the OpenAI route."""
    if not isinstance(text, str) or not text.startswith("data: {"):
        return True
    try:
        return carries_output(json.loads(text[len("data: ") :]))
    except json.JSONDecodeError:
        return True
