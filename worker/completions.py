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
