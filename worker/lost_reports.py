"""Say in the log what RunPod's API did not take: a streamed item or a job's result.

The runpod SDK posts each streamed item to job-stream and the result to job-done, retrying 5xx
answers (runpod-python serverless/modules/rp_http.py `_transmit`: `FibonacciRetry(attempts=3)`),
and when even that fails it logs "Failed to return job results" for both and carries on: the job
goes on, and the item or the result is gone. This wrapper names which was lost, for which job, and
why, and never the content: a stream item lost leaves a gap that the job's final output still
fills (the client reads it from /status); a result lost leaves the job unfinished on RunPod's side.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("notus.worker")

Transmit = Callable[[Any, str, Any], Awaitable[None]]


def reporting(transmit: Transmit, *, stream_url: str, done_url: str) -> Transmit:
    """`transmit`, logging (then re-raising) a post the SDK gave up on. The URLs are the SDK's templates."""

    async def transmitting(session: Any, url: str, job_data: Any) -> None:
        try:
            await transmit(session, url, job_data)
        except Exception as exc:
            what = _what(url, stream_url=stream_url, done_url=done_url)
            log.warning("job %s: %s lost: RunPod's API did not take it (%s)", _job_id(url), what, _why(exc))
            raise

    return transmitting


def install() -> None:
    """Wrap the SDK's `_transmit`, which send_result and stream_result both call."""
    from runpod.serverless.modules import rp_http

    rp_http._transmit = reporting(
        rp_http._transmit,
        stream_url=rp_http.JOB_STREAM_URL,
        done_url=rp_http.JOB_DONE_URL,
    )


def _what(url: str, *, stream_url: str, done_url: str) -> str:
    if url.startswith(stream_url.split("$ID", 1)[0]):
        return "a streamed item"
    if url.startswith(done_url.split("$ID", 1)[0]):
        return "its result"
    return "a report"


def _job_id(url: str) -> str:
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or "?"


def _why(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    return f"{type(exc).__name__}, HTTP {status}" if status else type(exc).__name__
