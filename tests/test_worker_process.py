"""Real `python -m worker` processes pulling jobs from the emulator: a dying vLLM, and privacy of logs."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from notus_cli.emulator import WorkerCommand
from notus_cli.serve.vllm import vllm_env
from testbed.common import wait_for
from testbed.emulator import Harness
from testbed.procs import children, descendants, running
from testbed.vllm import MAX_MODEL_LEN, TEST_VLLM_ARGS, VllmServer, vllm_python

pytestmark = pytest.mark.vllm

PHRASE = "zebra quokka marmalade 7781"
LONG = {
    "messages": [{"role": "user", "content": "Tell me a long story."}],
    "max_tokens": 3000,
    "min_tokens": 3000,
    "ignore_eos": True,
    "stop": "<|never|>",
    "stream": True,
}


def worker_command(log_dir: Path, **env: str) -> WorkerCommand:
    return WorkerCommand(argv=(sys.executable, "-m", "worker"), env={"NOTUS_MAX_NUM_SEQS": "8", **env}, log_dir=log_dir)


def vllm_children(pid: int) -> list[int]:
    found = []
    for child in descendants(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"vllm.entrypoints.openai.api_server" in command:
            found.append(child)
    return found


def own_vllm_env(tiny_model: Path) -> dict[str, str]:
    """A worker started without NOTUS_VLLM_URL runs its own vLLM, as in the container."""
    return vllm_env({}) | {
        "NOTUS_MODEL": str(tiny_model),
        "NOTUS_VLLM_PYTHON": vllm_python(),
        "NOTUS_MAX_MODEL_LEN": str(MAX_MODEL_LEN),
        "NOTUS_VLLM_ARGS": TEST_VLLM_ARGS,
    }


def test_worker_exits_1_when_its_own_vllm_dies(emulator: Harness, tiny_model: Path, tmp_path: Path) -> None:
    """Killing the worker's own vLLM ends the worker (exit 1, so RunPod would replace it) and the job
    it was running ends FAILED."""
    endpoint, pool = emulator.endpoint(workers=0, command=worker_command(tmp_path, **own_vllm_env(tiny_model)))
    worker = pool.start(1)[0]
    try:
        emulator.wait_ready(endpoint, 1, timeout=420)
        [engine] = vllm_children(worker.pid)
        with emulator.http(endpoint.id) as client:
            job_id = client.post("/run", json={"input": LONG}).json()["id"]
            wait_for(lambda: client.get(f"/stream/{job_id}").json()["stream"], timeout=120, interval=0.2)
            os.killpg(engine, signal.SIGKILL)
            wait_for(lambda: worker.exit_code is not None, timeout=60, interval=0.2)
            status = wait_for(lambda: _final(client, job_id), timeout=30)
    finally:
        pool.stop()
    assert worker.exit_code == 1
    assert status["status"] == "FAILED"
    assert status["error"]  # engine_error if the worker saw vLLM go first, else worker_lost
    log = (tmp_path / "worker-1.log").read_text()
    assert "the worker exits so RunPod can replace it" in log
    assert not [pid for pid in descendants(worker.pid) if running(pid)]


def test_sigterm_stops_the_worker_and_its_vllm(emulator: Harness, tiny_model: Path, tmp_path: Path) -> None:
    """RunPod stops a worker with SIGTERM: the worker finishes the job it is running, then stops its
    vLLM and exits 0, leaving no process behind."""
    endpoint, pool = emulator.endpoint(workers=0, command=worker_command(tmp_path, **own_vllm_env(tiny_model)))
    worker = pool.start(1)[0]
    try:
        emulator.wait_ready(endpoint, 1, timeout=420)
        assert vllm_children(worker.pid)
        with emulator.http(endpoint.id) as client:
            job_id = client.post("/run", json={"input": {**LONG, "max_tokens": 200, "min_tokens": 200}}).json()["id"]
            wait_for(lambda: client.get(f"/stream/{job_id}").json()["stream"], timeout=120, interval=0.2)
            everything = [worker.pid, *descendants(worker.pid)]
            [worker_process] = children(worker.pid)  # below notus's guard, as PID 1 is in a container
            os.kill(worker_process, signal.SIGTERM)
            wait_for(lambda: worker.exit_code is not None, timeout=120, interval=0.2)
            status = wait_for(lambda: _final(client, job_id), timeout=30)
            survivors = [pid for pid in everything if running(pid)]
    finally:
        pool.stop()
    assert worker.exit_code == 0, "a worker told to stop by SIGTERM stops cleanly"
    assert not survivors, "vLLM outlived its worker"
    assert status["status"] == "COMPLETED", status


def _final(client: httpx.Client, job_id: str) -> dict[str, Any] | None:
    body: dict[str, Any] = client.get(f"/status/{job_id}").json()
    return body if body["status"] not in ("IN_QUEUE", "IN_PROGRESS") else None


def test_no_message_text_in_any_log_unless_the_operator_opts_in(
    emulator: Harness, vllm_server: VllmServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    messages = [{"role": "system", "content": f"Remember {PHRASE}."}, {"role": "user", "content": PHRASE}]
    texts = {}
    for opted_in in (False, True):
        log_dir = tmp_path / ("opted-in" if opted_in else "default")
        command = worker_command(log_dir, NOTUS_VLLM_URL=vllm_server.base_url, NOTUS_LOG_CONTENT=str(opted_in).lower())
        endpoint, pool = emulator.endpoint(workers=1, command=command)
        with emulator.http(endpoint.id) as client:
            for body in _requests(messages):
                assert client.post("/runsync", json={"input": body}).json()["status"] in ("COMPLETED", "FAILED")
            openai = {"model": vllm_server_model(vllm_server), "messages": messages, "max_tokens": 8}
            assert client.post("/openai/v1/chat/completions", json=openai).status_code == 200
            with client.stream("POST", "/openai/v1/chat/completions", json={**openai, "stream": True}) as stream:
                assert "[DONE]" in stream.read().decode()
        pool.stop()  # flush and close the log
        texts[opted_in] = (log_dir / "worker-1.log").read_text()
    assert PHRASE not in texts[False], "the worker logged message text without NOTUS_LOG_CONTENT"
    assert "job " in texts[False], "the worker did log its jobs' sizes and timings"
    assert PHRASE in texts[True], "NOTUS_LOG_CONTENT=true logs message text"
    # vLLM runs unbuffered (serve.vllm.vllm_env) and logs a request before it answers it: no wait needed.
    assert PHRASE not in vllm_server.log_path.read_text(), "vLLM logged message text"
    assert PHRASE not in caplog.text, "the emulator logged message text"


def _requests(messages: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [
        {"messages": messages, "max_tokens": 8},
        {"messages": messages, "max_tokens": 8, "stream": True},
        {"messages": [*messages, {"role": "wizard", "content": PHRASE}]},  # refused: the error names the role only
        {"messages": messages, "sampling_params": {"max_tokens": 8, "temperature": 0.1}},
    ]


def vllm_server_model(server: VllmServer) -> str:
    return str(httpx.get(f"{server.base_url}/v1/models", timeout=10).json()["data"][0]["id"])


def fitness_command(log_dir: Path, **env: str) -> WorkerCommand:
    """`python -m worker` with the runpod SDK's start-up fitness checks on, as on RunPod.

    The emulator's worker env switches them off (RUNPOD_SKIP_AUTO_SYSTEM_CHECKS, RUNPOD_SKIP_GPU_CHECK)
    and wins over a command's env, so `env -u` removes both before Python starts. The SDK's network
    check targets 8.8.8.8, which tests may not reach: testbed/fitness_worker.py points that one
    check at a loopback listener (NOTUS_TEST_NETWORK_CHECK), the caller's `loopback_listener`.
    """
    argv = (
        "env",
        "-u",
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS",
        "-u",
        "RUNPOD_SKIP_GPU_CHECK",
        sys.executable,
        "-m",
        "testbed.fitness_worker",
    )
    return WorkerCommand(argv=argv, env={"NOTUS_MAX_NUM_SEQS": "8", **env}, log_dir=log_dir)


@pytest.fixture
def loopback_listener() -> Iterator[str]:
    """A TCP listener on 127.0.0.1 for the SDK's network check to connect to; yields host:port."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


