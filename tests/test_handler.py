"""The job handler against a real vLLM (CPU build) serving the tiny model, called as the SDK calls it."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from testbed.vllm import MAX_MODEL_LEN, SERVED_NAME, VllmServer
from worker.handler import ChatHandler

pytestmark = [pytest.mark.vllm, pytest.mark.anyio]

HELLO = [{"role": "user", "content": "What does the Bible say about wisdom?"}]
NO_THINKING = {"enable_thinking": False}


@pytest.fixture
async def handler(vllm_server: VllmServer) -> AsyncIterator[ChatHandler]:
    chat = ChatHandler(base_url=vllm_server.base_url, served_model_name=SERVED_NAME, max_model_len=MAX_MODEL_LEN)
    yield chat
    await chat.aclose()


async def run(
    handler: ChatHandler, job_input: Any, job_id: str = "job-1", *, coalesce: bool | None = None
) -> list[Any]:
    return [item async for item in handler.handle({"id": job_id, "input": job_input}, coalesce=coalesce)]


def error_of(items: list[Any]) -> dict[str, Any]:
    assert len(items) == 1
    assert set(items[0]) == {"error"}
    error = json.loads(items[0]["error"])
    assert isinstance(error, dict)
    return error


async def test_non_streamed_answer_is_one_chat_completion(handler: ChatHandler) -> None:
    items = await run(handler, {"messages": HELLO, "max_tokens": 24, "seed": 1})
    assert len(items) == 1
    completion = items[0]
    assert set(completion) == {"id", "object", "created", "model", "choices", "usage"}
    assert completion["id"].startswith("notus-")
    assert completion["object"] == "chat.completion"
    assert completion["model"] == SERVED_NAME
    (choice,) = completion["choices"]
    assert set(choice) == {"index", "message", "finish_reason"}
    assert choice["message"]["role"] == "assistant"
    assert {"content", "reasoning_content"} <= set(choice["message"])
    assert choice["finish_reason"] in ("stop", "length")
    usage = completion["usage"]
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= 24
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_thinking_is_returned_as_reasoning_content(handler: ChatHandler) -> None:
    (thinking,) = await run(handler, {"messages": HELLO, "max_tokens": 16, "seed": 2})
    assert isinstance(thinking["choices"][0]["message"]["reasoning_content"], str)
    assert thinking["choices"][0]["message"]["reasoning_content"]
    (plain,) = await run(handler, {"messages": HELLO, "max_tokens": 16, "seed": 2, "chat_template_kwargs": NO_THINKING})
    assert plain["choices"][0]["message"]["reasoning_content"] is None
    assert plain["choices"][0]["message"]["content"]


async def test_streamed_answer_is_whole_chunks_with_usage_last(handler: ChatHandler) -> None:
    """Coalescing off: merged or not depends on how far vLLM ran ahead of this loop, which a loaded
    machine changes; the merged stream's own contract is test_a_slow_stream_post_merges_chunks...."""
    job = {"messages": HELLO, "max_tokens": 20, "seed": 3, "stream": True, "chat_template_kwargs": NO_THINKING}
    items = await run(handler, job, coalesce=False)
    assert len(items) >= 3
    assert all(isinstance(item, dict) and item["object"] == "chat.completion.chunk" for item in items)
    assert len({item["id"] for item in items}) == 1
    assert items[0]["id"].startswith("notus-")
    assert all(item["model"] == SERVED_NAME for item in items)
    assert "usage" in items[-1]
    assert all("usage" not in item for item in items[:-1])
    text = "".join(c["delta"].get("content", "") for item in items for c in item["choices"])
    (reference,) = await run(handler, {**job, "stream": False})
    assert text == reference["choices"][0]["message"]["content"]
    assert items[-1]["usage"] == reference["usage"]


async def test_usage_counts_the_tokens_vllm_produced(handler: ChatHandler, vllm_server: VllmServer) -> None:
    """The same seeded request straight to vLLM, asking for the token ids it generated."""
    job = {"messages": HELLO, "max_tokens": 40, "seed": 4, "temperature": 1.0, "chat_template_kwargs": NO_THINKING}
    (ours,) = await run(handler, job)
    async with httpx.AsyncClient(base_url=vllm_server.base_url, timeout=120) as http:
        body = {**job, "model": SERVED_NAME, "top_p": 0.9, "top_k": 50, "stop": ["</s>"], "return_token_ids": True}
        direct = (await http.post("/v1/chat/completions", json=body)).json()
    token_ids = direct["choices"][0]["token_ids"]
    assert ours["usage"]["completion_tokens"] == len(token_ids)
    assert ours["choices"][0]["message"]["content"] == direct["choices"][0]["message"]["content"]


