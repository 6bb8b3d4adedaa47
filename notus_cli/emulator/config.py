"""The emulator's knobs, defaulting to RunPod's published numbers, and its rate limiter."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

MB = 1024 * 1024

# Per endpoint and operation: (requests, window in seconds). Over the limit: HTTP 429.
RUNPOD_RATE_LIMITS: Mapping[str, tuple[int, float]] = MappingProxyType(
    {
        "run": (1000, 10.0),
        "runsync": (2000, 10.0),
        "status": (2000, 10.0),
        "stream": (2000, 10.0),
        "cancel": (100, 10.0),
        "purge-queue": (2, 10.0),
        "openai": (2000, 10.0),
    }
)


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
    take_hold: float = 10.0  # job-take long poll
    stop_hold: float = 10.0  # job-stop long poll
    stream_hold: float = 1.0  # public /stream waits this long for a new item
    worker_lease: float = 30.0  # a worker not heard from for this long is lost
    sweep_interval: float = 0.5

    def scaled_rate_limits(self, factor: float) -> EmulatorConfig:
        """Multiply every rate limit by `factor`; 0 turns rate limiting off."""
        if factor == 0:
            return replace(self, rate_limits={})
        limits = {name: (max(1, round(count * factor)), window) for name, (count, window) in self.rate_limits.items()}
        return replace(self, rate_limits=limits)


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
