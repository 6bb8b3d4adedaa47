"""An emulator on loopback for tests: endpoints with real runpod SDK worker processes.

The echo workers (testbed/echo_worker.py) run the unmodified SDK against the emulator with a
trivial handler, so protocol tests take seconds instead of waiting for vLLM.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from notus_cli.emulator import Emulator, EmulatorConfig, EmulatorServer, Endpoint, LocalWorkers, WorkerCommand, new_key
from testbed.common import ROOT, wait_for
from testbed.openai_stub import MODEL


def echo_command(log_dir: Path, *, concurrency: int = 8) -> WorkerCommand:
    return WorkerCommand(
        argv=(sys.executable, "-m", "testbed.echo_worker"),
        env={"ECHO_CONCURRENCY": str(concurrency), "RUNPOD_LOG_LEVEL": "INFO"},
        log_dir=log_dir,
        cwd=ROOT,
    )


def lb_command(log_dir: Path, vllm_url: str) -> WorkerCommand:
    """`python -m worker` as the image runs it (the emulator adds the LB env); only its vLLM is a stand-in,
    testbed.openai_stub at `vllm_url`, a real HTTP server of its own."""
    env = {"NOTUS_VLLM_URL": vllm_url, "NOTUS_SERVED_MODEL_NAME": MODEL, "NOTUS_MAX_NUM_SEQS": "16"}
    return WorkerCommand(argv=(sys.executable, "-m", "worker"), env=env, log_dir=log_dir, cwd=ROOT)


@dataclass
class Harness:
    emulator: Emulator
    server: EmulatorServer
    key: str
    log_dir: Path
    pools: list[LocalWorkers] = field(default_factory=list)
    sweeps: int = 0  # the emulator's background sweeps so far (each runs the autoscaler's tick)

    @classmethod
    def start(cls, log_dir: Path, config: EmulatorConfig | None = None) -> Harness:
        key = new_key()
        emulator = Emulator(config or EmulatorConfig(sweep_interval=0.1), api_keys=[key])
        harness = cls(emulator, EmulatorServer(emulator).start(), key, log_dir)
        harness._count_sweeps()
        return harness

    def _count_sweeps(self) -> None:
        """Count the sweeps: every one ends with the control plane's tick, which we wrap on this instance."""
        tick = self.emulator.control.tick

        def counted(now: float) -> None:
            tick(now)
            self.sweeps += 1

        self.emulator.control.tick = counted  # type: ignore[method-assign]

    def wait_sweeps(self, count: int = 2, timeout: float = 30.0) -> None:
        """Let `count` whole sweeps pass: to show something did NOT happen, give the emulator (its queue,
        its autoscaler) full chances to do it, rather than sleeping a guessed time."""
        target = self.sweeps + count + 1  # +1: the sweep running now may have begun before this call
        wait_for(lambda: self.sweeps >= target, timeout, 0.01)

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
