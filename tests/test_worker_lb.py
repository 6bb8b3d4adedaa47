"""The worker in LB mode (`python -m worker` with NOTUS_ENDPOINT_TYPE=lb): a real process running its
own vLLM (CPU build, tiny model), reached over HTTP as RunPod's load balancer reaches it.

One worker serves the whole module (vLLM takes most of a minute to start); its health route is on a
port of its own (PORT_HEALTH), polled from the moment the process starts, so the codes it gave while
vLLM loaded are known. The last test kills vLLM and checks the worker goes with it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from testbed.common import ROOT, wait_for
from testbed.vllm import MAX_MODEL_LEN, SERVED_NAME, TEST_VLLM_ARGS, cpu_env, free_port, vllm_python

pytestmark = pytest.mark.vllm

HELLO = [{"role": "user", "content": "What does the Bible say about wisdom?"}]
NO_THINKING = {"enable_thinking": False}
SECRET = "Quillon-9 saffron parable"
LONG = {"messages": HELLO, "max_tokens": 3000, "min_tokens": 3000, "ignore_eos": True, "stop": "<|never|>"}


@dataclass
class LBWorker:
    process: subprocess.Popen[bytes]
    url: str
    health_url: str
    vllm_url: str
    log: Path
    health_codes: list[int] = field(default_factory=list)
    loading_answer: httpx.Response | None = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def lb_worker(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LBWorker]:
    port, health, vllm_port = free_port(), free_port(), free_port()
    log = tmp_path_factory.mktemp("lb-worker") / "worker.log"
    env = {
        **os.environ,
        **cpu_env(),
        "PYTHONPATH": str(ROOT),
        "NOTUS_ENDPOINT_TYPE": "lb",
        "PORT": str(port),
        "PORT_HEALTH": str(health),
        "NOTUS_MODEL": str(tiny_model),
        "NOTUS_VLLM_PYTHON": vllm_python(),
        "NOTUS_VLLM_PORT": str(vllm_port),
        "NOTUS_MAX_MODEL_LEN": str(MAX_MODEL_LEN),
        "NOTUS_MAX_NUM_SEQS": "8",
        "NOTUS_VLLM_ARGS": TEST_VLLM_ARGS,
    }
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)
    worker = LBWorker(process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{health}/ping", "", log)
    worker.vllm_url = f"http://127.0.0.1:{vllm_port}"
    try:
        deadline = time.monotonic() + 300
        with httpx.Client(timeout=5) as http:
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    code = http.get(worker.health_url).status_code
                except httpx.TransportError:
                    time.sleep(0.1)
                    continue
                worker.health_codes.append(code)
                if code == 200:
                    break
                if worker.loading_answer is None:
                    worker.loading_answer = http.post(f"{worker.url}/chat", json={"messages": HELLO})
                time.sleep(0.2)
        assert worker.health_codes[-1:] == [200], f"the worker never became healthy:\n{worker.log_text()[-3000:]}"
        yield worker
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def test_health_says_204_while_vllm_loads_then_200(lb_worker: LBWorker) -> None:
    """RunPod routes only to 200 and times the cold start from the first 204 to the first 200."""
    codes = lb_worker.health_codes
    assert codes[0] == 204, codes
    assert set(codes) == {204, 200}
    assert codes.index(200) == len(codes) - 1
    assert lb_worker.loading_answer is not None
    assert lb_worker.loading_answer.status_code == 503
    assert lb_worker.loading_answer.json()["error"]["type"] == "engine_loading"
    # the app port does not answer the health route when PORT_HEALTH is another port
    assert httpx.get(f"{lb_worker.url}/ping").status_code == 404


def test_the_native_route_answers_the_completion_object(lb_worker: LBWorker) -> None:
    job = {"messages": HELLO, "max_tokens": 16, "seed": 1, "chat_template_kwargs": NO_THINKING}
    for body in (job, {"input": job}):  # bare, or as sent to /runsync
        response = httpx.post(f"{lb_worker.url}/chat", json=body, timeout=60)
        assert response.status_code == 200
        completion = response.json()
        assert completion["object"] == "chat.completion"
        assert completion["id"].startswith("notus-")
        assert completion["model"] == SERVED_NAME
        assert isinstance(completion["choices"][0]["message"]["content"], str)
        assert 0 < completion["usage"]["completion_tokens"] <= 16


def sse_payloads(text: str) -> list[str]:
    events = [event for event in text.split("\n\n") if event]
    assert all(event.startswith("data: ") for event in events), events
    return [event[len("data: ") :] for event in events]


def test_the_native_route_streams_chunks(lb_worker: LBWorker) -> None:
    job = {"messages": HELLO, "max_tokens": 12, "seed": 2, "stream": True, "ignore_eos": True}
    response = httpx.post(f"{lb_worker.url}/chat", json=job, timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" and chunk["model"] == SERVED_NAME for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[-1]["usage"]["completion_tokens"] >= 12


@pytest.mark.anyio
async def test_openai_clients_work_against_the_worker(lb_worker: LBWorker) -> None:
    """The official OpenAI SDK, pointed at the worker's /v1: streamed and not, and the model list."""
    async with openai.AsyncOpenAI(base_url=f"{lb_worker.url}/v1", api_key="unused", max_retries=0) as client:
        models = await client.models.list()
        assert [model.id for model in models.data] == [SERVED_NAME]
        answer = await client.chat.completions.create(
            model=SERVED_NAME, messages=HELLO, max_tokens=8, extra_body={"chat_template_kwargs": NO_THINKING}
        )
        assert answer.usage is not None
        assert answer.usage.completion_tokens <= 8
        assert answer.choices[0].message.content
        stream = await client.chat.completions.create(
            model=SERVED_NAME, messages=HELLO, max_tokens=8, stream=True, extra_body={"ignore_eos": True}
        )
        chunks = [chunk async for chunk in stream]
    assert chunks
    assert all(chunk.usage is None for chunk in chunks), "usage the client did not ask for is not relayed"
    assert all(chunk.choices for chunk in chunks)


