"""Property-based fuzzing of the emulator's HTTP surface: the public job API and the worker-facing routes.

Whatever arrives (any JSON or none, broken JSON, NaN, odd ids and query strings, wrong keys), the
emulator answers below 500 with a JSON object, an accepted job is never lost, and a real runpod SDK
worker carries any JSON value through job-take, job-stream and job-done unchanged. Real emulator
over loopback, real SDK worker processes (echo handler); nothing is faked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notus_cli.emulator import EmulatorConfig, Endpoint
from testbed.emulator import Harness
from testbed.fuzzing import json_values

# Short holds so an example that long-polls (a job-take with nothing queued, a /stream with nothing
# new) costs a fraction of a second instead of RunPod's 10 s and 1 s.
FUZZ_CONFIG = EmulatorConfig(sweep_interval=0.1, take_hold=0.2, stop_hold=0.2, stream_hold=0.05)
CONTENT_TYPES = {"json": "application/json", "form": "application/x-www-form-urlencoded", "none": ""}

finite_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
raw_bodies = (
    st.builds(lambda value: json.dumps(value).encode(), json_values)  # NaN and Infinity included
    | st.builds(lambda value: json.dumps({"input": value}).encode(), json_values)
    | st.builds(lambda policy: json.dumps({"input": {}, "policy": policy}).encode(), json_values)
    | st.builds(lambda hook: json.dumps({"input": {}, "webhook": hook}).encode(), json_values)
    | st.binary(max_size=64)
    | st.just(b"")
)
ids = st.text(max_size=24) | st.sampled_from(["", "..", "%2F", "a" * 300, "sync-1", "0"])
queries = st.dictionaries(st.sampled_from(["wait", "ttl", "batch_size", "job_in_progress", "isStream", "x"]), ids)


@pytest.fixture(scope="module")
def fuzz_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    harness = Harness.start(tmp_path_factory.mktemp("fuzz-logs"), FUZZ_CONFIG)
    yield harness
    harness.close()


@pytest.fixture(scope="module")
def queued(fuzz_emulator: Harness) -> Endpoint:
    """No workers: the fuzzed jobs stay in the queue, where nothing can run them."""
    endpoint, _pool = fuzz_emulator.endpoint(workers=0)
    return endpoint


@pytest.fixture(scope="module")
def echo(fuzz_emulator: Harness) -> Endpoint:
    endpoint, _pool = fuzz_emulator.endpoint(workers=2)
    return endpoint


def assert_json_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.request.method, response.request.url, response.text[:300])
    if response.status_code == 204:
        return
    body = response.json()
    assert isinstance(body, dict | list), response.text[:300]
    if response.status_code >= 400:
        assert isinstance(body, dict)
        assert isinstance(body.get("error"), str), body
        assert body["error"]


def test_public_routes_answer_below_500_and_lose_no_accepted_job(fuzz_emulator: Harness, queued: Endpoint) -> None:
    accepted: list[str] = []

    @settings(max_examples=150)
    @given(
        st.sampled_from(["/run", "/status/{}", "/stream/{}", "/cancel/{}", "/retry/{}", "/purge-queue", "/health"]),
        st.sampled_from(["GET", "POST", "PUT"]),
        raw_bodies,
        ids,
        queries,
        st.sampled_from(sorted(CONTENT_TYPES)),
    )
    def probe(route: str, method: str, body: bytes, job_id: str, query: dict[str, str], kind: str) -> None:
        if route == "/purge-queue":
            return  # it would drop the jobs whose survival this test checks; covered below
        if accepted and job_id == "0":
            job_id = accepted[-1]  # now and then a real job, in whatever state the fuzz left it
        headers = {"content-type": CONTENT_TYPES[kind]}
        path = route.format(quote(job_id, safe=""))
        with fuzz_emulator.http(queued.id) as client:
            response = client.request(method, path, params=query, content=body, headers=headers)
        assert_json_answer(response)
        if route == "/run" and response.status_code == 200:
            answer = response.json()
            assert answer["status"] == "IN_QUEUE"
            accepted.append(answer["id"])

    probe()
    with fuzz_emulator.http(queued.id) as client:
        states = {job_id: client.get(f"/status/{job_id}").json().get("status") for job_id in accepted}
        assert all(state in ("IN_QUEUE", "CANCELLED") for state in states.values()), states
        waiting = sum(state == "IN_QUEUE" for state in states.values())
        assert client.get("/health").json()["jobs"]["inQueue"] == waiting
        assert client.post("/purge-queue").json() == {"removed": waiting, "status": "completed"}


def test_a_wrong_or_missing_key_gets_a_json_401(fuzz_emulator: Harness, queued: Endpoint) -> None:
    printable = st.characters(min_codepoint=32, max_codepoint=126)

    @settings(max_examples=40)
    @given(st.text(printable, max_size=40).filter(lambda key: key.strip() != fuzz_emulator.key))
    def probe(key: str) -> None:
        headers = {"Authorization": f"Bearer {key}".strip()} if key else {}
        response = httpx.post(f"{fuzz_emulator.url}/v2/{queued.id}/run", json={"input": {}}, headers=headers)
        assert response.status_code == 401
        assert_json_answer(response)

    probe()


def test_worker_routes_answer_below_500(fuzz_emulator: Harness, tmp_path: Path) -> None:
    """The bodies an SDK (or anything else holding a key) posts: never a 500, never a changed job."""
    endpoint = fuzz_emulator.emulator.call(lambda: fuzz_emulator.emulator.create_endpoint(max_workers=1))

    @settings(max_examples=120)
    @given(
        st.sampled_from(
            ["/job-take/{}", "/job-take-batch/{}", "/job-stream/{}/{}", "/job-done/{}/{}", "/job-stop/{}", "/ping/{}"]
        ),
        ids,
        ids,
        raw_bodies,
        queries,
    )
    def probe(route: str, pod_id: str, job_id: str, body: bytes, query: dict[str, str]) -> None:
        path = route.format(quote(pod_id, safe=""), quote(job_id, safe=""))
        method = "POST" if "stream" in route or "done" in route else "GET"
        headers = {"content-type": "application/x-www-form-urlencoded"}
        with fuzz_emulator.http(endpoint.id) as client:
            assert_json_answer(client.request(method, path, params=query, content=body, headers=headers))

    probe()
    assert fuzz_emulator.emulator.call(lambda: endpoint.counts().in_queue) == 0


def test_any_json_value_crosses_a_real_worker_unchanged(fuzz_emulator: Harness, echo: Endpoint) -> None:
    @settings(max_examples=60)
    @given(finite_json)
    def probe(value: Any) -> None:
        with fuzz_emulator.http(echo.id) as client:
            body = client.post("/runsync", json={"input": {"echo": value}}).json()
        assert body["status"] == "COMPLETED", body
        assert body["output"] == [{"index": 0, "echo": value}]

    probe()
