"""An emulator on loopback for tests: endpoints with real runpod SDK worker processes.

The echo workers (tests/support/echo_worker.py) run the unmodified SDK against the emulator with a
trivial handler, so protocol tests take seconds instead of waiting for vLLM.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from notus_cli.emulator import Emulator, EmulatorConfig, EmulatorServer, Endpoint, LocalWorkers, WorkerCommand, new_key

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def echo_command(log_dir: Path, *, concurrency: int = 8) -> WorkerCommand:
    return WorkerCommand(
        argv=(sys.executable, "-m", "tests.support.echo_worker"),
        env={"ECHO_CONCURRENCY": str(concurrency), "RUNPOD_LOG_LEVEL": "INFO"},
        log_dir=log_dir,
        cwd=ROOT,
    )


def wait_for(check: Callable[[], T], timeout: float = 60.0, interval: float = 0.05) -> T:
    """Poll `check()` until it returns something truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@dataclass
class Harness:
    emulator: Emulator
    server: EmulatorServer
    key: str
    log_dir: Path
    pools: list[LocalWorkers] = field(default_factory=list)

    @classmethod
    def start(cls, log_dir: Path, config: EmulatorConfig | None = None) -> Harness:
        key = new_key()
        emulator = Emulator(config or EmulatorConfig(sweep_interval=0.1), api_keys=[key])
        return cls(emulator, EmulatorServer(emulator).start(), key, log_dir)

    @property
    def url(self) -> str:
        return self.server.url

    def endpoint(self, workers: int = 0, *, command: WorkerCommand | None = None) -> tuple[Endpoint, LocalWorkers]:
        """A new endpoint with `workers` worker processes (echo workers unless `command` says otherwise)."""
        endpoint = self.emulator.call(lambda: self.emulator.create_endpoint(max_workers=max(1, workers)))
        pool = LocalWorkers(self.emulator, endpoint, command or echo_command(self.log_dir / endpoint.id))
        self.pools.append(pool)
        if workers:
            pool.start(workers)
            self.wait_ready(endpoint, workers)
        return endpoint, pool

    def wait_ready(self, endpoint: Endpoint, count: int, timeout: float = 120.0) -> None:
        def ready() -> bool:
            states = self.emulator.call(lambda: [w.state for w in endpoint.workers.values()])
            return states.count("idle") + states.count("running") >= count

        wait_for(ready, timeout, 0.2)

    def http(self, endpoint_id: str, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.Client(base_url=f"{self.url}/v2/{endpoint_id}", headers=headers, timeout=60.0)

    def close(self) -> None:
        for pool in self.pools:
            pool.stop()
        self.server.stop()