async def test_max_tokens_one(handler: ChatHandler) -> None:
    (completion,) = await run(handler, {"messages": HELLO, "max_tokens": 1, "chat_template_kwargs": NO_THINKING})
    assert completion["usage"]["completion_tokens"] == 1
    assert completion["choices"][0]["finish_reason"] == "length"


async def test_stop_sequence_ends_the_answer_before_it(handler: ChatHandler) -> None:
    job = {"messages": HELLO, "max_tokens": 60, "seed": 5, "chat_template_kwargs": NO_THINKING, "ignore_eos": True}
    (free,) = await run(handler, job)
    text = free["choices"][0]["message"]["content"]
    words = re.findall(r"[A-Za-z]{3,}", text[10:])
    assert words, f"the seeded answer has no word to stop on: {text!r}"
    stop = words[0]
    (stopped,) = await run(handler, {**job, "stop": [stop]})
    answer = stopped["choices"][0]["message"]["content"]
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert stop not in answer
    assert text.startswith(answer)
    assert len(answer) < len(text)


async def test_a_long_conversation_reusing_its_prefix(handler: ChatHandler) -> None:
    """Turn after turn resends a growing prefix: vLLM 0.32's CPU build crashed on this with prefix caching."""
    messages = [{"role": "user", "content": "wisdom and understanding " * 100}]
    for turn in range(3):
        (completion,) = await run(handler, {"messages": messages, "max_tokens": 8, "chat_template_kwargs": NO_THINKING})
        assert completion["usage"]["prompt_tokens"] > 300
        messages += [
            {"role": "assistant", "content": completion["choices"][0]["message"]["content"] or ""},
            {"role": "user", "content": f"tell me more, part {turn}"},
        ]


async def test_sixteen_concurrent_jobs_complete_with_distinct_ids(handler: ChatHandler) -> None:
    jobs = [run(handler, {"messages": HELLO, "max_tokens": 16}, job_id=f"job-{i}") for i in range(16)]
    results = await asyncio.gather(*jobs)
    ids = [items[0]["id"] for items in results]
    assert all(items[0]["object"] == "chat.completion" for items in results)
    assert len(set(ids)) == 16


async def running_requests(vllm_server: VllmServer) -> float:
    async with httpx.AsyncClient(timeout=10) as http:
        metrics = (await http.get(f"{vllm_server.base_url}/metrics")).text
    values = re.findall(r"^vllm:num_requests_running\{[^}]*\} ([0-9.]+)$", metrics, flags=re.MULTILINE)
    assert values, "vLLM no longer reports vllm:num_requests_running"
    return sum(float(v) for v in values)


async def wait_for_running(vllm_server: VllmServer, expected: float, within: float = 30) -> None:
    async with asyncio.timeout(within):
        while await running_requests(vllm_server) != expected:  # noqa: ASYNC110 (polls another process)
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("stream", [True, False])
async def test_cancelling_a_job_frees_its_vllm_slot(
    handler: ChatHandler, vllm_server: VllmServer, stream: bool
) -> None:
    """The SDK cancels a job's task; the request to vLLM must be aborted, not left generating."""
    await wait_for_running(vllm_server, 0)
    # Not the default stop "</s>": random weights write it now and then, which would end the job early.
    job = {"messages": HELLO, "max_tokens": 4000, "ignore_eos": True, "stop": "<|never|>", "stream": stream}
    task = asyncio.create_task(run(handler, job))
    async with asyncio.timeout(30):
        while await running_requests(vllm_server) != 1:
            assert not task.done(), f"the job ended before it was seen running: {task.result()}"
            await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for_running(vllm_server, 0, within=15)


async def run_posting(handler: ChatHandler, job_input: Any, post_s: float) -> list[Any]:
    """Consume as the runpod SDK does: each item is posted (here: `post_s` of sleep) before the next is asked for."""
    items = []
    async for item in handler.handle({"id": "job-post", "input": job_input}):
        items.append(item)
        await asyncio.sleep(post_s)
    return items


async def test_a_slow_stream_post_merges_chunks_without_losing_any(handler: ChatHandler) -> None:
    """With 80 ms per POST the job goes out in far fewer items than tokens, and the merged chunks
    say exactly what the unmerged stream says (same seed, coalescing off)."""
    job = {"messages": HELLO, "max_tokens": 48, "seed": 8, "stream": True, "ignore_eos": True, "stop": "<|never|>"}
    merged = await run_posting(handler, job, 0.08)
    per_token = await run(handler, job, coalesce=False)
    assert len(per_token) >= 24  # vLLM sends an event per decoded piece: not quite one per token
    assert len(merged) < len(per_token) / 2
    assert all(item["object"] == "chat.completion.chunk" and item["id"] == merged[0]["id"] for item in merged)

    def text(items: list[Any], key: str) -> str:
        return "".join(c["delta"].get(key) or "" for item in items for c in item["choices"])

    assert text(merged, "content") == text(per_token, "content")
    assert text(merged, "reasoning_content") == text(per_token, "reasoning_content")
    assert merged[-1]["usage"] == per_token[-1]["usage"]
    assert all("usage" not in item for item in merged[:-1])
    assert merged[-1]["choices"][0]["finish_reason"] == "length"


