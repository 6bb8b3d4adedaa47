"""A job and the states it moves through, as RunPod documents them.

    IN_QUEUE ──taken by a worker──► IN_PROGRESS ──job-done──► COMPLETED | FAILED
       │                               ├── /cancel ─────────► CANCELLED  (the worker is told to stop)
       │                               ├── executionTimeout ─► TIMED_OUT  (the worker is told to stop)
       │                               └── worker died ──────► FAILED, error type worker_lost
       ├── /cancel, /purge-queue ─────► CANCELLED
       └── policy ttl passed ─────────► TIMED_OUT
    FAILED | TIMED_OUT ── /retry ─────► IN_QUEUE (same id, previous output dropped)

A final job is kept for its retention time (30 min after /run, 1 min after /runsync), then forgotten.
The states and the bodies are the protocol's (notus_cli.runpod.protocol), the same the clients read.
Every transition is a method here; the endpoint decides when to call them. All of it runs on the
emulator's event loop, so there are no locks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from notus_cli.runpod.protocol.bodies import JobStatus
from notus_cli.runpod.protocol.job_states import JobState

__all__ = ["BadRequest", "Job", "JobState", "JobStateError", "Policy", "Signal"]


class JobStateError(Exception):
    """A transition the state machine does not allow (e.g. retrying a completed job)."""


class BadRequest(Exception):
    """A request the emulator refuses: `message` says why (naming the field), `status` is the HTTP code."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers


class Signal:
    """Wakes every coroutine waiting on it; a waiter gives up after its timeout."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    async def wait(self, seconds: float) -> bool:
        """True if fired within `seconds`."""
        if seconds <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                await waiter
            return True
        except TimeoutError:
            return False
        finally:
            waiter.cancel()
            if waiter in self._waiters:  # timed out, or the waiting task was cancelled
                self._waiters.remove(waiter)

    def fire(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


@dataclass(frozen=True)
class Policy:
    """A job's `policy`: how long it may run and how long it may live (milliseconds)."""

    execution_timeout_ms: int
    ttl_ms: int
    low_priority: bool = False

    @classmethod
    def parse(cls, raw: Any, *, default_execution_timeout_ms: int, default_ttl_ms: int) -> Policy:
        """Raises BadRequest naming the field and its allowed values."""
        if raw is None:
            return cls(default_execution_timeout_ms, default_ttl_ms)
        if not isinstance(raw, dict):
            raise BadRequest("policy must be an object with executionTimeout, lowPriority and/or ttl")
        unknown = sorted(set(raw) - {"executionTimeout", "lowPriority", "ttl"})
        if unknown:
            raise BadRequest(
                f"policy.{unknown[0]} is not a policy option (allowed: executionTimeout, lowPriority, ttl)"
            )
        timeout = raw.get("executionTimeout", default_execution_timeout_ms)
        if not _integer(timeout) or timeout <= 5000:
            raise BadRequest(
                f"policy.executionTimeout must be an integer number of milliseconds above 5000; got {timeout!r}"
            )
        ttl = raw.get("ttl", default_ttl_ms)
        if not _integer(ttl) or not 10_000 <= ttl <= 7 * 86_400_000:
            raise BadRequest(f"policy.ttl must be milliseconds from 10000 to 604800000 (one week); got {ttl!r}")
        low = raw.get("lowPriority", False)
        if not isinstance(low, bool):
            raise BadRequest(f"policy.lowPriority must be true or false; got {low!r}")
        return cls(timeout, ttl, low)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


@dataclass(eq=False)
class Job:
    id: str
    input: Any
    sync: bool
    policy: Policy
    submitted: float  # time.monotonic()
    webhook: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other top-level keys the worker receives (s3Config)
    state: JobState = JobState.IN_QUEUE
    worker_id: str | None = None
    worker_started: float | None = None  # when the process of the worker that took it started (cold starts)
    started: float | None = None
    finished: float | None = None
    output: Any = None
    error: str | None = None
    stream: list[Any] = field(default_factory=list)
    cursor: int = 0  # stream items already returned by /stream
    deliveries: int = 0  # times handed to a worker (retries included)
    keep_until: float | None = None
    changed: Signal = field(default_factory=Signal)

    def start(self, worker_id: str, now: float) -> None:
        self._expect(JobState.IN_QUEUE)
        self.state, self.worker_id, self.started = JobState.IN_PROGRESS, worker_id, now
        self.deliveries += 1
        self.changed.fire()

    def push(self, item: Any) -> None:
        self._expect(JobState.IN_PROGRESS)
        self.stream.append(item)
        self.changed.fire()

    def finish(
        self, state: JobState, now: float, retention: float, *, output: Any = None, error: str | None = None
    ) -> None:
        """End the job in a final `state`; it is forgotten `retention` seconds later."""
        if self.state.final or not state.final:
            raise JobStateError(f"job {self.id} is {self.state}; it cannot become {state}")
        self.state, self.finished, self.keep_until = state, now, now + retention
        self.output, self.error = output, error
        self.changed.fire()

    def requeue(self, now: float) -> None:
        """/retry: same id and input, a fresh start."""
        if not self.state.retryable:
            raise JobStateError(f"job {self.id} is {self.state}; only FAILED or TIMED_OUT jobs can be retried")
        self.state, self.worker_id = JobState.IN_QUEUE, None
        self.started = self.finished = self.keep_until = None
        self.output = self.error = None
        self.stream, self.cursor, self.submitted = [], 0, now
        self.changed.fire()

    def unread(self) -> list[Any]:
        """The stream items not yet returned to a client, marked as returned."""
        items = self.stream[self.cursor :]
        self.cursor = len(self.stream)
        return items

    def for_worker(self) -> dict[str, Any]:
        return {"id": self.id, "input": self.input, **self.extra}

    def view(self) -> dict[str, Any]:
        """The body of /status and /runsync, in RunPod's shape."""
        return self.status().to_body()

    def status(self) -> JobStatus:
        delay = execution = None
        if self.started is not None:
            delay = _ms(self.started - self.submitted)
            if self.finished is not None:
                execution = _ms(self.finished - self.started)
        return JobStatus(self.id, self.state, delay, execution, self.output, self.error, self.worker_id)

    def _expect(self, state: JobState) -> None:
        if self.state is not state:
            raise JobStateError(f"job {self.id} is {self.state}, not {state}")