def test_the_sdks_fitness_checks_run_with_real_settings_and_pass(
    emulator: Harness, vllm_server: VllmServer, tmp_path: Path, loopback_listener: str
) -> None:
    """The runpod SDK's checks (runpod/serverless/modules/rp_fitness.py, rp_system_fitness.py) with its
    default thresholds: at least 4 GB of memory available, 10% of / free, and a TCP connection (to a
    loopback listener here, not the SDK's 8.8.8.8: see fitness_command). The GPU checks (rp_gpu_fitness.py,
    and the CUDA ones) register only when `nvidia-smi` answers; no GPU exists here, so the SDK itself
    leaves them out, and the worker then takes and finishes a job."""
    endpoint, pool = emulator.endpoint(
        workers=0,
        command=fitness_command(
            tmp_path, NOTUS_VLLM_URL=vllm_server.base_url, NOTUS_TEST_NETWORK_CHECK=loopback_listener
        ),
    )
    pool.start(1)
    try:
        emulator.wait_ready(endpoint, 1, timeout=180)
        with emulator.http(endpoint.id) as client:
            body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
            assert client.post("/runsync", json={"input": body}).json()["status"] == "COMPLETED"
    finally:
        pool.stop()
    log = (tmp_path / "worker-1.log").read_text()
    for passed in ("Memory check passed", "Disk space check passed", "Network connectivity passed"):
        assert passed in log
    assert "Running 3 fitness check(s)" in log  # memory, disk, network: no GPU checks without nvidia-smi
    assert "All fitness checks passed" in log


def test_a_failed_fitness_check_ends_the_worker_and_reports_why(
    emulator: Harness, vllm_server: VllmServer, tmp_path: Path, loopback_listener: str
) -> None:
    """A real threshold the machine cannot meet (RUNPOD_MIN_MEMORY_GB, read by the SDK): the worker
    exits 1 before taking jobs and tells the endpoint why through its ping, as RunPod's host sees it."""
    command = fitness_command(
        tmp_path,
        NOTUS_VLLM_URL=vllm_server.base_url,
        NOTUS_TEST_NETWORK_CHECK=loopback_listener,
        RUNPOD_MIN_MEMORY_GB="100000",
    )
    endpoint, pool = emulator.endpoint(workers=0, command=command)
    [worker] = pool.start(1)
    try:
        wait_for(lambda: worker.exit_code is not None, timeout=180, interval=0.2)
        reason = emulator.emulator.call(lambda: endpoint.workers[worker.pod_id].unhealthy)
    finally:
        pool.stop()
    assert worker.exit_code == 1
    assert reason is not None
    assert "Insufficient memory" in reason
    assert "Worker is unhealthy, exiting" in (tmp_path / "worker-1.log").read_text()
