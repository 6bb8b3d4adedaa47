"""What a job may ask for: the three input shapes, every parameter's default and bounds.

This is the worker's wire contract and the one table of bounds in the project: the CLI imports it
(e.g. `notus chat`'s `/set`) so a value refused here is refused there with the same words.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.job_errors import JobError

ROLES = ("system", "developer", "user", "assistant", "tool")
OPENAI_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models")
# An LB worker's route for the native shape (worker/lb.py): POST {"input": {...}} or the bare input.
NATIVE_ROUTE = "/chat"
MAX_STOP_SEQUENCES = 16


class InvalidRequest(Exception):
    """The job input breaks the contract; `param` names the offending field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message

    def to_error(self) -> JobError:
        return JobError(type="invalid_request", param=self.param, message=self.message)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _stop(value: Any) -> bool:
    if isinstance(value, str):
        return value != ""
    return (
        isinstance(value, list)
        and len(value) <= MAX_STOP_SEQUENCES
        and all(isinstance(item, str) and item != "" for item in value)
    )


@dataclass(frozen=True)
class Param:
    """One sampling parameter: its default (None: not sent) and the values it accepts."""

    default: Any
    allowed: str
    accepts: Callable[[Any], bool]


SAMPLING_PARAMS: Mapping[str, Param] = {
    "temperature": Param(0.7, "a number from 0 to 2", lambda v: _number(v) and 0 <= v <= 2),
    "top_p": Param(0.9, "a number above 0 and at most 1", lambda v: _number(v) and 0 < v <= 1),
    "top_k": Param(50, "-1 (no limit) or an integer of at least 1", lambda v: _integer(v) and (v == -1 or v >= 1)),
    "max_tokens": Param(2048, "an integer of at least 1, at most the context length", lambda v: _integer(v) and v >= 1),
    "stop": Param(["</s>"], f"a non-empty string or a list of up to {MAX_STOP_SEQUENCES} non-empty strings", _stop),
    "presence_penalty": Param(0.0, "a number from -2 to 2", lambda v: _number(v) and -2 <= v <= 2),
    "frequency_penalty": Param(0.0, "a number from -2 to 2", lambda v: _number(v) and -2 <= v <= 2),
    "repetition_penalty": Param(None, "a number above 0 and at most 2", lambda v: _number(v) and 0 < v <= 2),
    "min_p": Param(None, "a number from 0 to 1", lambda v: _number(v) and 0 <= v <= 1),
    "seed": Param(None, "an integer from 0 to 2^63-1", lambda v: _integer(v) and 0 <= v < 2**63),
    "min_tokens": Param(None, "an integer of at least 0", lambda v: _integer(v) and v >= 0),
    "ignore_eos": Param(None, "true or false", lambda v: isinstance(v, bool)),
}

# Other top-level keys of the native shape, with what they accept.
OPTIONS: Mapping[str, Param] = {
    "stream": Param(False, "true or false", lambda v: isinstance(v, bool)),
    "chat_template_kwargs": Param(None, 'an object, e.g. {"enable_thinking": false}', lambda v: isinstance(v, dict)),
    "tools": Param(
        None, "a list of tool objects", lambda v: isinstance(v, list) and all(isinstance(t, dict) for t in v)
    ),
    "tool_choice": Param(
        None,
        '"none", "auto", "required" or an object',
        lambda v: v in ("none", "auto", "required") or isinstance(v, dict),
    ),
    "response_format": Param(
        None,
        "an object whose type is text, json_object or json_schema",
        lambda v: isinstance(v, dict) and v.get("type") in ("text", "json_object", "json_schema"),
    ),
    "model": Param(None, "a string (ignored: the worker serves one model)", lambda v: isinstance(v, str)),
    "reasoning_budget": Param(
        None,
        "-1 (no budget) or an integer of at least 0: the most tokens thinking may take",
        lambda v: _integer(v) and v >= -1,
    ),
}
# With thinking on and no budget, a small max_tokens can all go to reasoning and leave no answer.
DEFAULT_ANSWER_TOKENS = 512


