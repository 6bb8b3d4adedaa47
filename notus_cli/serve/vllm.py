"""The one vLLM a local stack (or a test session) shares: found, started, awaited, stopped.

The command line, the /health wait and the stop are the worker's own (`worker.engine`: `vllm_command`,
`Engine.wait_until_ready`, `stop_process_group`), so what runs locally is what runs in the container;
this module adds a log file, the guard that stops vLLM if we die, and progress while it starts. vLLM
lives in its own virtual environment (its fastapi pin conflicts with the runpod SDK's), found through
the `vllm_python` setting.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from notus_cli.errors import ConfigError, EngineError
from notus_cli.guard import guarded
from worker.engine import Engine, EngineFailed, stop_process_group, vllm_command
from worker.settings import WorkerSettings

WAIT_STEP = 5.0  # seconds per call of the worker's wait, between progress reports
REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = Path(".venv-vllm") / "bin" / "python"

# vLLM's CPU build: KV cache size, loopback only, one process (start-up halves), no telemetry.
CPU_DEFAULTS: Mapping[str, str] = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_HOST_IP": "127.0.0.1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def resolve_vllm_python(configured: str | None, *, cwd: Path | None = None) -> str:
    """The interpreter that has vLLM.

    `configured` (the vllm_python setting) if given; else .venv-vllm/bin/python under the current
    directory or the repository this package runs from; else this Python, if it can import vllm.
    Raises ConfigError for a configured path that is not there, EngineError when nothing is found.
    """
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(
                f"vllm_python {configured!r} is not an executable file",
                hint="point vllm_python (notus.toml) or NOTUS_VLLM_PYTHON at the python of a venv with vLLM",
            )
        return str(path)
    for root in (cwd or Path.cwd(), REPO_ROOT):
        candidate = root / VENV_PYTHON
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise EngineError(
        "vLLM was not found: no .venv-vllm here, and this Python cannot import vllm",
        hint="run scripts/setup, or set vllm_python in notus.toml (NOTUS_VLLM_PYTHON) to a Python with vLLM",
    )


def vllm_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment for vLLM: `base` (default: ours), the CPU defaults where unset, then `extra`."""
    env = dict(os.environ if base is None else base)
    for key, value in CPU_DEFAULTS.items():
        env.setdefault(key, value)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")  # its log file is current the moment a request is answered
    env.update(extra)
    return env


@dataclass
class VllmProcess:
    """A running `vllm serve` in its own process group, logging to `log_path`."""

    engine: Engine  # the worker's handle on vLLM; it owns the process
    log_path: Path

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self.engine.process is not None
        return self.engine.process

    @property
    def base_url(self) -> str:
        return self.engine.base_url

    @classmethod
    def start(cls, settings: WorkerSettings, log_path: Path, *, env: Mapping[str, str] | None = None) -> VllmProcess:
        """Start vLLM on a free loopback port; returns at once (see `wait_until_ready`)."""
        engine = Engine(settings)  # picks the port: settings.vllm_port or a free one
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            engine.process = subprocess.Popen(
                guarded(vllm_command(settings, engine.port)),  # stopped even if we die without stop()
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else vllm_env(),
                start_new_session=True,
            )
        return cls(engine=engine, log_path=log_path)

    def wait_until_ready(self, timeout: float, on_wait: Callable[[float], None] | None = None) -> None:
        """Wait for /health (the worker's wait, a few seconds at a time so `on_wait` hears how long it has
        been); raises EngineError (with the end of vLLM's log) if it exits or `timeout` passes."""
        started = time.monotonic()
        while True:
            waited = time.monotonic() - started
            try:
                self.engine.wait_until_ready(min(WAIT_STEP, max(timeout - waited, 0.0)))
                return
            except EngineFailed:
                code = self.process.poll()
                if code is not None:
                    raise EngineError(
                        f"vLLM exited with code {code} while starting:\n{self.log_tail()}",
                        hint=f"its whole log is {self.log_path}",
                    ) from None
            waited = time.monotonic() - started
            if waited >= timeout:
                self.stop()
                raise EngineError(f"vLLM was not ready after {timeout:.0f} s", hint=f"see {self.log_path}")
            if on_wait is not None:
                on_wait(waited)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds, and what outlived the leader. Idempotent."""
        stop_process_group(self.process, grace)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
