"""Small HTTP helpers shared by the emulator's routes: bodies with size limits, keys, errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from notus_cli.emulator.jobs import BadRequest
from notus_cli.runpod.protocol.bodies import error_body


def error_response(exc: BadRequest) -> JSONResponse:
    """RunPod's error shape: `{"error": "<message>"}` with the HTTP status."""
    return JSONResponse(error_body(exc.message), status_code=exc.status, headers=exc.headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; BadRequest 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit, request)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit, request)
            chunks.append(chunk)
    except ClientDisconnect:  # the sender gave up (a cancelled job's report): nobody to answer
        raise BadRequest("the client went away before its request body arrived", status=499) from None
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    """The JSON body (BadRequest 400 if it is not JSON, 413 if it is too large)."""
    body = await read_body(request, limit)
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest("the request body is not valid JSON") from None


async def one_way(rtt_ms: float) -> None:
    """Half an emulated network round trip: a request on its way in, or its answer on its way out."""
    if rtt_ms > 0:
        await asyncio.sleep(rtt_ms / 2000)


@contextlib.asynccontextmanager
async def round_trip(rtt_ms: float) -> AsyncIterator[None]:
    """Delay a request's arrival and its answer by half of `rtt_ms` each (errors included)."""
    await one_way(rtt_ms)
    try:
        yield
    finally:
        await one_way(rtt_ms)


def presented_key(request: Request) -> str | None:
    """The API key of `Authorization: Bearer <key>` or of a bare `Authorization: <key>` (both are accepted)."""
    value = request.headers.get("authorization")
    if not value:
        return None
    scheme, _, rest = value.strip().partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest else value.strip()


def query_int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"?{name}= must be an integer; got {raw[:40]!r}") from None


def _too_large(size: int, limit: int, request: Request) -> BadRequest:
    operation = request.url.path.rsplit("/", 1)[-1]
    return BadRequest(
        f"the request body is {size / 1024 / 1024:.1f} MB; /{operation} accepts at most {limit / 1024 / 1024:g} MB",
        status=413,
    )
