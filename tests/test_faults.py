"""Data-plane faults in the emulator (notus_cli/emulator/faults.py): the spec, and each fault over real HTTP.

Nothing is faked: the emulator serves on loopback and httpx talks to it; only RunPod's cloud is absent.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from notus_cli.emulator.faults import FaultRule, FaultSpecError, parse_faults
from notus_cli.emulator.worker_killer import WorkerKiller
from testbed.common import wait_for
from testbed.emulator import Harness, echo_command


def test_a_spec_parses_into_rules_and_a_kill_interval() -> None:
    plan = parse_faults("lost:job-take:1%, 502:stream:3x, delay=500ms:run@abc:0.1, reset:*:1%, kill:60s")
    assert [(r.kind, r.route, r.endpoint) for r in plan.rules] == [
        ("lost", "job-take", None),
        ("status", "stream", None),
        ("delay", "run", "abc"),
        ("reset", "*", None),
    ]
    assert plan.rules[1].count == 3
    assert plan.rules[2].delay == 0.5
    assert plan.kill_every == 60.0


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("lost:jobtake:1%", "route 'jobtake'"),
        ("418:run:1%", "fault '418'"),
        ("lost:run:200%", "rate '200%'"),
        ("kill:5", "'5' must be a duration"),
        ("lost:run", "FAULT:ROUTE"),
    ],
)
def test_a_bad_spec_names_the_part_and_what_it_may_be(spec: str, named: str) -> None:
    with pytest.raises(FaultSpecError, match=named):
        parse_faults(spec)


def test_status_reset_and_lost_faults_strike_the_counted_requests(harness: Harness) -> None:
    endpoint, _pool = harness.endpoint()
    faults = harness.emulator.faults
    with harness.http(endpoint.id) as client:
        faults.add(FaultRule("status", route="health", status=503, count=1))
        assert client.get("/health").status_code == 503
        assert client.get("/health").status_code == 200  # the count is spent
        faults.add(FaultRule("reset", route="run", count=1))
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/run", json={"input": {}})
        assert harness.emulator.call(lambda: len(endpoint.jobs)) == 0  # a reset carries nothing out
        faults.add(FaultRule("lost", route="run", count=1))
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/run", json={"input": {}})
        assert harness.emulator.call(lambda: len(endpoint.jobs)) == 1  # a lost answer: the job was queued
    assert faults.struck() == 3


def test_the_worker_killer_kills_a_worker_in_the_middle_of_a_job(harness: Harness) -> None:
    """A real SDK worker process (echo handler) SIGKILLed by the schedule's kill while its job runs."""
    endpoint, pool = harness.endpoint(workers=2)

    def busy(pod_id: str) -> bool:
        return harness.emulator.call(lambda: bool(endpoint.workers[pod_id].in_flight))

    killer = WorkerKiller([pool], interval=3600, busy=busy, seed=1)
    wait_for(lambda: len(harness.emulator.call(lambda: list(endpoint.workers))) == 2)
    assert killer.kill_one() is None, "no job runs: nothing to kill"
    with harness.http(endpoint.id) as client:
        running = client.post("/run", json={"input": {"sleep": 60}}).json()["id"]
        wait_for(lambda: client.get(f"/status/{running}").json()["status"] == "IN_PROGRESS")
        killed = killer.kill_one()
        assert killed is not None
        wait_for(lambda: client.get(f"/status/{running}").json()["status"] == "FAILED", timeout=10)
        assert json.loads(client.get(f"/status/{running}").json()["error"])["type"] == "worker_lost"
    assert killer.kills == [killed]
    wait_for(lambda: len(pool.alive()) == 1)


def test_a_job_whose_take_or_result_was_lost_fails_at_the_next_pings(harness: Harness, tmp_path: Path) -> None:
    """A real SDK echo worker pinging every second. A job that runs longer than two pings is listed in
    them and completes; a job whose job-take answer was lost, or whose job-done never arrived, is not
    listed, and fails as worker_lost within a few pings instead of waiting out its executionTimeout."""
    command = dataclasses.replace(echo_command(tmp_path / "logs"), ping_interval_ms=1000)
    endpoint, _pool = harness.endpoint(workers=1, command=command)
    faults = harness.emulator.faults
    with harness.http(endpoint.id) as client:

        def final(job_id: str) -> dict[str, Any]:
            wait_for(lambda: client.get(f"/status/{job_id}").json()["status"] in ("COMPLETED", "FAILED"), timeout=30)
            answer: dict[str, Any] = client.get(f"/status/{job_id}").json()
            return answer

        slow = client.post("/run", json={"input": {"sleep": 3.5}}).json()["id"]
        assert final(slow)["status"] == "COMPLETED", "a long job is listed in the pings: never taken for lost"
        # Every job-take answer lost from now on; once one has been (the poll open before the rule was
        # not), the worker's next poll is under the rule when the job arrives.
        # (The SDK takes with job-take-batch when its concurrency is above 1, as the echo worker's is.)
        struck = faults.struck("lost")
        takes_lost = [
            faults.add(FaultRule("lost", route=route, endpoint=endpoint.id, count=100))
            for route in ("job-take", "job-take-batch")
        ]
        wait_for(lambda: faults.struck("lost") > struck, timeout=30)
        untaken = client.post("/run", json={"input": {"echo": "t"}}).json()["id"]
        wait_for(lambda: client.get(f"/status/{untaken}").json()["status"] != "IN_QUEUE", timeout=30)
        for rule in takes_lost:
            faults.rules.remove(rule)
        lost = final(untaken)
        assert lost["status"] == "FAILED"
        assert json.loads(lost["error"])["type"] == "worker_lost"
        for _attempt in range(3):  # a take poll that arrived while the rule stood may still lose one
            client.post(f"/retry/{untaken}")
            if final(untaken)["status"] == "COMPLETED":
                break
        assert final(untaken)["status"] == "COMPLETED", "sent again, it runs"
        faults.add(FaultRule("reset", route="job-done", endpoint=endpoint.id, count=1))
        unreported = client.post("/run", json={"input": {"echo": "d"}}).json()["id"]
        assert final(unreported)["status"] == "FAILED"
    assert faults.struck("lost") >= 1
