"""The worker as a RunPod load-balancing endpoint's HTTP server (NOTUS_ENDPOINT_TYPE=lb).

On a load-balancing endpoint RunPod sends each request straight to a worker's own HTTP server,
`https://<endpoint id>.api.runpod.ai/<path>` → `http://<worker>:$PORT/<path>`, with no queue and
no retries, and routes only to workers whose health route answers 200 (204: still initializing;
anything else: unhealthy). The health route is `$HEALTH_CHECK_PATH` (default /ping) on
`$PORT_HEALTH` (default `$PORT`, itself default 80). Sources: runpod/docs
serverless/load-balancing/overview (ports, codes, "cold start = first 204 until first 200");
runpod-workers/vllm-loadbalancer-ep src/handler.py (204 while the engine loads, 200 after);
runpod-workers/worker-load-balancing app.py (PORT from the environment).

Routes (every answer comes from `ChatHandler.handle`, the queue worker's own code, so validation,
the reasoning budget, the served model name, the answer pass and the log line are the same):

    POST /v1/chat/completions, POST /v1/completions, GET /v1/models   vLLM's OpenAI answers, as the
        queue endpoint's OpenAI route relays them (streamed as SSE when the request says stream)
    POST /chat   the native input (`{"input": {...}}` as sent to /runsync, or the bare input object);
        answers the chat.completion object itself (not RunPod's list), or with "stream": true an
        SSE stream of chat.completion.chunk objects ending in `data: [DONE]`

A refused request answers with an HTTP error status and `{"error": {"type", "param", "message"}}`
(400 for a parameter the worker refuses, vLLM's own status for what vLLM refuses). A client that
goes away cancels its request's task, which aborts vLLM's request (aiohttp's handler_cancellation).
aiohttp comes with the runpod SDK (runpod-python requires it), so the image needs nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web

from worker.engine import Engine, EngineFailed, EngineInfo
from worker.handler import ChatHandler
from worker.job_errors import JobError, parse_job_error
from worker.params import NATIVE_ROUTE, OPENAI_ROUTES
from worker.settings import WorkerSettings
from worker.sse import DONE, encode

log = logging.getLogger("notus.worker")

# What RunPod reads from the health route (runpod/docs serverless/load-balancing/overview).
HEALTHY, INITIALIZING = 200, 204
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_DONE_EVENT = encode(DONE).encode()


def error_status(error: JobError) -> int:
    """The HTTP status of a refused request: vLLM's own when it answered one, else by the error's type."""
    if error.status is not None and 400 <= error.status < 600:
        return error.status
    return 400 if error.type == "invalid_request" else 502


def error_body(error: JobError) -> dict[str, Any]:
    body: dict[str, Any] = {"type": error.type, "param": error.param, "message": error.message}
    if error.status is not None:
        body["status"] = error.status
    return {"error": body}


def _failure(item: Any) -> JobError | None:
    if isinstance(item, dict) and set(item) == {"error"}:
        return parse_job_error(item["error"])
    return None


class LBServer:
    """The HTTP server: health answers INITIALIZING until `ready(handler)`, then HEALTHY."""

    def __init__(self, *, port: int, health_port: int, health_path: str, host: str = "0.0.0.0") -> None:
        self.host, self.port, self.health_port, self.health_path = host, port, health_port, health_path
        self.handler: ChatHandler | None = None
        self._runners: list[web.AppRunner] = []
        self._ids = itertools.count(1)

    def ready(self, handler: ChatHandler) -> None:
        self.handler = handler

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024**2)  # RunPod caps LB payloads at 30 MB
        for route in OPENAI_ROUTES:
            app.router.add_route("GET" if route == "/v1/models" else "POST", route, self._openai)
        app.router.add_post(NATIVE_ROUTE, self._native)
        if self.health_port == self.port:
            app.router.add_get(self.health_path, self._health)
        return app

    async def start(self) -> None:
        """Listen on the app port (and on the health port when it is another one)."""
        apps = [(self.app(), self.port)]
        if self.health_port != self.port:
            health = web.Application()
            health.router.add_get(self.health_path, self._health)
            apps.append((health, self.health_port))
        for app, port in apps:
            # handler_cancellation: a client that disconnects cancels its handler, so vLLM stops too.
            runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, self.host, port).start()
            self._runners.append(runner)
        log.info(
            "LB server on port %d (health %s on port %d); answering %d until vLLM is ready",
            self.port,
            self.health_path,
            self.health_port,
            INITIALIZING,
        )

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self.handler is not None:
            await self.handler.aclose()

    async def _health(self, _request: web.Request) -> web.Response:
        if self.handler is None:
            return web.Response(status=INITIALIZING)
        return web.json_response({"status": "healthy"})

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        body: Any = {}
        if request.method == "POST":
            body = await _json_body(request)
            if isinstance(body, web.Response):
                return body
        return await self._answer(request, {"openai_route": request.path, "openai_input": body})

    async def _native(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if isinstance(body, web.Response):
            return body
        # {"input": {...}} is what the seed's client sends to /runsync; "input" is no key of the native
        # shape, so a body holding only it is that envelope.
        if isinstance(body, dict) and set(body) == {"input"}:
            body = body["input"]
        return await self._answer(request, body)

    async def _answer(self, request: web.Request, job_input: Any) -> web.StreamResponse:
        handler = self.handler
        if handler is None:
            loading = JobError(type="engine_loading", message="vLLM is still loading; retry when health says 200")
            return web.json_response(error_body(loading), status=503)
        job = {"id": f"lb-{next(self._ids)}", "input": job_input}
        async with contextlib.aclosing(handler.handle(job, coalesce=False)) as items:
            first = await anext(items, None)
            if not _streamed(first):
                async for _ in items:  # nothing follows a whole answer: the job ends (and logs) as done
                    pass
                if (error := _failure(first)) is not None:
                    return web.json_response(error_body(error), status=error_status(error))
                return web.Response(body=json.dumps(first, ensure_ascii=False), content_type="application/json")
            response = web.StreamResponse(headers=_SSE_HEADERS)
            await response.prepare(request)
            native = not isinstance(first, str)
            await response.write(_event(first))
            async for item in items:
                await response.write(_event(item))
            if native:
                await response.write(_DONE_EVENT)
            await response.write_eof()
            return response


def _streamed(item: Any) -> bool:
    """Whether the handler's first item opens a stream: SSE text (OpenAI route) or a native chunk."""
    return isinstance(item, str) or (isinstance(item, dict) and item.get("object") == "chat.completion.chunk")


