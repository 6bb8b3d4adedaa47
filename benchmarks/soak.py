"""A soak: thousands of mixed jobs against the emulator with faults on and workers killed, then checked.

    .venv/bin/python -m benchmarks.soak [--jobs 3000] [--seconds 300] [--workers 2]
        [--fault-rate 0.01] [--kill-every 60] [--seed 1] [--history FILE.jsonl]

The emulator serves on loopback with `--workers` real runpod SDK echo workers (testbed/echo_worker.py,
pinging every second) and a fault plan striking `--fault-rate` of the requests on each route of the
protocol the jobs use (public: run, runsync, stream, status; worker: job-take, job-take-batch,
job-stream, job-done, ping), spread over the kinds each route can suffer (5xx, 429, reset, answer
lost, delay; FAULT_KINDS). A WorkerKiller SIGKILLs a busy worker every `--kill-every` seconds and
the pool starts a new one, as RunPod replaces a reclaimed worker.

The jobs are sent through `ServerlessClient` with its default retry policy (what `notus chat` uses),
spread evenly over `--seconds`: streamed (`follow`) and not (`runsync`), with native echo input
(items that carry their index) and OpenAI-route-shaped input (SSE chunks, as the real worker
relays vLLM's), and some cancelled while they run. A job the client sees FAILED as `worker_lost` is
sent again once with /retry, as docs/faults.md says it may be. The echo worker only echoes: it is
the protocol that is soaked, not a model.

Every request and its answer (through a recording httpx transport), every stream item, with times,
and the emulator's final state and delivery count of every job are kept (the history), then checked
against the promise of docs/faults.md: nothing accepted is lost, nothing runs twice unless the client
asked, stream items arrive once and in order or a typed error says so, nothing hangs. Writes
docs/results/soak.md and .json (the printed table and the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import dataclasses
import json
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.results import add_out_option, markdown_table, tee, text_block, write_results
from notus_cli.emulator import EmulatorConfig, Endpoint
from notus_cli.emulator.faults import FaultPlan, parse_faults
from notus_cli.emulator.worker_killer import WorkerKiller
from notus_cli.errors import JobFailed, NotusError
from notus_cli.runpod.protocol.bodies import JobStatus
from notus_cli.runpod.protocol.follow import JobAccepted, JobEnded, StreamedItems
from notus_cli.runpod.serverless import ServerlessClient
from testbed.common import wait_for
from testbed.emulator import Harness, echo_command

# The faults each route can meet on a bad day. A 429 is kept off the worker routes (RunPod's worker
# API is not rate limited in its docs); `lost` on a worker route is a take handed out or a result
# stored whose answer never came back.
FAULT_KINDS: dict[str, tuple[str, ...]] = {
    "run": ("502", "429", "reset", "lost", "delay=300ms"),
    "runsync": ("503", "429", "lost", "delay=300ms"),
    "stream": ("502", "429", "reset", "lost", "delay=300ms"),
    "status": ("500", "503", "429", "reset", "lost", "delay=300ms"),
    "job-take": ("503", "reset", "lost", "delay=300ms"),
    "job-take-batch": ("503", "reset", "lost", "delay=300ms"),
    "job-stream": ("502", "500", "reset", "lost", "delay=300ms"),
    "job-done": ("502", "reset", "lost", "delay=300ms"),
    "ping": ("503", "reset", "delay=300ms"),
}
KINDS = {"stream-native": 0.35, "stream-openai": 0.2, "sync-native": 0.2, "sync-openai": 0.15, "cancel": 0.1}
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")
CURRENT_JOB: contextvars.ContextVar[int] = contextvars.ContextVar("soak_job", default=-1)


@dataclass(frozen=True)
class SoakConfig:
    jobs: int = 3000
    seconds: float = 300.0
    workers: int = 2
    fault_rate: float = 0.01
    kill_every: float | None = 60.0
    seed: int = 1
    job_timeout: float = 90.0  # a job not final (as the client sees it) by then is hung
    in_flight: int = 128  # jobs at once, at most
    ping_interval_ms: int = 1000


@dataclass
class Exchange:
    """One HTTP request the client sent and what came back: a status code, or the error's name."""

    job: int
    method: str
    path: str
    sent: float
    answered: float
    outcome: str

    @property
    def failed(self) -> bool:
        return not self.outcome.isdigit() or int(self.outcome) >= 400


