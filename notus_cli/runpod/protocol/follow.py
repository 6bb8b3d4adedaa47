"""The calls a client makes to RunPod, as a machine that says what to send next (h11's style).

A transport asks `next_call()`, sends it (after `call.wait` seconds, through its /stream pacer when
`call.paced`), and hands the answer to `receive()`, which returns what happened as events. The
machine never touches the network or the clock, so the httpx client (chat) and the aiohttp sender
(bench) follow one job the same way, and tests can drive it with canned answers.

    JobFollower:  POST /run ──► GET /stream/{id} ... until the job is final and nothing is left
                               ──► GET /status/{id} (RunPod's delayTime and executionTime) ──► JobEnded
    Retrying:     one call's retries under a RetryPolicy (429 always; 5xx and timeouts when safe)

When an answer is lost on the way (the connection opened, then broke or timed out), what was asked
may have been carried out. A lost /run may have queued the job: it is never sent again (AnswerLost;
the caller is told no id came back). A lost /stream poll may have taken items RunPod will not send
again (it hands out each item once), so the follower stops reading /stream, waits on /status for the
job's end, and delivers what it had not yet from the final output, the list of every item the worker
yielded (runpod-python `return_aggregate_stream`): items still arrive once and in order, only later.
Should that list not hold them, StreamGap says how many items arrived before the gap.
A stream can also skip an item with no poll lost: the worker's job-stream POST for it failed (the
runpod SDK does not send it again after a reset, runpod-python rp_http.py `_transmit`), so /stream
never had it. So when a streamed job completes, the items handed out are checked against the final
output: a missing tail is delivered from it, a gap with later items already delivered is a StreamGap.

The stream loop follows runpod-python's `Job.stream()` (runpod/endpoint/runner.py): poll while the
job is not final or a poll still brought items. A server that answers a poll at once with nothing
new (rather than holding it open, as RunPod and the emulator do) is asked again after `poll_pause`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from notus_cli.errors import EndpointUnreachable, JobFailed
from notus_cli.runpod.protocol import routes
from notus_cli.runpod.protocol.bodies import JobStatus, StreamReply, job_request
from notus_cli.runpod.protocol.job_states import JobState
from notus_cli.runpod.protocol.limits import RetryPolicy
from notus_cli.runpod.protocol.replies import ErrorReply
from notus_cli.runpod.protocol.routes import RouteSpec


@dataclass(frozen=True)
class Call:
    """One HTTP request, relative to the endpoint's base URL."""

    route: RouteSpec
    method: str
    path: str
    body: Any = None
    params: Mapping[str, str] | None = None
    wait: float = 0.0  # seconds to wait before sending (a backoff, or the pause between instant polls)
    paced: bool = False  # counts against the client's /stream budget (limits.PollBudget)
    idempotent: bool = True  # safe to send twice (a 5xx or a timeout may be retried)

    @property
    def asked(self) -> str:
        """What was asked, for messages: the path under the endpoint, e.g. /stream/<job id>."""
        return self.path


def call(
    route: RouteSpec,
    *,
    job_id: str = "",
    body: Any = None,
    params: Mapping[str, str] | None = None,
    idempotent: bool | None = None,
) -> Call:
    """The call for a route. /run, /runsync, /retry and the OpenAI route's POSTs are not idempotent."""
    method = route.methods[0]
    path = route.fill(job_id=job_id) if "{job_id}" in route.path else route.path
    if idempotent is None:
        idempotent = route not in (routes.RUN, routes.RUNSYNC, routes.RETRY)
    return Call(route, method, path, body, params, idempotent=idempotent, paced=route is routes.STREAM)


def openai_call(method: str, subpath: str, body: Any = None) -> Call:
    """A call on the OpenAI route (`subpath` under /openai/v1, e.g. routes.OPENAI_CHAT_COMPLETIONS)."""
    path = routes.OPENAI.fill(path=subpath.lstrip("/"))
    return Call(routes.OPENAI, method, path, body, idempotent=method == "GET")


@dataclass(frozen=True)
class JobAccepted:
    job_id: str


@dataclass(frozen=True)
class StreamedItems:
    """Items a /stream poll brought (never empty), and the job's state then."""

    items: tuple[Any, ...]
    state: str


@dataclass(frozen=True)
class JobEnded:
    """The job is final; `job` is its /status (with the /stream answer's error if /status had none)."""

    job: JobStatus


@dataclass(frozen=True)
class CallRefused:
    """A call failed for good (after its retries); nothing more will be sent."""

    reply: ErrorReply


