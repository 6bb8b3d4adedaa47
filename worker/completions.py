"""The output contract: vLLM's answers reshaped into Notus chat.completion objects.

We copy only the fields the README documents, so a vLLM upgrade that adds or renames fields does
not change what clients receive. vLLM has called the reasoning text `reasoning_content` and, more
recently, `reasoning`; both come out as `reasoning_content`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from worker.job_errors import JobError

# finish_reason of a choice that hit max_tokens while still reasoning, before writing any answer.
NO_ANSWER = "reasoning_length"
# finish_reason of a native answer with no content: the model ended (inside its reasoning or not) and
# an answer pass, when one ran, wrote nothing either. Its content is then "", never null.
EMPTY_ANSWER = "no_answer"
_NO_ROOM = ("length", NO_ANSWER)  # ended by max_tokens: no answer pass, which would exceed it


def new_completion_id() -> str:
    return f"notus-{uuid.uuid4().hex}"


def completion(raw: dict[str, Any], *, completion_id: str, model: str) -> dict[str, Any]:
    """A chat.completion from vLLM's non-streamed response."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": raw.get("created", 0),
        "model": model,
        "choices": [_choice(choice) for choice in raw.get("choices", [])],
        "usage": usage(raw.get("usage")),
    }


def _choice(raw: dict[str, Any]) -> dict[str, Any]:
    message = _message(raw.get("message") or {})
    finish = raw.get("finish_reason")
    if finish == "length" and message["reasoning_content"] and not message["content"] and not message.get("tool_calls"):
        finish = NO_ANSWER
    return {"index": raw.get("index", 0), "message": message, "finish_reason": finish}


def stopped_in_reasoning(choice: dict[str, Any]) -> bool:
    """A non-streamed choice that thought, then ended (not by length) without content or tool calls."""
    message = choice["message"]
    return (
        not message["content"]
        and not message.get("tool_calls")
        and bool(message["reasoning_content"])
        and choice["finish_reason"] not in _NO_ROOM
    )


def settle_answers(result: dict[str, Any]) -> None:
    """Native answers: content is always a string, and an empty one says so in its finish_reason."""
    for choice in result["choices"]:
        message = choice["message"]
        if message["content"] is None:
            message["content"] = ""
        if not message["content"] and not message.get("tool_calls") and choice["finish_reason"] not in _NO_ROOM:
            choice["finish_reason"] = EMPTY_ANSWER


def add_usage(first: dict[str, int], second: dict[str, int]) -> dict[str, int]:
    """Usage of a request and its answer pass: the prompt once, the completion tokens of both."""
    completion_tokens = first["completion_tokens"] + second["completion_tokens"]
    prompt = first["prompt_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


def is_closing(out: dict[str, Any]) -> bool:
    """A streamed chunk that ends the answer: it carries a finish_reason or the usage."""
    if out.get("object") != "chat.completion.chunk":
        return False
    return "usage" in out or any(choice["finish_reason"] is not None for choice in out["choices"])


def without_closing(out: dict[str, Any]) -> dict[str, Any]:
    """A closing chunk's text alone (no finish_reason, no usage): what it adds to the answer."""
    opened = {key: value for key, value in out.items() if key != "usage"}
    opened["choices"] = [{**choice, "finish_reason": None} for choice in out["choices"]]
    return opened


def held_usage(closing: list[dict[str, Any]]) -> dict[str, int]:
    return next((out["usage"] for out in reversed(closing) if "usage" in out), usage(None))


def held_finish(closing: list[dict[str, Any]]) -> str | None:
    finishes = [c["finish_reason"] for out in closing for c in out["choices"] if c["finish_reason"] is not None]
    return finishes[-1] if finishes else None


def set_finish(closing: list[dict[str, Any]], finish: str | None) -> None:
    for out in closing:
        for choice in out["choices"]:
            if choice["finish_reason"] is not None:
                choice["finish_reason"] = finish


def settle_stream(closing: list[dict[str, Any]], watch: AnswerWatch, more: dict[str, int] | None) -> None:
    """`settle_answers` for a stream's closing chunks; `more`: the answer pass's usage, added in."""
    if more is not None:
        for out in closing:
            if "usage" in out:
                out["usage"] = add_usage(out["usage"], more)
    if watch.answered():
        return
    for out in closing:
        for choice in out["choices"]:
            if choice["finish_reason"] is not None:
                choice["delta"].setdefault("content", "")
                if choice["finish_reason"] not in _NO_ROOM:
                    choice["finish_reason"] = EMPTY_ANSWER


class AnswerWatch:
    """Across a stream's chunks: a choice that thought, then ended by length with no content, gets NO_ANSWER."""

    def __init__(self) -> None:
        self._answered: set[int] = set()
        self._thought: set[int] = set()

    def see(self, chunk: dict[str, Any]) -> None:
        for choice in chunk["choices"]:
            delta, index = choice["delta"], choice["index"]
            if delta.get("content") or delta.get("tool_calls"):
                self._answered.add(index)
            if delta.get("reasoning_content"):
                self._thought.add(index)
            if choice["finish_reason"] == "length" and index in self._thought and index not in self._answered:
                choice["finish_reason"] = NO_ANSWER

    def answered(self, index: int = 0) -> bool:
        return index in self._answered

    def stopped_in_reasoning(self, closing: list[dict[str, Any]], index: int = 0) -> bool:
        """The stream thought, then ended (not by length) without content or tool calls."""
        finish = held_finish(closing)
        return index in self._thought and index not in self._answered and finish is not None and finish not in _NO_ROOM


def chunk(raw: dict[str, Any], *, completion_id: str, model: str) -> dict[str, Any]:
    """A chat.completion.chunk from one of vLLM's streamed events."""
    out: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": raw.get("created", 0),
        "model": model,
        "choices": [
            {
                "index": choice.get("index", 0),
                "delta": _delta(choice.get("delta") or {}),
                "finish_reason": choice.get("finish_reason"),
            }
            for choice in raw.get("choices", [])
        ],
    }
    if raw.get("usage"):
        out["usage"] = usage(raw["usage"])
    return out


def usage(raw: dict[str, Any] | None) -> dict[str, int]:
    raw = raw or {}
    prompt, completion_tokens = raw.get("prompt_tokens", 0), raw.get("completion_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


def _message(raw: dict[str, Any]) -> dict[str, Any]:
    message = {
        "role": raw.get("role", "assistant"),
        "content": raw.get("content"),
        "reasoning_content": _reasoning(raw),
    }
    if raw.get("tool_calls"):
        message["tool_calls"] = raw["tool_calls"]
    return message


def _delta(raw: dict[str, Any]) -> dict[str, Any]:
    delta = {key: raw[key] for key in ("role", "content", "tool_calls") if raw.get(key) is not None}
    reasoning = _reasoning(raw)
    if reasoning is not None:
        delta["reasoning_content"] = reasoning
    return delta


def _reasoning(raw: dict[str, Any]) -> str | None:
    value = raw.get("reasoning_content")
    return value if value is not None else raw.get("reasoning")


def upstream_error(status: int, body: bytes) -> JobError:
    """The job error for a vLLM error response, keeping vLLM's own message and parameter."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        payload = {}
    detail = payload.get("error", payload) if isinstance(payload, dict) else {}
    if not isinstance(detail, dict):
        detail = {"message": str(detail)}
    message = detail.get("message") or body.decode(errors="replace")[:500] or f"HTTP {status}"
    kind = "invalid_request" if 400 <= status < 500 else "engine_error"
    param = detail.get("param")
    return JobError(type=kind, param=str(param) if param is not None else None, message=str(message), status=status)
