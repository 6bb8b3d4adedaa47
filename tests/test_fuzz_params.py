"""Property-based fuzzing of the worker's input contract (worker/params.py), with no process.

Every job input, however odd, must either become a request for vLLM whose values lie inside the
published bounds, or be refused with InvalidRequest naming a parameter: never another exception
(which would crash the handler's job instead of failing it with a JSON error).
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from testbed.fuzzing import chat_inputs, json_values, openai_inputs, parameter_values
from worker.params import (
    NATIVE_KEYS,
    OPENAI_ROUTES,
    SAMPLING_PARAMS,
    ChatRequest,
    InvalidRequest,
    OpenAIRequest,
    ReasoningPolicy,
    check_param,
    parse_job_input,
)

MAX_MODEL_LEN = 4096
BOUNDS = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "presence_penalty": (-2, 2),
    "frequency_penalty": (-2, 2),
    "min_p": (0, 1),
    "repetition_penalty": (0, 2),
}


def parse(job_input: Any) -> ChatRequest | OpenAIRequest | InvalidRequest:
    try:
        return parse_job_input(job_input, model="served", max_model_len=MAX_MODEL_LEN, reasoning=ReasoningPolicy())
    except InvalidRequest as refused:
        return refused


def assert_refusal_is_clear(refused: InvalidRequest, job_input: Any) -> None:
    """The JSON error names a parameter the caller can find in what they sent (or `input` itself)."""
    error = json.loads(refused.to_error().to_text())
    assert error["type"] == "invalid_request"
    assert error["message"]
    if isinstance(job_input, dict) and refused.param in job_input:
        return  # an unknown key, named as the caller spelled it
    top = refused.param.split(".")[0].split("[")[0]
    assert top in {"input", "messages", "openai_route", "openai_input", *NATIVE_KEYS}, refused.param


def assert_inside_bounds(body: dict[str, Any]) -> None:
    for name, (low, high) in BOUNDS.items():
        if name in body:
            value = body[name]
            assert isinstance(value, int | float)
            assert math.isfinite(value)
            assert low <= value <= high, (name, value)
    assert 1 <= body["max_tokens"] <= MAX_MODEL_LEN
    assert body["top_k"] == -1 or body["top_k"] >= 1
    assert body["model"] == "served"
    assert isinstance(body["messages"], list)
    assert body["messages"]
    if "thinking_token_budget" in body:
        assert 0 <= body["thinking_token_budget"] <= body["max_tokens"]


@given(json_values)
def test_any_json_value_is_parsed_or_refused_by_name(job_input: Any) -> None:
    result = parse(job_input)
    if isinstance(result, InvalidRequest):
        assert_refusal_is_clear(result, job_input)


@given(chat_inputs())
def test_native_inputs_are_refused_by_name_or_sent_inside_the_bounds(job_input: dict[str, Any]) -> None:
    result = parse(job_input)
    if isinstance(result, InvalidRequest):
        assert_refusal_is_clear(result, job_input)
        return
    assert isinstance(result, ChatRequest)
    assert_inside_bounds(result.body)
    assert result.stream == bool(result.body.get("stream", False))
    json.dumps(result.body)  # what goes to vLLM is JSON


@given(openai_inputs())
def test_openai_route_inputs_are_refused_by_name_or_relayed(job_input: dict[str, Any]) -> None:
    result = parse(job_input)
    if isinstance(result, InvalidRequest):
        assert_refusal_is_clear(result, job_input)
        return
    assert isinstance(result, OpenAIRequest)
    assert result.route in OPENAI_ROUTES
    assert isinstance(result.stream, bool)


def near_bounds(name: str) -> st.SearchStrategy[Any]:
    """Values around a parameter's documented bounds (where a loosened check would show), or anything."""
    low, high = BOUNDS.get(name, (-3, 3))
    return st.one_of(st.floats(low - 0.5, high + 0.5), st.integers(int(low) - 2, int(high) + 2), parameter_values)


@given(st.sampled_from(sorted(SAMPLING_PARAMS)).flatmap(lambda name: st.tuples(st.just(name), near_bounds(name))))
def test_a_sampling_parameter_is_accepted_only_inside_its_bounds(case: tuple[str, Any]) -> None:
    name, value = case
    try:
        accepted = check_param(name, value, max_model_len=MAX_MODEL_LEN)
    except InvalidRequest as exc:
        refused = exc
    else:
        assert accepted is value
        if name in BOUNDS:
            low, high = BOUNDS[name]
            assert low <= value <= high
        return
    assert refused.param == name
    assert "context length" in refused.message or SAMPLING_PARAMS[name].allowed in refused.message
