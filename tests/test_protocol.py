"""notus_cli.runpod.protocol on its own: no server, canned answers, so each rule is checked exactly.

Bodies round-trip (what the emulator writes is what the clients read), the follower asks for the
calls RunPod's sequence needs, and the limits and retry policy compute what they promise.
"""

from __future__ import annotations

import json

import pytest

from notus_cli.errors import AuthError, JobFailed, RunPodQueryError, RunPodRateLimited
from notus_cli.runpod.protocol import routes
from notus_cli.runpod.protocol.bodies import Health, JobStatus, StreamReply, done_report, item_chunks
from notus_cli.runpod.protocol.follow import (
    AnswerLost,
    CallRefused,
    JobAccepted,
    JobEnded,
    JobFollower,
    RetryScheduled,
    StreamedItems,
    StreamGap,
)
from notus_cli.runpod.protocol.job_states import JobState
from notus_cli.runpod.protocol.limits import PollBudget, RetryPolicy, retry_after_header, retry_after_seconds
from notus_cli.runpod.protocol.replies import ErrorReply

NO_WAIT = RetryPolicy(attempts=3, base=0.0, jitter=False)


def answer(body: object) -> bytes:
    return json.dumps(body).encode()


def test_a_streamed_job_is_run_then_stream_until_final_and_empty_then_status() -> None:
    follower = JobFollower({"x": 1}, retry=NO_WAIT, poll_pause=0.2)
    sent = follower.next_call()
    assert sent is not None
    assert (sent.method, sent.path, sent.body, sent.idempotent) == ("POST", "/run", {"input": {"x": 1}}, False)
    assert follower.receive(200, answer({"id": "j1", "status": "IN_QUEUE"})) == [JobAccepted("j1")]
    poll = follower.next_call()
    assert poll is not None
    assert (poll.path, poll.paced, poll.wait) == ("/stream/j1", True, 0.0)
    assert follower.receive(200, answer({"status": "IN_PROGRESS", "stream": []}), took=0.01) == []
    quick = follower.next_call()
    assert quick is not None
    assert quick.wait == 0.2, "an instant empty answer: the next poll waits"
    events = follower.receive(200, answer({"status": "COMPLETED", "stream": [{"output": "a"}, {"output": "b"}]}))
    assert events == [StreamedItems(("a", "b"), "COMPLETED")], "a final poll with items is not the end yet"
    again = follower.next_call()
    assert again is not None
    assert again.path == "/stream/j1"
    assert follower.receive(200, answer({"status": "COMPLETED", "stream": []})) == []
    status = follower.next_call()
    assert status is not None
    assert (status.method, status.path) == ("GET", "/status/j1")
    (ended,) = follower.receive(200, answer({"id": "j1", "status": "COMPLETED", "delayTime": 5, "output": ["a"]}))
    assert isinstance(ended, JobEnded)
    assert (ended.job.status, ended.job.delay_time_ms, ended.job.result) == (JobState.COMPLETED, 5, "a")
    assert follower.next_call() is None


def test_a_failed_stream_keeps_its_error_when_status_has_none() -> None:
    follower = JobFollower(job_id="j2", retry=NO_WAIT)
    follower.next_call()
    follower.receive(200, answer({"status": "FAILED", "stream": [], "error": "boom"}))
    follower.next_call()
    (ended,) = follower.receive(200, answer({"id": "j2", "status": "FAILED"}))
    assert isinstance(ended, JobEnded)
    failure = ended.job.failure()
    assert isinstance(failure, JobFailed)
    assert "boom" in failure.message


def test_429_is_retried_with_retry_after_then_refused_when_attempts_run_out() -> None:
    follower = JobFollower({}, retry=RetryPolicy(attempts=2, cap=5.0))
    follower.next_call()
    (retry,) = follower.receive(429, answer({"error": "slow down"}), retry_after="3")
    assert isinstance(retry, RetryScheduled)
    assert retry.wait == 3.0
    resent = follower.next_call()
    assert resent is not None
    assert (resent.path, resent.wait) == ("/run", 3.0)
    (refused,) = follower.receive(429, answer({"error": "slow down"}), retry_after="3")
    assert isinstance(refused, CallRefused)
    assert isinstance(refused.reply.to_error(), RunPodRateLimited)
    assert follower.next_call() is None


def test_a_5xx_is_retried_only_where_sending_twice_is_harmless() -> None:
    run = JobFollower({}, retry=NO_WAIT)
    run.next_call()
    assert isinstance(run.receive(503, b"busy")[0], CallRefused), "a retried /run could queue the work twice"
    poll = JobFollower(job_id="j", retry=NO_WAIT)
    poll.next_call()
    assert isinstance(poll.receive(503, b"busy")[0], RetryScheduled)
    assert run.next_call() is None


def test_a_lost_run_answer_is_reported_not_resent() -> None:
    run = JobFollower({}, retry=NO_WAIT)
    run.next_call()
    (lost,) = run.connection_failed(connected=True)
    assert lost == AnswerLost("/run")
    assert run.next_call() is None
    assert "may have queued the job" in lost.to_error("http://x/v2/e").message
    never_connected = JobFollower({}, retry=NO_WAIT)
    never_connected.next_call()
    assert isinstance(never_connected.connection_failed(connected=False)[0], RetryScheduled), "nothing was sent"


def lost_poll(items_before: int) -> JobFollower:
    """A follower of job j that got `items_before` items, then lost a /stream answer."""
    follower = JobFollower(job_id="j", retry=NO_WAIT)
    follower.next_call()
    follower.receive(200, answer({"status": "IN_PROGRESS", "stream": [{"output": i} for i in range(items_before)]}))
    follower.next_call()
    assert follower.connection_failed(connected=True) == []
    return follower


