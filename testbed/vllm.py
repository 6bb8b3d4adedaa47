"""Start vLLM's CPU build on a tiny model for tests and benchmarks (real engine, real HTTP).

A thin layer over notus_cli.serve.vllm, so tests start vLLM exactly as `notus serve` does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from notus_cli.errors import NotusError
from notus_cli.serve.stack_config import TINY_VLLM_ARGS
from notus_cli.serve.vllm import VllmProcess, resolve_vllm_python, vllm_env
from testbed.common import ROOT
from worker.engine import _free_port as free_port  # the worker's own: one way to pick a loopback port
from worker.settings import DEFAULT_MODEL, WorkerSettings

SERVED_NAME = DEFAULT_MODEL
MAX_MODEL_LEN = 4096
# The same flags as `notus serve --tiny` (see TINY_VLLM_ARGS for why).
TEST_VLLM_ARGS = TINY_VLLM_ARGS

VllmServer = VllmProcess
__all__ = ["MAX_MODEL_LEN", "SERVED_NAME", "VllmServer", "cpu_env", "free_port", "start_vllm", "vllm_python"]


def vllm_python() -> str:
    """The interpreter with vLLM: NOTUS_VLLM_PYTHON, else the repository's .venv-vllm."""
    try:
        return resolve_vllm_python(os.environ.get("NOTUS_VLLM_PYTHON"), cwd=ROOT)
    except NotusError as exc:
        raise RuntimeError(f"{exc.message} ({exc.hint})") from None


def cpu_env(**extra: str) -> dict[str, str]:
    """Environment for vLLM's CPU build (its thread and KV-cache settings for a small machine)."""
    return vllm_env(**extra)


def start_vllm(
    model_dir: Path, log_path: Path, *, max_num_seqs: int = 32, timeout: float = 300, **settings_: str
) -> VllmServer:
    """Start vLLM with the worker's own command line (`settings_`: WorkerSettings fields to change),
    wait for /health, return it."""
    settings = WorkerSettings(
        model=str(model_dir),
        vllm_python=vllm_python(),
        max_model_len=MAX_MODEL_LEN,
        max_num_seqs=max_num_seqs,
        vllm_args=TEST_VLLM_ARGS,
        **settings_,
    )
    server = VllmProcess.start(settings, log_path, env=cpu_env())
    try:
        server.wait_until_ready(timeout)
    except NotusError as exc:
        server.stop()
        raise RuntimeError(exc.message) from None
    return server


if __name__ == "__main__":  # manual use: python -m testbed.vllm MODEL_DIR
    srv = start_vllm(Path(sys.argv[1]), Path("vllm.log"))
    print(srv.base_url, flush=True)
    srv.process.wait()
