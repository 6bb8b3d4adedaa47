"""The serverless client against the emulator (real SDK workers, echo handler), and its error handling."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from notus_cli.emulator import EmulatorConfig, Endpoint
from notus_cli.errors import (
    AuthError,
    EndpointUnreachable,
    JobFailed,
    RunPodError,
    RunPodQueryError,
    RunPodRateLimited,
)
from notus_cli.runpod.serverless import RetryPolicy, ServerlessClient, StreamPacer
from testbed.emulator import Harness
from worker.job_errors import JobError, parse_job_error

pytestmark = pytest.mark.anyio
FAST = RetryPolicy(attempts=3, base=0.01, cap=0.05)


@pytest.fixture(scope="module")
def echo(emulator: Harness) -> Endpoint:
    endpoint, _pool = emulator.endpoint(workers=1)
    return endpoint


def client_for(emulator: Harness, endpoint_id: str, **kwargs: Any) -> ServerlessClient:
    kwargs.setdefault("retry", FAST)
    return ServerlessClient(endpoint_id, kwargs.pop("key", emulator.key), base_url=f"{emulator.url}/v2", **kwargs)


async def test_runsync_unwraps_the_aggregate_stream(emulator: Harness, echo: Endpoint) -> None:
    async with client_for(emulator, echo.id) as client:
        one = await client.runsync({"echo": "a"})
        many = await client.runsync({"echo": "b", "items": 2})
    assert one.status == "COMPLETED"
    assert one.output == [{"index": 0, "echo": "a"}]
    assert one.result == {"index": 0, "echo": "a"}
    assert many.result == [{"index": 0, "echo": "b"}, {"index": 1, "echo": "b"}]
    assert isinstance(one.delay_time_ms, int)
    assert isinstance(one.execution_time_ms, int)
    assert one.worker_id in echo.workers


async def test_run_then_wait(emulator: Harness, echo: Endpoint) -> None:
    async with client_for(emulator, echo.id) as client:
        queued = await client.run({"echo": 1}, policy={"executionTimeout": 60_000})
        assert (queued.status, queued.final) == ("IN_QUEUE", False)
        done = await client.wait(queued.id, max_wait=30)
    assert done.result == {"index": 0, "echo": 1}


async def test_stream_yields_items_as_they_come_and_a_failure_raises(emulator: Harness, echo: Endpoint) -> None:
    async with client_for(emulator, echo.id) as client:
        job = await client.run({"echo": "s", "items": 4, "delay": 0.15})
        arrivals, items = [], []
        async for item in client.stream(job.id):
            items.append(item)
            arrivals.append(time.monotonic())
        failing = await client.run({"fail": "boom"})
        with pytest.raises(JobFailed) as failure:
            async for _item in client.stream(failing.id):
                pass
        with pytest.raises(JobFailed):
            await client.runsync({"fail": "boom"})
    assert [item["index"] for item in items] == [0, 1, 2, 3]
    assert arrivals[-1] - arrivals[0] > 0.3
    assert failure.value.status == "FAILED"
    assert "boom" in failure.value.message
    assert failure.value.exit_code == 4


async def test_cancel_retry_health_and_purge(emulator: Harness, echo: Endpoint) -> None:
    idle, _pool = emulator.endpoint(workers=0)
    async with client_for(emulator, idle.id) as waiting, client_for(emulator, echo.id) as client:
        first, _second = await waiting.run({}), await waiting.run({})
        assert (await waiting.health()).in_queue == 2
        assert (await waiting.cancel(first.id)).status == "CANCELLED"
        assert await waiting.purge_queue() == 1
        assert (await waiting.health()).in_queue == 0
        failed = await client.run({"fail": "once"})
        assert (await client.wait(failed.id)).error == JobError(type="worker_error", message="once")
        assert (await client.retry(failed.id)).status == "IN_QUEUE"
        health = await client.health()
    assert health.jobs["retried"] >= 1
    assert health.ready_workers == 1


async def test_http_errors_become_typed_errors(emulator: Harness, echo: Endpoint) -> None:
    async with client_for(emulator, echo.id, key="not-the-key") as stranger:
        with pytest.raises(AuthError) as rejected:
            await stranger.health()
    assert "not-the-key" not in rejected.value.message
    async with client_for(emulator, "nosuchendpoint") as lost:
        with pytest.raises(RunPodQueryError, match="nosuchendpoint"):
            await lost.health()
    async with client_for(emulator, echo.id) as client:
        with pytest.raises(RunPodQueryError, match="404"):
            await client.status("no-such-job")
    async with ServerlessClient("x", "k", base_url="http://127.0.0.1:9/v2", retry=FAST) as nowhere:
        with pytest.raises(EndpointUnreachable):
            await nowhere.health()


async def test_rate_limits_are_retried_with_backoff(tmp_path: Any) -> None:
    harness = Harness.start(tmp_path, EmulatorConfig(rate_limits={"status": (2, 1.0)}))
    try:
        endpoint, _pool = harness.endpoint(workers=0)
        job_id = harness.emulator.call(lambda: endpoint.submit({"input": {}}, sync=False).id)
        patient = client_for(harness, endpoint.id, retry=RetryPolicy(attempts=5, base=0.2, cap=2.0))
        hasty = client_for(harness, endpoint.id, retry=RetryPolicy(attempts=1))
        async with patient, hasty:
            started = time.monotonic()
            statuses = [(await patient.status(job_id)).status for _ in range(4)]
            elapsed = time.monotonic() - started
            await asyncio.sleep(1.1)  # a fresh window
            await hasty.status(job_id)
            await hasty.status(job_id)
            with pytest.raises(RunPodRateLimited):
                await hasty.status(job_id)
    finally:
        harness.close()
    assert statuses == ["IN_QUEUE"] * 4
    assert elapsed >= 0.5, "the client waited for the window (Retry-After) instead of failing"


async def test_stream_polls_stay_within_the_pace_and_the_concurrency_cap() -> None:
    """RunPod allows 2,000 /stream per 10 s and 400 at once per endpoint; the pacer, scaled down to
    40 per second with bursts of 5 and 3 at once here, keeps any number of followers inside it."""
    pacer = StreamPacer(per_second=40, burst=5, concurrent=3)
    in_flight, most, started = 0, 0, time.monotonic()
    turns: list[float] = []

    async def poll() -> None:
        nonlocal in_flight, most
        async with pacer.slot():
            turns.append(time.monotonic() - started)
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.05)
            in_flight -= 1

    await asyncio.gather(*(poll() for _ in range(30)))
    turns.sort()
    assert turns[2] < 0.03, "a burst of first polls goes at once (up to the concurrency cap)"
    assert turns[-1] >= (30 - 5) / 40 - 0.02, "then the average rate holds"
    for first in turns:  # any window of 0.5 s holds at most burst + 0.5 s of the rate
        assert sum(first <= t < first + 0.5 for t in turns) <= 5 + 0.5 * 40 + 1
    assert most <= 3
    default = StreamPacer()
    assert default.burst + default.per_second * 10 <= 2000
    assert default.concurrent <= 400


async def test_streams_over_the_concurrency_cap_back_off_and_finish(tmp_path: Any) -> None:
    """With the emulator's /stream cap at 1, two streams followed at once see HTTP 429 and back off;
    both still get every item."""
    config = EmulatorConfig(sweep_interval=0.1, concurrency_limits={"stream": 1})
    harness = Harness.start(tmp_path, config)
    try:
        endpoint, _pool = harness.endpoint(workers=1)
        patient = RetryPolicy(attempts=30, base=0.05, cap=0.3)
        async with client_for(harness, endpoint.id, retry=patient) as client:
            jobs = [await client.run({"echo": n, "items": 4, "delay": 0.1}) for n in range(2)]

            async def follow(job_id: str) -> list[Any]:
                return [item async for item in client.stream(job_id)]

            results = await asyncio.gather(*(follow(job.id) for job in jobs))
    finally:
        harness.close()
    assert [[item["echo"] for item in items] for items in results] == [[0] * 4, [1] * 4]
    assert [[item["index"] for item in items] for items in results] == [list(range(4))] * 2


class Scripted(http.server.BaseHTTPRequestHandler):
    """RunPod's own failures (5xx, a stalled request) cannot be made to happen in the emulator,
    so this loopback server plays them: status answers 503 twice, /run always 500, /retry stalls."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(f"GET {self.path}")
        if self.seen.count(f"GET {self.path}") <= 2:
            self._reply(503, {"error": "upstream busy"})
        else:
            self._reply(200, {"id": "job-1", "status": "COMPLETED", "output": [{"ok": True}]})

    def do_POST(self) -> None:
        self.seen.append(f"POST {self.path}")
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if "/retry/" in self.path:
            time.sleep(1.5)
        self._reply(500, {"error": "internal"})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[str]:
    Scripted.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v2"
    server.shutdown()
    server.server_close()