@dataclass
class JobRecord:
    """One job as the client lived it: when sent, accepted, ended, and every item with its time."""

    index: int
    kind: str
    tag: str
    size: int  # items the worker yields (native), or max_tokens (OpenAI-shaped)
    sent: float
    job_id: str | None = None
    accepted: float | None = None
    ended: float | None = None
    final: str | None = None  # the final state the client saw
    error_type: str | None = None  # the job's error type when it failed (worker_lost, ...)
    raised: str | None = None  # the typed error the client raised, "Class: message"
    gap_reported: bool = False  # the client raised a typed error about its stream's items
    attempts: list[list[tuple[float, Any]]] = field(default_factory=list)  # stream items (or output), per run
    retries: int = 0  # /retry calls the client made
    output: Any = None  # the final output of the last run
    hung: bool = False

    @property
    def streamed(self) -> bool:
        return self.kind.startswith("stream")

    @property
    def openai(self) -> bool:
        return self.kind.endswith("openai")


@dataclass(frozen=True)
class EmulatorJob:
    id: str
    tag: str | None
    state: str
    deliveries: int
    error_type: str | None


@dataclass
class History:
    config: SoakConfig
    records: list[JobRecord] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    emulator_jobs: list[EmulatorJob] = field(default_factory=list)
    faults: list[tuple[str, str, str]] = field(default_factory=list)  # the emulator's log of faults struck
    kills: list[str] = field(default_factory=list)
    wall: float = 0.0

    def dump(self, path: Path) -> None:
        """The whole history as JSON lines: config, each job, each exchange, each emulator job, each fault."""
        with path.open("w") as out:
            out.write(json.dumps({"config": dataclasses.asdict(self.config), "kills": self.kills}) + "\n")
            for record in self.records:
                out.write(json.dumps({"job": dataclasses.asdict(record)}, default=str) + "\n")
            for exchange in self.exchanges:
                out.write(json.dumps({"exchange": dataclasses.asdict(exchange)}) + "\n")
            for job in self.emulator_jobs:
                out.write(json.dumps({"emulator_job": dataclasses.asdict(job)}) + "\n")
            for fault in self.faults:
                out.write(json.dumps({"fault": fault}) + "\n")


class RecordingTransport(httpx.AsyncBaseTransport):
    """Every request and its answer into the history, tagged with the job (CURRENT_JOB) that sent it.

    The body is read here, so an answer that breaks half-way is recorded as the error it raises."""

    def __init__(self, exchanges: list[Exchange], clock: Callable[[], float]) -> None:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
        self._inner = httpx.AsyncHTTPTransport(limits=limits)
        self._exchanges = exchanges
        self._clock = clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = self._clock()
        path = "/" + "/".join(request.url.path.split("/")[3:])  # under /v2/<endpoint>
        outcome = "?"
        try:
            response = await self._inner.handle_async_request(request)
            try:
                body = await response.aread()
            finally:
                await response.aclose()
            outcome = str(response.status_code)
            headers = [(k, v) for k, v in response.headers.items() if k.lower() not in ("content-encoding",)]
            return httpx.Response(response.status_code, headers=headers, content=body, request=request)
        except Exception as exc:
            outcome = type(exc).__name__
            raise
        finally:
            self._exchanges.append(Exchange(CURRENT_JOB.get(), request.method, path, sent, self._clock(), outcome))

    async def aclose(self) -> None:
        await self._inner.aclose()


def fault_plan(rate: float, seed: int) -> FaultPlan:
    """`rate` of the requests on each route struck, shared evenly among that route's fault kinds."""
    parts = [
        f"{kind}:{route}:{rate / len(kinds):.6f}" for route, kinds in FAULT_KINDS.items() for kind in kinds if rate > 0
    ]
    return parse_faults(",".join(parts), seed=seed)


