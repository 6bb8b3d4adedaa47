"""The emulator: a RunPod account's serverless endpoints, as one ASGI app.

    emulator = Emulator(api_keys=[key])
    endpoint = emulator.create_endpoint(max_workers=2)      # any time, from any thread
    # or through the control plane: POST /graphql saveEndpoint (workers come from `worker_factory`)
    server = EmulatorServer(emulator, port=0).start()       # uvicorn on loopback, in a thread
    workers = LocalWorkers(emulator, endpoint, WorkerCommand(env=...)).start(2)

API keys belong to the account, as on RunPod: any of them opens every endpoint. Each endpoint also
has its own worker key (RUNPOD_AI_API_KEY of its workers), which only the worker routes accept.
State lives on the server's event loop; `call()` / `call_soon()` reach it from other threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from notus_cli.emulator import openai_route, public, worker_api
from notus_cli.emulator.config import EmulatorConfig
from notus_cli.emulator.control import ControlPlane
from notus_cli.emulator.endpoint import Endpoint
from notus_cli.emulator.http import error_response, presented_key
from notus_cli.emulator.jobs import BadRequest, Job
from notus_cli.emulator.scaler import WorkerFactory

log = logging.getLogger("notus.emulator")
T = TypeVar("T")
ENDPOINT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
WEBHOOK_ATTEMPTS, WEBHOOK_PAUSE = 3, 10.0


def new_key() -> str:
    return "rpa_" + secrets.token_hex(20).upper()


def new_endpoint_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(14))


class Emulator:
    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        api_keys: Iterable[str] = (),
        worker_factory: WorkerFactory | None = None,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.api_keys = set(api_keys)
        self.endpoints: dict[str, Endpoint] = {}
        self.worker_factory = worker_factory  # starts the workers of endpoints made through the control plane
        self.control = ControlPlane(self)
        self.url: str | None = None  # set once a server listens
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self.app = Starlette(
            routes=_routes(self),
            exception_handlers={BadRequest: _refused, HTTPException: _http_error},
            lifespan=self._lifespan,
        )

    def create_endpoint(self, endpoint_id: str | None = None, *, name: str = "", max_workers: int = 1) -> Endpoint:
        """A new empty endpoint (no workers yet). Raises ValueError for a bad or taken id."""
        endpoint_id = endpoint_id or new_endpoint_id()
        if not ENDPOINT_ID.match(endpoint_id):
            raise ValueError(f"endpoint id {endpoint_id!r}: use lowercase letters, digits and '-' (at most 64)")
        if endpoint_id in self.endpoints:
            raise ValueError(f"endpoint id {endpoint_id!r} is taken")
        endpoint = Endpoint(
            endpoint_id, name=name or endpoint_id, worker_key=new_key(), config=self.config, max_workers=max_workers
        )
        endpoint.on_final = self._on_final
        self.endpoints[endpoint_id] = endpoint
        return endpoint

    def remove_endpoint(self, endpoint_id: str) -> None:
        endpoint = self.endpoints.pop(endpoint_id, None)
        if endpoint is not None:
            endpoint.close()

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the event loop (now, if there is none yet); safe from any thread."""
        if self.loop is None or self.loop.is_closed():
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run `fn()` on the event loop and return its result; safe from any thread."""
        if self.loop is None or not self.loop.is_running() or threading.get_ident() == self._loop_thread:
            return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def close(self) -> None:
        """Answer every long poll now (call on the loop, or through call_soon)."""
        for endpoint in self.endpoints.values():
            endpoint.close()

    # ---- used by the routes ------------------------------------------------------------------

    def public_endpoint(self, request: Request, operation: str) -> Endpoint:
        """Check the API key (401), find the endpoint (404), count the request against its rate limit (429)."""
        key = presented_key(request)
        if key is None or key not in self.api_keys:
            raise BadRequest("Unauthorized: send your API key as 'Authorization: Bearer <key>'", status=401)
        endpoint = self._endpoint(request)
        wait = endpoint.limiter.check(operation, time.monotonic())
        if wait is not None:
            raise BadRequest(
                f"rate limit exceeded: /{operation} allows {endpoint.limiter.describe(operation)} per endpoint",
                status=429,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return endpoint

    def worker_endpoint(self, request: Request) -> Endpoint:
        """The endpoint of a worker route, if the worker presents that endpoint's worker key."""
        endpoint = self._endpoint(request)
        if not secrets.compare_digest(presented_key(request) or "", endpoint.worker_key):
            raise BadRequest("Unauthorized: this route takes the endpoint's worker key", status=401)
        return endpoint

    def _endpoint(self, request: Request) -> Endpoint:
        endpoint_id = request.path_params["endpoint_id"]
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            raise BadRequest(f"endpoint {endpoint_id} not found", status=404)
        return endpoint

    # ---- background work ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._spawn(self._sweep())
        try:
            yield
        finally:
            self.close()
            for task in list(self._tasks):
                task.cancel()
            if self._http is not None:
                await self._http.aclose()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval)
            now = time.monotonic()
            for endpoint in list(self.endpoints.values()):
                endpoint.sweep(now)
            self.control.tick(now)

    def _on_final(self, job: Job) -> None:
        if job.webhook and self.loop is not None:
            self._spawn(self._deliver_webhook(job.webhook, job.view()))

    async def _deliver_webhook(self, url: str, body: dict[str, Any]) -> None:
        """POST the final status to the job's webhook: up to 3 attempts, 10 s apart, as RunPod does."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0)
        for attempt in range(WEBHOOK_ATTEMPTS):
            try:
                response = await self._http.post(url, json=body)
                if response.status_code < 300:
                    return
            except httpx.HTTPError:
                pass
            if attempt + 1 < WEBHOOK_ATTEMPTS:
                await asyncio.sleep(WEBHOOK_PAUSE)
        log.warning("webhook for job %s failed after %d attempts", body.get("id"), WEBHOOK_ATTEMPTS)

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _routes(emulator: Emulator) -> list[Route]:
    def bind(handler: Callable[[Emulator, Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(emulator, request)

        return endpoint

    base = "/v2/{endpoint_id}"
    table: list[tuple[str, Callable[[Emulator, Request], Awaitable[Response]], list[str]]] = [
        ("/run", public.run, ["POST"]),
        ("/runsync", public.runsync, ["POST"]),
        ("/status/{job_id}", public.status, ["GET", "POST"]),
        ("/stream/{job_id}", public.stream, ["GET", "POST"]),
        ("/cancel/{job_id}", public.cancel, ["POST"]),
        ("/retry/{job_id}", public.retry, ["POST"]),
        ("/purge-queue", public.purge_queue, ["POST"]),
        ("/health", public.health, ["GET"]),
        ("/openai/v1/{path:path}", openai_route.openai, ["GET", "POST"]),
        ("/job-take/{pod_id}", worker_api.job_take, ["GET"]),
        ("/job-take-batch/{pod_id}", worker_api.job_take_batch, ["GET"]),
        ("/job-stream/{pod_id}/{job_id}", worker_api.job_stream, ["POST"]),
        ("/job-done/{pod_id}/{job_id}", worker_api.job_done, ["POST"]),
        ("/job-stop/{pod_id}", worker_api.job_stop, ["GET"]),
        ("/ping/{pod_id}", worker_api.ping, ["GET"]),
    ]
    routes = [Route(base + path, bind(handler), methods=methods) for path, handler, methods in table]
    return [*routes, Route("/graphql", emulator.control.handle, methods=["POST"])]


async def _refused(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return error_response(exc)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "not found" if exc.status_code == 404 else str(exc.detail)
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


class EmulatorServer:
    """Serves an Emulator with uvicorn on a background thread (so the caller's thread stays free)."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        import socket

        import uvicorn

        self.emulator = emulator
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError:
            self._socket.close()
            raise
        bound_host, bound_port = self._socket.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        config = uvicorn.Config(
            emulator.app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=3,
            backlog=2048,
            timeout_keep_alive=30,  # workers ping every few seconds: keep their connections open
            proxy_headers=False,  # loopback only: no proxy to trust, and a little less work per request
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="notus-emulator", daemon=True)

    def start(self, timeout: float = 30.0) -> EmulatorServer:
        """Listen, and return once requests are served. Raises RuntimeError if uvicorn did not start."""
        self.emulator.url = self.url
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.emulator.control.stop_workers()
        if self._thread.is_alive():
            self.emulator.call_soon(self.emulator.close)
            self._server.should_exit = True
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
        self._socket.close()

    def _run(self) -> None:
        self._server.run(sockets=[self._socket])