@pytest.mark.parametrize(
    ("route", "body", "param"),
    [
        ("/chat", {"messages": HELLO, "top_p": 7}, "top_p"),
        ("/chat", {"input": {"messages": HELLO, "temperature": "hot"}}, "temperature"),
        ("/chat", {"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ("/chat", {"messages": HELLO, "colour": "blue"}, "colour"),
        ("/v1/chat/completions", {"model": SERVED_NAME, "messages": HELLO, "stream": "yes"}, "openai_input.stream"),
    ],
)
def test_refused_parameters_are_400_naming_them(lb_worker: LBWorker, route: str, body: Any, param: str) -> None:
    response = httpx.post(f"{lb_worker.url}{route}", json=body, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert error["param"] == param
    assert error["message"]


def test_as_many_stop_strings_as_the_contract_allows(lb_worker: LBWorker) -> None:
    """vLLM takes 4 unless told otherwise; the worker's own vLLM is told the contract's 16."""
    stops = [f"<|stop{i}|>" for i in range(16)]
    response = httpx.post(f"{lb_worker.url}/chat", json={"messages": HELLO, "max_tokens": 4, "stop": stops}, timeout=60)
    assert response.status_code == 200, response.text


def test_what_vllm_refuses_keeps_its_status_and_message(lb_worker: LBWorker) -> None:
    huge = [{"role": "user", "content": "wisdom and understanding " * 4000}]
    for stream in (False, True):
        response = httpx.post(f"{lb_worker.url}/chat", json={"messages": huge, "stream": stream}, timeout=60)
        assert response.status_code == 400
        assert str(MAX_MODEL_LEN) in response.json()["error"]["message"]
    response = httpx.post(f"{lb_worker.url}/chat", content=b"{not json", timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "body"


def running_requests(worker: LBWorker) -> float:
    metrics = httpx.get(f"{worker.vllm_url}/metrics", timeout=10).text
    values = re.findall(r"^vllm:num_requests_running\{[^}]*\} ([0-9.]+)$", metrics, flags=re.MULTILINE)
    assert values, "vLLM no longer reports vllm:num_requests_running"
    return sum(float(v) for v in values)


@pytest.mark.parametrize("route", ["/chat", "/v1/chat/completions"])
def test_a_client_that_hangs_up_stops_vllm(lb_worker: LBWorker, route: str) -> None:
    wait_for(lambda: running_requests(lb_worker) == 0, timeout=30, interval=0.2)
    body = {**LONG, "stream": True} if route == "/chat" else {"model": SERVED_NAME, **LONG, "stream": True}
    with (
        httpx.Client(timeout=60) as http,
        http.stream("POST", f"{lb_worker.url}{route}", json=body) as response,
    ):
        assert response.status_code == 200
        received = response.iter_bytes()  # held: a dropped iterator closes the connection
        next(received)
        wait_for(lambda: running_requests(lb_worker) == 1, timeout=15, interval=0.2)
    wait_for(lambda: running_requests(lb_worker) == 0, timeout=15, interval=0.2)
    # a non-streamed request whose client gives up while vLLM is at work
    with httpx.Client(timeout=3) as http, pytest.raises(httpx.ReadTimeout):
        http.post(f"{lb_worker.url}/chat", json=LONG)
    wait_for(lambda: running_requests(lb_worker) == 0, timeout=15, interval=0.2)


def test_the_log_has_sizes_and_real_token_counts_never_text(lb_worker: LBWorker) -> None:
    messages = [{"role": "user", "content": SECRET}]
    body = {"model": SERVED_NAME, "messages": messages, "max_tokens": 9, "stream": True, "ignore_eos": True}
    httpx.post(f"{lb_worker.url}/v1/chat/completions", json=body, timeout=60).raise_for_status()
    httpx.post(f"{lb_worker.url}/chat", json={"messages": messages, "max_tokens": 5}, timeout=60).raise_for_status()
    line = wait_for(
        lambda: [x for x in lb_worker.log_text().splitlines() if "openai /v1/chat/completions stream=true" in x],
        timeout=10,
    )[-1]
    assert "output_tokens=9 " in line, line
    assert SECRET not in lb_worker.log_text()


def test_the_worker_exits_when_its_vllm_dies(lb_worker: LBWorker) -> None:
    """Last in the module: it ends the shared worker, as a dead engine must (RunPod then replaces it)."""
    engine = next(
        pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if _is_vllm_of(pid, lb_worker.process.pid)
    )
    os.killpg(engine, signal.SIGKILL)
    assert lb_worker.process.wait(60) == 1
    with pytest.raises(httpx.TransportError):
        httpx.get(lb_worker.health_url, timeout=5)


def _is_vllm_of(pid: int, parent: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"vllm.entrypoints.openai.api_server" in command
