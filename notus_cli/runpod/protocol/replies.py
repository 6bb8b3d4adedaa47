"""An HTTP answer that is not a success, read into one ErrorReply, and the NotusError each becomes.

Error bodies come in three shapes: RunPod's `{"error": "<message>"}` (runpod/docs
serverless/endpoints/send-requests.mdx; the emulator writes it with `bodies.error_body`), OpenAI's
`{"error": {"message", "type", "param"}}` on the OpenAI route, or plain text from a proxy. Both
clients read them here, so chat's errors and bench's failure causes carry the same message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from notus_cli.errors import AuthError, JobFailed, NotusError, RunPodError, RunPodQueryError, RunPodRateLimited
from notus_cli.runpod.protocol import routes
from notus_cli.runpod.protocol.job_states import JobState
from notus_cli.runpod.protocol.limits import RATE_LIMITED, retry_after_seconds
from worker.job_errors import WORKER_LOST, JobError

MAX_MESSAGE = 300
JOB_OPERATIONS = tuple(route.operation for route in (routes.STATUS, routes.STREAM, routes.CANCEL, routes.RETRY))


def error_message(body: bytes) -> str:
    """The server's own words from an error body, whatever its shape; never raises."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body[:MAX_MESSAGE].decode(errors="replace") or "(empty body)"
    detail = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(detail, dict) and detail.get("message"):
        return str(detail["message"])
    if isinstance(detail, str) and detail:
        return detail
    return json.dumps(payload)[:MAX_MESSAGE]


@dataclass(frozen=True)
class ErrorReply:
    """A refused call: its HTTP status (0: the body was not what the route answers), the server's message,
    the wait it asked for, and what was asked (the path under the endpoint, e.g. "/stream/<job id>")."""

    status: int
    message: str
    retry_after: float | None = None
    asked: str = ""

    @classmethod
    def read(cls, status: int, body: bytes, *, retry_after: str | None = None, asked: str = "") -> ErrorReply:
        return cls(status, error_message(body), retry_after_seconds(retry_after), asked)

    @classmethod
    def malformed(cls, what: str, asked: str = "") -> ErrorReply:
        return cls(0, what, None, asked)

    @property
    def cause(self) -> str:
        """A short failure cause for counting: `http_<status>`, or `bad_response`."""
        return f"http_{self.status}" if self.status else "bad_response"

    def describe(self) -> str:
        return f"{self.asked}: {self.message}" if self.asked else self.message

    def to_error(self, endpoint_id: str = "") -> NotusError:
        """The NotusError a caller raises for this reply (`endpoint_id`: the endpoint asked, if known)."""
        code, message = self.status, self.describe()
        if code == 0:
            return RunPodError(f"the endpoint's answer makes no sense: {message}")
        if code in (401, 403):
            return AuthError(
                f"the endpoint rejected the API key (HTTP {code})",
                hint="check RUNPOD_API_KEY, or use the key `notus serve` printed",
            )
        if code == 404:
            return self._not_found(endpoint_id)
        if code == 413:
            return RunPodQueryError(
                f"the request is too large (HTTP 413): {message}", hint="/run takes 10 MB, /runsync 20 MB"
            )
        if code == RATE_LIMITED:
            return RunPodRateLimited(
                f"rate limited (HTTP 429) after retrying: {message}", hint="send fewer requests per second"
            )
        if code >= 500:
            return RunPodError(
                f"the endpoint failed (HTTP {code}): {message}", hint="try again; if it persists, check its workers"
            )
        return RunPodQueryError(f"the endpoint refused the request (HTTP {code}): {message}")

    def _not_found(self, endpoint_id: str) -> RunPodQueryError:
        """A 404 names what is unknown: a job (its result may have expired) or the endpoint itself.

        RunPod answers 404 for an unknown endpoint and for a job it does not know or no longer keeps
        (docs.runpod.io/serverless/endpoints/operation-reference: results are kept 30 min after /run,
        1 min after /runsync); the route asked tells which."""
        endpoint = f"endpoint {endpoint_id}" if endpoint_id else "the endpoint"
        words = "" if "not found" in self.message.lower() or not self.message.strip() else f": {self.message}"
        operation, _, job_id = self.asked.strip("/").partition("/")  # e.g. /stream/<job id>
        if operation in JOB_OPERATIONS and job_id:
            return RunPodQueryError(
                f"job {job_id} is not known to {endpoint} (HTTP 404){words}",
                hint="job results are kept 30 min after /run and 1 min after /runsync",
            )
        there = f"there is no endpoint {endpoint_id}" if endpoint_id else "there is no such endpoint"
        return RunPodQueryError(f"{there} (HTTP 404){words}", hint="`notus endpoints` lists your endpoints' ids")


def job_failed(job_id: str, status: str, error: JobError | None) -> JobFailed:
    """The JobFailed for a job that ended without a result, with a hint for its cause."""
    wording: dict[str, str] = {JobState.CANCELLED: "was cancelled", JobState.TIMED_OUT: "timed out"}
    what = wording.get(status, "failed")
    message = f"job {job_id} {what}" + (f": {error.message}" if error else "")
    hint = None
    if error is not None and error.type == "invalid_request" and error.param:
        hint = f"fix the request's {error.param}"
    elif (error is not None and error.type == WORKER_LOST) or status == JobState.TIMED_OUT:
        hint = f"send it again: POST /retry/{job_id}"
    elif error is not None and error.type == "engine_error":
        hint = "the model server failed; the worker's log says why"
    return JobFailed(
        message,
        hint=hint,
        job_id=job_id,
        status=status,
        error_type=error.type if error else None,
        param=error.param if error else None,
    )