@dataclass(frozen=True)
class ReasoningPolicy:
    """How much of max_tokens thinking may take, so the answer always has room.

    vLLM (0.32 and later, with a reasoning parser) ends the thinking itself once a request's
    `thinking_token_budget` is spent, by forcing the parser's end-of-thinking marker. The budget is
    the job's `reasoning_budget`, else the deployment's (NOTUS_REASONING_BUDGET), and never more than
    max_tokens minus `answer_tokens` (NOTUS_ANSWER_TOKENS, at most half of max_tokens).
    """

    budget: int | None = None  # None: as much as leaves room for the answer; -1: no budget
    answer_tokens: int = DEFAULT_ANSWER_TOKENS

    def thinking_budget(self, max_tokens: int | None, requested: int | None = None) -> int | None:
        """The thinking_token_budget to send vLLM, or None to send none."""
        wanted = self.budget if requested is None else requested
        if wanted == -1:
            return None
        if max_tokens is None:
            return wanted
        room = max_tokens - min(self.answer_tokens, max_tokens // 2)
        return room if wanted is None else min(wanted, room)


def thinking_on(body: Mapping[str, Any]) -> bool:
    kwargs = body.get("chat_template_kwargs")
    return not (isinstance(kwargs, dict) and kwargs.get("enable_thinking") is False)


NATIVE_KEYS = ("messages", "sampling_params", *SAMPLING_PARAMS, *OPTIONS)


@dataclass(frozen=True)
class ChatRequest:
    """A validated native-shape job: the body to send to vLLM's chat endpoint."""

    body: dict[str, Any]
    stream: bool


@dataclass(frozen=True)
class OpenAIRequest:
    """A job that arrived through RunPod's OpenAI route, relayed to vLLM as it is.

    `hide_usage`: the worker asked a stream for its usage (to log the tokens it made) though the client
    did not, so the usage-only chunk is not relayed."""

    route: str
    body: dict[str, Any] | None
    stream: bool
    hide_usage: bool = False


def check_param(name: str, value: Any, *, max_model_len: int | None = None) -> Any:
    """Return `value` if sampling parameter `name` accepts it, else raise InvalidRequest."""
    spec = SAMPLING_PARAMS.get(name)
    if spec is None:
        raise InvalidRequest(name, f"unknown sampling parameter; allowed: {', '.join(SAMPLING_PARAMS)}")
    if not spec.accepts(value):
        raise InvalidRequest(name, f"must be {spec.allowed}; got {_show(value)}")
    if name == "max_tokens" and max_model_len is not None and value > max_model_len:
        raise InvalidRequest(name, f"must be at most the context length, {max_model_len}; got {value}")
    return value


def parse_job_input(
    job_input: Any, *, model: str, max_model_len: int | None, reasoning: ReasoningPolicy | None = None
) -> ChatRequest | OpenAIRequest:
    """Validate a job's `input` and turn it into a request for vLLM.

    `reasoning` (default: ReasoningPolicy()) bounds thinking so the answer has room.
    Raises InvalidRequest for anything outside the contract.
    """
    reasoning = reasoning or ReasoningPolicy()
    if not isinstance(job_input, dict):
        raise InvalidRequest("input", f"must be an object with messages; got {_show(job_input)}")
    if "openai_route" in job_input:
        return _parse_openai(job_input, reasoning)
    unknown = [key for key in job_input if key not in NATIVE_KEYS]
    if unknown:
        raise InvalidRequest(unknown[0], f"unknown parameter; allowed: {', '.join(NATIVE_KEYS)}")

    messages = _check_messages(job_input.get("messages"))
    nested = job_input.get("sampling_params", {})
    if not isinstance(nested, dict):
        raise InvalidRequest("sampling_params", f"must be an object; got {_show(nested)}")
    body: dict[str, Any] = {"model": model, "messages": messages}
    for name, spec in SAMPLING_PARAMS.items():
        at_top, in_nested = name in job_input, name in nested
        if at_top and in_nested:
            raise InvalidRequest(name, "is given both at the top level and in sampling_params; give it once")
        if at_top or in_nested:
            value = job_input[name] if at_top else nested[name]
            body[name] = check_param(name, value, max_model_len=max_model_len)
        elif spec.default is not None:
            body[name] = spec.default
    unknown_nested = [key for key in nested if key not in SAMPLING_PARAMS]
    if unknown_nested:
        param = f"sampling_params.{unknown_nested[0]}"
        raise InvalidRequest(param, f"unknown sampling parameter; allowed: {', '.join(SAMPLING_PARAMS)}")
    if max_model_len is not None:  # an explicit value was checked above; this caps the default
        body["max_tokens"] = min(body["max_tokens"], max_model_len)

    for name, spec in OPTIONS.items():
        if name not in job_input or name == "model":
            continue
        value = job_input[name]
        if not spec.accepts(value):
            raise InvalidRequest(name, f"must be {spec.allowed}; got {_show(value)}")
        body[name] = value
    requested = body.pop("reasoning_budget", None)
    if thinking_on(body):
        budget = reasoning.thinking_budget(body["max_tokens"], requested)
        if budget is not None:
            body["thinking_token_budget"] = budget
    stream = bool(body.pop("stream", False))
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return ChatRequest(body=body, stream=stream)


def _parse_openai(job_input: dict[str, Any], reasoning: ReasoningPolicy) -> OpenAIRequest:
    route = job_input["openai_route"]
    if route not in OPENAI_ROUTES:
        raise InvalidRequest("openai_route", f"must be one of {', '.join(OPENAI_ROUTES)}; got {_show(route)}")
    body = job_input.get("openai_input") or None
    if route == "/v1/models":
        return OpenAIRequest(route=route, body=None, stream=False)
    if not isinstance(body, dict):
        raise InvalidRequest("openai_input", f"must be an OpenAI request object for {route}; got {_show(body)}")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("openai_input.stream", f"must be true or false; got {_show(stream)}")
    if route == "/v1/chat/completions" and "thinking_token_budget" not in body and thinking_on(body):
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        budget = reasoning.thinking_budget(limit if isinstance(limit, int) and limit > 0 else None)
        if budget is not None:
            body = {**body, "thinking_token_budget": budget}
    hide_usage = False
    options = body.get("stream_options")
    if stream and (options is None or (isinstance(options, dict) and not options.get("include_usage"))):
        body = {**body, "stream_options": {**(options or {}), "include_usage": True}}
        hide_usage = True
    return OpenAIRequest(route=route, body=body, stream=stream, hide_usage=hide_usage)


def answer_pass_body(body: Mapping[str, Any], used_tokens: int) -> dict[str, Any] | None:
    """The request that asks for the answer once the model ended inside its reasoning: thinking off,
    the reasoning budget dropped, and only the tokens max_tokens has left (None when none are)."""
    left = int(body.get("max_tokens") or 0) - used_tokens
    if left < 1:
        return None
    kwargs = body.get("chat_template_kwargs")
    answer = {key: value for key, value in body.items() if key != "thinking_token_budget"}
    answer["chat_template_kwargs"] = {**(kwargs if isinstance(kwargs, dict) else {}), "enable_thinking": False}
    answer["max_tokens"] = left
    return answer


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if messages is None:
        raise InvalidRequest("messages", "is required: a non-empty list of {role, content} objects")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            "messages", f"must be a non-empty list of {{role, content}} objects; got {_show(messages)}"
        )
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(where, f"must be an object with role and content; got {_show(message)}")
        role = message.get("role")
        if role not in ROLES:
            raise InvalidRequest(f"{where}.role", f"must be one of {', '.join(ROLES)}; got {_show(role)}")
        content = message.get("content")
        if content is None and not (role == "assistant" and message.get("tool_calls")):
            raise InvalidRequest(f"{where}.content", "is required (null only for an assistant turn with tool_calls)")
        if content is not None and not isinstance(content, str) and not _text_parts(content):
            raise InvalidRequest(
                f"{where}.content", f"must be a string or a list of {{type: text, text}} parts; got {_show(content)}"
            )
    return messages


def _text_parts(content: Any) -> bool:
    return isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str) for part in content
    )


def _show(value: Any) -> str:
    """A short description of a rejected value; never its full text, which may be private."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value) if not isinstance(value, bool) else str(value).lower()
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"