def test_a_lost_stream_poll_is_made_good_from_the_final_output() -> None:
    follower = lost_poll(2)
    asked = follower.next_call()
    assert asked is not None
    assert asked.path == "/status/j", "no more /stream: its lost items are not sent twice"
    assert follower.receive(200, answer({"id": "j", "status": "IN_PROGRESS"})) == []
    again = follower.next_call()
    assert again is not None
    assert (again.path, again.wait) == ("/status/j", 0.5)
    events = follower.receive(200, answer({"id": "j", "status": "COMPLETED", "output": [0, 1, 2, 3]}))
    assert events[0] == StreamedItems((2, 3), "COMPLETED")
    assert isinstance(events[1], JobEnded)
    assert follower.next_call() is None


def test_a_stream_gap_the_output_cannot_fill_is_said() -> None:
    follower = lost_poll(3)
    follower.next_call()
    events = follower.receive(200, answer({"id": "j", "status": "COMPLETED", "output": {"not": "a list"}}))
    assert events[0] == StreamGap("j", 3)
    assert "after the first 3" in events[0].to_error().message
    assert isinstance(events[1], JobEnded)


def test_a_load_generator_counts_a_lost_poll_instead_of_making_it_good() -> None:
    counting = RetryPolicy(server_errors=False)
    follower = JobFollower(job_id="j", retry=counting)
    follower.next_call()
    assert follower.connection_failed(connected=True) == []
    assert not follower.pending


def test_a_body_that_is_not_a_job_is_refused_as_a_bad_response() -> None:
    follower = JobFollower({}, retry=NO_WAIT)
    follower.next_call()
    (refused,) = follower.receive(200, answer({"status": "IN_QUEUE"}))
    assert isinstance(refused, CallRefused)
    assert refused.reply.cause == "bad_response"


def test_bodies_round_trip() -> None:
    job = JobStatus("j", JobState.FAILED, 10, 20, None, '{"type": "invalid_request", "message": "no"}', "w1")
    assert JobStatus.from_body(job.to_body()) == job
    assert job.error is not None
    assert job.error.type == "invalid_request"
    done = JobStatus("j", JobState.COMPLETED, output=[1])
    assert JobStatus.from_body(done.to_body()) == done
    assert "output" not in JobStatus("j", JobState.IN_QUEUE, output=[1]).to_body()
    reply = StreamReply(JobState.IN_PROGRESS, ({"a": 1}, "data: x\n\n"))
    assert StreamReply.from_body(reply.to_body()) == reply
    health = Health({"inQueue": 2}, {"idle": 1, "running": 1, "initializing": 3})
    assert Health.from_body(health.to_body()) == health
    assert (health.in_queue, health.ready_workers, health.starting_workers) == (2, 2, 3)
    assert done_report({"error": {"type": "x"}}) == (None, '{"type": "x"}')
    assert done_report({"output": [1]}) == ([1], None)
    with pytest.raises(ValueError, match="unknown job status"):
        JobStatus.from_body({"id": "j", "status": "DONE"})


def test_error_bodies_of_every_shape_become_one_reply() -> None:
    assert ErrorReply.read(404, b'{"error": "job x not found"}').message == "job x not found"
    assert ErrorReply.read(400, b'{"error": {"message": "bad", "type": "x"}}').message == "bad"
    assert ErrorReply.read(502, b"<html>bad gateway</html>").message == "<html>bad gateway</html>"
    assert isinstance(ErrorReply.read(401, b"").to_error(), AuthError)
    assert isinstance(ErrorReply.read(404, b"{}").to_error(), RunPodQueryError)


def test_sse_items_become_chunks_and_an_error_event_fails() -> None:
    chunk = {"choices": [{"delta": {"content": "hi"}}]}
    assert item_chunks(chunk) == [chunk]
    assert item_chunks(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n") == [chunk]
    with pytest.raises(JobFailed, match="boom"):
        item_chunks('data: {"error": {"message": "boom"}}\n\n')


def test_limits_and_backoff() -> None:
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("soon") is None
    assert retry_after_header(0.2) == "1"
    assert retry_after_header(1.5) == "2"
    policy = RetryPolicy(base=1.0, cap=4.0, jitter=False)
    assert [policy.delay(n) for n in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert policy.delay(0, "30") == 4.0, "Retry-After is capped too"
    budget = PollBudget(per_second=10, burst=2, concurrent=1)
    waits = [budget.reserve(0.0) for _ in range(4)]
    assert waits == [0.0, 0.0, pytest.approx(0.1), pytest.approx(0.2)]
    default = PollBudget()
    assert default.burst + default.per_second * 10 <= 2000


def test_route_paths() -> None:
    assert routes.STREAM.fill(job_id="j") == "/stream/j"
    assert routes.OPENAI.fill(path="chat/completions") == "/openai/v1/chat/completions"
    assert routes.openai_base("http://h/v2/e") == "http://h/v2/e/openai/v1"
    hooks = routes.worker_webhooks("http://h/v2/e", "?gpu=cpu")
    assert hooks["RUNPOD_WEBHOOK_GET_JOB"] == "http://h/v2/e/job-take/$ID?gpu=cpu"
    assert hooks["RUNPOD_WEBHOOK_POST_OUTPUT"] == "http://h/v2/e/job-done/$RUNPOD_POD_ID/$ID?gpu=cpu"
