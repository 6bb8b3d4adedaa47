"""The emulator's load-balancing endpoints: `/lb/{endpoint_id}/{path}` goes straight to one worker.

RunPod serves an LB endpoint at `https://{endpoint_id}.api.runpod.ai/{path}`; the emulator at
`{emulator}/lb/{endpoint_id}/{path}`, so one URL template (settings.runpod_lb_url) holds either.
The rules, each RunPod's (sources in notus_cli.runpod.protocol.lb):

- The account's key as `Authorization: Bearer <key>`, else 401, as on every public route here.
- A request goes only to a worker whose health route last answered 200; a worker answering 204 is
  initializing, anything else (or silence after an answer) is unhealthy, and neither gets traffic.
  Each worker's health route is polled every `LBLimits.health_interval` s (RunPod's interval is not
  published); of the healthy workers, the one with the fewest requests in flight is chosen.
- With no healthy worker the request waits up to `worker_wait` (2 min) for one, then answers 400
  `{"error": "no workers available"}`.
- A body over `payload_bytes` (30 MB) answers 413 before any worker is asked (413 is our choice);
  an answer over it is cut off.
- The worker has `processing` (5.5 min) from the moment the request is sent: past it, 524 if its
  answer has not begun, else the connection is dropped mid-answer.
- A worker whose port does not answer gives 502. No retries: the worker's answer, a 5xx included,
  reaches the client as it is, once. Every answer a worker gave carries `X-Runpod-Worker-Id`.
- Streaming passes through as the worker writes it (SSE included), chunk by chunk.
- The emulated round trips: `public_api_rtt_ms` between client and gateway (as on the queue's
  routes) and `worker_api_rtt_ms` between gateway and worker; each chunk of an answer is delayed by
  their one-way sum, pipelined, so a round trip adds latency but never throttles a stream.

An endpoint is an LB endpoint when `serve()` made it one or its control-plane spec says `type: "LB"`.
Its workers (workers.py starts them with RunPod's LB env) are announced with `add_worker`. Not
emulated: worker capacity (RunPod's "at capacity" is unpublished: a worker takes every request
sent) and the `X-Runpod-Worker-Id` affinity a client may send. A request waiting for a worker is
demand the autoscaler sees (Endpoint.lb_waiting, scaler.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from notus_cli.emulator.faults import ConnectionDropped
from notus_cli.emulator.http import one_way, presented_key, read_body
from notus_cli.emulator.jobs import BadRequest, Signal
from notus_cli.runpod.protocol import lb

if TYPE_CHECKING:
    from notus_cli.emulator.account import Account
    from notus_cli.emulator.endpoint import Endpoint
    from notus_cli.emulator.worker_records import WorkerRecord

log = logging.getLogger("notus.emulator")
OPERATION = "lb"  # what rate limits and caps would count it under (RunPod publishes none for LB)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# RFC 9110 §7.6.1 hop-by-hop fields, and what the next hop sets itself; the account key stays here.
_NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host"}
    | {"content-length", "authorization"}
)
_NOT_RELAYED = _NOT_FORWARDED | {"date"}  # the gateway's server writes its own Date


@dataclass
class LBLimits:
    """The caps (RunPod's by default) and how the load balancer watches its workers; seconds and bytes."""

    worker_wait: float = lb.WORKER_WAIT_S
    processing: float = lb.PROCESSING_S
    payload_bytes: int = lb.PAYLOAD_BYTES
    health_interval: float = 1.0
    health_timeout: float = 5.0


@dataclass(eq=False)
class LBTarget:
    """One worker's HTTP server as the load balancer sees it."""

    pod_id: str
    url: str  # http://127.0.0.1:<PORT>
    health_url: str  # http://127.0.0.1:<PORT_HEALTH><HEALTH_CHECK_PATH>
    health: int | None = None  # the last health answer's status; None: none yet, or no answer
    answered: bool = False  # it has answered a health check at least once
    in_flight: int = 0


@dataclass(eq=False)
class LBPool:
    """An LB endpoint's workers; `changed` fires when one may have become routable."""

    endpoint: Endpoint
    targets: dict[str, LBTarget] = field(default_factory=dict)
    changed: Signal = field(default_factory=Signal)

    def pick(self) -> LBTarget | None:
        """The healthy worker with the fewest requests in flight, if any."""
        ready = [t for t in self.targets.values() if t.health == lb.HEALTHY and _routable(self.endpoint, t.pod_id)]
        return min(ready, key=lambda t: t.in_flight, default=None)


def _routable(endpoint: Endpoint, pod_id: str) -> bool:
    record = endpoint.workers.get(pod_id)
    return record is not None and record.alive and not record.draining


class LBGateway:
    """The account's LB endpoints, their workers' health, and the route that forwards to them (on the loop)."""

    def __init__(self, account: Account, limits: LBLimits | None = None) -> None:
        self.account = account
        self.limits = limits or LBLimits()
        self.pools: dict[str, LBPool] = {}
        self._served: set[str] = set()
        self._requests = itertools.count(1)
        self._watchers: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self._probe: httpx.AsyncClient | None = None

    # ---- which endpoints, which workers --------------------------------------------------------

    def serve(self, endpoint: Endpoint) -> None:
        """Make an endpoint made without the control plane an LB endpoint (before its workers start)."""
        self._served.add(endpoint.id)

    def is_lb(self, endpoint_id: str) -> bool:
        """Whether requests to this endpoint go to its workers' HTTP servers (else it has a queue)."""
        spec = self.account.control.specs.get(endpoint_id)
        return endpoint_id in self._served or (spec is not None and spec.get("type") == lb.ENDPOINT_TYPE)

    def add_worker(self, endpoint: Endpoint, pod_id: str, url: str, health_url: str) -> None:
        """A worker of an LB endpoint is starting: watch its health route (call on the loop)."""
        pool = self.pools.setdefault(endpoint.id, LBPool(endpoint))
        target = pool.targets[pod_id] = LBTarget(pod_id, url, health_url)
        task = asyncio.get_running_loop().create_task(self._watch(pool, target))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The gateway's lifetime within the app's: its clients close and its health checks stop after."""
        try:
            yield
        finally:
            for task in list(self._watchers):
                task.cancel()
            for client in (self._http, self._probe):
                if client is not None:
                    await client.aclose()

    # ---- health --------------------------------------------------------------------------------

    async def _watch(self, pool: LBPool, target: LBTarget) -> None:
        try:
            while _alive(pool.endpoint.workers.get(target.pod_id)):
                self._note(pool, target, await self._check(target))
                await asyncio.sleep(self.limits.health_interval)
        finally:
            pool.targets.pop(target.pod_id, None)

    async def _check(self, target: LBTarget) -> int | None:
        if self._probe is None:
            self._probe = httpx.AsyncClient(timeout=self.limits.health_timeout)
        try:
            return (await self._probe.get(target.health_url)).status_code
        except httpx.HTTPError:
            return None

    def _note(self, pool: LBPool, target: LBTarget, status: int | None) -> None:
        """Record a health answer in the worker's record, which /health and the autoscaler read."""
        before, target.health = target.health, status
        target.answered = target.answered or status is not None
        record = pool.endpoint.workers.get(target.pod_id)
        if record is None:
            return
        state = lb.health_state(status)
        if state == "healthy":
            record.unhealthy = None
            pool.endpoint.seen(target.pod_id)  # initializing -> idle: what /health counts as ready
            if before != lb.HEALTHY:
                pool.changed.fire()
        elif state == "unhealthy" and target.answered:  # a port not listening yet is a worker still booting
            record.unhealthy = f"its health route answered {status}" if status else "its health route went silent"

    # ---- the route -----------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        """`/lb/{endpoint_id}/{path}`: forward to one healthy worker (module docstring)."""
        config = self.account.config
        await one_way(config.public_api_rtt_ms)
        endpoint_id = request.path_params["endpoint_id"]
        try:
            endpoint = self.account.public_endpoint(endpoint_id, presented_key(request), OPERATION)
            if not self.is_lb(endpoint.id):
                raise BadRequest(f"endpoint {endpoint.id} is a queue endpoint: use /v2/{endpoint.id}/...", status=404)
            body = await self._body(request)
            pool = self.pools.setdefault(endpoint.id, LBPool(endpoint))
            target = await self._wait_for_worker(pool)
        except BadRequest:
            await one_way(config.public_api_rtt_ms)  # a refusal travels back too
            raise
        return await self._forward(request, pool, target, body)

    async def _body(self, request: Request) -> bytes:
        try:
            return await read_body(request, self.limits.payload_bytes)
        except BadRequest as exc:
            if exc.status == lb.PAYLOAD_TOO_LARGE.status:
                raise BadRequest(lb.PAYLOAD_TOO_LARGE.error, status=lb.PAYLOAD_TOO_LARGE.status) from None
            raise

    async def _wait_for_worker(self, pool: LBPool) -> LBTarget:
        """A healthy worker, waited for up to `worker_wait`; while it waits the request counts as demand
        (Endpoint.lb_waiting), so the autoscaler starts a worker for it (scaler.py)."""
        deadline = time.monotonic() + self.limits.worker_wait
        if (target := pool.pick()) is not None:
            return target
        pool.endpoint.lb_waiting += 1
        try:
            while (target := pool.pick()) is None:
                if not await pool.changed.wait(deadline - time.monotonic()):
                    raise BadRequest(lb.NO_WORKER.error, status=lb.NO_WORKER.status)
            return target
        finally:
            pool.endpoint.lb_waiting -= 1

    async def _forward(self, request: Request, pool: LBPool, target: LBTarget, body: bytes) -> Response:
        config = self.account.config
        exchange = _Exchange(target, pool.endpoint.workers.get(target.pod_id), f"lb-{next(self._requests)}")
        deadline = time.monotonic() + self.limits.processing
        down = (config.public_api_rtt_ms + config.worker_api_rtt_ms) / 2000  # one way, worker -> client
        try:
            await one_way(config.worker_api_rtt_ms)
            exchange.answer = answer = await self._send(request, target, body, deadline)
            chunks = _until(answer.aiter_raw(), deadline)
            if down > 0:  # read from now on, while the answer's head is on its way
                exchange.pipe = _Pipe(chunks, down)
                chunks = exchange.pipe.chunks()
                await asyncio.sleep(down)
        except BaseException:
            await exchange.end()
            raise
        headers = [*_forwarded(answer.headers.multi_items(), _NOT_RELAYED), (lb.WORKER_ID_HEADER, target.pod_id)]
        response = _Relayed(self._relay(chunks), exchange, status_code=answer.status_code)
        response.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        return response

    async def _send(self, request: Request, target: LBTarget, body: bytes, deadline: float) -> httpx.Response:
        """Send once and wait for the answer to begin: 502 if the worker's port is shut, 524 past the cap."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=None))
        path = request.path_params["path"]
        query = request.url.query
        outgoing = self._http.build_request(
            request.method,
            f"{target.url}/{path}" + (f"?{query}" if query else ""),
            headers=_forwarded(request.headers.items(), _NOT_FORWARDED),
            content=body,
        )
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await self._http.send(outgoing, stream=True)
        except TimeoutError:
            raise BadRequest(lb.PROCESSING_TIMEOUT.error, status=lb.PROCESSING_TIMEOUT.status) from None
        except httpx.TransportError as exc:
            log.warning("LB worker %s did not answer: %s", target.pod_id, exc)
            raise BadRequest(lb.BAD_GATEWAY.error, status=lb.BAD_GATEWAY.status) from None

    async def _relay(self, chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes]:
        """The worker's answer as it comes; dropped past the payload cap."""
        sent = 0
        async for chunk in chunks:
            sent += len(chunk)
            if sent > self.limits.payload_bytes:
                raise ConnectionDropped("the answer is over the LB payload cap")
            yield chunk


@dataclass(eq=False)
class _Exchange:
    """One request on one worker, counted in flight (the target's and the worker record's, which /health
    and the autoscaler read) until `end()`."""

    target: LBTarget
    record: WorkerRecord | None
    request_id: str
    answer: httpx.Response | None = None
    pipe: _Pipe | None = None
    ended: bool = False

    def __post_init__(self) -> None:
        self.target.in_flight += 1
        if self.record is not None:
            self.record.in_flight.add(self.request_id)

    async def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.target.in_flight -= 1
        if self.record is not None:
            self.record.in_flight.discard(self.request_id)
        if self.pipe is not None:
            self.pipe.close()
        if self.answer is not None:
            await self.answer.aclose()  # the worker sees its client go (aiohttp then cancels the request)


class _Relayed(StreamingResponse):
    """A relayed answer whose exchange ends as soon as the response does, a client's hang-up included
    (not when the garbage collector finds the relay), so the worker hears of it at once."""

    def __init__(self, relay: AsyncGenerator[bytes], exchange: _Exchange, status_code: int) -> None:
        super().__init__(relay, status_code=status_code)
        self.relay, self.exchange = relay, exchange

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.relay.aclose()
            await self.exchange.end()


def _alive(record: WorkerRecord | None) -> bool:
    return record is not None and record.alive


def _forwarded(headers: Iterable[tuple[str, str]], dropped: frozenset[str]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers if name.lower() not in dropped]


async def _until(chunks: AsyncIterator[bytes], deadline: float) -> AsyncIterator[bytes]:
    """The chunks that arrive before `deadline`; then the connection drops (RunPod terminates it)."""
    while True:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                chunk = await anext(chunks, None)
        except TimeoutError:
            raise ConnectionDropped("the LB processing cap passed mid-answer") from None
        if chunk is None:
            return
        yield chunk


class _Pipe:
    """Chunks read as they arrive and handed on `delay` s after each arrived: latency without a throttle."""

    def __init__(self, chunks: AsyncIterator[bytes], delay: float) -> None:
        self.delay = delay
        self._queue: asyncio.Queue[tuple[float, bytes | Exception | None]] = asyncio.Queue()
        self._reader = asyncio.get_running_loop().create_task(self._read(chunks))

    async def _read(self, chunks: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in chunks:
                self._queue.put_nowait((time.monotonic(), chunk))
            self._queue.put_nowait((time.monotonic(), None))
        except Exception as exc:  # handed on in its place, after the chunks before it
            self._queue.put_nowait((time.monotonic(), exc))

    async def chunks(self) -> AsyncGenerator[bytes]:
        while True:
            arrived, item = await self._queue.get()
            await asyncio.sleep(max(0.0, arrived + self.delay - time.monotonic()))
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def close(self) -> None:
        self._reader.cancel()
