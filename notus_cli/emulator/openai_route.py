"""RunPod's OpenAI route: /v2/{endpoint_id}/openai/v1/... served through the queue.

The request becomes a job with input `{"openai_route": "/v1/chat/completions", "openai_input":
{...}}` (GET /v1/models: `openai_input` empty). Without `stream` the answer is the one object the
worker yielded. With `stream: true` the answer is SSE: items the worker yields as strings are
whole SSE events and are written as they are; dict items are written as `data: <json>`. A job that
fails before its first item gets an HTTP error in OpenAI's shape; one that fails later gets an
`error` event. A client that hangs up cancels its job, so the worker stops generating. A request
counts against the route's concurrency cap until its answer (or its whole stream) is sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from notus_cli.emulator import public
from notus_cli.emulator.http import one_way, read_json
from notus_cli.emulator.jobs import Job
from notus_cli.runpod.protocol import routes
from notus_cli.runpod.protocol.bodies import job_request, openai_job_input
from notus_cli.runpod.protocol.job_states import JobState
from worker.job_errors import WORKER_LOST, parse_job_error
from worker.params import OPENAI_ROUTES
from worker.sse import DONE, encode

if TYPE_CHECKING:
    from notus_cli.emulator.account import Account
    from notus_cli.emulator.endpoint import Endpoint

POLL = 1.0  # seconds between checks that a waiting client is still there


async def openai(account: Account, request: Request) -> Response:
    endpoint = await public.admit(account, request, routes.OPENAI.operation)
    streaming = False
    try:
        response = await _answer(account, endpoint, request)
        streaming = isinstance(response, StreamingResponse)
        return response
    finally:
        if not streaming:
            await public.leave(account, endpoint, routes.OPENAI.operation)


async def _answer(account: Account, endpoint: Endpoint, request: Request) -> Response:
    route = "/v1/" + request.path_params["path"]
    if route not in OPENAI_ROUTES:
        return _error(404, f"{route} is not served here; routes: {', '.join(OPENAI_ROUTES)}", "not_found")
    if request.method == "GET":
        if route != "/v1/models":
            return _error(405, f"{route} takes POST", "invalid_request")
        body: Any = {}
    else:
        body = await read_json(request, account.config.max_runsync_bytes)
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object", "invalid_request")
    job = endpoint.submit(job_request(openai_job_input(body, route)), sync=True)
    if body.get("stream") is True:
        return await _stream(account, endpoint, job, request)
    if not await _wait(endpoint, job, request, first_item=False):
        return Response(status_code=499)
    if job.state is not JobState.COMPLETED:
        return _failure(job)
    output = job.output
    return JSONResponse(output[0] if isinstance(output, list) and len(output) == 1 else output)


async def _stream(account: Account, endpoint: Endpoint, job: Job, request: Request) -> Response:
    if not await _wait(endpoint, job, request, first_item=True):
        return Response(status_code=499)
    if job.state.final and job.state is not JobState.COMPLETED and not job.stream:
        return _failure(job)
    return StreamingResponse(
        _relay(account, endpoint, job), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


async def _wait(endpoint: Endpoint, job: Job, request: Request, *, first_item: bool) -> bool:
    """Wait for the job to end (or stream its first item); False, and the job cancelled, if the client left."""
    while not (job.state.final or (first_item and job.stream)):
        if first_item:
            await job.changed.wait(POLL)
        else:
            await endpoint.wait_final(job, POLL)
        if endpoint.closed:
            break
        if not job.state.final and await request.is_disconnected():
            endpoint.cancel(job)
            return False
    return True


async def _relay(account: Account, endpoint: Endpoint, job: Job) -> AsyncIterator[str]:
    done_sent = False
    try:
        await one_way(account.config.public_api_rtt_ms)  # the response's way out
        while True:
            for item in await endpoint.wait_unread(job, POLL):
                text = item if isinstance(item, str) else encode(json.dumps(item, ensure_ascii=False))
                done_sent = done_sent or text.rstrip().endswith(f"data: {DONE}")  # a worker may send several events
                yield text
            if job.state.final and job.cursor == len(job.stream):
                break
            if endpoint.closed:
                return
        if job.state is not JobState.COMPLETED:
            yield encode(json.dumps(_error_body(job)[1], ensure_ascii=False))
        if not done_sent:
            yield encode(DONE)
    finally:
        endpoint.in_flight.leave(routes.OPENAI.operation)
        # The client hung up mid-stream. Not after [DONE]: a client may close then, before the
        # worker's job-done (a round trip later) has arrived, and the job did end.
        if not job.state.final and not done_sent:
            endpoint.cancel(job)


def _failure(job: Job) -> JSONResponse:
    status, body = _error_body(job)
    return JSONResponse(body, status_code=status)


def _error_body(job: Job) -> tuple[int, dict[str, Any]]:
    """The HTTP status and OpenAI-shaped error for a job that did not complete."""
    if job.state is JobState.TIMED_OUT:
        return 504, _shape("the job timed out before it finished", "timeout", None)
    if job.state is JobState.CANCELLED:
        return 499, _shape("the job was cancelled", "cancelled", None)
    error = parse_job_error(job.error)
    status = error.status if error.status and 400 <= error.status < 600 else None
    if status is None:
        status = 400 if error.type == "invalid_request" else 502 if error.type == WORKER_LOST else 500
    return status, _shape(error.message, error.type, error.param)


def _shape(message: str, kind: str, param: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse(_shape(message, kind, None), status_code=status)
