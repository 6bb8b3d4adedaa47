"""The load generator: levels of concurrency (closed loop) or request rate (open loop), in a sweep.

Closed loop (`--concurrency 1,4,16`): N workers each send their next request as soon as the last
one is answered. Open loop (`--rate 2,8`): requests arrive on a Poisson schedule (a gamma one with
`--burstiness` ≠ 1, as in vLLM), whether or not the server keeps up, optionally capped at a
concurrency. A sweep stops once the server is over-saturated, since more load then only adds
queueing: see `sweep_saturation` and `BacklogTrend` for the rules.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from notus_cli.bench.metrics import LevelSummary, RequestRecord, Slos, summarize
from notus_cli.bench.senders import Target
from notus_cli.bench.workload import Prompt
from notus_cli.errors import BenchError, ConfigError

MIN_AUTO_PROMPTS = 32
AUTO_RATE_SECONDS = 30  # an open-loop level sends this many seconds' worth of requests by default
SWEEP_MIN_GAIN = 0.10  # a closed-loop level must add 10% output throughput over the best before it
RATE_MIN_ACHIEVED = 0.90  # an open-loop level must finish 90% of the offered request rate
MAX_FAILED_SHARE = 0.5
DEFAULT_SWEEP = (1, 4, 16, 64)


@dataclass(frozen=True)
class LoadLevel:
    """At most `concurrency` requests in flight; `rate` requests/s arriving if set (else closed loop)."""

    concurrency: int | None = None
    rate: float | None = None

    @property
    def label(self) -> str:
        if self.rate is None:
            return f"concurrency {self.concurrency}"
        cap = f", ≤{self.concurrency} in flight" if self.concurrency else ""
        return f"rate {self.rate:g}/s{cap}"

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "concurrency": self.concurrency, "rate": self.rate}


@dataclass(frozen=True)
class LoadPlan:
    levels: tuple[LoadLevel, ...]
    num_prompts: int | None = None  # per level; None: until `duration`, or an automatic count
    duration: float | None = None  # seconds per level during which new requests are sent
    warmup: int = 0
    burstiness: float = 1.0
    seed: int = 0
    stop_when_saturated: bool = True

    def requests_for(self, level: LoadLevel) -> int | None:
        """How many requests a level sends; None means "until the duration is up"."""
        if self.num_prompts is not None:
            return self.num_prompts
        if self.duration is not None:
            return None
        if level.rate is not None:
            return max(MIN_AUTO_PROMPTS, int(np.ceil(level.rate * AUTO_RATE_SECONDS)))
        return max(MIN_AUTO_PROMPTS, 4 * (level.concurrency or 1))

    def to_dict(self) -> dict[str, Any]:
        return {
            "levels": [level.to_dict() for level in self.levels],
            "num_prompts": self.num_prompts,
            "duration": self.duration,
            "warmup": self.warmup,
            "burstiness": self.burstiness,
            "seed": self.seed,
            "stop_when_saturated": self.stop_when_saturated,
        }


def make_plan(
    *,
    concurrency: Sequence[int],
    rates: Sequence[float],
    num_prompts: int | None = None,
    duration: float | None = None,
    warmup: int = 0,
    burstiness: float = 1.0,
    seed: int = 0,
    stop_when_saturated: bool = True,
) -> LoadPlan:
    """Check the load options together and build the plan. Raises ConfigError naming the bad option."""
    if any(c < 1 for c in concurrency):
        raise ConfigError("--concurrency values must be whole numbers of at least 1", hint="e.g. --concurrency 1,4,16")
    if any(not r > 0 for r in rates):
        raise ConfigError("--rate values must be above 0 (requests per second)", hint="e.g. --rate 0.5,1,2")
    if not burstiness > 0:
        raise ConfigError(f"--burstiness must be above 0; got {burstiness}", hint="1 is Poisson; below 1 is burstier")
    if num_prompts is not None and num_prompts < 1:
        raise ConfigError("--num-prompts must be at least 1")
    if duration is not None and not duration > 0:
        raise ConfigError("--duration must be above 0 seconds")
    if warmup < 0:
        raise ConfigError("--warmup must be 0 or more")
    if rates:
        if len(concurrency) > 1:
            raise ConfigError(
                "--concurrency takes one value (the cap on requests in flight) when --rate is given",
                hint="sweep either rates (--rate 1,2,4) or concurrencies (--concurrency 1,4,16), not both",
            )
        cap = concurrency[0] if concurrency else None
        levels = tuple(LoadLevel(concurrency=cap, rate=rate) for rate in rates)
    else:
        levels = tuple(LoadLevel(concurrency=c) for c in (concurrency or DEFAULT_SWEEP))
    return LoadPlan(levels, num_prompts, duration, warmup, burstiness, seed, stop_when_saturated)


def arrival_times(rate: float, burstiness: float, count: int | None, rng: np.random.Generator) -> Iterator[float]:
    """Seconds after the level starts at which each request is sent.

    Gaps are gamma-distributed with shape `burstiness` and mean 1/rate (burstiness 1 is a Poisson
    process, ∞ evenly spaced). With a known count they are rescaled to end at count/rate, as vLLM
    does, so runs with different seeds offer exactly the same load.
    """

    def gaps(n: int) -> np.ndarray:
        if np.isinf(burstiness):
            return np.full(n, 1.0 / rate)
        return rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=n)

    if count is not None:
        times = np.cumsum(gaps(count))
        if count and times[-1] > 0:
            times *= (count / rate) / times[-1]
        yield from (float(t) for t in times)
        return
    now = 0.0
    while True:
        for gap in gaps(256):
            now += float(gap)
            yield now


class BacklogTrend:
    """Open-loop over-saturation: requests keep arriving faster than they are answered.

    Sampled every half second, the backlog (sent, not yet answered) is fitted with a line over the
    last `window` seconds. Once the level has run for a window plus a typical request's latency (so
    the start-up ramp is over), a slope above `share` of the offered rate with at least
    `min_backlog` waiting means the server finishes under (1 − share) of what arrives.
    """

    def __init__(self, rate: float, *, window: float = 10.0, share: float = 0.2, min_backlog: int = 8) -> None:
        self.rate = rate
        self.window = window
        self.share = share
        self.min_backlog = min_backlog
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, elapsed: float, backlog: int, typical_latency: float | None) -> str | None:
        self.samples.append((elapsed, backlog))
        while self.samples and self.samples[0][0] < elapsed - self.window:
            self.samples.popleft()
        if typical_latency is None or elapsed < self.window + typical_latency or len(self.samples) < 5:
            return None
        times, backlogs = zip(*self.samples, strict=True)
        slope = float(np.polyfit(times, backlogs, 1)[0])
        if slope > self.share * self.rate and backlog >= self.min_backlog:
            return (
                f"over-saturated: the backlog grew by {slope:.1f} requests/s over the last {self.window:g} s "
                f"({backlog} waiting) at {self.rate:g} requests/s offered"
            )
        return None


@dataclass
class LevelResult:
    level: LoadLevel
    records: list[RequestRecord]
    duration: float
    summary: LevelSummary
    requests_planned: int | None = None
    saturated: str | None = None  # why the sweep stopped after this level

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level.to_dict(),
            "requests_planned": self.requests_planned,
            "duration": self.duration,
            "saturated": self.saturated,
            "summary": self.summary.to_dict(),
            "records": [record.to_dict() for record in self.records],
        }


class LoadProgress:
    """What the load generator reports while it runs; the CLI draws it, tests may count it."""

    def warmup(self, count: int) -> None:
        """`count` warm-up requests are being sent (not measured)."""

    def cold_start(self, message: str) -> None:
        """What the cold-start measurement is waiting for."""

    def level_started(self, level: LoadLevel, planned: int | None, duration: float | None) -> None:
        """A level begins; `planned` requests (None: until `duration` seconds are up)."""

    def request_sent(self, in_flight: int) -> None:
        """A request is due (sent, or waiting for a concurrency slot); `in_flight` are now waiting."""

    def request_done(self, record: RequestRecord, in_flight: int) -> None:
        """One request finished or failed; `in_flight` are still waiting."""

    def level_done(self, result: LevelResult) -> None:
        """A level ended; its summary is final."""


@dataclass
class _LevelState:
    started: float
    progress: LoadProgress
    records: list[RequestRecord] = field(default_factory=list)
    finished: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    saturated: str | None = None
    latencies: list[float] = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        """Requests due and not yet answered, including any waiting for a concurrency slot."""
        return len(self.records) - self.finished

    def new_record(self, index: int) -> RequestRecord:
        record = RequestRecord(index=index, sent_at=time.perf_counter())
        self.records.append(record)  # kept even if the level is cut short, so it is counted
        self.progress.request_sent(self.in_flight)
        return record


Send = Callable[[RequestRecord], Awaitable[None]]


async def run_level(
    target: Target,
    prompts: Sequence[Prompt],
    level: LoadLevel,
    plan: LoadPlan,
    *,
    slos: Slos | None = None,
    progress: LoadProgress | None = None,
) -> LevelResult:
    """Send one level's requests and wait for every answer (or failure); summarize them."""
    if not prompts:
        raise BenchError("the workload has no prompts")
    progress = progress or LoadProgress()
    planned = plan.requests_for(level)
    progress.level_started(level, planned, plan.duration)
    state = _LevelState(started=time.perf_counter(), progress=progress)
    deadline = state.started + plan.duration if plan.duration else None

    def may_send(index: int) -> bool:
        if state.stop.is_set() or (planned is not None and index >= planned):
            return False
        return deadline is None or time.perf_counter() < deadline

    async def send(record: RequestRecord) -> None:
        await target.send(prompts[record.index % len(prompts)], record)
        state.finished += 1
        if record.ok and record.e2el is not None:
            state.latencies.append(record.e2el)
        progress.request_done(record, state.in_flight)

    if level.rate is None:
        await _closed_loop(send, may_send, state, level.concurrency or 1)
    else:
        rng = np.random.default_rng([plan.seed, int(level.rate * 1000)])
        await _open_loop(send, may_send, state, level, arrival_times(level.rate, plan.burstiness, planned, rng))
    duration = time.perf_counter() - state.started
    for record in state.records:
        record.sent_at -= state.started
        if not record.ok and record.error_cause is None:
            record.fail("abandoned", "still waiting when the level was stopped as over-saturated")
    summary = summarize(state.records, duration, slos or Slos())
    result = LevelResult(level, state.records, duration, summary, planned, state.saturated)
    progress.level_done(result)
    return result