async def test_server_errors_are_retried_only_where_repeating_is_harmless(scripted: str) -> None:
    async with ServerlessClient("ep", "key", base_url=scripted, retry=FAST, timeout=0.5) as client:
        assert (await client.status("job-1")).result == {"ok": True}
        with pytest.raises(RunPodError, match="HTTP 500"):
            await client.run({"x": 1})
        with pytest.raises(EndpointUnreachable, match="timed out"):
            await client.retry("job-1")
    assert Scripted.seen.count("GET /v2/ep/status/job-1") == 3
    assert Scripted.seen.count("POST /v2/ep/run") == 1, "a /run that failed is not sent twice"
    assert Scripted.seen.count("POST /v2/ep/retry/job-1") == 1, "nor is a /retry that timed out"


def test_job_errors_parse_whatever_wrote_them() -> None:
    ours = parse_job_error('{"type": "invalid_request", "param": "top_p", "message": "must be..."}')
    assert ours == JobError(type="invalid_request", message="must be...", param="top_p")
    upstream = parse_job_error('{"type": "engine_error", "param": null, "message": "x", "status": 500}')
    assert upstream.status == 500
    assert parse_job_error("handler: boom \ntraceback: ...").type == "worker_error"
    assert parse_job_error({"message": "as a dict"}).message == "as a dict"
    assert parse_job_error(None).type == "worker_error"
    assert parse_job_error(JobError("worker_lost", "gone").to_text()) == JobError("worker_lost", "gone")
