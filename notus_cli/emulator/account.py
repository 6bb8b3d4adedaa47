"""A RunPod account's serverless state, apart from the HTTP app that serves it (server.py).

API keys belong to the account, as on RunPod: any of them opens every endpoint. Each endpoint also
has its own worker key (RUNPOD_AI_API_KEY of its workers), which only the worker routes accept.
State lives on the server's event loop; `call()` / `call_soon()` reach it from other threads. The
route modules (public, worker_api, openai_route, control) take an `Account`, never the app.
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

from notus_cli.emulator.config import EmulatorConfig
from notus_cli.emulator.control_plane import EmulatedControlPlane
from notus_cli.emulator.endpoint import Endpoint
from notus_cli.emulator.faults import FaultPlan
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


class Account:
    """A RunPod account's serverless state: its API keys, endpoints (with their queues and workers) and
    control plane, on one event loop; what the HTTP routes read and change."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        api_keys: Iterable[str] = (),
        worker_factory: WorkerFactory | None = None,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.faults = self.config.faults or FaultPlan()  # data-plane faults (faults.py): add rules any time
        self.api_keys = set(api_keys)
        self.endpoints: dict[str, Endpoint] = {}
        self.worker_factory = worker_factory  # starts the workers of endpoints made through the control plane
        self.control = EmulatedControlPlane(self)
        self.url: str | None = None  # set once a server listens
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

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

    def public_endpoint(self, endpoint_id: str, key: str | None, operation: str) -> Endpoint:
        """Check the API key (401), find the endpoint (404), count the request against its rate limit (429)."""
        if key is None or key not in self.api_keys:
            raise BadRequest("Unauthorized: send your API key as 'Authorization: Bearer <key>'", status=401)
        endpoint = self._endpoint(endpoint_id)
        wait = endpoint.limiter.check(operation, time.monotonic())
        if wait is not None:
            raise BadRequest(
                f"rate limit exceeded: /{operation} allows {endpoint.limiter.describe(operation)} per endpoint",
                status=429,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return endpoint

    def worker_endpoint(self, endpoint_id: str, key: str | None) -> Endpoint:
        """The endpoint of a worker route, if the worker presents that endpoint's worker key."""
        endpoint = self._endpoint(endpoint_id)
        if not secrets.compare_digest(key or "", endpoint.worker_key):
            raise BadRequest("Unauthorized: this route takes the endpoint's worker key", status=401)
        return endpoint

    def _endpoint(self, endpoint_id: str) -> Endpoint:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            raise BadRequest(f"endpoint {endpoint_id} not found", status=404)
        return endpoint

    # ---- background work ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Bind the state to the running loop and do its background work (sweeps, webhooks) meanwhile."""
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
