"""Load-balancing endpoints: RunPod's facts (notus_cli.runpod.protocol.lb) and the emulator's gateway.

The facts are checked on their own, with no server. The gateway is the emulator's, on loopback, and
its workers are real `python -m worker` processes in LB mode started by the emulator with RunPod's
LB env, reached over HTTP. What is faked: vLLM, which cannot run here in seconds, is
testbed.openai_stub (a real HTTP server answering as vLLM does); and RunPod's caps (2 min, 5.5 min,
30 MB) are lowered on the gateway so each can be crossed in a second.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from notus_cli.emulator import EmulatorConfig, Endpoint, LocalWorkers, WorkerCommand
from notus_cli.emulator.lb_gateway import LBLimits
from notus_cli.emulator.scaler import command_factory
from notus_cli.emulator.workers import lb_worker_env
from notus_cli.errors import ConfigError
from notus_cli.runpod.protocol import lb
from notus_cli.settings import load_settings
from testbed.common import ROOT, wait_for
from testbed.emulator import Harness, lb_command
from testbed.openai_stub import MODEL, StubConfig, running_stub
from testbed.vllm import free_port

ANSWER = "In the beginning was the Word, and the Word was with God, and the Word was God. "


def test_one_template_expresses_runpods_url_and_the_emulators() -> None:
    assert lb.lb_url(lb.URL_TEMPLATE, "abc123") == "https://abc123.api.runpod.ai"
    assert lb.lb_url("http://127.0.0.1:8000/lb/{endpoint_id}/", "abc123") == "http://127.0.0.1:8000/lb/abc123"
    with pytest.raises(ValueError, match="endpoint_id"):
        lb.lb_url("https://api.runpod.ai/v2", "abc123")


def test_the_setting_defaults_to_runpods_template_and_refuses_one_without_the_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().runpod_lb_url == lb.URL_TEMPLATE
    monkeypatch.setenv("NOTUS_RUNPOD_LB_URL", "http://127.0.0.1:9/lb/{endpoint_id}")
    assert load_settings().runpod_lb_url == "http://127.0.0.1:9/lb/{endpoint_id}"
    monkeypatch.setenv("NOTUS_RUNPOD_LB_URL", "http://127.0.0.1:9/lb")
    with pytest.raises(ConfigError, match=r"NOTUS_RUNPOD_LB_URL.*endpoint_id"):
        load_settings()


@pytest.mark.parametrize(
    ("status", "state"),
    [(200, "healthy"), (204, "initializing"), (503, "unhealthy"), (404, "unhealthy"), (None, "unhealthy")],
)
def test_only_200_is_healthy_and_204_is_initializing(status: int | None, state: str) -> None:
    assert lb.health_state(status) == state


def test_the_caps_and_runpods_answers() -> None:
    assert (lb.WORKER_WAIT_S, lb.PROCESSING_S, lb.PAYLOAD_BYTES) == (120.0, 330.0, 30 * 1024 * 1024)
    assert (lb.NO_WORKER.status, lb.NO_WORKER.error) == (400, "no workers available")
    assert lb.PROCESSING_TIMEOUT.status == 524
    assert lb.PAYLOAD_TOO_LARGE.status == 413
    assert "choice" in lb.PAYLOAD_TOO_LARGE.error  # no documented code: the message says it is ours
    assert lb.REFUSALS[502] is lb.BAD_GATEWAY
    assert (lb.ENDPOINT_TYPE, lb.SCALER_TYPE) == ("LB", "REQUEST_COUNT")


def test_an_lb_worker_gets_runpods_env_on_ports_of_its_own(tmp_path: Path) -> None:
    endpoint = Endpoint("e1", name="e1", worker_key="k", config=EmulatorConfig(), max_workers=1)
    env, url, health = lb_worker_env({}, endpoint, "pod1")
    assert env["PORT"] == env["PORT_HEALTH"] != "80"  # loopback: every worker needs its own port
    assert (url, health) == (f"http://127.0.0.1:{env['PORT']}", f"http://127.0.0.1:{env['PORT']}/ping")
    assert (env["NOTUS_ENDPOINT_TYPE"], env["RUNPOD_POD_ID"], env["RUNPOD_ENDPOINT_ID"]) == ("lb", "pod1", "e1")
    assert not any(name.startswith("RUNPOD_WEBHOOK") for name in env)  # no queue to take jobs from
    template = {"PORT": "8000", "PORT_HEALTH": "8001", "HEALTH_CHECK_PATH": "/healthz", "NOTUS_ENDPOINT_TYPE": "queue"}
    env, url, health = lb_worker_env(template, endpoint, "pod2")
    assert env["PORT"] != env["PORT_HEALTH"]  # the template gave health a port of its own: so does the emulator
    assert health == f"http://127.0.0.1:{env['PORT_HEALTH']}/healthz"
    assert "NOTUS_ENDPOINT_TYPE" not in env  # the template chose (and its worker will never answer health)


# ---- the gateway, with real LB workers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    with running_stub(StubConfig(answer=ANSWER, itl=0.05, separate_writes=True)) as url:
        yield url


@pytest.fixture(scope="module")
def slow_stub() -> Iterator[str]:
    with running_stub(StubConfig(ttft=0.1, itl=0.3)) as url:
        yield url


@pytest.fixture(scope="module")
def failing_stub() -> Iterator[str]:
    with running_stub(StubConfig(fail_every=1)) as url:
        yield url


def lb_endpoint(
    harness: Harness, vllm_url: str, workers: int = 1, *, ready: bool = True
) -> tuple[Endpoint, LocalWorkers]:
    emulator = harness.emulator
    endpoint = emulator.call(lambda: emulator.create_endpoint(max_workers=workers))
    emulator.lb.serve(endpoint)
    pool = LocalWorkers(emulator, endpoint, lb_command(harness.log_dir / endpoint.id, vllm_url))
    harness.pools.append(pool)
    pool.start(workers)
    if ready:
        harness.wait_ready(endpoint, workers, timeout=60)
    return endpoint, pool


def lb_client(harness: Harness, endpoint: Endpoint, key: str | None = None, timeout: float = 30) -> httpx.Client:
    base = lb.lb_url(f"{harness.url}/lb/{{endpoint_id}}", endpoint.id)
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key or harness.key}"}, timeout=timeout)


def chat(stream: bool, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream, **extra}


def worker_requests(pool: LocalWorkers) -> int:
    """Requests the workers received, from their own log lines (one per request: worker/handler.py)."""
    logs = [w.log_path.read_text(errors="replace") for w in pool.processes if w.log_path and w.log_path.exists()]
    return sum(len(re.findall(r"^.*job lb-\d+ ", text, flags=re.MULTILINE)) for text in logs)


def collect(lines: Iterator[str], into: list[str]) -> None:
    for line in lines:
        into.append(line)


def test_without_the_accounts_key_it_is_401_at_once(harness: Harness) -> None:
    endpoint = harness.emulator.call(lambda: harness.emulator.create_endpoint())
    harness.emulator.lb.serve(endpoint)
    url = f"{harness.url}/lb/{endpoint.id}/v1/models"
    started = time.monotonic()
    for headers in ({}, {"Authorization": "Bearer rpa_WRONG"}):
        answer = httpx.get(url, headers=headers)
        assert answer.status_code == 401
        assert "Bearer" in answer.json()["error"]
    assert time.monotonic() - started < lb.WORKER_WAIT_S / 10  # refused, not left waiting for a worker
    unknown = httpx.get(
        f"{harness.url}/lb/nosuchendpoint/v1/models", headers={"Authorization": f"Bearer {harness.key}"}
    )
    assert unknown.status_code == 404


def test_a_healthy_worker_answers_and_a_stream_passes_through_in_order(harness: Harness, stub: str) -> None:
    endpoint, pool = lb_endpoint(harness, stub)
    (worker,) = pool.processes
    with lb_client(harness, endpoint) as client:
        whole = client.post("/v1/chat/completions", json=chat(False))
        assert whole.status_code == 200, whole.text
        assert whole.headers[lb.WORKER_ID_HEADER] == worker.pod_id
        assert whole.json()["choices"][0]["message"]["content"] == ANSWER
        assert client.get("/v1/models").json()["data"][0]["id"] == MODEL
        arrivals: list[tuple[float, str]] = []
        with client.stream("POST", "/v1/chat/completions", json=chat(True)) as streamed:
            assert streamed.status_code == 200
            assert streamed.headers["content-type"].startswith("text/event-stream")
            for line in streamed.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    choices = json.loads(line[6:])["choices"]
                    if choices and choices[0]["delta"].get("content"):
                        arrivals.append((time.monotonic(), choices[0]["delta"]["content"]))
    assert "".join(text for _, text in arrivals) == ANSWER
    words = len(ANSWER.split())
    # passed on as the worker wrote it, not gathered first: the stub spaces its words 50 ms apart
    assert arrivals[-1][0] - arrivals[0][0] >= 0.05 * (words - 1) * 0.8


def test_a_loading_worker_gets_no_traffic_then_the_request_waits_for_one(harness: Harness, tmp_path: Path) -> None:
    """The worker's own vLLM is not up yet (nothing listens on its port), so its health route says 204."""
    harness.emulator.lb.limits = LBLimits(worker_wait=1.5, health_interval=0.1)
    port = free_port()
    endpoint, _pool = lb_endpoint(harness, f"http://127.0.0.1:{port}", ready=False)
    pool_of = harness.emulator.lb.pools
    wait_for(lambda: endpoint.id in pool_of and [t.health for t in pool_of[endpoint.id].targets.values()] == [204])
    with lb_client(harness, endpoint) as client:
        started = time.monotonic()
        refused = client.post("/v1/chat/completions", json=chat(False))
        waited = time.monotonic() - started
        assert (refused.status_code, refused.json()) == (400, {"error": "no workers available"})
        assert waited >= 1.5
        assert lb.WORKER_ID_HEADER not in refused.headers
        assert client.get(f"{harness.url}/v2/{endpoint.id}/health").json()["workers"]["initializing"] == 1
    # had it been sent there, the worker would have answered for itself: 503, vLLM still loading
    (target,) = pool_of[endpoint.id].targets.values()
    assert httpx.post(f"{target.url}/v1/chat/completions", json=chat(False)).status_code == 503
    # a request that comes while the worker loads waits, and is served once health says 200
    harness.emulator.lb.limits = LBLimits(worker_wait=60, health_interval=0.1)
    with concurrent.futures.ThreadPoolExecutor(1) as run, lb_client(harness, endpoint) as client:
        waiting = run.submit(client.get, "/v1/models")
        time.sleep(0.5)
        assert not waiting.done()
        command = [sys.executable, "-m", "testbed.openai_stub", "--port", str(port)]
        with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL) as vllm:
            try:
                served = waiting.result(timeout=30)
            finally:
                vllm.terminate()
    assert served.status_code == 200
    assert served.headers[lb.WORKER_ID_HEADER] == target.pod_id


