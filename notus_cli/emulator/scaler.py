"""The autoscaler of an endpoint created through the control plane: real worker processes, as RunPod runs them.

`workersMin` workers are always kept; when jobs queue, more start, up to `workersMax` (queue delay:
one more each time the oldest job has waited `scalerValue` seconds, or at once when none runs;
request count: ceil((waiting + in progress) / `scalerValue`), runpod/docs
serverless/endpoints/endpoint-configurations.mdx, "Request count"); a worker idle for `idleTimeout`
seconds beyond `workersMin` is stopped, so `workersMin = 0` scales to zero. On an LB endpoint the
waiting requests are those the gateway holds for a healthy worker (Endpoint.lb_waiting) and the
ones in progress those on its workers: RunPod's LB endpoints scale on request count over in-flight
requests (runpod/docs api-reference-v2/openapi.json RequestCountScaling: "Scale on concurrent
in-flight requests per worker. Required for load-balancing endpoints"; flash/configuration/
parameters.mdx: "REQUEST_COUNT (scales based on active requests)"), so a request to an LB
endpoint scaled to zero starts a worker and waits for it (within the gateway's worker_wait). `workersStandby`, where the
schema has it, starts nothing: read back as 1 it appears to be FlashBoot's unbilled standby
(reference/runpod.md, CORRECTION). A template whose image cannot be pulled never starts a worker. A new template rolls
out: workers on the new template start, and those on the old one stop once idle. Starting a
worker is a real process start, so a job that waits for one has the cold start in its `delayTime`.

Decisions run on the emulator's event loop (`tick`); starting and stopping processes, which block,
run on a thread. The worker factory (given by `notus serve`, or by tests) builds the processes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from notus_cli.emulator.loop import AccountLoop

if TYPE_CHECKING:
    from notus_cli.emulator.endpoint import Endpoint
    from notus_cli.emulator.workers import LocalWorkers, WorkerCommand

# (endpoint, the template's env) -> a pool that starts that endpoint's worker processes (not started yet)
WorkerFactory = Callable[["Endpoint", Mapping[str, str]], "LocalWorkers"]


def command_factory(account: AccountLoop, command: WorkerCommand) -> WorkerFactory:
    """Workers run `command` with the template's env underneath its own (the command's wins, so a worker
    always reaches the local vLLM); each endpoint logs to its own folder under the command's log_dir."""
    from notus_cli.emulator.workers import LocalWorkers

    def factory(endpoint: Endpoint, env: Mapping[str, str]) -> LocalWorkers:
        log_dir = command.log_dir / endpoint.id if command.log_dir is not None else None
        return LocalWorkers(account, endpoint, replace(command, env={**env, **command.env}, log_dir=log_dir))

    return factory


@dataclass(frozen=True)
class ScalingSpec:
    template_id: str
    env: Mapping[str, str]
    workers_min: int
    workers_max: int
    idle_timeout: float
    scaler_type: str  # QUEUE_DELAY | REQUEST_COUNT
    scaler_value: int
    model_references: tuple[str, ...] = ()  # cached models, in the cache before a worker starts (models.py)
    pull_error: str | None = None  # the image cannot be pulled: no worker of this template ever starts


@dataclass(eq=False)
class _Member:
    pod_id: str
    template_id: str
    pool: LocalWorkers
    idle_since: float | None = None
    retiring: bool = False


class Scaler:
    def __init__(self, account: AccountLoop, endpoint: Endpoint, factory: WorkerFactory, spec: ScalingSpec) -> None:
        self.account = account
        self.endpoint = endpoint
        self.factory = factory
        self.spec = spec
        self.members: dict[str, _Member] = {}
        self.pools: dict[str, LocalWorkers] = {}
        self.starting = 0  # processes being spawned on a thread
        self.closed = False

    def configure(self, spec: ScalingSpec) -> None:
        self.spec = spec
        self.endpoint.max_workers = max(1, spec.workers_max)

    def tick(self, now: float) -> None:
        """Start or stop workers to follow the spec and the queue (on the event loop)."""
        if self.closed:
            return
        live = self._live()
        current = [m for m in live if m.template_id == self.spec.template_id and not m.retiring]
        wanted = self._wanted(now, len(current))
        for _ in range(0 if self.spec.pull_error else wanted - len(current) - self.starting):
            self._start()
        ready_current = any(self._state(m) in ("idle", "running") for m in current)
        for member in live:
            if member.retiring:
                continue
            state = self._state(member)
            member.idle_since = (member.idle_since or now) if state == "idle" else None
            if member.template_id != self.spec.template_id:
                if state in ("idle", "initializing") and (ready_current or wanted == 0):
                    self._retire(member)
            elif state == "idle" and len(current) > wanted:
                idle_for = now - (member.idle_since or now)
                if len(current) > self.spec.workers_max or idle_for >= self.spec.idle_timeout:
                    self._retire(member)
                    current.remove(member)

    def _wanted(self, now: float, current: int) -> int:
        spec, counts = self.spec, self.endpoint.counts()
        waiting = counts.in_queue + self.endpoint.lb_waiting  # queued jobs, and LB requests held by the gateway
        wanted = max(spec.workers_min, current if counts.in_progress or waiting else 0)
        if waiting:
            if spec.scaler_type == "REQUEST_COUNT":
                wanted = max(wanted, math.ceil((waiting + counts.in_progress) / spec.scaler_value))
            elif current + self.starting == 0 or self.endpoint.oldest_wait(now) >= spec.scaler_value:
                wanted = max(wanted, current + self.starting + 1)
        busy = sum(1 for m in self._live() if m.template_id == spec.template_id and self._state(m) == "running")
        return min(max(wanted, busy), spec.workers_max)

    def _live(self) -> list[_Member]:
        for pod_id in [p for p, m in self.members.items() if self._state(m) in ("exited", "lost")]:
            del self.members[pod_id]
        return list(self.members.values())

    def _state(self, member: _Member) -> str:
        record = self.endpoint.workers.get(member.pod_id)
        return record.state if record is not None else "initializing"

    def _pool(self) -> LocalWorkers:
        template_id = self.spec.template_id
        if template_id not in self.pools:
            self.pools[template_id] = self.factory(self.endpoint, self.spec.env)
        pool = self.pools[template_id]
        if pool.command.model_references != self.spec.model_references:  # the endpoint's, not the template's
            pool.command = replace(pool.command, model_references=self.spec.model_references)
        return pool

    def _start(self) -> None:
        pool, template_id = self._pool(), self.spec.template_id
        self.starting += 1

        def spawn() -> None:
            try:
                (worker,) = pool.start(1)
            except OSError:
                self.account.call_soon(self._started, None, template_id, pool)
                raise
            self.account.call_soon(self._started, worker.pod_id, template_id, pool)

        asyncio.get_running_loop().run_in_executor(None, spawn)

    def _started(self, pod_id: str | None, template_id: str, pool: LocalWorkers) -> None:
        self.starting -= 1
        if pod_id is not None:
            self.members[pod_id] = _Member(pod_id, template_id, pool)

    def _retire(self, member: _Member) -> None:
        member.retiring = True
        self.endpoint.drain(member.pod_id)
        asyncio.get_running_loop().run_in_executor(None, member.pool.stop_one, member.pod_id)

    def shutdown(self) -> None:
        """Stop every worker of the endpoint; blocks, so call it off the event loop."""
        self.closed = True
        for pool in list(self.pools.values()):
            pool.stop()
