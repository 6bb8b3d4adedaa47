"""`python -m worker` refuses bad settings at once, naming the variable, before starting vLLM."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest

from worker.engine import vllm_command
from worker.settings import WorkerSettings


def run_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker"], capture_output=True, text=True, env={**os.environ, **env}, timeout=60
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"NOTUS_MAX_NUM_SEQS": "many"}, "NOTUS_MAX_NUM_SEQS"),
        ({"NOTUS_GPU_MEMORY_UTILIZATION": "1.5"}, "NOTUS_GPU_MEMORY_UTILIZATION"),
        ({"NOTUS_TENSOR_PARALLEL_SIZE": "0"}, "NOTUS_TENSOR_PARALLEL_SIZE"),
        ({"NOTUS_MAX_MODEL_LEN": "8"}, "NOTUS_MAX_MODEL_LEN"),
        ({"NOTUS_LOG_CONTENT": "perhaps"}, "NOTUS_LOG_CONTENT"),
        ({"NOTUS_VLLM_ARGS": "--x 'unbalanced"}, "NOTUS_VLLM_ARGS"),
        ({"NOTUS_VLLM_URL": "localhost:8000"}, "NOTUS_VLLM_URL"),
        ({"NOTUS_STARTUP_TIMEOUT": "-1"}, "NOTUS_STARTUP_TIMEOUT"),
        ({"NOTUS_CONCURRENCY": "64", "NOTUS_MAX_NUM_SEQS": "8"}, "NOTUS_CONCURRENCY"),
        ({"NOTUS_ENDPOINT_TYPE": "serverless"}, "NOTUS_ENDPOINT_TYPE"),
        # RunPod's own names for an LB worker's ports and health route: no NOTUS_ prefix
        ({"NOTUS_ENDPOINT_TYPE": "lb", "PORT": "eighty"}, "PORT (got 'eighty')"),
        ({"NOTUS_ENDPOINT_TYPE": "lb", "PORT_HEALTH": "70000"}, "PORT_HEALTH"),
        ({"NOTUS_ENDPOINT_TYPE": "lb", "HEALTH_CHECK_PATH": "ping"}, "HEALTH_CHECK_PATH"),
    ],
)
def test_bad_setting_exits_2_naming_it(env: dict[str, str], named: str) -> None:
    result = run_worker(env)
    assert result.returncode == 2
    assert named in result.stderr
    assert "expected" in result.stderr or "exceeds" in result.stderr
    assert "Traceback" not in result.stderr
    assert "starting vLLM" not in result.stderr


def test_vllm_command_line_carries_every_setting() -> None:
    settings = WorkerSettings(
        model="/models/nemotron",
        served_model_name="nemotron",
        max_model_len=8192,
        max_num_seqs=12,
        tensor_parallel_size=2,
        gpu_memory_utilization=0.85,
        vllm_python="/usr/bin/python3",
        vllm_args="--mamba-ssm-cache-dtype float16 --kv-cache-dtype 'fp8'",
    )
    command = vllm_command(settings, 8123)
    assert command[:3] == ["/usr/bin/python3", "-m", "vllm.entrypoints.openai.api_server"]
    pairs = dict(itertools.pairwise(command))
    assert pairs["--model"] == "/models/nemotron"
    assert pairs["--served-model-name"] == "nemotron"
    assert pairs["--host"] == "127.0.0.1"
    assert pairs["--port"] == "8123"
    assert pairs["--max-model-len"] == "8192"
    assert pairs["--max-num-seqs"] == "12"
    assert pairs["--tensor-parallel-size"] == "2"
    assert pairs["--gpu-memory-utilization"] == "0.85"
    assert pairs["--reasoning-parser"] == "nemotron_v3"
    assert pairs["--tool-call-parser"] == "qwen3_coder"
    assert "--enable-auto-tool-choice" in command
    assert "--async-scheduling" in command
    assert "--async-scheduling" not in vllm_command(WorkerSettings(async_scheduling=False), 1)
    assert command[-4:] == ["--mamba-ssm-cache-dtype", "float16", "--kv-cache-dtype", "fp8"]
    assert settings.job_concurrency == 12


def test_parsers_can_be_turned_off() -> None:
    command = vllm_command(WorkerSettings(reasoning_parser="", tool_call_parser=""), 1)
    assert "--reasoning-parser" not in command
    assert "--enable-auto-tool-choice" not in command


def test_lb_ports_follow_runpods_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """runpod/docs serverless/load-balancing/overview: PORT 80, PORT_HEALTH = PORT; path /ping."""
    for name in ("PORT", "PORT_HEALTH", "HEALTH_CHECK_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NOTUS_ENDPOINT_TYPE", "lb")
    settings = WorkerSettings()
    assert (settings.endpoint_type, settings.port, settings.health_port, settings.health_check_path) == (
        "lb",
        80,
        80,
        "/ping",
    )
    monkeypatch.setenv("PORT", "8080")
    assert WorkerSettings().health_port == 8080
    monkeypatch.setenv("PORT_HEALTH", "8081")
    monkeypatch.setenv("HEALTH_CHECK_PATH", "/healthz")
    settings = WorkerSettings()
    assert (settings.port, settings.health_port, settings.health_check_path) == (8080, 8081, "/healthz")