def test_a_body_over_the_payload_cap_is_413_and_no_worker_sees_it(harness: Harness, stub: str) -> None:
    harness.emulator.lb.limits = LBLimits(payload_bytes=64 * 1024)
    endpoint, pool = lb_endpoint(harness, stub)
    with lb_client(harness, endpoint) as client:
        refused = client.post("/v1/chat/completions", json=chat(False, padding="x" * 65 * 1024))
        assert refused.status_code == 413
        assert refused.json() == {"error": lb.PAYLOAD_TOO_LARGE.error}
        assert client.post("/v1/chat/completions", json=chat(False, max_tokens=2)).status_code == 200
    wait_for(lambda: worker_requests(pool) >= 1, timeout=10)
    assert worker_requests(pool) == 1  # the second request only


def test_past_the_processing_cap_it_is_524_or_a_cut_stream(harness: Harness, slow_stub: str) -> None:
    """The stub takes 0.3 s a token, so 20 tokens outlast a 1 s cap."""
    harness.emulator.lb.limits = LBLimits(processing=1.0)
    endpoint, _pool = lb_endpoint(harness, slow_stub)
    with lb_client(harness, endpoint) as client:
        started = time.monotonic()
        late = client.post("/v1/chat/completions", json=chat(False, max_tokens=20))
        assert (late.status_code, late.json()) == (524, {"error": lb.PROCESSING_TIMEOUT.error})
        assert 1.0 <= time.monotonic() - started < 4
        received: list[str] = []
        with client.stream("POST", "/v1/chat/completions", json=chat(True, max_tokens=20)) as streamed:
            assert streamed.status_code == 200  # begun in time: past the cap only the connection can go
            with pytest.raises(httpx.RemoteProtocolError):
                collect(streamed.iter_lines(), received)
        assert 0 < len([line for line in received if line.startswith("data: ")]) < 20
        assert "data: [DONE]" not in received


