"""The emulator over HTTP with real runpod SDK worker processes (a trivial echo handler, no vLLM).

Shapes and status codes follow RunPod's operation reference; the same checks run against the real
stack (vLLM, `python -m worker`) in test_local_stack.py.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from notus_cli.emulator import EmulatorConfig, Endpoint
from testbed.common import wait_for
from testbed.emulator import Harness

FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")


@pytest.fixture(scope="module")
def echo(emulator: Harness) -> Endpoint:
    """An endpoint with two echo workers, shared by this module's tests."""
    endpoint, _pool = emulator.endpoint(workers=2)
    return endpoint


@pytest.fixture
def idle(emulator: Harness) -> Endpoint:
    """An endpoint with no workers: its jobs stay queued."""
    endpoint, _pool = emulator.endpoint(workers=0)
    return endpoint


def final_status(client: httpx.Client, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/status/{job_id}").json()
        return body if body["status"] in FINAL else None

    return wait_for(done, timeout)


def test_run_then_status_reports_output_and_timings(emulator: Harness, echo: Endpoint) -> None:
    with emulator.http(echo.id) as client:
        queued = client.post("/run", json={"input": {"echo": "hi", "items": 2}})
        assert queued.status_code == 200
        assert queued.json() == {"id": queued.json()["id"], "status": "IN_QUEUE"}
        assert queued.json()["id"].endswith("-u1")
        body = final_status(client, queued.json()["id"])
    assert body["status"] == "COMPLETED"
    assert body["output"] == [{"index": 0, "echo": "hi"}, {"index": 1, "echo": "hi"}]
    assert isinstance(body["delayTime"], int)
    assert body["delayTime"] >= 0
    assert isinstance(body["executionTime"], int)
    assert body["executionTime"] >= 0
    assert body["workerId"] in echo.workers


def test_runsync_returns_the_aggregate_stream(emulator: Harness, echo: Endpoint) -> None:
    with emulator.http(echo.id) as client:
        body = client.post("/runsync", json={"input": {"echo": 7}}).json()
    assert body["id"].startswith("sync-")
    assert (body["status"], body["output"]) == ("COMPLETED", [{"index": 0, "echo": 7}])


def test_runsync_wait_returns_while_queued_and_cancel_ends_the_job(emulator: Harness, idle: Endpoint) -> None:
    with emulator.http(idle.id) as client:
        started = time.monotonic()
        body = client.post("/runsync?wait=1000", json={"input": {}}).json()
        assert 0.9 < time.monotonic() - started < 5
        assert body == {"id": body["id"], "status": "IN_QUEUE"}
        assert client.post(f"/cancel/{body['id']}").json() == {"id": body["id"], "status": "CANCELLED"}
        assert client.get(f"/status/{body['id']}").json()["status"] == "CANCELLED"
        assert client.get("/health").json()["jobs"]["inQueue"] == 0


def test_stream_returns_each_item_once_and_holds_the_poll(emulator: Harness, echo: Endpoint) -> None:
    with emulator.http(echo.id) as client:
        job_id = client.post("/run", json={"input": {"echo": "s", "items": 6, "delay": 0.2}}).json()["id"]
        items, polls, arrivals = [], 0, []
        while True:
            body = client.get(f"/stream/{job_id}").json()
            polls += 1
            items += [chunk["output"] for chunk in body["stream"]]
            arrivals += [time.monotonic()] * len(body["stream"])
            if body["status"] in FINAL and not body["stream"]:
                break
    assert [item["index"] for item in items] == list(range(6))
    assert polls <= 6 + 4, "an empty /stream answer should wait for the next item, not return at once"
    assert arrivals[-1] - arrivals[0] > 0.6, "items arrive as the handler yields them"


def test_cancel_of_a_running_job_reaches_the_worker(emulator: Harness, echo: Endpoint) -> None:
    with emulator.http(echo.id) as client:
        job_id = client.post("/run", json={"input": {"sleep": 60}}).json()["id"]
        wait_for(lambda: client.get(f"/status/{job_id}").json()["status"] == "IN_PROGRESS")
        assert client.post(f"/cancel/{job_id}").json()["status"] == "CANCELLED"
        worker = emulator.emulator.call(lambda: echo.workers[echo.jobs[job_id].worker_id or ""])
        log = emulator.log_dir / echo.id / f"{worker.label}.log"
        wait_for(lambda: "Job stopped." in log.read_text() and job_id in log.read_text(), timeout=20)
        assert client.get(f"/status/{job_id}").json()["status"] == "CANCELLED"


def test_retry_requeues_a_failed_job_under_the_same_id(emulator: Harness, echo: Endpoint) -> None:
    with emulator.http(echo.id) as client:
        failed = client.post("/runsync", json={"input": {"fail": "boom"}}).json()
        assert (failed["status"], failed["error"]) == ("FAILED", "boom")
        retried_before = client.get("/health").json()["jobs"]["retried"]
        assert client.post(f"/retry/{failed['id']}").json() == {"id": failed["id"], "status": "IN_QUEUE"}
        again = final_status(client, failed["id"])
        assert (again["status"], again["error"]) == ("FAILED", "boom")
        assert client.get("/health").json()["jobs"]["retried"] == retried_before + 1
        assert emulator.emulator.call(lambda: echo.jobs[failed["id"]].deliveries) == 2
        done = client.post("/runsync", json={"input": {}}).json()
        refused = client.post(f"/retry/{done['id']}")
        assert refused.status_code == 400
        assert "only FAILED or TIMED_OUT" in refused.json()["error"]


def test_purge_queue_removes_queued_jobs_only(emulator: Harness, idle: Endpoint) -> None:
    with emulator.http(idle.id) as client:
        ids = [client.post("/run", json={"input": {"n": n}}).json()["id"] for n in range(3)]
        assert client.get("/health").json()["jobs"]["inQueue"] == 3
        assert client.post("/purge-queue").json() == {"removed": 3, "status": "completed"}
        assert {client.get(f"/status/{job_id}").json()["status"] for job_id in ids} == {"CANCELLED"}
        assert client.get("/health").json()["jobs"]["inQueue"] == 0


def test_health_counts_jobs_and_workers(emulator: Harness, echo: Endpoint) -> None:
    with emulator.http(echo.id) as client:
        client.post("/runsync", json={"input": {}})
        body = client.get("/health").json()
    assert set(body) == {"jobs", "workers"}
    assert set(body["jobs"]) == {"completed", "failed", "inProgress", "inQueue", "retried"}
    assert body["jobs"]["completed"] >= 1
    assert body["workers"]["idle"] + body["workers"]["running"] == 2


def test_bad_requests_get_runpods_codes_and_shapes(emulator: Harness, echo: Endpoint) -> None:
    with emulator.http(echo.id) as client, emulator.http(echo.id, key="wrong") as stranger:
        cases = {
            "no key": client.post("/run", json={"input": {}}, headers={"Authorization": ""}),
            "wrong key": stranger.post("/run", json={"input": {}}),
            "missing input": client.post("/run", json={"prompt": "x"}),
            "not JSON": client.post("/run", content=b"{not json", headers={"Content-Type": "application/json"}),
            "not an object": client.post("/runsync", json=[1, 2]),
            "bad policy": client.post("/run", json={"input": {}, "policy": {"executionTimeout": 10}}),
            "unknown job": client.get("/status/no-such-job"),
            "unknown job stream": client.get("/stream/no-such-job"),
            "worker route with the API key": client.get("/job-take/pod?gpu=x"),
        }
        unknown_endpoint = httpx.get(
            f"{emulator.url}/v2/nosuchendpoint/health", headers={"Authorization": f"Bearer {emulator.key}"}
        )
        unknown_route = client.get("/nonsense")
    expected = {
        "no key": 401,
        "wrong key": 401,
        "missing input": 400,
        "not JSON": 400,
        "not an object": 400,
        "bad policy": 400,
        "unknown job": 404,
        "unknown job stream": 404,
        "worker route with the API key": 401,
    }
    assert {name: response.status_code for name, response in cases.items()} == expected
    for response in [*cases.values(), unknown_endpoint, unknown_route]:
        assert set(response.json()) == {"error"}
        assert isinstance(response.json()["error"], str)
    assert "input" in cases["missing input"].json()["error"]
    assert "executionTimeout" in cases["bad policy"].json()["error"]
    assert unknown_endpoint.status_code == 404
    assert "nosuchendpoint" in unknown_endpoint.json()["error"]
    assert unknown_route.status_code == 404


def test_oversize_bodies_get_413(emulator: Harness, idle: Endpoint) -> None:
    with emulator.http(idle.id) as client:
        big_run = b'{"input": "' + b"x" * (10 * 1024 * 1024) + b'"}'
        big_sync = b'{"input": "' + b"x" * (20 * 1024 * 1024) + b'"}'
        just_fits = b'{"input": "' + b"x" * (10 * 1024 * 1024 - 20) + b'"}'
        run = client.post("/run", content=big_run, headers={"Content-Type": "application/json"})
        sync = client.post("/runsync", content=big_sync, headers={"Content-Type": "application/json"})
        fits = client.post("/run", content=just_fits, headers={"Content-Type": "application/json"})
    assert (run.status_code, sync.status_code, fits.status_code) == (413, 413, 200)
    assert "10 MB" in run.json()["error"]
    assert "20 MB" in sync.json()["error"]


def test_rate_limit_gives_429_with_retry_after(emulator: Harness, idle: Endpoint) -> None:
    with emulator.http(idle.id) as client:
        answers = [client.post("/purge-queue") for _ in range(3)]  # RunPod allows 2 per 10 s
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 10
    assert "2 requests per 10 s" in answers[2].json()["error"]


def test_a_killed_workers_jobs_fail_and_queued_jobs_wait_for_another(emulator: Harness) -> None:
    endpoint, pool = emulator.endpoint(workers=1)
    with emulator.http(endpoint.id) as client:
        running = client.post("/run", json={"input": {"sleep": 60}}).json()["id"]
        wait_for(lambda: client.get(f"/status/{running}").json()["status"] == "IN_PROGRESS")
        pool.kill(pool.processes[0].pod_id, signal.SIGKILL)
        failed = final_status(client, running, timeout=10)
        assert failed["status"] == "FAILED"
        assert json.loads(failed["error"])["type"] == "worker_lost"
        waiting = client.post("/run", json={"input": {"echo": "later"}}).json()["id"]
        emulator.wait_sweeps()
        assert client.get(f"/status/{waiting}").json()["status"] == "IN_QUEUE"
        pool.start(1)
        assert final_status(client, waiting)["output"] == [{"index": 0, "echo": "later"}]
        health = client.get("/health").json()
        assert (health["jobs"]["failed"], health["jobs"]["completed"]) == (1, 1)
        assert client.post(f"/retry/{running}").json()["status"] == "IN_QUEUE"
        client.post(f"/cancel/{running}")


def test_many_jobs_none_lost_none_served_twice(emulator: Harness, echo: Endpoint) -> None:
    with emulator.http(echo.id) as client:
        ids = [client.post("/run", json={"input": {"echo": n}}).json()["id"] for n in range(200)]
        bodies = [final_status(client, job_id) for job_id in ids]
    assert [body["output"] for body in bodies] == [[{"index": 0, "echo": n}] for n in range(200)]
    assert emulator.emulator.call(lambda: {echo.jobs[job_id].deliveries for job_id in ids}) == {1}
    assert emulator.emulator.call(lambda: echo.ignored_reports) == 0


def test_webhook_receives_the_final_status(emulator: Harness, echo: Endpoint) -> None:
    received: list[dict[str, Any]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with emulator.http(echo.id) as client:
            hook = f"http://127.0.0.1:{server.server_address[1]}/done"
            job_id = client.post("/run", json={"input": {"echo": 1}, "webhook": hook}).json()["id"]
            wait_for(lambda: received, timeout=20)
    finally:
        server.shutdown()
        server.server_close()
    assert (received[0]["id"], received[0]["status"]) == (job_id, "COMPLETED")


def test_time_limits_ttl_execution_timeout_and_retention(emulator: Harness, echo: Endpoint, idle: Endpoint) -> None:
    """The clock is moved by sweeping with a later time; the jobs themselves are real."""
    later = lambda seconds: time.monotonic() + seconds  # noqa: E731
    with emulator.http(echo.id) as client, emulator.http(idle.id) as waiting:
        slow = client.post("/run", json={"input": {"sleep": 60}, "policy": {"executionTimeout": 6000}}).json()["id"]
        queued = waiting.post("/run", json={"input": {}, "policy": {"ttl": 10_000}}).json()["id"]
        quick = client.post("/runsync", json={"input": {}}).json()["id"]
        wait_for(lambda: client.get(f"/status/{slow}").json()["status"] == "IN_PROGRESS")
        emulator.emulator.call(lambda: (echo.sweep(later(5)), idle.sweep(later(5))))
        assert client.get(f"/status/{slow}").json()["status"] == "IN_PROGRESS"
        assert waiting.get(f"/status/{queued}").json()["status"] == "IN_QUEUE"
        emulator.emulator.call(lambda: (echo.sweep(later(7)), idle.sweep(later(11))))
        assert client.get(f"/status/{slow}").json()["status"] == "TIMED_OUT"
        assert waiting.get(f"/status/{queued}").json()["status"] == "TIMED_OUT"
        worker = emulator.emulator.call(lambda: echo.workers[echo.jobs[slow].worker_id or ""])
        log = emulator.log_dir / echo.id / f"{worker.label}.log"
        wait_for(lambda: "Job stopped." in log.read_text() and slow in log.read_text(), timeout=20)
        emulator.emulator.call(lambda: echo.sweep(later(61)))  # a /runsync result is kept for one minute
        assert client.get(f"/status/{quick}").status_code == 404
        assert client.get(f"/status/{slow}").status_code == 200  # a /run result for 30 minutes


def test_reports_from_a_worker_that_no_longer_owns_the_job_are_ignored(emulator: Harness, idle: Endpoint) -> None:
    """The test plays the worker's side of the protocol itself, with the endpoint's worker key."""
    worker = httpx.Client(base_url=f"{emulator.url}/v2/{idle.id}", headers={"Authorization": idle.worker_key})
    with emulator.http(idle.id) as client, worker:
        job_id = client.post("/run", json={"input": {"x": 1}}).json()["id"]
        taken = worker.get("/job-take/pod-a?gpu=cpu&job_in_progress=0")
        assert taken.json() == {"id": job_id, "input": {"x": 1}}
        forged = worker.post(f"/job-done/pod-b/{job_id}?gpu=cpu&isStream=false", content=b'{"output": ["forged"]}')
        assert forged.json() == {"accepted": False}
        emulator.emulator.call(lambda: idle.worker_exited("pod-a", -9))
        late = worker.post(f"/job-done/pod-a/{job_id}?gpu=cpu&isStream=false", content=b'{"output": ["late"]}')
        assert late.status_code == 200
        assert late.json() == {"accepted": False}
        body = client.get(f"/status/{job_id}").json()
    assert body["status"] == "FAILED"
    assert "output" not in body
    assert emulator.emulator.call(lambda: idle.ignored_reports) == 2


def test_worker_routes_hold_the_poll_and_take_batches(emulator: Harness, idle: Endpoint) -> None:
    worker = httpx.Client(
        base_url=f"{emulator.url}/v2/{idle.id}", headers={"Authorization": idle.worker_key}, timeout=30
    )
    with emulator.http(idle.id) as client, worker:
        started = time.monotonic()
        empty = worker.get("/job-stop/pod-z?gpu=cpu")
        assert empty.status_code == 204
        assert time.monotonic() - started > 5, "job-stop is a long poll"
        ids = [client.post("/run", json={"input": {"n": n}}).json()["id"] for n in range(3)]
        batch = worker.get("/job-take-batch/pod-z?gpu=cpu&batch_size=2&job_in_progress=0").json()
        assert [job["id"] for job in batch] == ids[:2]
        client.post(f"/cancel/{ids[0]}")
        assert worker.get("/job-stop/pod-z?gpu=cpu").json() == {"jobsToStop": [ids[0]]}
        assert worker.get("/ping/pod-z?gpu=cpu&runpod_version=1.12.0").status_code == 200
        client.post("/purge-queue")


def test_a_full_queue_answers_429(emulator: Harness, idle: Endpoint) -> None:
    def fill() -> int:
        limit = max(idle.config.min_queue_limit, idle.config.queue_limit_per_worker * idle.max_workers)
        for _ in range(limit):
            idle.submit({"input": {}}, sync=False)
        return limit

    emulator.emulator.call(fill)
    with emulator.http(idle.id) as client:
        refused = client.post("/run", json={"input": {}})
        assert refused.status_code == 429
        assert "queue" in refused.json()["error"]
        client.post("/purge-queue")


def test_emulated_round_trips_delay_every_worker_and_public_request(tmp_path: Path) -> None:
    """With worker_api_rtt_ms each job-stream POST of the SDK costs a round trip, which it awaits before
    taking the next item: five items take five round trips of execution time (RunPod's cloud is what
    this emulates; the SDK and its HTTP are real)."""
    config = EmulatorConfig(sweep_interval=0.1, worker_api_rtt_ms=150, public_api_rtt_ms=100)
    harness = Harness.start(tmp_path, config)
    try:
        endpoint, _pool = harness.endpoint(workers=1)
        with harness.http(endpoint.id) as client:
            started = time.monotonic()
            assert client.get("/health").status_code == 200
            health_s = time.monotonic() - started
            body = client.post("/runsync", json={"input": {"echo": "x", "items": 5}}).json()
        assert body["status"] == "COMPLETED"
        assert [item["index"] for item in body["output"]] == list(range(5))
        assert 0.1 <= health_s < 1.0
        # five stream POSTs and the job-done one, each a 150 ms round trip
        assert body["executionTime"] >= 5 * 150
    finally:
        harness.close()


def test_concurrency_caps_answer_429_and_free_their_slot(tmp_path: Path) -> None:
    """RunPod caps requests in flight per operation (400 /stream, 20 /cancel, ...); a cap of 2 here
    shows the rule: the third open /stream poll is refused with 429, and a slot frees when a poll ends."""
    config = EmulatorConfig(sweep_interval=0.1, stream_hold=1.5, concurrency_limits={"stream": 2})
    harness = Harness.start(tmp_path, config)
    try:
        endpoint, _pool = harness.endpoint(workers=0)
        with harness.http(endpoint.id) as client:
            job_id = client.post("/run", json={"input": {}}).json()["id"]
        results: list[int] = []

        def poll() -> None:
            with harness.http(endpoint.id) as own:
                results.append(own.get(f"/stream/{job_id}").status_code)

        holders = [threading.Thread(target=poll) for _ in range(2)]
        for thread in holders:
            thread.start()
        wait_for(lambda: harness.emulator.call(lambda: endpoint.in_flight.in_flight["stream"]) == 2, 10)
        with harness.http(endpoint.id) as client:
            refused = client.get(f"/stream/{job_id}")
            for thread in holders:
                thread.join()
            again = client.get(f"/stream/{job_id}")
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert "2 at once" in refused.json()["error"]
        assert results == [200, 200]
        assert again.status_code == 200
    finally:
        harness.close()


def test_default_caps_are_runpods() -> None:
    """The published table (runpod/docs serverless/endpoints/send-requests.mdx), and scaling keeps its shape."""
    caps = EmulatorConfig().concurrency_limits
    assert (caps["stream"], caps["runsync"], caps["status"], caps["openai"], caps["run"], caps["cancel"]) == (
        400, 400, 400, 400, 200, 20,
    )  # fmt: skip
    assert EmulatorConfig().scaled_rate_limits(0).concurrency_limits == {}
    assert EmulatorConfig().scaled_rate_limits(0.5).concurrency_limits["cancel"] == 10


@pytest.mark.anyio
async def test_a_job_take_while_the_same_worker_has_one_open_is_counted() -> None:
    """RunPod's TakeJob races when one worker polls twice at once (runpod-python PR #84), so the
    emulator counts it; tests/test_local_stack.py checks the real worker never does."""
    endpoint = Endpoint("ep", name="ep", worker_key="key", config=EmulatorConfig(), max_workers=1)

    async def gone() -> bool:
        return False

    await endpoint.take("pod-a", 1, 0.01, gone)
    await endpoint.take("pod-a", 1, 0.01, gone)
    await asyncio.gather(endpoint.take("pod-a", 1, 0.01, gone), endpoint.take("pod-b", 1, 0.01, gone))
    assert endpoint.parallel_takes == 0, "one after another, or two workers at once: fine"
    await asyncio.gather(endpoint.take("pod-a", 1, 0.01, gone), endpoint.take("pod-a", 1, 0.01, gone))
    assert endpoint.parallel_takes == 1
