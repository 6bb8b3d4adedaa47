"""RunPod's limits on an endpoint's callers, and how a caller backs off: data and pure functions.

Rate limits and concurrency caps per endpoint and operation: runpod/docs
serverless/endpoints/send-requests.mdx, "Rate limits" (requests per 10 s, and the "Concurrent Limit"
column); over either, RunPod answers HTTP 429. The emulator enforces these numbers; the clients pace
their /stream polls to stay under them and wait out a 429, honouring `Retry-After` (RFC 9110 §10.2.3,
delay-seconds form) when the server sends it.

What is retried, and why: a 429 is safe to send again on any route (nothing was queued); a 5xx or a
timeout only where sending twice is harmless (reads, cancel, purge), since a retried /run could queue
the same work twice. runpod-python's own client retries 408/429 on every call
(runpod/endpoint/runner.py, `Retry(total=5, backoff_factor=1, status_forcelist=[408, 429])`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# Per endpoint and operation: (requests, window in seconds).
RATE_LIMITS: Mapping[str, tuple[int, float]] = MappingProxyType(
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

# Per endpoint and operation: requests in flight at once.
CONCURRENCY_LIMITS: Mapping[str, int] = MappingProxyType(
    {"runsync": 400, "run": 200, "status": 400, "stream": 400, "cancel": 20, "openai": 400}
)

RATE_LIMITED = 429
# /runsync's ?wait= in ms: (least, most); without it RunPod waits about 90 s
# (runpod/docs serverless/endpoints/operation-reference.mdx, /runsync).
RUNSYNC_WAIT_MS = (1000, 300_000)
RUNSYNC_DEFAULT_WAIT_MS = 90_000
RETRY_AFTER = "Retry-After"


def retry_after_seconds(header: str | None) -> float | None:
    """The delay a `Retry-After: <seconds>` header asks for; None when absent or not a number."""
    if header is None:
        return None
    try:
        seconds = float(header)
    except ValueError:
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def retry_after_header(wait: float) -> str:
    """The `Retry-After` value for a refusal that clears in `wait` seconds: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait)))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before sending a refused call again.

    Backoff is `base x factor^attempt` capped at `cap` seconds, times a jitter in [0.5, 1) (none with
    `jitter=False`); a `Retry-After` header wins (still capped). `attempts` counts every send.
    `server_errors`: also retry 5xx answers and timeouts of calls that are safe to repeat.
    """

    attempts: int = 5
    base: float = 0.5
    cap: float = 8.0
    factor: float = 2.0
    jitter: bool = True
    server_errors: bool = True

    def delay(self, attempt: int, retry_after: str | None = None, rand: Callable[[], float] = random.random) -> float:
        asked = retry_after_seconds(retry_after)
        if asked is not None:
            return min(asked, self.cap)
        backoff = float(min(self.cap, self.base * self.factor**attempt))
        return backoff * (0.5 + rand() / 2) if self.jitter else backoff

    def retries(self, status: int, *, idempotent: bool) -> bool:
        """Whether an answer with this HTTP status is worth sending again (attempts aside)."""
        return status == RATE_LIMITED or (self.server_errors and idempotent and status >= 500)


@dataclass
class PollBudget:
    """One client's share of RunPod's /stream limit: `per_second` on average, bursts of `burst` (a token
    bucket), and at most `concurrent` polls at once.

    RunPod counts /stream requests per 10 s window (2,000) and caps 400 in flight (RATE_LIMITS,
    CONCURRENCY_LIMITS), so a burst is allowed: any 10 s then hold at most `burst` + 10 x `per_second`
    polls; the defaults give 1,900. The burst lets the first polls of many streams started together go
    at once; a poll returns everything streamed since the last one, so a later, slower poll costs
    latency, never output.
    """

    per_second: float = RATE_LIMITS["stream"][0] / RATE_LIMITS["stream"][1] * 0.9
    burst: int = 100
    concurrent: int = CONCURRENCY_LIMITS["stream"]
    _tokens: float = field(init=False, repr=False)  # the bucket starts full
    _updated: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)

    def reserve(self, now: float) -> float:
        """Take one poll's token at time `now` (seconds, any monotonic clock); returns how long to wait first."""
        saved = self._tokens + (now - self._updated) * self.per_second
        self._tokens, self._updated = min(float(self.burst), saved) - 1, now
        return -self._tokens / self.per_second if self._tokens < 0 else 0.0