def test_a_client_that_hangs_up_mid_stream_ends_the_workers_request(harness: Harness, slow_stub: str) -> None:
    endpoint, pool = lb_endpoint(harness, slow_stub)
    log = pool.processes[0].log_path
    assert log is not None
    with (
        lb_client(harness, endpoint) as client,
        client.stream("POST", "/v1/chat/completions", json=chat(True, max_tokens=30)) as streamed,
    ):
        lines = streamed.iter_lines()
        next(lines)  # held: a dropped iterator closes the connection
        record = endpoint.workers[pool.processes[0].pod_id]
        assert harness.emulator.call(lambda: len(record.in_flight)) == 1
    wait_for(lambda: re.search(r"job lb-\d+ cancelled", log.read_text()), timeout=10)  # the worker stopped it
    assert harness.emulator.call(lambda: len(record.in_flight)) == 0


def test_a_worker_whose_app_port_is_shut_gives_502(harness: Harness) -> None:
    """A misconfigured image: its server listens on PORT_HEALTH only (python's http.server answers 200 on /),
    so health says 200 while PORT refuses connections."""
    emulator = harness.emulator
    endpoint = emulator.call(lambda: emulator.create_endpoint())
    emulator.lb.serve(endpoint)
    server = 'exec "$0" -m http.server "$PORT_HEALTH" --bind 127.0.0.1'
    env = {"PORT_HEALTH": "8081", "HEALTH_CHECK_PATH": "/"}
    command = WorkerCommand(argv=("sh", "-c", server, sys.executable), env=env, log_dir=harness.log_dir)
    pool = LocalWorkers(emulator, endpoint, command)
    harness.pools.append(pool)
    pool.start(1)
    harness.wait_ready(endpoint, 1, timeout=30)
    with lb_client(harness, endpoint) as client:
        answer = client.get("/v1/models")
    assert (answer.status_code, answer.json()) == (502, {"error": lb.BAD_GATEWAY.error})