@dataclass(frozen=True)
class RetryScheduled:
    """The last call is sent again after `wait` seconds; `reply` is None for a connection that failed."""

    reply: ErrorReply | None
    wait: float


@dataclass(frozen=True)
class AnswerLost:
    """A call that may have been carried out got no answer, and is not sent again (e.g. a /run)."""

    asked: str
    cause: str = ""  # how it was lost, e.g. "timed out (ReadTimeout)"

    def to_error(self, endpoint_url: str) -> EndpointUnreachable:
        how = f" ({self.cause})" if self.cause else ""
        return EndpointUnreachable(
            f"the answer to {self.asked} at {endpoint_url} was lost on the way{how}: RunPod may have queued the job, "
            "but no job id came back, and Notus does not send it again (that could run it twice)",
            hint="look at the endpoint's queue (`notus status`, or /health) before you send it again",
        )


def answer_lost(sent: Call, *, connected: bool, cause: str = "") -> AnswerLost | None:
    """The AnswerLost for a call whose connection opened and then failed, when sending it again could
    repeat its work (/run, /runsync, /retry); None when it is safe to retry or was never sent."""
    return AnswerLost(sent.asked, cause) if connected and not sent.idempotent else None


@dataclass(frozen=True)
class StreamGap:
    """The job ended, but items after the first `delivered` were lost with a /stream answer and its
    final output does not hold them (a job that is not a generator's aggregate); or, `skipped`, the
    stream skipped items after the first `delivered` and later ones were handed out already."""

    job_id: str
    delivered: int
    skipped: bool = False

    def to_error(self) -> JobFailed:
        lost = (
            "skipped items after the first {n} (later items arrived), so what it streamed is not its whole output"
            if self.skipped
            else "lost items after the first {n} and its final output does not hold them"
        )
        return JobFailed(
            f"job {self.job_id} completed, but its stream " + lost.format(n=self.delivered),
            hint=f"its whole output is at /status/{self.job_id} while RunPod keeps the result",
            job_id=self.job_id,
            status=str(JobState.COMPLETED),
        )


FollowEvent = JobAccepted | StreamedItems | JobEnded | CallRefused | RetryScheduled | AnswerLost | StreamGap
RECOVER_PAUSE = 0.5  # between /status polls while a job whose /stream answer was lost runs on