def job_input(kind: str, tag: str, size: int) -> Any:
    if kind == "cancel":
        return {"echo": tag, "items": 1, "sleep": 3.0}
    if kind.endswith("openai"):
        request = {"model": "echo", "messages": [{"role": "user", "content": tag}], "max_tokens": size, "stream": True}
        return {"openai_route": "/v1/chat/completions", "openai_input": request}
    return {"echo": tag, "items": size, "delay": 0.02}


def tag_of(data: Any) -> str | None:
    """The soak's tag in a job's input: how an emulator job is matched to the client's record."""
    if not isinstance(data, dict):
        return None
    if "echo" in data:
        return str(data["echo"])
    try:
        return str(data["openai_input"]["messages"][0]["content"])
    except (KeyError, IndexError, TypeError):
        return None


class Soak:
    """Sends the jobs, keeps the history."""

    def __init__(self, config: SoakConfig, client: ServerlessClient, history: History) -> None:
        self.config = config
        self.client = client
        self.history = history
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self) -> None:
        rand = random.Random(self.config.seed)
        gate = asyncio.Semaphore(self.config.in_flight)
        tasks = []
        gap = self.config.seconds / max(1, self.config.jobs)
        for index in range(self.config.jobs):
            await asyncio.sleep(max(0.0, index * gap - self.now()))
            kind = rand.choices(list(KINDS), weights=list(KINDS.values()))[0]
            size = rand.randint(1, 12) if kind != "cancel" else 1
            record = JobRecord(index, kind, f"soak-{self.config.seed}-{index}", size, self.now())
            self.history.records.append(record)
            await gate.acquire()
            tasks.append(asyncio.create_task(self._one(record, gate, rand.uniform(0.1, 1.0))))
        await asyncio.gather(*tasks)

    async def _one(self, record: JobRecord, gate: asyncio.Semaphore, cancel_after: float) -> None:
        CURRENT_JOB.set(record.index)
        try:
            async with asyncio.timeout(self.config.job_timeout):
                await self._job(record, cancel_after)
        except TimeoutError:
            record.hung = True
        except NotusError as exc:
            record.raised = f"{type(exc).__name__}: {exc.message}"
            if isinstance(exc, JobFailed) and exc.status in FINAL and exc.job_id:
                record.final, record.error_type = exc.status, exc.error_type
                record.gap_reported = exc.status == "COMPLETED"  # only a StreamGap fails a completed job
                record.ended = self.now()
        finally:
            gate.release()

    async def _job(self, record: JobRecord, cancel_after: float) -> None:
        data = job_input(record.kind, record.tag, record.size)
        if record.kind == "cancel":
            queued = await self.client.run(data)
            self._accepted(record, queued.id)
            await asyncio.sleep(cancel_after)
            await self.client.cancel(queued.id)
            self._ended(record, await self.client.wait(queued.id, max_wait=self.config.job_timeout))
            return
        job = await (self._follow(record, data) if record.streamed else self._runsync(record, data))
        while job.status.value == "FAILED" and job.error and job.error.type == "worker_lost" and record.retries < 1:
            record.retries += 1  # the promise: a job whose worker was lost may be sent again with /retry
            await self.client.retry(job.id)
            job = await (self._follow(record, None, job.id) if record.streamed else self._wait(record, job.id))
        self._ended(record, job)

    async def _follow(self, record: JobRecord, data: Any, job_id: str | None = None) -> JobStatus:
        items: list[tuple[float, Any]] = []
        record.attempts.append(items)
        async for event in self.client.follow(data, job_id=job_id):
            if isinstance(event, JobAccepted):
                self._accepted(record, event.job_id)
            elif isinstance(event, StreamedItems):
                items += [(self.now(), item) for item in event.items]
            elif isinstance(event, JobEnded):
                return event.job
        raise AssertionError("follow() ended without JobEnded")  # its contract: never

    async def _runsync(self, record: JobRecord, data: Any) -> JobStatus:
        try:
            job = await self.client.runsync(data)
        except JobFailed as exc:
            if exc.job_id is None or exc.status not in FINAL:
                raise
            self._accepted(record, exc.job_id)
            record.attempts.append([])
            return await self.client.status(exc.job_id)
        self._accepted(record, job.id)
        record.attempts.append([(self.now(), item) for item in job.output or []])
        return job

    async def _wait(self, record: JobRecord, job_id: str) -> JobStatus:
        job = await self.client.wait(job_id, max_wait=self.config.job_timeout)
        record.attempts.append([(self.now(), item) for item in job.output or []] if job.output else [])
        return job

    def _accepted(self, record: JobRecord, job_id: str) -> None:
        if record.job_id is None:
            record.job_id, record.accepted = job_id, self.now()

    def _ended(self, record: JobRecord, job: JobStatus) -> None:
        record.final, record.ended, record.output = str(job.status), self.now(), job.output
        record.error_type = job.error.type if job.error else None


