"""The worker's input contract: shapes, defaults and bounds (pure functions, no server)."""

from __future__ import annotations

from typing import Any

import pytest

from worker.params import (
    SAMPLING_PARAMS,
    ChatRequest,
    InvalidRequest,
    OpenAIRequest,
    ReasoningPolicy,
    check_param,
    parse_job_input,
)

MODEL = "served-name"
HELLO = [{"role": "user", "content": "hello"}]


def parse(job_input: Any, max_model_len: int | None = 4096) -> ChatRequest | OpenAIRequest:
    return parse_job_input(job_input, model=MODEL, max_model_len=max_model_len)


def test_defaults_applied_to_a_bare_request() -> None:
    request = parse({"messages": HELLO})
    assert isinstance(request, ChatRequest)
    assert request.body == {
        "model": MODEL,
        "messages": HELLO,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 50,
        "max_tokens": 2048,
        "stop": ["</s>"],
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "thinking_token_budget": 2048 - 512,  # thinking is on: room is kept for the answer
    }
    assert request.stream is False


def test_default_max_tokens_never_exceeds_the_context() -> None:
    request = parse({"messages": HELLO}, max_model_len=512)
    assert request.body["max_tokens"] == 512


def test_top_level_and_nested_parameters_are_equivalent() -> None:
    top = parse({"messages": HELLO, "temperature": 0.2, "max_tokens": 7, "stop": "x"})
    nested = parse({"messages": HELLO, "sampling_params": {"temperature": 0.2, "max_tokens": 7, "stop": "x"}})
    assert top.body == nested.body
    assert (top.body["temperature"], top.body["max_tokens"], top.body["stop"]) == (0.2, 7, "x")


def test_streaming_asks_vllm_for_usage_in_the_last_chunk() -> None:
    request = parse({"messages": HELLO, "stream": True})
    assert request.stream is True
    assert request.body["stream_options"] == {"include_usage": True}


def test_options_are_passed_through() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    request = parse(
        {
            "messages": HELLO,
            "seed": 3,
            "chat_template_kwargs": {"enable_thinking": False},
            "tools": tools,
            "response_format": {"type": "json_object"},
        }
    )
    assert request.body["seed"] == 3
    assert request.body["chat_template_kwargs"] == {"enable_thinking": False}
    assert request.body["tools"] == tools
    assert request.body["response_format"] == {"type": "json_object"}


def test_openai_route_shapes() -> None:
    models = parse({"openai_route": "/v1/models", "openai_input": {}})
    assert models == OpenAIRequest(route="/v1/models", body=None, stream=False)
    body = {"model": MODEL, "messages": HELLO, "stream": True}
    chat = parse({"openai_route": "/v1/chat/completions", "openai_input": body})
    # the worker asks for the usage it logs, and hides it from a client that did not ask
    counted = {**body, "stream_options": {"include_usage": True}}
    assert chat == OpenAIRequest(route="/v1/chat/completions", body=counted, stream=True, hide_usage=True)
    asked = {**body, "stream_options": {"include_usage": True}}
    assert parse({"openai_route": "/v1/chat/completions", "openai_input": asked}).hide_usage is False


LONG = "x" * 50