def _event(item: Any) -> bytes:
    if isinstance(item, str):  # whole SSE events already (the OpenAI route)
        return item.encode()
    if (error := _failure(item)) is not None:  # an error once the stream has begun: its last event
        return encode(json.dumps(error_body(error), ensure_ascii=False)).encode()
    return encode(json.dumps(item, ensure_ascii=False)).encode()


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        error = JobError(type="invalid_request", param="body", message="must be a JSON object")
        return web.json_response(error_body(error), status=400)


def serve(
    settings: WorkerSettings,
    engine: Engine,
    make_handler: Callable[[EngineInfo], ChatHandler],
    on_death: Callable[[str], None],
) -> int:
    """Run the LB server until SIGTERM/SIGINT: health says 204 while vLLM loads, 200 once it answers.

    Returns the exit code: 0 after a signal, 1 when vLLM fails to start, 128+signal during start-up.
    A vLLM that dies later ends the process through the engine's supervisor, as on a queue endpoint.
    """
    return asyncio.run(_serve(settings, engine, make_handler, on_death))


async def _serve(
    settings: WorkerSettings,
    engine: Engine,
    make_handler: Callable[[EngineInfo], ChatHandler],
    on_death: Callable[[str], None],
) -> int:
    server = LBServer(port=settings.port, health_port=settings.health_port, health_path=settings.health_check_path)
    stop = asyncio.Event()
    received: list[int] = []
    loop = asyncio.get_running_loop()

    def stopped(sig: int) -> None:
        received.append(sig)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped, sig)
    try:
        await server.start()
        info = await _engine_ready(engine, settings.startup_timeout, stop)
        if info is None:
            return 128 + received[0] if received else 1
        log.info("vLLM ready in %.1f s: serving %s over HTTP", info.startup_seconds, info.served_model_name)
        engine.supervise(on_death)
        server.ready(make_handler(info))
        await stop.wait()
        return 0
    finally:
        await server.close()
        await asyncio.to_thread(engine.stop)


async def _engine_ready(engine: Engine, limit: float, stop: asyncio.Event) -> EngineInfo | None:
    """Start vLLM and wait for it off the event loop (health keeps answering); None if it failed or a
    signal came first."""
    try:
        engine.start()
    except OSError as exc:
        log.error("%s", exc)
        return None
    waiting = asyncio.ensure_future(asyncio.to_thread(engine.wait_until_ready, limit))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not waiting.done():
        await asyncio.to_thread(engine.stop)  # the wait sees the stop and ends
    try:
        return await waiting
    except EngineFailed as exc:
        if not stop.is_set():
            log.error("%s", exc)
        return None