def test_a_worker_error_reaches_the_client_once(harness: Harness, failing_stub: str) -> None:
    """Two healthy workers: a gateway that retried would have sent the failed request to the other."""
    endpoint, pool = lb_endpoint(harness, failing_stub, workers=2)
    with lb_client(harness, endpoint) as client:
        failed = client.post("/v1/chat/completions", json=chat(False))
    assert failed.status_code == 500
    assert failed.headers[lb.WORKER_ID_HEADER] in {w.pod_id for w in pool.processes}
    assert "planned failure" in failed.json()["error"]["message"]
    wait_for(lambda: worker_requests(pool) >= 1, timeout=10)
    harness.wait_sweeps(5)
    assert worker_requests(pool) == 1


def timed_stream(client: httpx.Client, url: str) -> tuple[float, float]:
    """Seconds to the first byte of a streamed chat, and to its end."""
    started, first = time.monotonic(), None
    with client.stream("POST", url, json=chat(True)) as streamed:
        for _ in streamed.iter_raw():
            first = first or time.monotonic() - started
    assert first is not None
    return first, time.monotonic() - started


def test_the_worker_hop_pays_the_emulated_round_trip_once_per_answer(tmp_path: Path, stub: str) -> None:
    """400 ms between gateway and worker: the first byte is 400 ms later (200 there, 200 back), and a
    stream of some 20 chunks 50 ms apart is not 20 x 200 ms slower (each chunk is delayed, none waits for
    the one before)."""
    harness = Harness.start(tmp_path, EmulatorConfig(sweep_interval=0.1, worker_api_rtt_ms=400))
    try:
        endpoint, pool = lb_endpoint(harness, stub)
        target = harness.emulator.lb.pools[endpoint.id].targets[pool.processes[0].pod_id]
        with lb_client(harness, endpoint) as client, httpx.Client(timeout=30) as http:
            for _ in range(2):  # open both paths' connections
                http.get(f"{target.url}/v1/models")
                client.get("/v1/models")
            alone = timed_stream(http, f"{target.url}/v1/chat/completions")
            relayed = timed_stream(client, "/v1/chat/completions")
    finally:
        harness.close()
    assert 0.4 * 0.95 <= relayed[0] - alone[0] < 0.4 * 1.5, (alone, relayed)
    assert relayed[1] - alone[1] < 0.4 * 2, (alone, relayed)  # one after another they would add 4 s


