"""One emulated serverless endpoint: its queue, its jobs, and the workers that pull from it.

Public operations (submit, cancel, retry, purge, health) and the worker protocol (take, stream,
done, stop signals) meet here. Everything runs on the emulator's event loop.

A worker that dies with jobs in flight: those jobs end FAILED with error type `worker_lost`, at
once, and can be sent again with /retry. They are not put back in the queue on their own: a job
may already have streamed part of its answer to a client, and running it again would hand that
client a second, different answer. A job is never delivered to two workers at once, and a late
report from a worker that no longer owns the job (cancelled, timed out, declared lost) is ignored.
How the emulator learns a worker died: the process it started exited (see `workers.py`), or a
worker it did not start went silent for `worker_lease` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from notus_cli.emulator.config import ConcurrencyLimiter, EmulatorConfig, RateLimiter
from notus_cli.emulator.jobs import BadRequest, Job, Policy
from notus_cli.emulator.worker_records import Counts, WorkerRecord, health_of
from notus_cli.runpod.protocol.bodies import done_report, stream_report_item
from notus_cli.runpod.protocol.job_states import JobState
from worker.job_errors import WORKER_LOST, JobError

log = logging.getLogger("notus.emulator")
STOP_RESEND = 1.0
STOP_GIVE_UP = 60.0
UNLISTED_PINGS = 2  # pings in a row that do not list a job in flight before it counts as lost (heartbeat)


class Endpoint:
    def __init__(
        self, endpoint_id: str, *, name: str, worker_key: str, config: EmulatorConfig, max_workers: int
    ) -> None:
        self.id = endpoint_id
        self.name = name
        self.worker_key = worker_key
        self.config = config
        self.max_workers = max_workers
        self.jobs: dict[str, Job] = {}
        self.workers: dict[str, WorkerRecord] = {}
        self.limiter = RateLimiter(config.rate_limits)
        self.in_flight = ConcurrencyLimiter(config.concurrency_limits)
        self.ignored_reports = 0  # job-stream/job-done posts for jobs the worker no longer owns
        self.deliveries = 0  # jobs handed to workers, retries included
        # job-take polls that came while the same worker had one open. RunPod's TakeJob is not safe
        # against that (runpod-python PR #84 "Data Race in TakeJob" made the SDK's takes sequential;
        # PR #358 replaced parallel takes with job-take-batch), so a worker must never do it.
        self.parallel_takes = 0
        self.lb_waiting = 0  # LB requests the gateway holds for a healthy worker: demand (scaler.py)
        self.on_final: Callable[[Job], None] | None = None  # webhooks
        self.closed = False
        self._queue: deque[Job] = deque()
        self._in_queue = 0
        self._completed = self._failed = self._retried = 0
        self._takers: deque[tuple[str, asyncio.Future[None]]] = deque()  # job-take polls waiting, oldest first

    # ---- public side -------------------------------------------------------------------------

    def submit(self, body: dict[str, Any], *, sync: bool) -> Job:
        """Queue a job from a /run or /runsync body. Raises BadRequest (400, or 429 when the queue is full)."""
        if "input" not in body or body["input"] is None:
            raise BadRequest('input is required: send {"input": {...}}')
        limit = max(self.config.min_queue_limit, self.config.queue_limit_per_worker * max(1, self.max_workers))
        if self._in_queue >= limit:
            raise BadRequest(f"the queue holds {self._in_queue} jobs, the most this endpoint accepts", status=429)
        webhook = body.get("webhook")
        if webhook is not None and not (isinstance(webhook, str) and webhook.startswith(("http://", "https://"))):
            raise BadRequest("webhook must be an http:// or https:// URL")
        policy = Policy.parse(
            body.get("policy"),
            default_execution_timeout_ms=self.config.execution_timeout_ms,
            default_ttl_ms=self.config.ttl_ms,
        )
        job_id = f"sync-{uuid.uuid4()}-u1" if sync else f"{uuid.uuid4()}-u1"
        extra = {"s3Config": body["s3Config"]} if "s3Config" in body else {}
        job = Job(job_id, body["input"], sync, policy, time.monotonic(), webhook=webhook, extra=extra)
        self.jobs[job.id] = job
        self._enqueue(job)
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def cancel(self, job: Job) -> None:
        """Cancel a queued or running job; a final job stays as it is."""
        if job.state is JobState.IN_QUEUE:
            self._in_queue -= 1
            self._finish(job, JobState.CANCELLED)
        elif job.state is JobState.IN_PROGRESS:
            self._stop_on_worker(job)
            self._finish(job, JobState.CANCELLED)

    def retry(self, job: Job) -> None:
        """Raises JobStateError unless the job is FAILED or TIMED_OUT."""
        job.requeue(time.monotonic())
        self._retried += 1
        self._enqueue(job)

    def purge(self) -> int:
        """Cancel every queued job; running ones go on."""
        queued = [job for job in self._queue if job.state is JobState.IN_QUEUE]
        self._queue.clear()
        self._in_queue = 0
        for job in queued:
            self._finish(job, JobState.CANCELLED)
        return len(queued)

    def oldest_wait(self, now: float) -> float:
        """Seconds the oldest queued job has waited (0 when none waits): what RunPod's queue-delay scaler reads."""
        return next((now - job.submitted for job in self._queue if job.state is JobState.IN_QUEUE), 0.0)

    def counts(self) -> Counts:
        in_progress = sum(len(worker.in_flight) for worker in self.workers.values())
        return Counts(self._completed, self._failed, in_progress, self._in_queue, self._retried)

    def health(self) -> dict[str, Any]:
        """The /health body."""
        return health_of(self.counts(), self.workers.values()).to_body()

    async def wait_final(self, job: Job, seconds: float) -> bool:
        """Wait up to `seconds` for the job to end; True if it did."""
        deadline = time.monotonic() + seconds
        while not job.state.final and not self.closed:
            if not await job.changed.wait(deadline - time.monotonic()):
                break
        return job.state.final

    async def wait_unread(self, job: Job, hold: float) -> list[Any]:
        """Stream items not returned before; waits up to `hold` seconds for one while the job runs."""
        deadline = time.monotonic() + hold
        while job.cursor == len(job.stream) and not job.state.final and not self.closed:
            if not await job.changed.wait(deadline - time.monotonic()):
                break
        return job.unread()

    # ---- worker side -------------------------------------------------------------------------

    def register(self, pod_id: str, *, label: str = "", local: bool = False) -> WorkerRecord:
        worker = self.workers.get(pod_id)
        if worker is None:
            spawned = time.monotonic() if local else None
            worker = self.workers[pod_id] = WorkerRecord(pod_id, label=label or pod_id, local=local, spawned=spawned)
        return worker

    def seen(self, pod_id: str) -> WorkerRecord:
        """Note contact from a worker; a worker this emulator did not start is registered on first contact."""
        worker = self.register(pod_id)
        if not worker.alive and worker.exit_code is None and not worker.local:
            worker.alive = True  # declared lost by its lease, but it was only slow
            log.info("worker %s is back", pod_id)
        if worker.last_seen is None:
            log.info("worker %s is ready", worker.label)
        worker.last_seen = time.monotonic()
        return worker

    async def take(self, pod_id: str, limit: int, hold: float, gone: Callable[[], Awaitable[bool]]) -> list[Job]:
        """Up to `limit` queued jobs for a worker; waits up to `hold` seconds for one.

        `gone()` says whether the worker hung up meanwhile: a job is never handed to a dead request.
        Waiting pollers are woken one per queued job, in the order they came (no thundering herd).
        """
        worker = self.seen(pod_id)
        if worker.takes_open:
            self.parallel_takes += 1
            log.warning("worker %s asked for jobs while its last job-take was still open", worker.label)
        worker.takes_open += 1
        try:
            return await self._take(worker, limit, hold, gone)
        finally:
            worker.takes_open -= 1

    async def _take(
        self, worker: WorkerRecord, limit: int, hold: float, gone: Callable[[], Awaitable[bool]]
    ) -> list[Job]:
        pod_id = worker.pod_id
        deadline = time.monotonic() + hold
        while worker.alive and not worker.draining and not self.closed:
            if self._in_queue:
                if await gone():
                    break
                jobs = self._pop(limit)
                if jobs:
                    now = time.monotonic()
                    for job in jobs:
                        job.start(pod_id, now)
                        job.worker_started = worker.spawned
                        worker.in_flight.add(job.id)
                    self.deliveries += len(jobs)
                    if self._in_queue:
                        self._wake_one()
                    return jobs
            if not await self._wait_for_job(pod_id, deadline - time.monotonic()):
                return []
        if self._in_queue:
            self._wake_one()  # pass on the wake-up this poller will not use
        return []

    async def _wait_for_job(self, pod_id: str, seconds: float) -> bool:
        if seconds <= 0:
            return False
        entry = (pod_id, asyncio.get_running_loop().create_future())
        self._takers.append(entry)
        try:
            async with asyncio.timeout(seconds):
                await entry[1]
            return True
        except TimeoutError:
            return False
        finally:
            entry[1].cancel()
            if entry in self._takers:  # timed out, or the poll was cancelled
                self._takers.remove(entry)

    def _wake_one(self) -> None:
        while self._takers:
            _pod, waiter = self._takers.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_takers(self, pod_id: str | None = None) -> None:
        """Wake the polls of one worker (or of all): it is stopping, or the endpoint is."""
        for entry in list(self._takers):
            if pod_id is None or entry[0] == pod_id:
                self._takers.remove(entry)
                if not entry[1].done():
                    entry[1].set_result(None)

    def stream_output(self, pod_id: str, job_id: str, body: Any) -> bool:
        job = self._owned(pod_id, job_id)
        if job is None:
            return False
        job.push(stream_report_item(body))
        return True

    def job_done(self, pod_id: str, job_id: str, body: Any) -> bool:
        job = self._owned(pod_id, job_id)
        if job is None:
            return False
        worker = self.workers[pod_id]
        worker.in_flight.discard(job_id)
        worker.completed += 1
        output, error = done_report(body)
        if error is not None:
            self._finish(job, JobState.FAILED, error=error)
        else:
            self._finish(job, JobState.COMPLETED, output=output)
        return True

    async def stop_signals(self, pod_id: str, hold: float) -> list[str]:
        """Job ids the worker must stop; waits up to `hold` seconds for one.

        A stop is sent again every STOP_RESEND seconds until the worker's heartbeat no longer lists
        the job (or STOP_GIVE_UP passes): the SDK ignores a stop that arrives while the job still
        waits in its own queue, before its task exists.
        """
        worker = self.seen(pod_id)
        deadline = time.monotonic() + hold
        while worker.alive and not worker.draining and not self.closed:
            now = time.monotonic()
            for job_id, (first, _last) in list(worker.stops.items()):
                if first and now - first > STOP_GIVE_UP:
                    del worker.stops[job_id]
            due = [job_id for job_id, (_first, last) in worker.stops.items() if now - last >= STOP_RESEND]
            if due:
                for job_id in due:
                    first = worker.stops[job_id][0] or now
                    worker.stops[job_id] = (first, now)
                return due
            pending = [last + STOP_RESEND for _first, last in worker.stops.values()]
            wake_at = min([deadline, *pending])
            if not await worker.wake.wait(wake_at - now) and time.monotonic() >= deadline:
                break
        return []

    def heartbeat(self, pod_id: str, running: set[str]) -> None:
        """A ping listing the worker's jobs (runpod-python rp_ping.py `_send_ping`, `job_id`): stops it
        carried out are done, and a job two pings in a row do not list was lost on the way (its take's
        answer, or its job-done). RunPod does not say what it does then; here the job fails as
        worker_lost, not at executionTimeout (docs/faults.md). Two pings, as a take's answer travels."""
        worker = self.seen(pod_id)
        lost = worker.pinged(running, lost_after=UNLISTED_PINGS)
        for job_id in lost:
            if self._fail_lost(pod_id, job_id, "is not running this job (its job-take answer or its result was lost)"):
                log.warning("job %s: worker %s does not list it in its pings; failed as lost", job_id, worker.label)
        if lost:
            worker.wake.fire()
            self._wake_takers(pod_id)

    def drain(self, pod_id: str) -> None:
        """The worker is being stopped: answer its long polls now and give it no more jobs."""
        worker = self.workers.get(pod_id)
        if worker is not None:
            worker.draining = True
            worker.wake.fire()
            self._wake_takers(pod_id)

    def worker_exited(self, pod_id: str, exit_code: int | None) -> None:
        """The worker's process ended (or, exit_code None, it went silent): fail what it was running."""
        worker = self.workers.get(pod_id)
        if worker is None or (not worker.alive and worker.exit_code is not None):
            return
        worker.alive, worker.exit_code = False, exit_code
        how = f"exited with code {exit_code}" if exit_code is not None else "stopped answering"
        for job_id in sorted(worker.in_flight):
            self._fail_lost(pod_id, job_id, f"running this job {how}")
        worker.in_flight.clear()
        worker.stops.clear()
        worker.wake.fire()
        self._wake_takers(pod_id)
        if not worker.draining:
            log.warning("worker %s %s", worker.label, how)

    def _fail_lost(self, pod_id: str, job_id: str, what: str) -> bool:
        """Fail the job the worker was running as worker_lost ("the worker <what>; send it again ...")."""
        job = self.jobs.get(job_id)
        if job is None or job.state is not JobState.IN_PROGRESS or job.worker_id != pod_id:
            return False
        error = JobError(type=WORKER_LOST, message=f"the worker {what}; send it again with /retry")
        self._finish(job, JobState.FAILED, error=error.to_text())
        return True

    def unhealthy(self, pod_id: str, reason: str) -> None:
        self.register(pod_id).unhealthy = reason[:256] or "fitness check failed"

    def sweep(self, now: float) -> None:
        """Apply the time limits: ttl (queued), executionTimeout (running), result retention, worker lease."""
        for job in list(self.jobs.values()):
            if job.state is JobState.IN_QUEUE and now - job.submitted > job.policy.ttl_ms / 1000:
                self._in_queue -= 1
                self._finish(job, JobState.TIMED_OUT)
            elif job.state is JobState.IN_PROGRESS and job.started is not None:
                if now - job.started > job.policy.execution_timeout_ms / 1000:
                    self._stop_on_worker(job)
                    self._finish(job, JobState.TIMED_OUT)
            elif job.keep_until is not None and now > job.keep_until:
                del self.jobs[job.id]
        for worker in self.workers.values():
            silent = worker.last_seen is not None and now - worker.last_seen > self.config.worker_lease
            if worker.alive and not worker.local and silent:
                self.worker_exited(worker.pod_id, None)

    def close(self) -> None:
        """The emulator is shutting down: every long poll answers now."""
        self.closed = True
        self._wake_takers()
        for worker in self.workers.values():
            worker.wake.fire()
        for job in self.jobs.values():
            job.changed.fire()

    # ---- internals ---------------------------------------------------------------------------

    def _enqueue(self, job: Job) -> None:
        self._queue.append(job)
        self._in_queue += 1
        self._wake_one()

    def _pop(self, limit: int) -> list[Job]:
        jobs: list[Job] = []
        while self._queue and len(jobs) < limit:
            job = self._queue.popleft()
            if job.state is JobState.IN_QUEUE:  # cancelled or timed-out jobs are skipped
                self._in_queue -= 1
                jobs.append(job)
        return jobs

    def _owned(self, pod_id: str, job_id: str) -> Job | None:
        """The job if this worker is running it right now; else the report is late and ignored."""
        self.seen(pod_id)
        job = self.jobs.get(job_id)
        if job is None or job.state is not JobState.IN_PROGRESS or job.worker_id != pod_id:
            self.ignored_reports += 1
            return None
        return job

    def _stop_on_worker(self, job: Job) -> None:
        worker = self.workers.get(job.worker_id or "")
        if worker is not None:
            worker.in_flight.discard(job.id)
            worker.stops[job.id] = (0.0, 0.0)
            worker.wake.fire()

    def _finish(self, job: Job, state: JobState, *, output: Any = None, error: str | None = None) -> None:
        retention = self.config.sync_retention if job.sync else self.config.run_retention
        job.finish(state, time.monotonic(), retention, output=output, error=error)
        if state is JobState.COMPLETED:
            self._completed += 1
        elif state in (JobState.FAILED, JobState.TIMED_OUT):
            self._failed += 1
        if self.on_final is not None:
            self.on_final(job)