# ---- checking the history ---------------------------------------------------------------------------------


@dataclass
class Figures:
    """What the history shows; `goal_met` says whether the promise held."""

    sent: int = 0
    accepted: int = 0
    not_accepted: Counter[str] = field(default_factory=Counter)  # typed error class -> jobs
    ended: Counter[str] = field(default_factory=Counter)  # final state the client saw -> accepted jobs
    lost: int = 0  # accepted, never final as the client saw it (and not hung)
    hung: int = 0
    disagree: int = 0  # final as the client saw it differs from the emulator's final state
    emulator_unfinished: int = 0  # emulator jobs not final at the end
    orphans: int = 0  # emulator jobs the client never got an id for (a /run or /runsync answer lost)
    retried: int = 0  # /retry calls the client made
    delivered_twice: int = 0  # jobs the emulator handed to workers more than once
    silently_duplicated: int = 0  # deliveries beyond 1 + the client's /retry calls
    items_missing: int = 0  # without a typed error
    items_duplicated: int = 0
    items_out_of_order: int = 0
    gaps_reported: int = 0  # stream gaps the client reported with a typed error
    latency: dict[str, list[float]] = field(default_factory=lambda: {"clean": [], "faulted": []})
    faults_struck: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    bad_jobs: list[int] = field(default_factory=list)  # records whose history breaks the promise

    @property
    def goal_met(self) -> bool:
        silent = self.items_missing + self.items_duplicated + self.items_out_of_order
        return self.lost == self.hung == self.silently_duplicated == silent == 0 and self.emulator_unfinished == 0


def item_faults(record: JobRecord) -> tuple[int, int, int]:
    """(missing, duplicated, out of order) items over the record's runs; missing counts only in a run that
    ended COMPLETED without a typed error (a FAILED run, or a reported gap, has told the client)."""
    missing = duplicated = disorder = 0
    for number, run in enumerate(record.attempts):
        last = number == len(record.attempts) - 1
        complete = last and record.final == "COMPLETED" and not record.gap_reported
        items = [item for _t, item in run]
        if record.openai:
            m, d, o = _sse_faults(items, record.size, complete=complete)
        else:
            m, d, o = _indexed_faults(items, record.tag, record.size, complete=complete)
        missing, duplicated, disorder = missing + m, duplicated + d, disorder + o
    return missing, duplicated, disorder


def _indexed_faults(items: list[Any], tag: str, size: int, *, complete: bool) -> tuple[int, int, int]:
    """Native echo items `{"index": i, "echo": tag}`: each index 0..size-1 once, rising."""
    seen: set[int] = set()
    duplicated = disorder = 0
    highest = -1
    for item in items:
        index = item.get("index") if isinstance(item, dict) and item.get("echo") == tag else None
        if not isinstance(index, int):
            duplicated += 1  # not this job's item: counted as one too many
            continue
        if index in seen:
            duplicated += 1
        elif index < highest:
            disorder += 1
        seen.add(index)
        highest = max(highest, index)
    missing = len(set(range(size)) - seen) if complete else 0
    return missing, duplicated, disorder


