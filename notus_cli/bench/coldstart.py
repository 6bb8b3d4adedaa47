"""`--cold-start`: one request to an endpoint with no worker, its time split into where it went.

    sent ──queue──► a worker starts ──worker start──► it takes the job ──first token──► first chunk
         └──────────────── delayTime (RunPod) ────────────────────────┘

RunPod's `delayTime` runs from /run to a worker taking the job, so it holds the worker's start.
We watch /health while the job waits: from the first poll that shows a worker (initializing or
ready) to the first that shows one ready is the worker start; queue = delayTime − worker start
(the scheduler's wait before and after); first token = TTFT − delayTime (the worker's own time to
the first chunk, plus one /stream poll). Health is polled every POLL seconds, so each boundary is
known to about that much; a worker counts as ready by the time it took the job at the latest.

Inside the worker start, the worker itself knows how long vLLM spent loading the model and warming
up its engine (torch.compile, CUDA graphs), from vLLM's own log lines (worker/startup.py); right
after the cold request one job asks it for those figures (STARTUP_QUERY).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from notus_cli.bench.metrics import RequestRecord
from notus_cli.bench.runpod_target import RunPodTarget
from notus_cli.bench.workload import Prompt
from notus_cli.errors import BenchError, NotusError
from worker.startup import STARTUP_QUERY

POLL = 0.1  # /health while the cold request waits
ZERO_POLL = 2.0  # /health while waiting for the endpoint to scale to zero


class ColdProgress(Protocol):
    def cold_start(self, message: str) -> None: ...


class EndpointScaler(Protocol):
    """What `--force-cold` needs from the deploy code (see bench.deploy_hooks)."""

    def scale_to_zero(self, endpoint_id: str) -> None:
        """Make the endpoint stop its workers now (e.g. workersMax 0), keeping its settings to restore."""
        ...

    def restore(self, endpoint_id: str) -> None:
        """Put back what scale_to_zero changed, so the next job starts a worker."""
        ...


@dataclass(frozen=True)
class ColdStart:
    """Seconds. `worker_start`/`queue` are None when no health poll caught a worker starting."""

    waited_for_zero: float
    ok: bool
    ttft: float | None
    e2el: float | None
    delay: float | None  # RunPod's delayTime
    execution: float | None
    worker_start: float | None
    queue: float | None
    first_token: float | None
    job_id: str | None
    error: str | None = None
    worker_load: float | None = None  # vLLM's model load, as the worker read it from vLLM's log
    worker_warmup: float | None = None  # vLLM's engine warm-up (profile, KV cache, compile, CUDA graphs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColdStart:
        return cls(**data)

    def sentence(self) -> str:
        if not self.ok:
            return f"Cold start: the request failed ({self.error})"
        parts = [
            f"queue {_s(self.queue)}",
            f"worker start {_s(self.worker_start)}",
            f"first token {_s(self.first_token)}",
        ]
        sentence = f"Cold start: first token after {_s(self.ttft)} = " + " + ".join(parts)
        if self.worker_load is not None or self.worker_warmup is not None:
            sentence += f"; in the worker start, vLLM: model load {_s(self.worker_load)}, "
            sentence += f"engine warm-up {_s(self.worker_warmup)}"
        return sentence


def _s(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds:.2f} s"


async def wait_for_zero(target: RunPodTarget, limit: float, progress: ColdProgress) -> float:
    """Wait until /health shows no idle or running worker; returns the seconds waited.

    Raises BenchError when workers are still up after `limit` seconds.
    """
    started = time.perf_counter()
    while True:
        health = await target.health()
        waited = time.perf_counter() - started
        if health.ready_workers == 0:
            return waited
        if waited > limit:
            raise BenchError(
                f"--cold-start: the endpoint still has {health.ready_workers} workers after {limit:.0f} s",
                hint="wait for its idle timeout to pass, raise --cold-timeout, or add --force-cold",
            )
        progress.cold_start(
            f"cold start: waiting for the endpoint to scale to zero ({health.ready_workers} workers up, "
            f"{waited:.0f} s of {limit:.0f} s)"
        )
        await asyncio.sleep(min(ZERO_POLL, limit - waited + 0.01))


async def measure_cold_start(
    target: RunPodTarget,
    prompt: Prompt,
    *,
    zero_within: float,
    progress: ColdProgress,
    scaler: EndpointScaler | None = None,
) -> ColdStart:
    """Scale to zero (with `scaler`) or wait for it, send `prompt`, and split its time (module docstring)."""
    if scaler is not None:
        progress.cold_start("cold start: asking the endpoint to scale to zero")
        await asyncio.to_thread(scaler.scale_to_zero, target.endpoint_id)
    try:
        waited = await wait_for_zero(target, zero_within, progress)
    finally:
        if scaler is not None:
            await asyncio.to_thread(scaler.restore, target.endpoint_id)
    progress.cold_start("cold start: one request to the idle endpoint")
    record = RequestRecord(index=0)
    sightings = Sightings()
    watch = asyncio.create_task(_watch_workers(target, time.perf_counter(), sightings))
    try:
        await target.send(prompt, record)
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    cold = split(record, waited, sightings)
    if not record.ok:
        return cold
    phases = await worker_phases(target)
    return replace(cold, worker_load=phases.get("load"), worker_warmup=phases.get("warmup"))


async def worker_phases(target: RunPodTarget) -> dict[str, float]:
    """The start-up phases the worker read from vLLM's log; empty if it does not say (an older worker)."""
    try:
        job = await target.runsync(STARTUP_QUERY)
    except (NotusError, OSError, TimeoutError):
        return {}
    output = job.output if job is not None else None
    item = output[0] if isinstance(output, list) and output else output
    startup = item.get("startup") if isinstance(item, dict) else None
    if not isinstance(startup, dict):
        return {}
    return {key: float(value) for key, value in startup.items() if isinstance(value, int | float)}


@dataclass
class Sightings:
    """Seconds after sending: the first /health showing a worker at all, and one ready."""

    seen: float | None = None
    ready: float | None = None


async def _watch_workers(target: RunPodTarget, sent: float, sightings: Sightings) -> None:
    while sightings.ready is None:
        try:
            health = await target.health()
        except NotusError:
            return  # the split then says it does not know; the request itself still counts
        now = time.perf_counter() - sent
        if sightings.seen is None and (health.ready_workers or health.workers.get("initializing", 0)):
            sightings.seen = now
        if health.ready_workers:
            sightings.ready = now
        await asyncio.sleep(POLL)


def split(record: RequestRecord, waited: float, sightings: Sightings) -> ColdStart:
    """The cold request's time in parts (see the module docstring); None where a part is unknown."""
    delay, execution = record.phases.get("queue"), record.phases.get("execution")
    # A worker is ready at the latest when it takes the job (delayTime): a short job may end
    # before a health poll catches its worker ready.
    bounds = [t for t in (sightings.ready, delay) if t is not None]
    ready = min(bounds) if bounds else None
    worker_start = None
    if sightings.seen is not None and ready is not None:
        worker_start = max(0.0, ready - sightings.seen)
    return ColdStart(
        waited_for_zero=waited,
        ok=record.ok,
        ttft=record.ttft,
        e2el=record.e2el,
        delay=delay,
        execution=execution,
        worker_start=worker_start,
        queue=None if delay is None or worker_start is None else max(0.0, delay - worker_start),
        first_token=None if delay is None or record.ttft is None else record.ttft - delay,
        job_id=record.job_id,
        error=None if record.ok else f"{record.error_cause}: {record.error}",
    )