async def test_openai_route_merges_whole_sse_events(handler: ChatHandler) -> None:
    body = {"model": SERVED_NAME, "messages": HELLO, "max_tokens": 32, "stream": True, "ignore_eos": True}
    items = await run_posting(handler, {"openai_route": "/v1/chat/completions", "openai_input": body}, 0.08)
    text = "".join(items)
    events = [event for event in text.split("\n\n") if event]
    assert len(items) < len(events)
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event[len("data: ") :]) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)


LONG = {"messages": HELLO, "max_tokens": 4000, "ignore_eos": True, "stop": "<|never|>", "stream": True}


@pytest.mark.parametrize(
    "job",
    [LONG, {"openai_route": "/v1/chat/completions", "openai_input": {"model": SERVED_NAME, **LONG}}],
    ids=["native", "openai"],
)
async def test_cancelling_while_an_item_is_posted_aborts_vllm_and_says_so(
    handler: ChatHandler, vllm_server: VllmServer, job: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK cancels the job task while it awaits a stream POST, the generator parked at `yield`.
    The garbage collector is off: neither the abort nor the job's log line may wait for it."""
    await wait_for_running(vllm_server, 0)
    caplog.set_level(logging.INFO, logger="notus.worker")
    gc.disable()
    try:
        task = asyncio.create_task(run_posting(handler, job, 60.0))
        await wait_for_running(vllm_server, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert any(" cancelled: " in message for message in caplog.messages), caplog.messages
        await wait_for_running(vllm_server, 0, within=15)
    finally:
        gc.enable()


THINKS = {"messages": HELLO, "max_tokens": 16, "seed": 11, "stop": "<|never|>"}


async def test_a_model_that_thinks_forever_still_answers(handler: ChatHandler) -> None:
    """The tiny model's random weights almost never write </think>: with thinking on, every token of a
    small max_tokens goes to reasoning. vLLM's thinking_token_budget (set by the worker) ends the
    thinking in time to leave room for an answer; without a budget the job says there is no answer."""
    (unbounded,) = await run(handler, {**THINKS, "reasoning_budget": -1})
    choice = unbounded["choices"][0]
    assert choice["message"]["content"] == "", "a native answer's content is always a string"
    assert choice["message"]["reasoning_content"]
    assert choice["finish_reason"] == "reasoning_length"

    (bounded,) = await run(handler, THINKS)
    choice = bounded["choices"][0]
    assert choice["message"]["reasoning_content"]
    assert choice["message"]["content"], "the budget must leave room for an answer"
    assert bounded["usage"]["completion_tokens"] <= 16

    streamed = await run(handler, {**THINKS, "stream": True})
    assert "".join(c["delta"].get("content") or "" for item in streamed for c in item["choices"])
    unanswered = await run(handler, {**THINKS, "stream": True, "reasoning_budget": -1})
    finishes = [c["finish_reason"] for item in unanswered for c in item["choices"] if c["finish_reason"]]
    assert finishes == ["reasoning_length"]


# Stop strings the tiny model's random text hits within a few tokens, usually while still reasoning
# (vLLM takes at most 4).
EARLY_STOPS = ["e", "a", "o", "t"]


async def test_an_answer_that_stopped_inside_its_reasoning_gets_an_answer_pass(
    handler: ChatHandler, caplog: pytest.LogCaptureFixture
) -> None:
    """The model ends (a stop string, not max_tokens) while thinking: the worker asks again with thinking
    off for the answer; if that writes nothing either, content is "" and finish_reason says no_answer.
    Streamed and not, the same seed gives the same answer."""
    caplog.set_level(logging.INFO, logger="notus.worker")
    outcomes = set()
    for seed in range(8):
        job = {"messages": HELLO, "max_tokens": 40, "seed": seed, "stop": EARLY_STOPS}
        (completion,) = await run(handler, job)
        message, finish = completion["choices"][0]["message"], completion["choices"][0]["finish_reason"]
        streamed = await run(handler, {**job, "stream": True})
        content = "".join(c["delta"].get("content") or "" for item in streamed for c in item["choices"])
        finishes = [c["finish_reason"] for item in streamed for c in item["choices"] if c["finish_reason"]]
        assert isinstance(message["content"], str)
        assert content == message["content"]
        assert finishes == [finish]
        assert streamed[-1]["usage"] == completion["usage"]
        if message["content"]:
            assert finish == "stop"
        else:
            assert finish == "no_answer"
        outcomes.add((bool(message["reasoning_content"]), bool(message["content"])))
    assert (True, True) in outcomes, "no seed stopped inside its reasoning and got its answer from the pass"
    assert any(" answer_pass=true" in line for line in caplog.messages)


async def test_openai_route_gets_the_reasoning_budget(handler: ChatHandler) -> None:
    body = {"model": SERVED_NAME, "messages": HELLO, "max_tokens": 16, "seed": 11, "stop": "<|never|>"}
    (answer,) = await run(handler, {"openai_route": "/v1/chat/completions", "openai_input": body})
    assert answer["choices"][0]["message"]["content"]


async def test_openai_route_chat_and_models(handler: ChatHandler) -> None:
    body = {"model": SERVED_NAME, "messages": HELLO, "max_tokens": 8}
    (answer,) = await run(handler, {"openai_route": "/v1/chat/completions", "openai_input": body})
    assert answer["object"] == "chat.completion"
    assert answer["usage"]["completion_tokens"] <= 8
    (models,) = await run(handler, {"openai_route": "/v1/models", "openai_input": {}})
    assert [m["id"] for m in models["data"]] == [SERVED_NAME]


async def test_openai_route_streams_whole_sse_events(handler: ChatHandler) -> None:
    body = {"model": SERVED_NAME, "messages": HELLO, "max_tokens": 8, "stream": True}
    items = await run(handler, {"openai_route": "/v1/chat/completions", "openai_input": body})
    # each item is one or more whole events (several when they arrived while the last was posted)
    assert all(isinstance(item, str) and item.startswith("data: ") and item.endswith("\n\n") for item in items)
    events = "".join(items).split("\n\n")[:-1]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event[len("data: ") :]) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)


