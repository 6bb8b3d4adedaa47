"""The routes an unmodified runpod SDK worker polls, as it does on RunPod.

    GET  job-take/{pod}?job_in_progress=0|1           one job {"id", "input"}, or 204 after a long poll
    GET  job-take-batch/{pod}?batch_size=N            a list of up to N jobs, or 204 (concurrency > 1)
    POST job-stream/{pod}/{job}?isStream=...          {"output": item}: one yielded item
    POST job-done/{pod}/{job}?isStream=...            {"output": ...} or {"error": "..."}: the end
    GET  job-stop/{pod}                               {"jobsToStop": [ids]}, or 204 after a long poll
    GET  ping/{pod}?job_id=...&runpod_version=...     heartbeat (status=unhealthy on a failed check)

The routes and bodies are the protocol's (notus_cli.runpod.protocol.routes, bodies). Every route pays
the emulated round trip `worker_api_rtt_ms` (half on the way in, half on the
way out), as a GPU host far from RunPod's API would. Bodies are JSON text sent as
application/x-www-form-urlencoded. Holding the polls open matters:
the SDK asks again at once after an empty job-take, so an instant 204 would make it spin. Reports
for jobs the worker no longer owns answer 200 and change nothing (the SDK retries anything else).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from notus_cli.emulator.http import presented_key, query_int, read_body, round_trip
from notus_cli.emulator.jobs import BadRequest
from notus_cli.runpod.protocol.bodies import stop_body

if TYPE_CHECKING:
    from notus_cli.emulator.account import Account
    from notus_cli.emulator.endpoint import Endpoint

MAX_REPORT_BYTES = 64 * 1024 * 1024
MAX_BATCH = 1024


async def job_take(account: Account, request: Request) -> Response:
    async with round_trip(account.config.worker_api_rtt_ms):
        return await _take(account, request, batch=False)


async def job_take_batch(account: Account, request: Request) -> Response:
    async with round_trip(account.config.worker_api_rtt_ms):
        return await _take(account, request, batch=True)


async def _take(account: Account, request: Request, *, batch: bool) -> Response:
    endpoint = _endpoint(account, request)
    limit = 1
    if batch:
        limit = query_int(request, "batch_size") or 1
        if not 1 <= limit <= MAX_BATCH:
            raise BadRequest(f"batch_size must be from 1 to {MAX_BATCH}; got {limit}")
    jobs = await endpoint.take(request.path_params["pod_id"], limit, account.config.take_hold, request.is_disconnected)
    if not jobs:
        return Response(status_code=204)
    payload: Any = [job.for_worker() for job in jobs] if batch else jobs[0].for_worker()
    return JSONResponse(payload)


async def job_stream(account: Account, request: Request) -> JSONResponse:
    async with round_trip(account.config.worker_api_rtt_ms):
        endpoint = _endpoint(account, request)
        accepted = endpoint.stream_output(
            request.path_params["pod_id"], request.path_params["job_id"], await _report(request)
        )
        return JSONResponse({"accepted": accepted})


async def job_done(account: Account, request: Request) -> JSONResponse:
    async with round_trip(account.config.worker_api_rtt_ms):
        endpoint = _endpoint(account, request)
        pod_id, job_id = request.path_params["pod_id"], request.path_params["job_id"]
        return JSONResponse({"accepted": endpoint.job_done(pod_id, job_id, await _report(request))})


async def job_stop(account: Account, request: Request) -> Response:
    async with round_trip(account.config.worker_api_rtt_ms):
        endpoint = _endpoint(account, request)
        stops = await endpoint.stop_signals(request.path_params["pod_id"], account.config.stop_hold)
        if not stops:
            return Response(status_code=204)
        return JSONResponse(stop_body(stops))


async def ping(account: Account, request: Request) -> JSONResponse:
    async with round_trip(account.config.worker_api_rtt_ms):
        return _ping(account, request)


def _ping(account: Account, request: Request) -> JSONResponse:
    endpoint = _endpoint(account, request)
    pod_id = request.path_params["pod_id"]
    running = request.query_params.get("job_id") or ""
    endpoint.heartbeat(pod_id, {job_id for job_id in running.split(",") if job_id})
    if request.query_params.get("status") == "unhealthy":
        check = request.query_params.get("check", "")
        endpoint.unhealthy(pod_id, f"{check}: {request.query_params.get('reason', '')}".strip(": "))
    return JSONResponse({})


async def _report(request: Request) -> Any:
    body = await read_body(request, MAX_REPORT_BYTES)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest("the report body is not valid JSON") from None


def _endpoint(account: Account, request: Request) -> Endpoint:
    """The route's endpoint, if the worker presents that endpoint's worker key (else 401/404)."""
    return account.worker_endpoint(request.path_params["endpoint_id"], presented_key(request))
