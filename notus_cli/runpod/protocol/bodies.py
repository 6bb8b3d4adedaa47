"""Every body of the job API, as both sides write and read it: one `to_body`/`from_body` pair each.

The emulator writes with these and the clients read with them, so what one side sends is by
construction what the other expects. Shapes: runpod/docs serverless/endpoints/operation-reference.mdx
and send-requests.mdx (/run, /runsync, /status, /stream, /cancel, /retry, /purge-queue, /health);
the worker's reports: runpod-python runpod/serverless/modules/rp_http.py (`{"output": item}` for each
streamed item, `{"output": ...}` or `{"error": ...}` at the end) and rp_job.py (`job-take` answers a
job `{"id", "input", ...}`, `job-stop` answers `{"jobsToStop": [ids]}`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from notus_cli.errors import JobFailed
from notus_cli.runpod.protocol.job_states import JobState
from notus_cli.runpod.protocol.replies import job_failed
from worker.job_errors import JobError, parse_job_error
from worker.sse import DONE, SSEDecoder

OPENAI_CHAT_ROUTE = "/v1/chat/completions"  # the worker-side route a job's `openai_route` names


def job_request(job_input: Any, *, webhook: str | None = None, policy: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body of /run and /runsync: `input`, plus `webhook` and `policy` only when given."""
    body: dict[str, Any] = {"input": job_input}
    if webhook is not None:
        body["webhook"] = webhook
    if policy is not None:
        body["policy"] = policy
    return body


def openai_job_input(request: dict[str, Any], route: str = OPENAI_CHAT_ROUTE) -> dict[str, Any]:
    """A job input for the worker's OpenAI route: what RunPod's /openai/v1 route itself queues
    (runpod/docs serverless/vllm/openai-compatibility.mdx; worker.params.OPENAI_ROUTES)."""
    return {"openai_route": route, "openai_input": request}


def _ms(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class JobStatus:
    """A job as /run, /runsync, /status, /cancel or /retry describe it.

    `error` is the worker's error read by worker.job_errors; `raw_error` what the body carried
    (RunPod keeps it a string), which is what the emulator writes back unchanged.
    """

    id: str
    status: JobState
    delay_time_ms: int | None = None
    execution_time_ms: int | None = None
    output: Any = None
    raw_error: Any = None
    worker_id: str | None = None

    @property
    def error(self) -> JobError | None:
        return None if self.raw_error is None else parse_job_error(self.raw_error)

    @classmethod
    def from_body(cls, body: Any) -> JobStatus:
        """Raises ValueError when the body is not a job (no id, an unknown status)."""
        if not isinstance(body, dict) or not body.get("id"):
            raise ValueError(f"expected a job with an id; got {json.dumps(body)[:200]}")
        return cls(
            id=str(body["id"]),
            status=JobState.parse(body.get("status")),
            delay_time_ms=_ms(body.get("delayTime")),
            execution_time_ms=_ms(body.get("executionTime")),
            output=body.get("output"),
            raw_error=body.get("error"),
            worker_id=body.get("workerId") if isinstance(body.get("workerId"), str) else None,
        )

    def to_body(self) -> dict[str, Any]:
        """RunPod's shape: times once known, `output` only for a COMPLETED job, `error` when there is one."""
        body: dict[str, Any] = {"id": self.id, "status": str(self.status)}
        if self.delay_time_ms is not None:
            body["delayTime"] = self.delay_time_ms
        if self.execution_time_ms is not None:
            body["executionTime"] = self.execution_time_ms
        if self.worker_id is not None:
            body["workerId"] = self.worker_id
        if self.status is JobState.COMPLETED:
            body["output"] = self.output
        if self.raw_error is not None:
            body["error"] = self.raw_error
        return body

    def queued_view(self) -> dict[str, Any]:
        """What /run, /cancel and /retry answer: only the id and the state."""
        return {"id": self.id, "status": str(self.status)}

    @property
    def final(self) -> bool:
        return self.status.final

    @property
    def result(self) -> Any:
        """The output, with a one-item aggregate-stream list unwrapped (a non-streamed chat.completion).

        With a generator handler and `return_aggregate_stream=True` the output is the list of all
        yielded items (runpod/docs serverless/development/aggregate-outputs.mdx); a worker whose
        output is the bare object is taken as it is."""
        if isinstance(self.output, list) and len(self.output) == 1:
            return self.output[0]
        return self.output

    def failure(self) -> JobFailed | None:
        """The JobFailed for a job that ended without a result; None otherwise."""
        return job_failed(self.id, self.status, self.error) if self.status.without_result else None

    def raise_for_failure(self) -> JobStatus:
        """Return self if the job completed (or is still running); raises JobFailed otherwise."""
        failure = self.failure()
        if failure is not None:
            raise failure
        return self


@dataclass(frozen=True)
class StreamReply:
    """One /stream answer: the job's state, the items not returned by an earlier poll, and its error.

    Only new items: returning old ones again makes runpod-python's `Job.stream()` loop forever
    (runpod/endpoint/runner.py yields every item of every poll).
    """

    status: JobState
    items: tuple[Any, ...] = ()
    raw_error: Any = None

    @classmethod
    def from_body(cls, body: Any) -> StreamReply:
        """Raises ValueError when the body is not a /stream answer."""
        if not isinstance(body, dict):
            raise ValueError(f"expected a /stream answer; got {json.dumps(body)[:200]}")
        stream = body.get("stream") or []
        if not isinstance(stream, list):
            raise ValueError("the /stream answer's `stream` is not a list")
        items = tuple(item.get("output") if isinstance(item, dict) else item for item in stream)
        return cls(JobState.parse(body.get("status")), items, body.get("error"))

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": str(self.status), "stream": [{"output": item} for item in self.items]}
        if self.raw_error is not None:
            body["error"] = self.raw_error
        return body

    @property
    def ended(self) -> bool:
        """The job is final and nothing is left to hand over (as runpod-python's `Job.stream()` decides)."""
        return self.status.final and not self.items


HEALTH_JOB_KEYS = ("completed", "failed", "inProgress", "inQueue", "retried")


@dataclass(frozen=True)
class Health:
    """/health: job counts and worker counts by state (it wakes no worker)."""

    jobs: dict[str, int] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Any) -> Health:
        """Raises ValueError when the body is not a /health answer."""
        if not isinstance(body, dict):
            raise ValueError(f"expected a /health answer; got {json.dumps(body)[:200]}")
        return cls(jobs=dict(body.get("jobs") or {}), workers=dict(body.get("workers") or {}))

    def to_body(self) -> dict[str, Any]:
        return {"jobs": dict(self.jobs), "workers": dict(self.workers)}

    @property
    def in_queue(self) -> int:
        return self.jobs.get("inQueue", 0)

    @property
    def in_progress(self) -> int:
        return self.jobs.get("inProgress", 0)

    @property
    def ready_workers(self) -> int:
        return self.workers.get("idle", 0) + self.workers.get("running", 0)

    @property
    def starting_workers(self) -> int:
        return self.workers.get("initializing", 0)


