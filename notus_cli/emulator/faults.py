"""RunPod's bad days on the data plane: faults injected per route and endpoint, and worker kills.

A fault plan is a list of rules, written as a spec (`parse_faults`, docs/faults.md):

    lost:job-take:1%, 502:stream:3x, delay=2s:run@abc123:10%, reset:*:1%, kill:60s

Each rule is `FAULT:ROUTE[@ENDPOINT]:RATE`. FAULT is one of
    delay=<n>s|<n>ms  the request waits that long, then is served as usual
    429|500|502|503   answered with that status (429 with Retry-After: 1); nothing is carried out
    reset             the connection drops before the request is carried out
    lost              the request is carried out, then its answer is lost (the connection drops):
                      a job-take hands its jobs out, a /run queues its job, a job-done ends its job
ROUTE is an operation of notus_cli.runpod.protocol.routes (run, stream, job-take, job-done, ...) or
`*` (every data-plane route); ENDPOINT limits the rule to one endpoint id. RATE is a probability
(`1%`, `0.01`) or a count (`3x`: the next three matching requests). `kill:<interval>` SIGKILLs one
worker process that is running a job every interval (spot reclaim, OOM), through
`worker_killer.WorkerKiller`.

A dropped connection is a response started with a declared length, then closed without its body:
uvicorn closes the connection when the app fails after the response began, so the client sees a
broken answer (httpx RemoteProtocolError, aiohttp ClientPayloadError), as behind a failing gateway.
The control plane (/graphql) has its own faults (control_plane.py `inject`) and is left alone here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from notus_cli.emulator.http import error_response
from notus_cli.emulator.jobs import BadRequest
from notus_cli.runpod.protocol.limits import RETRY_AFTER, retry_after_header
from notus_cli.runpod.protocol.routes import ALL_ROUTES, API_PREFIX

ASGIApp = Callable[[dict[str, Any], Callable[..., Any], Callable[..., Any]], Any]
STATUSES = (429, 500, 502, 503)
OPERATIONS = tuple(route.operation for route in ALL_ROUTES)
_FIRST_SEGMENT = {route.path.split("/")[1]: route.operation for route in ALL_ROUTES}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)$")


class FaultSpecError(ValueError):
    """A fault spec that does not parse; the message names the part and what it may be."""


@dataclass
class FaultRule:
    """One kind of fault on one route (or all), for one endpoint (or all), by probability or count."""

    kind: str  # "delay", "status", "reset" or "lost"
    route: str = "*"
    endpoint: str | None = None
    status: int | None = None
    delay: float = 0.0
    probability: float | None = None
    count: int | None = None  # requests left to strike; None: strike by probability

    def matches(self, operation: str, endpoint_id: str) -> bool:
        return (self.route in ("*", operation)) and (self.endpoint is None or self.endpoint == endpoint_id)

    def fires(self, rand: Callable[[], float]) -> bool:
        if self.count is not None:
            if self.count <= 0:
                return False
            self.count -= 1
            return True
        return self.probability is not None and rand() < self.probability


@dataclass
class FaultPlan:
    """The rules the middleware consults, and the worker-kill interval; change it at any time (tests do)."""

    rules: list[FaultRule] = field(default_factory=list)
    kill_every: float | None = None
    seed: int | None = None
    log: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, operation, path) of each fault struck

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def pick(self, operation: str, endpoint_id: str, path: str) -> FaultRule | None:
        """The first matching rule that fires for this request, if any."""
        with self._lock:
            for rule in self.rules:
                if rule.matches(operation, endpoint_id) and rule.fires(self._random.random):
                    self.log.append((rule.kind, operation, path))
                    return rule
        return None

    def struck(self, kind: str | None = None) -> int:
        return sum(1 for entry in self.log if kind is None or entry[0] == kind)


def parse_faults(spec: str, *, seed: int | None = None) -> FaultPlan:
    """A FaultPlan from `FAULT:ROUTE[@ENDPOINT]:RATE, ..., kill:INTERVAL`. Raises FaultSpecError."""
    plan = FaultPlan(seed=seed)
    for raw in (part.strip() for part in spec.split(",")):
        if not raw:
            continue
        pieces = raw.split(":")
        if pieces[0] == "kill":
            if len(pieces) != 2:
                raise FaultSpecError(f"{raw!r}: write a worker kill as kill:<interval>, e.g. kill:60s")
            plan.kill_every = _duration(pieces[1], raw)
            continue
        if len(pieces) != 3:
            raise FaultSpecError(f"{raw!r}: write a fault as FAULT:ROUTE[@ENDPOINT]:RATE, e.g. 502:stream:1%")
        plan.rules.append(_rule(*pieces, raw=raw))
    return plan


def _rule(fault: str, where: str, rate: str, *, raw: str) -> FaultRule:
    route, _, endpoint = where.partition("@")
    if route != "*" and route not in OPERATIONS:
        raise FaultSpecError(f"{raw!r}: route {route!r} is not one of *, {', '.join(OPERATIONS)}")
    rule = FaultRule(kind="", route=route, endpoint=endpoint or None)
    if fault.startswith("delay="):
        rule.kind, rule.delay = "delay", _duration(fault.removeprefix("delay="), raw)
    elif fault in ("reset", "lost"):
        rule.kind = fault
    elif fault.isdigit() and int(fault) in STATUSES:
        rule.kind, rule.status = "status", int(fault)
    else:
        allowed = "delay=<n>s, delay=<n>ms, " + ", ".join(map(str, STATUSES)) + ", reset, lost"
        raise FaultSpecError(f"{raw!r}: fault {fault!r} is not one of {allowed}")
    if rate.endswith("x") and rate[:-1].isdigit():
        rule.count = int(rate[:-1])
    else:
        try:
            value = float(rate[:-1]) / 100 if rate.endswith("%") else float(rate)
        except ValueError:
            value = -1.0
        if not 0 <= value <= 1:
            raise FaultSpecError(f"{raw!r}: rate {rate!r} must be a probability (1%, 0.01) or a count (3x)")
        rule.probability = value
    return rule


def _duration(text: str, raw: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise FaultSpecError(f"{raw!r}: {text!r} must be a duration such as 2s or 500ms")
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "ms" else value


def operation_of(path: str) -> tuple[str, str] | None:
    """(operation, endpoint id) of a data-plane path `/v2/{endpoint}/{route}...`; None for anything else."""
    parts = path.split("/")
    if len(parts) < 4 or "/" + parts[1] != API_PREFIX:
        return None
    operation = _FIRST_SEGMENT.get(parts[3])
    return None if operation is None else (operation, parts[2])


class FaultInjector:
    """ASGI middleware: consults the plan for each data-plane request and applies the fault it picks."""

    def __init__(self, app: ASGIApp, plan: FaultPlan) -> None:
        self.app = app
        self.plan = plan
        logging.getLogger("uvicorn.error").addFilter(_quiet_drops)  # an injected drop is no server error

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        where = operation_of(scope.get("path", "")) if scope["type"] == "http" else None
        rule = None if where is None else self.plan.pick(where[0], where[1], scope["path"])
        if rule is None:
            await self.app(scope, receive, send)
            return
        if rule.kind == "delay":
            await asyncio.sleep(rule.delay)
            await self.app(scope, receive, send)
        elif rule.kind == "status":
            refused = BadRequest(f"injected HTTP {rule.status}", status=rule.status or 502, headers=_waits(rule))
            await error_response(refused)(scope, receive, send)
        elif rule.kind == "reset":
            await _read_request(receive)
            await _drop(send)
        else:  # lost: carried out, its answer swallowed
            await self.app(scope, receive, _swallow)
            await _drop(send)


async def _swallow(_message: dict[str, Any]) -> None:
    return None


def _waits(rule: FaultRule) -> dict[str, str] | None:
    """A 429 says how long to wait, as RunPod's do."""
    return {RETRY_AFTER: retry_after_header(1.0)} if rule.status == 429 else None


class ConnectionDropped(Exception):
    """Raised after a response began: uvicorn then closes the connection, and the answer never arrives."""


async def _read_request(receive: Callable[..., Any]) -> None:
    """Read the request to its end without acting on it. A socket closed with unread bytes is reset
    (the client sees ECONNRESET) rather than closed, and which of the two a client saw would then
    depend on timing; the app reads the body itself when a fault lets the request be carried out."""
    message: dict[str, Any] = {"more_body": True}
    while message.get("more_body") and message.get("type") != "http.disconnect":
        message = await receive()


async def _drop(send: Callable[..., Any]) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"64")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{", "more_body": True})
    raise ConnectionDropped("injected: the connection dropped before the answer arrived")


def _quiet_drops(record: logging.LogRecord) -> bool:
    return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))
