"""The public routes under /v2/{endpoint_id}/: what RunPod's clients call.

Routes, bodies, job states and limits are the protocol's (notus_cli.runpod.protocol), the same the
clients read. Shapes follow RunPod's operation reference: /run answers `{"id", "status": "IN_QUEUE"}`, /runsync
and /status the job (`delayTime`, `executionTime`, `workerId`, `output` or `error`), /stream only
the items not returned before. Errors are `{"error": "<message>"}` with 400 (bad request),
401 (no or wrong key), 404 (unknown endpoint or job, or a result past its retention),
413 (body over 10 MB for /run, 20 MB for /runsync) and 429 (rate limit, concurrency cap, or the
queue is full). Every route pays the emulated round trip `public_api_rtt_ms`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from notus_cli.emulator.http import one_way, presented_key, query_int, read_json
from notus_cli.emulator.jobs import BadRequest, Job, JobStateError
from notus_cli.runpod.protocol import routes
from notus_cli.runpod.protocol.bodies import StreamReply, purged_body
from notus_cli.runpod.protocol.limits import RETRY_AFTER, RUNSYNC_WAIT_MS

if TYPE_CHECKING:
    from notus_cli.emulator.account import Account
    from notus_cli.emulator.endpoint import Endpoint


async def admit(account: Account, request: Request, operation: str) -> Endpoint:
    """Half the round trip in, then key, rate limit and concurrency cap; the caller must `leave`.

    RunPod caps requests in flight per endpoint and operation (runpod/docs
    serverless/endpoints/send-requests.mdx, "Rate limits"): over the cap, HTTP 429.
    """
    await one_way(account.config.public_api_rtt_ms)
    try:
        endpoint = account.public_endpoint(request.path_params["endpoint_id"], presented_key(request), operation)
        if not endpoint.in_flight.enter(operation):
            cap = endpoint.in_flight.cap(operation)
            raise BadRequest(
                f"too many concurrent requests: /{operation} allows {cap} at once per endpoint",
                status=429,
                headers={RETRY_AFTER: "1"},
            )
    except BadRequest:
        await one_way(account.config.public_api_rtt_ms)  # a refusal travels back too
        raise
    return endpoint


async def leave(account: Account, endpoint: Endpoint, operation: str) -> None:
    """The request is answered: out of the concurrency count, and half the round trip out."""
    endpoint.in_flight.leave(operation)
    await one_way(account.config.public_api_rtt_ms)


@contextlib.asynccontextmanager
async def admitted(account: Account, request: Request, operation: str) -> AsyncIterator[Endpoint]:
    endpoint = await admit(account, request, operation)
    try:
        yield endpoint
    finally:
        await leave(account, endpoint, operation)


async def run(account: Account, request: Request) -> JSONResponse:
    async with admitted(account, request, routes.RUN.operation) as endpoint:
        job = endpoint.submit(_job_body(await read_json(request, account.config.max_run_bytes)), sync=False)
        return JSONResponse(job.status().queued_view())


async def runsync(account: Account, request: Request) -> JSONResponse:
    async with admitted(account, request, routes.RUNSYNC.operation) as endpoint:
        wait_ms = query_int(request, "wait")
        wait_ms = (
            account.config.runsync_wait_ms
            if wait_ms is None
            else min(max(wait_ms, RUNSYNC_WAIT_MS[0]), RUNSYNC_WAIT_MS[1])
        )
        job = endpoint.submit(_job_body(await read_json(request, account.config.max_runsync_bytes)), sync=True)
        await endpoint.wait_final(job, wait_ms / 1000)
        return JSONResponse(job.view())


async def status(account: Account, request: Request) -> JSONResponse:
    async with admitted(account, request, routes.STATUS.operation) as endpoint:
        job = _job(endpoint, request)
        ttl_ms = query_int(request, "ttl")
        if ttl_ms is not None:
            if not 1000 <= ttl_ms <= 7 * 86_400_000:
                raise BadRequest(f"?ttl= must be milliseconds from 1000 to 604800000; got {ttl_ms}")
            if job.keep_until is not None:
                job.keep_until = time.monotonic() + ttl_ms / 1000
        return JSONResponse(job.view())


async def stream(account: Account, request: Request) -> JSONResponse:
    async with admitted(account, request, routes.STREAM.operation) as endpoint:
        job = _job(endpoint, request)
        items = await endpoint.wait_unread(job, account.config.stream_hold)
        return JSONResponse(StreamReply(job.state, tuple(items), job.error).to_body())


async def cancel(account: Account, request: Request) -> JSONResponse:
    async with admitted(account, request, routes.CANCEL.operation) as endpoint:
        job = _job(endpoint, request)
        endpoint.cancel(job)
        return JSONResponse(job.status().queued_view())


async def retry(account: Account, request: Request) -> JSONResponse:
    async with admitted(account, request, routes.RETRY.operation) as endpoint:
        job = _job(endpoint, request)
        try:
            endpoint.retry(job)
        except JobStateError as exc:
            raise BadRequest(str(exc)) from None
        return JSONResponse(job.status().queued_view())


async def purge_queue(account: Account, request: Request) -> JSONResponse:
    async with admitted(account, request, routes.PURGE_QUEUE.operation) as endpoint:
        return JSONResponse(purged_body(endpoint.purge()))


async def health(account: Account, request: Request) -> JSONResponse:
    async with admitted(account, request, routes.HEALTH.operation) as endpoint:
        return JSONResponse(endpoint.health())


def _job_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest('the request body must be a JSON object: {"input": {...}}')
    return body


def _job(endpoint: Endpoint, request: Request) -> Job:
    job_id = request.path_params["job_id"]
    job = endpoint.get(job_id)
    if job is None:
        raise BadRequest(f"job {job_id} not found (unknown, or its result expired)", status=404)
    return job