def error_body(message: str) -> dict[str, Any]:
    """RunPod's error body, `{"error": "<message>"}` (read back by replies.error_message)."""
    return {"error": message}


def purged_body(removed: int) -> dict[str, Any]:
    return {"removed": removed, "status": "completed"}


def purged_count(body: Any) -> int:
    removed = body.get("removed") if isinstance(body, dict) else None
    return removed if isinstance(removed, int) else 0


def stream_report_item(body: Any) -> Any:
    """The item of a worker's job-stream report (`{"output": item}`)."""
    return body.get("output") if isinstance(body, dict) else body


def done_report(body: Any) -> tuple[Any, str | None]:
    """A worker's job-done report as (output, error text): `error` set means the job FAILED.

    The SDK sends an error as a string; anything else is kept as its JSON text, since RunPod keeps
    `error` a string."""
    body = body if isinstance(body, dict) else {"output": body}
    error = body.get("error")
    if error is None:
        return body.get("output"), None
    return None, error if isinstance(error, str) else json.dumps(error, ensure_ascii=False)


def stop_body(job_ids: list[str]) -> dict[str, Any]:
    return {"jobsToStop": job_ids}


def item_chunks(item: Any) -> list[dict[str, Any]]:
    """The chat.completion.chunk objects in one streamed job item.

    A native job yields chunk dicts; a job on the worker's OpenAI route yields vLLM's SSE text, one
    or more whole events per item (worker/handler.py). An `error` event raises JobFailed.
    """
    if isinstance(item, dict):
        return [item]
    if not isinstance(item, str):
        return []
    decoder = SSEDecoder()
    chunks = []
    for payload in decoder.feed(item.encode()) + decoder.flush():
        if payload == DONE:
            continue
        event = json.loads(payload)
        if isinstance(event, dict) and "error" in event:
            detail = event["error"]
            message = str(detail.get("message") if isinstance(detail, dict) else detail)
            raise JobFailed(f"the answer failed: {message}", status=JobState.FAILED)
        if isinstance(event, dict):
            chunks.append(event)
    return chunks
