"""What chat's client (ServerlessClient) does when RunPod's answers go missing, against the real
emulator with faults injected (notus_cli/emulator/faults.py) and a real runpod SDK echo worker.

Only RunPod's cloud is absent: the faults are real dropped connections and real HTTP errors on
loopback. Each test names the promise of docs/faults.md it checks.
"""

from __future__ import annotations

from typing import Any

import pytest

from notus_cli.emulator import Endpoint
from notus_cli.emulator.faults import FaultRule
from notus_cli.errors import EndpointUnreachable
from notus_cli.runpod.protocol.follow import JobAccepted, JobEnded, RetryScheduled, StreamedItems
from notus_cli.runpod.protocol.limits import RetryPolicy
from notus_cli.runpod.serverless import ServerlessClient
from testbed.emulator import Harness

pytestmark = pytest.mark.anyio

POLICY = RetryPolicy(attempts=4, base=0.05, cap=1.0)
ITEMS = [{"index": i, "echo": "f"} for i in range(4)]


@pytest.fixture
def echo(harness: Harness) -> Endpoint:
    endpoint, _pool = harness.endpoint(workers=1)
    return endpoint


async def follow(harness: Harness, endpoint: Endpoint, job_input: Any) -> list[Any]:
    async with ServerlessClient(endpoint.id, harness.key, base_url=f"{harness.url}/v2", retry=POLICY) as client:
        return [event async for event in client.follow(job_input)]


def items_of(events: list[Any]) -> list[Any]:
    return [item for event in events if isinstance(event, StreamedItems) for item in event.items]


def queued(harness: Harness, endpoint: Endpoint) -> int:
    return int(harness.emulator.call(lambda: len(endpoint.jobs)))


async def test_a_lost_run_answer_is_not_sent_again_and_says_a_job_may_exist(harness: Harness, echo: Endpoint) -> None:
    """Promise: a /run whose answer was lost is never resent blindly; the error says a job may exist."""
    before = queued(harness, echo)
    harness.emulator.faults.add(FaultRule("lost", route="run", endpoint=echo.id, count=1))
    with pytest.raises(EndpointUnreachable) as caught:
        await follow(harness, echo, {"echo": "f", "items": 2})
    assert "RunPod may have queued the job" in caught.value.message
    assert "does not send it again" in caught.value.message
    assert caught.value.hint
    assert "notus status" in caught.value.hint
    assert queued(harness, echo) == before + 1, "the job was queued once, and only once"


async def test_a_lost_stream_poll_loses_no_item(harness: Harness, echo: Endpoint) -> None:
    """Promise: a stream's items arrive once and in order. The lost poll took items RunPod will not hand
    out again; they come from the job's final output instead."""
    struck = harness.emulator.faults.struck("lost")
    harness.emulator.faults.add(FaultRule("lost", route="stream", endpoint=echo.id, count=1))
    events = await follow(harness, echo, {"echo": "f", "items": 4, "delay": 0.05})
    assert harness.emulator.faults.struck("lost") == struck + 1
    assert isinstance(events[0], JobAccepted)
    assert items_of(events) == ITEMS
    assert isinstance(events[-1], JobEnded)
    assert str(events[-1].job.status) == "COMPLETED"


async def test_a_refused_stream_poll_is_sent_again(harness: Harness, echo: Endpoint) -> None:
    """A 502 on a read carried nothing out: the poll is retried (with backoff) and nothing is lost."""
    harness.emulator.faults.add(FaultRule("status", route="stream", endpoint=echo.id, status=502, count=1))
    events = await follow(harness, echo, {"echo": "f", "items": 4})
    retries = [event for event in events if isinstance(event, RetryScheduled)]
    assert [event.reply.status for event in retries if event.reply] == [502]
    assert items_of(events) == ITEMS


async def test_a_reset_status_read_is_sent_again(harness: Harness, echo: Endpoint) -> None:
    """A GET whose connection broke is safe to repeat: the final /status is asked again."""
    harness.emulator.faults.add(FaultRule("reset", route="status", endpoint=echo.id, count=1))
    events = await follow(harness, echo, {"echo": "f", "items": 4})
    assert any(isinstance(event, RetryScheduled) and event.reply is None for event in events)
    assert items_of(events) == ITEMS
    assert isinstance(events[-1], JobEnded)