async def test_invalid_input_fails_the_job_and_the_next_is_served(handler: ChatHandler) -> None:
    error = error_of(await run(handler, {"messages": HELLO, "top_p": 7}))
    message = "must be a number above 0 and at most 1; got 7"
    assert error == {"type": "invalid_request", "param": "top_p", "message": message}
    (completion,) = await run(handler, {"messages": HELLO, "max_tokens": 4})
    assert completion["object"] == "chat.completion"


async def test_prompt_longer_than_the_context_fails_with_vllms_message(handler: ChatHandler) -> None:
    huge = [{"role": "user", "content": "wisdom and understanding " * 4000}]
    for stream in (False, True):
        error = error_of(await run(handler, {"messages": huge, "max_tokens": 16, "stream": stream}))
        assert error["type"] == "invalid_request"
        assert error["status"] == 400
        assert str(MAX_MODEL_LEN) in error["message"]
    (completion,) = await run(handler, {"messages": HELLO, "max_tokens": 4})
    assert completion["object"] == "chat.completion"


async def test_message_text_is_logged_only_when_the_operator_opts_in(
    vllm_server: VllmServer, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Zebulon-7 mustard confession"
    job = {"messages": [{"role": "user", "content": secret}], "max_tokens": 4}
    for log_content in (False, True):
        caplog.clear()
        chat = ChatHandler(
            base_url=vllm_server.base_url,
            served_model_name=SERVED_NAME,
            max_model_len=MAX_MODEL_LEN,
            log_content=log_content,
        )
        with caplog.at_level(logging.INFO, logger="notus.worker"):
            await run(chat, job)
        await chat.aclose()
        assert "job job-1 ok" in caplog.text
        assert (secret in caplog.text) is log_content


async def test_a_streamed_openai_route_job_logs_the_tokens_it_made(
    handler: ChatHandler, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker asks vLLM for usage to log it, and relays the usage chunk only to a client that asked."""
    caplog.set_level(logging.INFO, logger="notus.worker")
    body = {"model": SERVED_NAME, "messages": HELLO, "max_tokens": 7, "stream": True, "ignore_eos": True}
    for asked in (False, True):
        caplog.clear()
        sent = {**body, "stream_options": {"include_usage": True}} if asked else body
        items = await run(handler, {"openai_route": "/v1/chat/completions", "openai_input": sent})
        chunks = [json.loads(event[len("data: ") :]) for event in "".join(items).split("\n\n")[:-2]]
        assert any("usage" in chunk and chunk["usage"] for chunk in chunks) is asked
        (line,) = [message for message in caplog.messages if "openai /v1/chat/completions" in message]
        assert "output_tokens=7 " in line
