"""The emulator: a RunPod account's serverless endpoints (account.py), served as one ASGI app.

emulator = Emulator(api_keys=[key])
endpoint = emulator.create_endpoint(max_workers=2)      # any time, from any thread
# or through the control plane: POST /graphql saveEndpoint (workers come from `worker_factory`)
server = EmulatorServer(emulator, port=0).start()       # uvicorn on loopback, in a thread
emulator.lb.serve(endpoint)  # only for a load-balancing endpoint, at /lb/{id}/... (lb_gateway.py)
workers = LocalWorkers(emulator, endpoint, WorkerCommand(env=...)).start(2)
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from notus_cli.emulator import openai_route, public, worker_api
from notus_cli.emulator.account import Account
from notus_cli.emulator.faults import FaultInjector
from notus_cli.emulator.http import error_response
from notus_cli.emulator.jobs import BadRequest
from notus_cli.emulator.lb_gateway import METHODS, LBGateway
from notus_cli.runpod.protocol import lb


class Emulator(Account):
    """An Account with the HTTP app that serves RunPod's routes for it, and its load-balancing endpoints."""

    @functools.cached_property
    def lb(self) -> LBGateway:
        return LBGateway(self)

    @functools.cached_property
    def app(self) -> Starlette:
        lb_route = Route(lb.EMULATOR_PATH + "/{path:path}", self.lb.handle, methods=METHODS)
        return Starlette(
            routes=[*_routes(self), lb_route],
            exception_handlers={BadRequest: _refused, HTTPException: _http_error},
            lifespan=lambda _app: self._lifespan(),
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        async with self.running(), self.lb.running():
            yield


def _routes(account: Account) -> list[Route]:
    def bind(handler: Callable[[Account, Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(account, request)

        return endpoint

    base = "/v2/{endpoint_id}"
    table: list[tuple[str, Callable[[Account, Request], Awaitable[Response]], list[str]]] = [
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
    return [*routes, Route("/graphql", account.control.handle, methods=["POST"])]


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
            FaultInjector(emulator.app, emulator.faults),
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