def _sse_faults(items: list[Any], size: int, *, complete: bool) -> tuple[int, int, int]:
    """OpenAI-route SSE items: `size` chunks (only the last with finish_reason), then `data: [DONE]`. The
    chunks carry no index, so a swap of two middle ones cannot be seen; the count and the ends can."""
    expected = size + 1
    duplicated = max(0, len(items) - expected)
    missing = max(0, expected - len(items)) if complete else 0
    disorder = 0
    for position, item in enumerate(items):
        done = item == "data: [DONE]\n\n"
        finishing = isinstance(item, str) and '"finish_reason": "length"' in item
        if (done and position != len(items) - 1) or (finishing and position != len(items) - 2 and not done):
            disorder += 1
    return missing, duplicated, disorder


_KIND_NAMES = {"status": "HTTP error", "lost": "answer lost"}  # the plan's log names a status fault "status"


def check(history: History) -> Figures:
    figures = Figures(sent=len(history.records), kills=len(history.kills))
    by_tag = {job.tag: job for job in history.emulator_jobs if job.tag is not None}
    faulted_ids = {path for _kind, _op, path in history.faults}
    failed_requests = {exchange.job for exchange in history.exchanges if exchange.failed}
    figures.faults_struck.update(f"{_KIND_NAMES.get(kind, kind)} {op}" for kind, op, _path in history.faults)
    for record in history.records:
        emulator = by_tag.get(record.tag)
        bad = False
        if record.hung:
            figures.hung += 1
            bad = True
        if record.job_id is None:
            figures.not_accepted[(record.raised or "none").split(":")[0]] += 1
            if emulator is not None:
                figures.orphans += 1
            continue
        figures.accepted += 1
        figures.retried += record.retries
        if record.final is None:
            figures.lost += 0 if record.hung else 1
            bad = True
        else:
            figures.ended[record.final] += 1
        if emulator is not None:
            if record.final is not None and emulator.state != record.final:
                figures.disagree += 1
            if emulator.deliveries > 1:
                figures.delivered_twice += 1
            extra = max(0, emulator.deliveries - 1 - record.retries)
            figures.silently_duplicated += extra
            bad = bad or extra > 0
        missing, duplicated, disorder = item_faults(record)
        figures.items_missing += missing
        figures.items_duplicated += duplicated
        figures.items_out_of_order += disorder
        figures.gaps_reported += record.gap_reported
        bad = bad or missing + duplicated + disorder > 0
        if bad:
            figures.bad_jobs.append(record.index)
        if record.kind != "cancel" and record.ended is not None and record.final == "COMPLETED":
            touched = record.index in failed_requests or record.retries or any(record.job_id in p for p in faulted_ids)
            figures.latency["faulted" if touched else "clean"].append(record.ended - record.sent)
    figures.emulator_unfinished = sum(job.state not in FINAL for job in history.emulator_jobs)
    return figures


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def table(figures: Figures, history: History) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f}"

    rows: list[tuple[str, Any]] = [
        ("jobs sent", figures.sent),
        ("accepted (the client got a job id)", figures.accepted),
    ]
    rows += [(f"not accepted: {name}", count) for name, count in sorted(figures.not_accepted.items())]
    rows += [(f"ended {state}", figures.ended.get(state, 0)) for state in FINAL]
    rows += [
        ("lost (accepted, never final as the client saw it)", figures.lost),
        ("client and emulator disagree on the final state", figures.disagree),
        ("emulator jobs not final at the end", figures.emulator_unfinished),
        ("orphans (a job queued whose /run or /runsync answer was lost)", figures.orphans),
        ("/retry the client asked for (worker_lost)", figures.retried),
        ("jobs delivered to a worker twice", figures.delivered_twice),
        ("run twice without the client asking (silently duplicated)", figures.silently_duplicated),
        ("stream items missing without a typed error", figures.items_missing),
        ("stream items duplicated", figures.items_duplicated),
        ("stream items out of order", figures.items_out_of_order),
        ("stream gaps reported with a typed error", figures.gaps_reported),
        (f"hung past {history.config.job_timeout:.0f} s", figures.hung),
    ]
    for name in ("clean", "faulted"):
        values = figures.latency[name]
        rows.append(
            (
                f"latency {name} ({len(values)} jobs) p50 / p99 ms",
                f"{ms(percentile(values, 0.5))} / {ms(percentile(values, 0.99))}",
            )
        )
    rows += [
        ("faults struck", sum(figures.faults_struck.values())),
        ("workers killed", figures.kills),
        ("wall time s", f"{history.wall:.0f}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    goal = "MET" if figures.goal_met else "NOT MET"
    silent = figures.items_missing + figures.items_duplicated + figures.items_out_of_order
    lines.append(
        f"goal: 0 lost ({figures.lost}), 0 silently duplicated ({figures.silently_duplicated}), 0 items missing or "
        f"reordered without a typed error ({silent}), "
        f"0 hung ({figures.hung}): {goal}"
    )
    return "\n".join(lines)


# ---- running it ---------------------------------------------------------------------------------------------


def soak(config: SoakConfig, log_dir: Path) -> History:
    """Start the emulator and workers, send the jobs, collect the history; everything is stopped after."""
    history = History(config)
    plan = fault_plan(config.fault_rate, config.seed)
    emulator_config = EmulatorConfig(sweep_interval=0.1, sync_retention=3600.0, faults=plan)
    harness = Harness.start(log_dir, emulator_config)
    killer: WorkerKiller | None = None
    try:
        command = dataclasses.replace(echo_command(log_dir / "workers"), ping_interval_ms=config.ping_interval_ms)
        with plan_paused(plan):
            endpoint, pool = harness.endpoint(workers=config.workers, command=command)
        pool.restart = True
        pool.max_restarts = 1000  # the killer's kills, not a crash loop

        def busy(pod_id: str) -> bool:
            return bool(harness.emulator.call(lambda: bool(getattr(endpoint.workers.get(pod_id), "in_flight", None))))

        if config.kill_every:
            killer = WorkerKiller([pool], config.kill_every, busy=busy, seed=config.seed).start()
        started = time.monotonic()
        asyncio.run(_send(config, harness, endpoint, history))
        if killer is not None:
            killer.stop()
            history.kills = list(killer.kills)
        plan.clear()  # what is left running (orphans of lost answers) ends on a good day
        with contextlib.suppress(AssertionError):  # an emulator job never final is a figure, not a crash
            wait_for(lambda: all(job.state.final for job in _jobs(harness, endpoint)), 60.0, 0.2)
        history.wall = time.monotonic() - started
        history.emulator_jobs = [
            EmulatorJob(job.id, tag_of(job.input), str(job.state), job.deliveries, _error_type(job.error))
            for job in _jobs(harness, endpoint)
        ]
        history.faults = list(plan.log)
    finally:
        if killer is not None:
            killer.stop()
        harness.close()
    return history


class plan_paused:
    """No faults while the workers start (their first takes and pings): the soak measures jobs."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan

    def __enter__(self) -> None:
        self.rules = list(self.plan.rules)
        self.plan.clear()

    def __exit__(self, *_exc: object) -> None:
        for rule in self.rules:
            self.plan.add(rule)


def _jobs(harness: Harness, endpoint: Endpoint) -> list[Any]:
    return list(harness.emulator.call(lambda: list(endpoint.jobs.values())))


def _error_type(error: str | None) -> str | None:
    try:
        return str(json.loads(error)["type"]) if error else None
    except (ValueError, KeyError, TypeError):
        return None


async def _send(config: SoakConfig, harness: Harness, endpoint: Endpoint, history: History) -> None:
    t0 = time.monotonic()
    transport = RecordingTransport(history.exchanges, lambda: time.monotonic() - t0)
    async with httpx.AsyncClient(transport=transport) as http:
        client = ServerlessClient(endpoint.id, harness.key, base_url=f"{harness.url}/v2", http=http)
        runner = Soak(config, client, history)
        runner.t0 = t0
        await runner.run()


def report_bad(history: History, figures: Figures, limit: int = 5) -> str:
    """The histories of the first jobs that broke the promise: what the client sent, got and streamed."""
    lines: list[str] = []
    by_index = {record.index: record for record in history.records}
    for index in figures.bad_jobs[:limit]:
        record = by_index[index]
        lines.append(f"job {index} ({record.kind}, {record.tag}, {record.size} items) id {record.job_id}")
        lines.append(f"  final {record.final} error {record.error_type} raised {record.raised} hung {record.hung}")
        for exchange in (e for e in history.exchanges if e.job == index):
            lines.append(f"  {exchange.sent:8.3f} {exchange.method} {exchange.path} -> {exchange.outcome}")
        for number, run in enumerate(record.attempts):
            lines.append(f"  run {number}: " + json.dumps([item for _t, item in run])[:400])
        lines += [
            f"  fault {kind} {path}" for kind, _op, path in history.faults if record.job_id and record.job_id in path
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = SoakConfig()
    parser.add_argument("--jobs", type=int, default=defaults.jobs)
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="spread the jobs over this long")
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate, help="share of requests struck")
    parser.add_argument("--kill-every", type=float, default=defaults.kill_every, help="seconds; 0: no kills")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--history", type=Path, help="write the whole history here (JSON lines)")
    add_out_option(parser, "soak")
    args = parser.parse_args()
    if args.workers < 2:
        parser.error("--workers must be 2 or more (a kill must leave a worker serving)")
    config = SoakConfig(
        jobs=args.jobs,
        seconds=args.seconds,
        workers=args.workers,
        fault_rate=args.fault_rate,
        kill_every=args.kill_every or None,
        seed=args.seed,
    )
    log_dir = Path(tempfile.mkdtemp(prefix="soak-"))
    history = soak(config, log_dir)
    history_path = args.history or log_dir / "history.jsonl"
    history.dump(history_path)
    figures = check(history)
    with tee() as printed:
        print(table(figures, history))
        if figures.bad_jobs:
            print("\nfirst histories that break the promise:\n" + report_bad(history, figures))
    print(f"history: {history_path}")
    body = (
        f"{config.jobs} jobs over {config.seconds:.0f} s against the emulator on loopback with {config.workers} runpod "
        f"SDK echo workers, {config.fault_rate:.1%} of the requests on each route struck by a fault (kinds per route: "
        "`benchmarks/soak.py` FAULT_KINDS), a busy worker SIGKILLed every "
        f"{config.kill_every or 0:.0f} s; the client is `ServerlessClient` with its default retry policy. The table "
        "is the benchmark's printout; `lost`, `silently duplicated`, items missing or reordered without a typed "
        "error and `hung` are the promise of docs/faults.md. `not accepted`: the client raised a typed error before "
        "it had a job id (a 5xx on /run or /runsync, or its answer lost, when the job may exist: `orphans` counts "
        "those that did; none was sent again). `stream gaps reported`: a job-stream POST failed mid-stream (the SDK "
        "does not resend it), and the client raised JobFailed naming the job and where its stream broke; a missing "
        "tail is made good from the final output instead.\n\n"
        + text_block(printed.getvalue())
        + "\nThe faults each route may meet, sharing its rate evenly:\n\n"
        + markdown_table(["route", "faults"], [(route, ", ".join(kinds)) for route, kinds in FAULT_KINDS.items()])
        + "\nFaults struck, by kind and route:\n\n"
        + markdown_table(["fault", "times"], sorted(figures.faults_struck.items()))
    )
    data = {
        "config": dataclasses.asdict(config),
        "figures": {
            key: dict(value) if isinstance(value, Counter) else value
            for key, value in vars(figures).items()
            if key not in ("latency", "bad_jobs", "faults_struck")
        },
        "latency_ms": {
            name: {"jobs": len(v), "p50": _ms(percentile(v, 0.5)), "p99": _ms(percentile(v, 0.99))}
            for name, v in figures.latency.items()
        },
        "faults_struck": dict(figures.faults_struck),
        "goal_met": figures.goal_met,
        "bad_jobs": figures.bad_jobs[:50],
    }
    write_results("soak", "Soak: mixed jobs under faults and worker kills", body, data, out=args.out)


if __name__ == "__main__":
    main()
