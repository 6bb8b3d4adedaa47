"""Start vLLM's CPU build on a tiny model for tests and benchmarks (real engine, real HTTP)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from worker.engine import vllm_command
from worker.settings import DEFAULT_MODEL, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
SERVED_NAME = DEFAULT_MODEL
MAX_MODEL_LEN = 4096
# Eager mode skips torch.compile: start-up drops from ~50 s to ~30 s on these 2-core machines.
TEST_VLLM_ARGS = "--enforce-eager"


def vllm_python() -> str:
    """The interpreter with vLLM: NOTUS_VLLM_PYTHON, else the repository's .venv-vllm."""
    configured = os.environ.get("NOTUS_VLLM_PYTHON")
    if configured:
        return configured
    candidate = ROOT / ".venv-vllm" / "bin" / "python"
    if candidate.exists():
        return str(candidate)
    raise RuntimeError("vLLM not found: run scripts/setup, or set NOTUS_VLLM_PYTHON")


def cpu_env(**extra: str) -> dict[str, str]:
    """Environment for vLLM's CPU build (see the environment notes)."""
    env = dict(os.environ)
    env.update(
        VLLM_CPU_KVCACHE_SPACE="1",
        VLLM_HOST_IP="127.0.0.1",
        VLLM_ENABLE_V1_MULTIPROCESSING="0",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
    )
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class VllmServer:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_vllm(model_dir: Path, log_path: Path, *, max_num_seqs: int = 32, timeout: float = 300) -> VllmServer:
    """Start vLLM with the worker's own command line, wait for /health, return it."""
    port = free_port()
    settings = WorkerSettings(
        model=str(model_dir),
        vllm_python=vllm_python(),
        max_model_len=MAX_MODEL_LEN,
        max_num_seqs=max_num_seqs,
        vllm_args=TEST_VLLM_ARGS,
    )
    command = vllm_command(settings, port)
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=cpu_env())
    server = VllmServer(process=process, base_url=f"http://127.0.0.1:{port}", log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM exited with {process.returncode}; see {log_path}")
        try:
            if httpx.get(f"{server.base_url}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"vLLM not healthy after {timeout} s; see {log_path}")


if __name__ == "__main__":  # manual use: python -m tests.support.vllm MODEL_DIR
    srv = start_vllm(Path(sys.argv[1]), Path("vllm.log"))
    print(srv.base_url, flush=True)
    srv.process.wait()