def test_an_lb_endpoint_from_the_control_plane_starts_lb_workers(tmp_path: Path, stub: str) -> None:
    harness = Harness.start(tmp_path)
    harness.emulator.worker_factory = command_factory(harness.emulator, lb_command(tmp_path, stub))
    graphql = httpx.Client(base_url=harness.url, headers={"Authorization": f"Bearer {harness.key}"})
    try:
        health = [{"key": "PORT_HEALTH", "value": "8081"}, {"key": "HEALTH_CHECK_PATH", "value": "/healthz"}]
        template = {"name": "lb-tpl", "imageName": "r/notus:1", "containerDiskInGb": 20, "volumeInGb": 0, "env": health}
        saved = graphql.post("/graphql", json={"query": SAVE_TEMPLATE, "variables": {"input": template}}).json()
        spec = {
            "name": "notus-lb",
            "templateId": saved["data"]["saveTemplate"]["id"],
            "gpuIds": "AMPERE_80",
            "workersMin": 1,
            "workersMax": 1,
            "scalerType": lb.SCALER_TYPE,
            "scalerValue": 1,
            "type": lb.ENDPOINT_TYPE,
        }
        answer = graphql.post("/graphql", json={"query": SAVE_ENDPOINT, "variables": {"input": spec}}).json()
        endpoint_id = answer["data"]["saveEndpoint"]["id"]
        assert answer["data"]["saveEndpoint"]["type"] == "LB"
        assert answer["data"]["saveEndpoint"]["scalerType"] == "REQUEST_COUNT"
        endpoint = harness.emulator.endpoints[endpoint_id]
        harness.wait_ready(endpoint, 1, timeout=60)
        with lb_client(harness, endpoint) as client:
            assert client.get("/v1/models").json()["data"][0]["id"] == MODEL
        (target,) = harness.emulator.lb.pools[endpoint_id].targets.values()
        assert target.health_url.endswith("/healthz")
        assert target.url not in target.health_url  # a port of its own
        listed = graphql.post("/graphql", json={"query": "{ myself { endpoints { id type scalerType } } }"}).json()
        assert {"id": endpoint_id, "type": "LB", "scalerType": "REQUEST_COUNT"} in listed["data"]["myself"]["endpoints"]
    finally:
        graphql.close()
        harness.close()


SAVE_TEMPLATE = "mutation($input: SaveTemplateInput) { saveTemplate(input: $input) { id } }"
SAVE_ENDPOINT = "mutation($input: EndpointInput!) { saveEndpoint(input: $input) { id type scalerType } }"
