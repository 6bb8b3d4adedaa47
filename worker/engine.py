"""The vLLM OpenAI server behind the worker: started on loopback, awaited, supervised, stopped.

The worker only takes jobs once vLLM answers /health, and exits the moment vLLM dies: RunPod then
replaces the worker, which beats a worker that accepts jobs it can never serve.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from worker.model_cache import OFFLINE_ENV
from worker.params import MAX_STOP_SEQUENCES
from worker.settings import WorkerSettings
from worker.startup import StartupPhases, relay_vllm_log

log = logging.getLogger("notus.worker")


class EngineFailed(Exception):
    """vLLM exited, or did not become healthy in time."""


@dataclass(frozen=True)
class EngineInfo:
    served_model_name: str
    max_model_len: int
    startup_seconds: float


def vllm_command(settings: WorkerSettings, port: int) -> list[str]:
    """The command line that starts vLLM's OpenAI server; it works with the GPU and CPU builds alike."""
    command = [
        settings.vllm_python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", settings.model,
        "--served-model-name", settings.served_model_name,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--max-num-seqs", str(settings.max_num_seqs),
        "--tensor-parallel-size", str(settings.tensor_parallel_size),
        "--gpu-memory-utilization", str(settings.gpu_memory_utilization),
        "--disable-uvicorn-access-log",
    ]  # fmt: skip
    if settings.max_model_len:
        command += ["--max-model-len", str(settings.max_model_len)]
    if settings.reasoning_parser:
        command += ["--reasoning-parser", settings.reasoning_parser]
    if settings.tool_call_parser:
        command += ["--enable-auto-tool-choice", "--tool-call-parser", settings.tool_call_parser]
    if settings.trust_remote_code:
        command.append("--trust-remote-code")
    command += ["--load-format", settings.load_format]
    if settings.safetensors_load_strategy:
        command += ["--safetensors-load-strategy", settings.safetensors_load_strategy]
    if settings.async_scheduling:  # overlaps scheduling with the forward pass (the CPU build turns it off itself)
        command.append("--async-scheduling")
    return command + settings.extra_vllm_args


class Engine:
    """Owns the vLLM process (or watches an external server given by NOTUS_VLLM_URL)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.phases = StartupPhases()
        self._stopping = threading.Event()
        if settings.vllm_url:
            self.base_url = settings.vllm_url
        else:
            self.port = settings.vllm_port or _free_port()
            self.base_url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start vLLM in its own process group, so a terminal's Ctrl-C reaches the worker first."""
        if self.settings.vllm_url:
            return
        command = vllm_command(self.settings, self.port)
        log.info("starting vLLM: %s", " ".join(command[1:]))
        env = {**os.environ, **(OFFLINE_ENV if os.path.isdir(self.settings.model) else {})}  # a local model: no Hub
        # vLLM (0.32: entrypoints/generate/base/protocol.py StopParam) refuses more stop strings than
        # VLLM_MAX_STOP_STRINGS, default 4; the worker's contract allows MAX_STOP_SEQUENCES.
        env.setdefault("VLLM_MAX_STOP_STRINGS", str(MAX_STOP_SEQUENCES))
        # vLLM's output goes on to stderr (stdout is reserved for results, see --test_input), read on
        # the way for the lines that time its start-up phases.
        self.process = subprocess.Popen(
            command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        self.phases = relay_vllm_log(self.process, sys.stderr)

    def wait_until_ready(self, timeout: float) -> EngineInfo:
        """Poll /health until vLLM answers, then read the model's context length.

        Raises EngineFailed if vLLM exits first or `timeout` seconds pass.
        """
        started = time.monotonic()
        with httpx.Client(base_url=self.base_url, timeout=5.0) as client:
            while True:
                if self.process is not None and (code := self.process.poll()) is not None:
                    raise EngineFailed(f"vLLM exited with code {code} before it was ready (its log is above)")
                if self._stopping.is_set():
                    raise EngineFailed("the worker was stopped before vLLM was ready")
                if time.monotonic() - started > timeout:
                    raise EngineFailed(f"vLLM was not healthy after {timeout:.0f} s (NOTUS_STARTUP_TIMEOUT)")
                try:
                    if client.get("/health").status_code == 200:
                        models = client.get("/v1/models").json()["data"]
                        break
                except (httpx.HTTPError, KeyError, ValueError):
                    pass
                time.sleep(0.5)
        model = next((m for m in models if m.get("id") == self.settings.served_model_name), models[0])
        return EngineInfo(
            served_model_name=model["id"],
            max_model_len=int(model.get("max_model_len") or self.settings.max_model_len or 4096),
            startup_seconds=time.monotonic() - started,
        )

    def supervise(self, on_death: Callable[[str], None]) -> None:
        """Call `on_death(reason)` from a daemon thread when vLLM exits (or an external one stops answering)."""
        threading.Thread(target=self._watch, args=(on_death,), name="vllm-supervisor", daemon=True).start()

    def _watch(self, on_death: Callable[[str], None]) -> None:
        if self.process is not None:
            code = self.process.wait()
            if not self._stopping.is_set():
                on_death(f"vLLM exited with code {code}")
            return
        failures = 0
        with httpx.Client(base_url=self.base_url, timeout=5.0) as client:
            while not self._stopping.wait(5.0):
                try:
                    failures = 0 if client.get("/health").status_code == 200 else failures + 1
                except httpx.HTTPError:
                    failures += 1
                if failures >= 3:
                    on_death(f"vLLM at {self.base_url} stopped answering /health")
                    return

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM vLLM's process group, then SIGKILL what is left after `grace` seconds."""
        first = not self._stopping.is_set()
        self._stopping.set()
        if self.process is None or self.process.poll() is not None:
            return
        if first:
            log.info("stopping vLLM")
        stop_process_group(self.process, grace)


def stop_process_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the group `process` leads, SIGKILL it after `grace` seconds, then SIGKILL what outlived
    the leader (vLLM's engine-core processes do when the API server dies first)."""
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
    _signal_group(process.pid, signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
