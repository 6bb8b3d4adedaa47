"""The soak (benchmarks/soak.py) in short: a few hundred mixed jobs, faults on every route, one worker
kill, checked against docs/faults.md's promise; and the checks themselves on canned histories.

The soak runs the real emulator on loopback with real runpod SDK echo worker processes; only RunPod's
cloud is absent. The follower tests feed canned answers (the machine never touches the network).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.soak import History, JobRecord, SoakConfig, check, soak, table
from notus_cli.emulator.faults import FaultRule
from notus_cli.errors import EndpointUnreachable
from notus_cli.runpod.protocol.follow import JobEnded, JobFollower, StreamedItems, StreamGap
from notus_cli.runpod.protocol.limits import RetryPolicy
from notus_cli.runpod.serverless import ServerlessClient
from testbed.emulator import Harness

NO_WAIT = RetryPolicy(attempts=3, base=0.0, jitter=False)


def answer(body: Any) -> bytes:
    return json.dumps(body).encode()


def streamed(items: list[Any], output: Any, policy: RetryPolicy = NO_WAIT) -> list[Any]:
    """The events of a follower of job j whose /stream brought `items`, then the job completed with `output`."""
    follower = JobFollower(job_id="j", retry=policy)
    events: list[Any] = []
    follower.next_call()
    events += follower.receive(200, answer({"status": "IN_PROGRESS", "stream": [{"output": i} for i in items]}))
    follower.next_call()
    events += follower.receive(200, answer({"status": "COMPLETED", "stream": []}))
    follower.next_call()
    events += follower.receive(200, answer({"id": "j", "status": "COMPLETED", "output": output}))
    assert isinstance(events[-1], JobEnded)
    return events


def test_a_stream_that_skipped_an_item_is_a_typed_gap() -> None:
    """The soak's find: a job-stream POST reset (the SDK does not send it again) left a hole in /stream,
    and the client delivered the rest as if nothing was missing. Now the final output shows the hole."""
    events = streamed([0, 1, 3], [0, 1, 2, 3])
    gap = next(event for event in events if isinstance(event, StreamGap))
    assert gap == StreamGap("j", 2, skipped=True)
    assert "skipped items after the first 2" in gap.to_error().message


def test_a_stream_that_missed_its_last_items_gets_them_from_the_output() -> None:
    events = streamed([0, 1], [0, 1, 2, 3])
    assert [event.items for event in events if isinstance(event, StreamedItems)] == [(0, 1), (2, 3)]
    assert not any(isinstance(event, StreamGap) for event in events)


def test_a_stream_whose_only_item_was_lost_gets_it_from_the_output() -> None:
    """The soak's second find: a one-item job whose one job-stream POST was reset streamed nothing, and
    the client delivered an empty answer for a COMPLETED job."""
    events = streamed([], [{"index": 0}])
    assert [event.items for event in events if isinstance(event, StreamedItems)] == [({"index": 0},)]


def test_an_output_that_is_no_aggregate_leaves_the_stream_as_it_came() -> None:
    """A generator without return_aggregate_stream completes with output []: nothing to check against."""
    events = streamed([0, 1], [])
    assert [event.items for event in events if isinstance(event, StreamedItems)] == [(0, 1)]
    assert not any(isinstance(event, StreamGap) for event in events)


def test_a_load_generator_is_not_made_good_from_the_output() -> None:
    """bench's policy counts faults instead of hiding them: no tail filled in, no gap raised."""
    events = streamed([0, 1], [0, 1, 2], RetryPolicy(server_errors=False))
    assert [event.items for event in events if isinstance(event, StreamedItems)] == [(0, 1)]


@pytest.mark.anyio
async def test_a_lost_runsync_answer_says_a_job_may_exist(harness: Harness) -> None:
    """The soak's third find: a /runsync whose answer was lost said only "unreachable", though its job
    was queued (and ran); it now says what a lost /run says."""
    endpoint, _pool = harness.endpoint(workers=1)
    harness.emulator.faults.add(FaultRule("lost", route="runsync", endpoint=endpoint.id, count=1))
    async with ServerlessClient(endpoint.id, harness.key, base_url=f"{harness.url}/v2") as client:
        with pytest.raises(EndpointUnreachable, match="RunPod may have queued the job"):
            await client.runsync({"echo": "s"})
    assert harness.emulator.call(lambda: len(endpoint.jobs)) == 1, "the job was queued once"


def test_the_check_counts_what_breaks_the_promise() -> None:
    history = History(SoakConfig(jobs=3))

    def record(index: int, items: list[int], final: str | None, **fields: Any) -> JobRecord:
        tag = f"t{index}"
        job = JobRecord(index, "stream-native", tag, 4, 0.0, job_id=f"j{index}", final=final, ended=1.0, **fields)
        job.attempts.append([(0.5, {"index": i, "echo": tag}) for i in items])
        return job

    history.records = [
        record(0, [0, 1, 2, 3], "COMPLETED"),
        record(1, [0, 2, 1, 1], "COMPLETED"),  # 3 missing, 1 out of order, 1 twice
        record(2, [0], None),  # accepted, never final
        record(3, [0, 1], "COMPLETED", gap_reported=True),  # missing, but a typed error said so
    ]
    figures = check(history)
    assert (figures.accepted, figures.lost, figures.gaps_reported) == (4, 1, 1)
    assert (figures.items_missing, figures.items_duplicated, figures.items_out_of_order) == (1, 1, 1)
    assert figures.bad_jobs == [1, 2]
    assert not figures.goal_met
    assert "NOT MET" in table(figures, history)


def test_a_short_soak_meets_the_goal(tmp_path: Path) -> None:
    """A few hundred jobs, 1% of every route's requests faulted, one worker killed mid-job."""
    config = SoakConfig(jobs=300, seconds=24.0, workers=2, fault_rate=0.01, kill_every=14.0, seed=7)
    history = soak(config, tmp_path)
    figures = check(history)
    printed = table(figures, history)
    assert figures.goal_met, printed
    assert figures.kills >= 1, printed
    assert figures.disagree == 0, printed
    assert figures.accepted >= 0.9 * figures.sent, printed
    assert figures.ended["COMPLETED"] >= 0.7 * figures.sent, printed
    assert figures.ended["CANCELLED"] > 0, printed
    assert sum(figures.faults_struck.values()) > 0, printed
    assert len(history.exchanges) > figures.sent, "every request is in the history"
    assert len(history.emulator_jobs) >= figures.accepted
