"""The emulator's knobs, defaulting to RunPod's published numbers, and its rate limiter."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from notus_cli.emulator.faults import FaultPlan
from notus_cli.runpod.protocol.limits import CONCURRENCY_LIMITS, RATE_LIMITS

MB = 1024 * 1024

# RunPod's published limits per endpoint and operation (sources in notus_cli.runpod.protocol.limits).
RUNPOD_RATE_LIMITS = RATE_LIMITS
RUNPOD_CONCURRENCY_LIMITS = CONCURRENCY_LIMITS


@dataclass(frozen=True)
class EmulatorConfig:
    """Times are seconds unless the name says ms; defaults are RunPod's."""

    run_retention: float = 1800.0  # results kept after /run
    sync_retention: float = 60.0  # results kept after /runsync and the OpenAI route
    runsync_wait_ms: int = 90_000  # /runsync waits this long unless ?wait= says otherwise
    execution_timeout_ms: int = 600_000  # policy.executionTimeout default
    ttl_ms: int = 86_400_000  # policy.ttl default
    max_run_bytes: int = 10 * MB
    max_runsync_bytes: int = 20 * MB
    queue_limit_per_worker: int = 500  # 429 once the queue passes max(50, this x max workers)
    min_queue_limit: int = 50
    rate_limits: Mapping[str, tuple[int, float]] = field(default_factory=lambda: RUNPOD_RATE_LIMITS)
    concurrency_limits: Mapping[str, int] = field(default_factory=lambda: RUNPOD_CONCURRENCY_LIMITS)
    # Emulated network round trips (0: loopback). The worker-facing one is paid by every job-take,
    # job-stream, job-done and ping of the runpod SDK, which awaits each stream POST before taking
    # the handler's next item: that is what caps per-token streaming on RunPod
    # (docs/worker.md: the job-stream round trip).
    worker_api_rtt_ms: float = 0.0
    public_api_rtt_ms: float = 0.0
    take_hold: float = 10.0  # job-take long poll
    stop_hold: float = 10.0  # job-stop long poll
    stream_hold: float = 1.0  # public /stream waits this long for a new item
    worker_lease: float = 30.0  # a worker not heard from for this long is lost
    # Data-plane faults (emulator/faults.py); None: none. Mutable: tests add rules while it serves.
    faults: FaultPlan | None = None
    sweep_interval: float = 0.5

    def scaled_rate_limits(self, factor: float) -> EmulatorConfig:
        """Multiply every rate limit and concurrency cap by `factor`; 0 turns both off."""
        if factor == 0:
            return replace(self, rate_limits={}, concurrency_limits={})
        limits = {name: (max(1, round(count * factor)), window) for name, (count, window) in self.rate_limits.items()}
        caps = {name: max(1, round(cap * factor)) for name, cap in self.concurrency_limits.items()}
        return replace(self, rate_limits=limits, concurrency_limits=caps)


class ConcurrencyLimiter:
    """Requests in flight per operation, against RunPod's concurrency caps."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        self._limits = dict(limits)
        self.in_flight: dict[str, int] = dict.fromkeys(limits, 0)

    def enter(self, operation: str) -> bool:
        """Count one request in; False (nothing counted) if the operation is at its cap."""
        cap = self._limits.get(operation)
        if cap is None:
            return True
        if self.in_flight[operation] >= cap:
            return False
        self.in_flight[operation] += 1
        return True

    def leave(self, operation: str) -> None:
        if operation in self._limits:
            self.in_flight[operation] = max(0, self.in_flight[operation] - 1)

    def cap(self, operation: str) -> int:
        return self._limits[operation]


class RateLimiter:
    """Sliding-window request counts per operation."""

    def __init__(self, limits: Mapping[str, tuple[int, float]]) -> None:
        self._limits = dict(limits)
        self._seen: dict[str, deque[float]] = {name: deque() for name in limits}

    def check(self, operation: str, now: float) -> float | None:
        """Count one request; None if allowed, else the seconds until one would be."""
        limit = self._limits.get(operation)
        if limit is None:
            return None
        count, window = limit
        seen = self._seen[operation]
        while seen and seen[0] <= now - window:
            seen.popleft()
        if len(seen) >= count:
            return seen[0] + window - now
        seen.append(now)
        return None

    def describe(self, operation: str) -> str:
        count, window = self._limits[operation]
        return f"{count} requests per {window:g} s"
