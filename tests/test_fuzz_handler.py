"""Property-based fuzzing of the worker's job handler against a real vLLM (CPU build, tiny model).

Whatever a job asks for, including what passes the worker's own checks but not vLLM's (odd tools,
response formats, stop lists, template kwargs), the handler ends the job with either answers or one
`{"error": <JSON text>}` item, never an exception, and keeps serving the next job.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.fuzzing import chat_inputs, json_values, openai_inputs
from testbed.vllm import MAX_MODEL_LEN, SERVED_NAME, VllmServer
from worker.handler import ChatHandler
from worker.job_errors import parse_job_error

pytestmark = pytest.mark.vllm

SHORT = 8  # tokens per fuzzed answer: the property is about the job's end, not its length
HELLO = {"messages": [{"role": "user", "content": "wisdom"}], "max_tokens": SHORT}


def short(job_input: Any) -> Any:
    """Keep answers short where the input leaves their length open, so 40 examples take seconds."""
    if isinstance(job_input, dict):
        nested = job_input.get("sampling_params")
        if "max_tokens" not in job_input and not (isinstance(nested, dict) and "max_tokens" in nested):
            return {**job_input, "max_tokens": SHORT}
        body = job_input.get("openai_input")
        if isinstance(body, dict) and "max_tokens" not in body and "max_completion_tokens" not in body:
            return {**job_input, "openai_input": {**body, "max_tokens": SHORT}}
    return job_input


async def handle(base_url: str, job_input: Any) -> list[Any]:
    handler = ChatHandler(base_url=base_url, served_model_name=SERVED_NAME, max_model_len=MAX_MODEL_LEN)
    try:
        return [item async for item in handler.handle({"id": "fuzz", "input": job_input})]
    finally:
        await handler.aclose()


def assert_job_ended_cleanly(items: list[Any]) -> None:
    assert items, "the job yielded nothing"
    errors = [item for item in items if isinstance(item, dict) and "error" in item]
    if errors:
        assert items == errors[:1], "an error must be the job's only item"
        assert isinstance(errors[0]["error"], str)
        error = parse_job_error(errors[0]["error"])
        assert error.type in ("invalid_request", "engine_error"), error
        assert json.loads(errors[0]["error"])["message"]
        return
    for item in items:
        assert isinstance(item, dict)
        assert item.get("object") in ("chat.completion", "chat.completion.chunk", "text_completion", "list"), item


@settings(max_examples=40)
@given(st.one_of(chat_inputs(), openai_inputs(), json_values).map(short))
def test_any_job_input_ends_in_answers_or_one_json_error(vllm_server: VllmServer, job_input: Any) -> None:
    assert_job_ended_cleanly(asyncio.run(handle(vllm_server.base_url, job_input)))


def test_the_handler_still_answers_after_the_fuzz(vllm_server: VllmServer) -> None:
    (completion,) = asyncio.run(handle(vllm_server.base_url, HELLO))
    assert completion["object"] == "chat.completion"