@pytest.mark.parametrize(
    ("job_input", "param"),
    [
        (None, "input"),
        ("just text", "input"),
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": ["hello"]}, "messages[0]"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
        ({"messages": HELLO, "temperature": "hot"}, "temperature"),
        ({"messages": HELLO, "temperature": 2.5}, "temperature"),
        ({"messages": HELLO, "temperature": -0.1}, "temperature"),
        ({"messages": HELLO, "temperature": float("nan")}, "temperature"),
        ({"messages": HELLO, "temperature": True}, "temperature"),
        ({"messages": HELLO, "top_p": 0}, "top_p"),
        ({"messages": HELLO, "top_p": 1.5}, "top_p"),
        ({"messages": HELLO, "top_k": 0}, "top_k"),
        ({"messages": HELLO, "top_k": 2.5}, "top_k"),
        ({"messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"messages": HELLO, "max_tokens": 10**9}, "max_tokens"),
        ({"messages": HELLO, "max_tokens": "many"}, "max_tokens"),
        ({"messages": HELLO, "stop": ""}, "stop"),
        ({"messages": HELLO, "stop": [1, 2]}, "stop"),
        ({"messages": HELLO, "stop": ["x"] * 17}, "stop"),
        ({"messages": HELLO, "presence_penalty": 3}, "presence_penalty"),
        ({"messages": HELLO, "frequency_penalty": -2.01}, "frequency_penalty"),
        ({"messages": HELLO, "seed": -1}, "seed"),
        ({"messages": HELLO, "seed": float("inf")}, "seed"),
        ({"messages": HELLO, "stream": "yes"}, "stream"),
        ({"messages": HELLO, "temprature": 0.5}, "temprature"),
        ({"messages": HELLO, "sampling_params": [0.5]}, "sampling_params"),
        ({"messages": HELLO, "sampling_params": {"temp": 0.5}}, "sampling_params.temp"),
        ({"messages": HELLO, "temperature": 0.5, "sampling_params": {"temperature": 0.5}}, "temperature"),
        ({"messages": HELLO, "chat_template_kwargs": "thinking"}, "chat_template_kwargs"),
        ({"messages": HELLO, "response_format": {"type": "yaml"}}, "response_format"),
        ({"messages": HELLO, "tools": {"name": "f"}}, "tools"),
        ({"messages": HELLO, "temperature": {1, 2}}, "temperature"),
        ({"messages": HELLO, "stop": b"bytes"}, "stop"),
        ({"openai_route": "/v1/embeddings", "openai_input": {}}, "openai_route"),
        ({"openai_route": "/v1/chat/completions", "openai_input": None}, "openai_input"),
        ({"openai_route": "/v1/chat/completions", "openai_input": {"stream": "1"}}, "openai_input.stream"),
    ],
)
def test_malformed_input_names_the_parameter(job_input: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse(job_input)
    assert caught.value.param == param
    error = caught.value.to_error()
    assert (error.type, error.param) == ("invalid_request", param)
    assert error.message


def test_error_messages_say_what_is_allowed_and_never_echo_text() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse({"messages": HELLO, "temperature": 9})
    assert caught.value.message == "must be a number from 0 to 2; got 9"
    secret = "my secret diagnosis"
    with pytest.raises(InvalidRequest) as caught:
        parse({"messages": [{"role": "oracle", "content": secret}], "stop": secret})
    assert secret not in caught.value.message


def test_max_tokens_bound_names_the_context_length() -> None:
    with pytest.raises(InvalidRequest, match="at most the context length, 4096; got 5000"):
        check_param("max_tokens", 5000, max_model_len=4096)


def test_every_parameter_has_a_default_that_it_accepts() -> None:
    for name, spec in SAMPLING_PARAMS.items():
        if spec.default is not None:
            assert check_param(name, spec.default) == spec.default


def test_reasoning_budget_keeps_room_for_the_answer() -> None:
    def budget(job: dict[str, Any], policy: ReasoningPolicy | None = None) -> Any:
        request = parse_job_input({"messages": HELLO, **job}, model=MODEL, max_model_len=4096, reasoning=policy)
        return request.body.get("thinking_token_budget")

    assert budget({"max_tokens": 16}) == 8  # at most half goes to the answer reserve
    assert budget({"max_tokens": 4000}) == 4000 - 512
    assert budget({"max_tokens": 4000, "reasoning_budget": 100}) == 100
    assert budget({"max_tokens": 100, "reasoning_budget": 1000}) == 50, "a job cannot take the answer's room"
    assert budget({"max_tokens": 100, "reasoning_budget": -1}) is None
    assert budget({"max_tokens": 100, "chat_template_kwargs": {"enable_thinking": False}}) is None
    assert budget({"max_tokens": 4000}, ReasoningPolicy(budget=256)) == 256
    assert budget({"max_tokens": 4000}, ReasoningPolicy(budget=-1)) is None
    assert budget({"max_tokens": 64}, ReasoningPolicy(answer_tokens=0)) == 64
    with pytest.raises(InvalidRequest) as refused:
        parse({"messages": HELLO, "reasoning_budget": -2})
    assert refused.value.param == "reasoning_budget"
    assert "-1 (no budget) or an integer of at least 0" in refused.value.message


def test_openai_route_gets_the_budget_unless_it_set_one() -> None:
    route = "/v1/chat/completions"
    given = parse({"openai_route": route, "openai_input": {"messages": HELLO, "max_tokens": 16}})
    assert given.body is not None
    assert given.body["thinking_token_budget"] == 8
    own = parse({"openai_route": route, "openai_input": {"messages": HELLO, "thinking_token_budget": 3}})
    assert own.body is not None
    assert own.body["thinking_token_budget"] == 3
    unbounded = parse({"openai_route": route, "openai_input": {"messages": HELLO}})
    assert unbounded.body is not None
    assert "thinking_token_budget" not in unbounded.body