async def _closed_loop(send: Send, may_send: Callable[[int], bool], state: _LevelState, concurrency: int) -> None:
    counter = itertools.count()

    async def worker() -> None:
        while may_send(index := next(counter)):
            await send(state.new_record(index))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _open_loop(
    send: Send, may_send: Callable[[int], bool], state: _LevelState, level: LoadLevel, times: Iterator[float]
) -> None:
    assert level.rate is not None
    slots = asyncio.Semaphore(level.concurrency) if level.concurrency else None
    tasks: set[asyncio.Task[None]] = set()
    stopped = asyncio.create_task(state.stop.wait())
    watch = asyncio.create_task(_watch_backlog(state, BacklogTrend(level.rate)))
    helpers: list[asyncio.Future[Any]] = [stopped, watch]

    async def limited(record: RequestRecord) -> None:
        if slots is None:
            await send(record)
            return
        async with slots:
            await send(record)

    try:
        for index, at in enumerate(times):
            if not may_send(index):
                break
            delay = state.started + at - time.perf_counter()
            if delay > 0:
                await asyncio.wait([stopped], timeout=delay)
                if state.stop.is_set():
                    break
            task = asyncio.create_task(limited(state.new_record(index)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            everything: asyncio.Future[Any] = asyncio.gather(*tasks)
            helpers.append(everything)
            await asyncio.wait([everything, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in [*tasks, *helpers]:
            future.cancel()
        await asyncio.gather(*tasks, *helpers, return_exceptions=True)


async def _watch_backlog(state: _LevelState, trend: BacklogTrend) -> None:
    while not state.stop.is_set():
        await asyncio.sleep(0.5)
        typical = float(np.median(state.latencies)) if state.latencies else None
        reason = trend.add(time.perf_counter() - state.started, state.in_flight, typical)
        if reason:
            state.saturated = reason
            state.stop.set()


def sweep_saturation(results: Sequence[LevelResult]) -> str | None:
    """Why the sweep should stop after its latest level, or None to go on.

    Closed loop: the level added under 10% output throughput over the best level before it.
    Open loop: it answered under 90% of the offered rate (over its sending window: the duration
    less a median latency). Either: over half its requests failed.
    """
    last = results[-1]
    summary = last.summary
    if last.saturated:
        return last.saturated
    if summary.requests and summary.failed / summary.requests > MAX_FAILED_SHARE:
        return f"{summary.failed} of {summary.requests} requests failed at {last.level.label}"
    if last.level.rate is not None:
        # Requests sent near the end finish about one latency later: leave that tail out of the window.
        tail = summary.e2el.median / 1000 if summary.e2el else 0.0
        answered = summary.completed / max(summary.duration - tail, summary.duration / 2) if summary.duration else 0.0
        if answered < RATE_MIN_ACHIEVED * last.level.rate:
            return f"over-saturated: {answered:.2f} requests/s answered of {last.level.rate:g}/s offered"
        return None
    earlier = [r.summary.output_throughput for r in results[:-1] if r.level.rate is None]
    if earlier and summary.output_throughput < (1 + SWEEP_MIN_GAIN) * max(earlier):
        return (
            f"saturated: {last.level.label} gave {summary.output_throughput:.1f} output tokens/s, "
            f"under {SWEEP_MIN_GAIN:.0%} more than the best lower level ({max(earlier):.1f})"
        )
    return None
