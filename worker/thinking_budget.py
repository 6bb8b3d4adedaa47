"""When vLLM refuses the thinking budget the worker adds (a vLLM without it, or no reasoning parser).

The handler then sends the request again without the budget rather than failing the job; these read
vLLM's refusal, whole or as a stream's first event.
"""

from __future__ import annotations

import json
from typing import Any


def budget_refused(body: dict[str, Any] | None, status: int, content: bytes) -> bool:
    """vLLM refused the thinking budget we added (a vLLM without it, or no reasoning parser):
    the request is sent again without it rather than failing the job."""
    asked = body is not None and "thinking_token_budget" in body
    return asked and status == 400 and b"thinking_token_budget" in content


def budget_refused_event(body: dict[str, Any] | None, payload: str) -> bool:
    """`budget_refused` for a streamed answer's first event."""
    if '"error"' not in payload:
        return False
    try:
        error = json.loads(payload).get("error")
    except (ValueError, AttributeError):
        return False
    if not isinstance(error, dict):
        return False
    status = 400 if str(error.get("code")) == "400" else 0
    return budget_refused(body, status, str(error.get("message", "")).encode())


def without_budget(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "thinking_token_budget"}