class Retrying:
    """The retries of one call at a time under a policy; `reset()` when a new call begins."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    def after_reply(self, sent: Call, status: int, retry_after: str | None) -> RetryScheduled | None:
        """A RetryScheduled if this answer should be sent again; None: take it as it is."""
        if status < 400 or not self.policy.retries(status, idempotent=sent.idempotent):
            return None
        return self._again(ErrorReply(status, "", None, sent.asked), retry_after)

    def after_failure(self, sent: Call, *, connected: bool) -> RetryScheduled | None:
        """No answer came: a connection never opened is retried on any call; a broken one only if idempotent."""
        if connected and not (self.policy.server_errors and sent.idempotent):
            return None
        return self._again(None, None)

    def _again(self, reply: ErrorReply | None, retry_after: str | None) -> RetryScheduled | None:
        if self.attempt + 1 >= self.policy.attempts:
            return None
        wait = self.policy.delay(self.attempt, retry_after)
        self.attempt += 1
        return RetryScheduled(reply, wait)


class JobFollower:
    """One streamed job from /run (or from a known `job_id`) to its final /status."""

    def __init__(
        self,
        job_input: Any = None,
        *,
        job_id: str | None = None,
        retry: RetryPolicy | None = None,
        poll_pause: float = 0.2,
    ) -> None:
        self.job_id = job_id
        self.poll_pause = poll_pause
        self.retrying = Retrying(retry or RetryPolicy())
        self.stream_error: Any = None
        self.delivered = 0  # stream items handed out so far
        self.items: list[Any] = []  # those items, checked against the final output at the end
        self.recovering = False  # a /stream answer was lost: the rest comes from the final output
        self._next: Call | None
        if job_id is None:
            self._next = call(routes.RUN, body=job_request(job_input))
        else:
            self._next = call(routes.STREAM, job_id=job_id)
        self._sent: Call | None = None

    @property
    def done(self) -> bool:
        return self._next is None and self._sent is None

    def next_call(self) -> Call | None:
        """What to send now; None once the job has ended or a call was refused for good."""
        self._sent, self._next = self._next, None
        return self._sent

    def receive(
        self, status: int, body: bytes, *, retry_after: str | None = None, took: float = 0.0
    ) -> list[FollowEvent]:
        """The answer to the last call (`took`: seconds it took). Returns what happened."""
        sent = self._take_sent()
        retry = self.retrying.after_reply(sent, status, retry_after)
        if retry is not None:
            self._next = replace(sent, wait=retry.wait)
            return [
                RetryScheduled(ErrorReply.read(status, body, retry_after=retry_after, asked=sent.asked), retry.wait)
            ]
        if status >= 400:
            return [CallRefused(ErrorReply.read(status, body, retry_after=retry_after, asked=sent.asked))]
        self.retrying.reset()
        try:
            data = json.loads(body)
            if sent.route is routes.RUN:
                return self._accepted(JobStatus.from_body(data))
            if sent.route is routes.STREAM:
                return self._streamed(StreamReply.from_body(data), took)
            return self._ended(JobStatus.from_body(data))
        except (ValueError, UnicodeDecodeError) as exc:
            return [CallRefused(ErrorReply.malformed(str(exc), sent.asked))]

    def connection_failed(self, *, connected: bool) -> list[FollowEvent]:
        """The last call got no answer (`connected`: the connection opened, then broke or timed out).

        Returns a RetryScheduled; an AnswerLost for a call that may have been carried out and must not
        be repeated; or nothing: then, if `pending`, the follower goes on (a lost /stream poll switches
        it to /status), else the transport reports its own error and stops."""
        sent = self._take_sent()
        safe = self.retrying.policy.server_errors  # a load generator's policy counts faults instead
        if connected and safe and sent.route is routes.STREAM and self.job_id is not None:
            self.recovering = True  # the poll may have taken items: read the rest from the final output
            self._next = call(routes.STATUS, job_id=self.job_id)
            return []
        lost = answer_lost(sent, connected=connected)
        if lost is not None:
            return [lost]
        retry = self.retrying.after_failure(sent, connected=connected)
        if retry is None:
            return []
        self._next = replace(sent, wait=retry.wait)
        return [retry]

    @property
    def pending(self) -> bool:
        """Whether the follower has a next call to make."""
        return self._next is not None

    def _take_sent(self) -> Call:
        if self._sent is None:
            raise RuntimeError("receive() without a call sent: ask next_call() first")
        sent, self._sent = self._sent, None
        return sent

    def _accepted(self, job: JobStatus) -> list[FollowEvent]:
        self.job_id = job.id
        self._next = call(routes.STREAM, job_id=job.id)
        return [JobAccepted(job.id)]

    def _streamed(self, reply: StreamReply, took: float) -> list[FollowEvent]:
        assert self.job_id is not None
        if reply.raw_error is not None:
            self.stream_error = reply.raw_error
        if reply.ended:
            self._next = call(routes.STATUS, job_id=self.job_id)
            return []
        wait = self.poll_pause if not reply.items and took < self.poll_pause else 0.0
        self._next = call(routes.STREAM, job_id=self.job_id)
        self._next = replace(self._next, wait=wait)
        self.delivered += len(reply.items)
        self.items += reply.items
        return [StreamedItems(reply.items, str(reply.status))] if reply.items else []

    def _ended(self, job: JobStatus) -> list[FollowEvent]:
        if self.recovering and not job.final:
            self._next = replace(call(routes.STATUS, job_id=job.id), wait=RECOVER_PAUSE)
            return []
        if job.raw_error is None and self.stream_error is not None:
            job = replace(job, raw_error=self.stream_error)
        checks = self.recovering or self.retrying.policy.server_errors  # bench's counts faults instead
        events = self._reconcile(job) if checks and job.status is JobState.COMPLETED else []
        return [*events, JobEnded(job)]

    def _reconcile(self, job: JobStatus) -> list[FollowEvent]:
        """The items handed out against the final output (the aggregate of every item the worker
        yielded): deliver the tail the stream did not bring (all of it, when its only job-stream POST
        failed), or say where the stream broke. A list shorter than what was streamed is no aggregate
        (a generator's output without return_aggregate_stream is []), nor is anything but a list; a
        stream that lost no poll is then taken as it came."""
        output = job.output
        if not isinstance(output, list) or len(output) < self.delivered:
            return [StreamGap(job.id, self.delivered)] if self.recovering else []
        if output[: self.delivered] != self.items:
            first = next(i for i, (got, want) in enumerate(zip(self.items, output, strict=False)) if got != want)
            return [StreamGap(job.id, first, skipped=True)]
        rest = tuple(output[self.delivered :])
        self.delivered += len(rest)
        self.items += rest
        return [StreamedItems(rest, str(job.status))] if rest else []
