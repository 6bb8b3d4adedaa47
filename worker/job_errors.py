"""The `error` text of a failed job: how clients read back what the worker (or the queue) wrote.

A job fails with `error` set to JSON text `{"type", "param", "message"}` (plus `status` when vLLM
answered with an HTTP error). RunPod keeps `error` a string, so every reader parses it; this is
the one parser. Types: `invalid_request` and `engine_error` come from the worker; `worker_lost`
from the queue when the worker running the job died. Anything else (an SDK traceback, a
handler written by someone else) is kept as `worker_error` with its text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

WORKER_LOST = "worker_lost"


@dataclass(frozen=True)
class JobError:
    type: str
    message: str
    param: str | None = None
    status: int | None = None

    def to_text(self) -> str:
        """The JSON text RunPod carries in `error`."""
        body: dict[str, Any] = {"type": self.type, "param": self.param, "message": self.message}
        if self.status is not None:
            body["status"] = self.status
        return json.dumps(body, ensure_ascii=False)


def parse_job_error(error: Any) -> JobError:
    """Read a job's `error` field, whatever wrote it; never raises."""
    if error is None:
        return JobError(type="worker_error", message="the job failed without an error message")
    payload: Any = error
    if isinstance(error, str):
        try:
            payload = json.loads(error)
        except json.JSONDecodeError:
            return JobError(type="worker_error", message=error[:2000])
    if not isinstance(payload, dict):
        return JobError(type="worker_error", message=str(payload)[:2000])
    status = payload.get("status")
    param = payload.get("param")
    return JobError(
        type=str(payload.get("type") or "worker_error"),
        message=str(payload.get("message") or payload.get("error_message") or payload)[:2000],
        param=str(param) if param is not None else None,
        status=status if isinstance(status, int) and not isinstance(status, bool) else None,
    )
