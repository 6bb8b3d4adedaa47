"""Worker processes attached to an emulated endpoint, started and watched like RunPod does.

Each worker is an unmodified `python -m worker` (or any runpod SDK handler) configured with the
RUNPOD_WEBHOOK_* variables pointing at the emulator, in its own process group so a terminal's
Ctrl-C reaches `notus serve` first and nothing outlives `stop()`. When a worker's process exits the
emulator learns it at once, and the jobs it was running end FAILED (`worker_lost`; see
`endpoint.py`). With `restart=True` a dead worker is replaced by a new one, as RunPod does, unless
workers keep dying (more than `max_restarts` a minute).

Each worker runs under `notus_cli.guard`, which stops it if the process that started it dies
without calling `stop()` (a crash, SIGKILL): a worker whose queue is gone would spin on retries.

On a load-balancing endpoint (the account's `lb` gateway says which: lb_gateway.py) a worker gets
RunPod's LB env instead of the webhooks: `PORT` and `PORT_HEALTH` on free loopback ports of its own
(on RunPod every worker has its own host, so the template's numbers cannot be kept here; a template
that gives PORT_HEALTH its own port keeps a port of its own), the template's `HEALTH_CHECK_PATH`,
and `NOTUS_ENDPOINT_TYPE=lb` unless the template chose (worker/settings.py). The gateway is told
where its server will listen and watches its health route from then on.

Workers get an empty HOME of their own: the runpod SDK prefers the key in ~/.runpod/config.toml
over RUNPOD_AI_API_KEY, and a developer's real RunPod key must never be sent to the emulator.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from notus_cli.emulator.loop import AccountLoop
from notus_cli.guard import guarded
from notus_cli.runpod.protocol import lb
from notus_cli.runpod.protocol.routes import worker_webhooks

if TYPE_CHECKING:
    from notus_cli.emulator.endpoint import Endpoint
    from notus_cli.emulator.models import CachedModels

RESTART_WINDOW = 60.0
ENDPOINT_TYPE_ENV = "NOTUS_ENDPOINT_TYPE"  # the worker's mode: queue or lb (worker/settings.py endpoint_type)


@dataclass(frozen=True)
class WorkerCommand:
    """How to start one worker; `env` adds to (and wins over) the inherited environment."""

    argv: tuple[str, ...] = (sys.executable, "-m", "worker")
    env: Mapping[str, str] = field(default_factory=dict)
    log_dir: Path | None = None  # None: the worker writes to this process's stdout/stderr
    cwd: Path | None = None
    ping_interval_ms: int = 5000
    # RunPod cached models: each worker starts once these are in the cache, which it gets as NOTUS_MODEL_CACHE
    model_references: tuple[str, ...] = ()
    cached_models: CachedModels | None = None


def worker_env(emulator_url: str, endpoint: Endpoint, pod_id: str, *, ping_interval_ms: int = 5000) -> dict[str, str]:
    """The variables that make the runpod SDK take jobs from this emulator's endpoint, as on RunPod."""
    api = f"{emulator_url}/v2/{endpoint.id}"
    query = "?gpu=cpu"
    return {
        **worker_webhooks(api, query),
        "RUNPOD_AI_API_KEY": endpoint.worker_key,
        "RUNPOD_POD_ID": pod_id,
        "RUNPOD_ENDPOINT_ID": endpoint.id,
        "RUNPOD_POD_HOSTNAME": f"{pod_id}-local",
        "RUNPOD_PING_INTERVAL": str(ping_interval_ms),
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
        "RUNPOD_SKIP_GPU_CHECK": "true",
    }


class LBRouting(Protocol):
    """What a pool needs from the emulator's LB gateway (lb_gateway.LBGateway)."""

    def is_lb(self, endpoint_id: str) -> bool: ...

    def add_worker(self, endpoint: Endpoint, pod_id: str, url: str, health_url: str) -> None: ...


def lb_worker_env(template: Mapping[str, str], endpoint: Endpoint, pod_id: str) -> tuple[dict[str, str], str, str]:
    """RunPod's env for a worker of an LB endpoint (module docstring), its server's URL and its health URL."""
    port = _free_port()
    declared = template.get(lb.PORT_ENV, str(lb.DEFAULT_PORT))
    own_health = template.get(lb.PORT_HEALTH_ENV, declared) != declared
    health_port = _free_port() if own_health else port
    path = template.get(lb.HEALTH_CHECK_PATH_ENV) or lb.DEFAULT_HEALTH_CHECK_PATH
    env = {
        lb.PORT_ENV: str(port),
        lb.PORT_HEALTH_ENV: str(health_port),
        "RUNPOD_POD_ID": pod_id,
        "RUNPOD_ENDPOINT_ID": endpoint.id,
        "RUNPOD_POD_HOSTNAME": f"{pod_id}-local",
    }
    if ENDPOINT_TYPE_ENV not in template:
        env[ENDPOINT_TYPE_ENV] = "lb"
    return env, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{health_port}{path}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(eq=False)
class WorkerProcess:
    pod_id: str
    label: str
    process: subprocess.Popen[bytes]
    log_path: Path | None
    started: float
    exit_code: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


class LocalWorkers:
    """The worker processes of one endpoint. Thread-safe; `stop()` blocks, so call it off the event loop."""

    def __init__(
        self,
        account: AccountLoop,
        endpoint: Endpoint,
        command: WorkerCommand | None = None,
        *,
        restart: bool = False,
        max_restarts: int = 3,
    ) -> None:
        if account.url is None:
            raise RuntimeError("start the emulator's server before its workers")
        self.account = account
        self.endpoint = endpoint
        self.command = command or WorkerCommand()
        self.restart = restart
        self.max_restarts = max_restarts
        self.processes: list[WorkerProcess] = []
        self._numbers = itertools.count(1)
        self._restarts: list[float] = []
        self._stopping = False
        self._lock = threading.Lock()
        self._watchers: list[threading.Thread] = []
        self._home = Path(tempfile.mkdtemp(prefix="notus-worker-home-"))
        # The Emulator's gateway (server.py); an account without one has queue endpoints only.
        self.lb: LBRouting | None = getattr(account, "lb", None)

    def start(self, count: int = 1) -> list[WorkerProcess]:
        """Start `count` workers; returns at once (a worker is ready when the endpoint sees it poll)."""
        return [self._spawn() for _ in range(count)]

    def alive(self) -> list[WorkerProcess]:
        with self._lock:
            return [worker for worker in self.processes if worker.exit_code is None]

    def find(self, pod_id: str) -> WorkerProcess:
        with self._lock:
            return next(worker for worker in self.processes if worker.pod_id == pod_id)

    def kill(self, pod_id: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal a worker's whole process group (tests use this to kill a worker mid-job)."""
        _signal_group(self.find(pod_id).pid, sig)

    def stop_one(self, pod_id: str, grace: float = 10.0) -> None:
        """Stop one worker (scale-down, rolling release): no more jobs for it, SIGTERM, SIGKILL after `grace`."""
        worker = self.find(pod_id)
        self.account.call_soon(self.endpoint.drain, pod_id)
        _signal_group(worker.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(grace)
        _signal_group(worker.pid, signal.SIGKILL)

    def stop(self, grace: float = 10.0) -> None:
        """Stop every worker: SIGTERM, then SIGKILL what is left after `grace` seconds. Idempotent."""
        with self._lock:
            self._stopping = True
            running = [worker for worker in self.processes if worker.exit_code is None]
        for worker in running:
            _signal_group(worker.pid, signal.SIGTERM)
            self.account.call_soon(self.endpoint.drain, worker.pod_id)
        deadline = time.monotonic() + grace
        for worker in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            _signal_group(worker.pid, signal.SIGKILL)
        for watcher in list(self._watchers):
            watcher.join(5.0)
        shutil.rmtree(self._home, ignore_errors=True)

    def _spawn(self) -> WorkerProcess:
        number = next(self._numbers)
        pod_id = secrets.token_hex(7)
        label = f"worker-{number}"
        env = {key: value for key, value in os.environ.items() if not key.startswith("RUNPOD_")}
        env.update(self.command.env)
        assert self.account.url is not None
        lb_gateway = self.lb if self.lb is not None and self.lb.is_lb(self.endpoint.id) else None
        url = health_url = ""
        if lb_gateway is not None:
            lb_env, url, health_url = lb_worker_env(self.command.env, self.endpoint, pod_id)
            env.update(lb_env)
        else:
            interval = self.command.ping_interval_ms
            env.update(worker_env(self.account.url, self.endpoint, pod_id, ping_interval_ms=interval))
        env.update(HOME=str(self._home), PYTHONUNBUFFERED="1")
        self.account.call_soon(lambda: self.endpoint.register(pod_id, label=label, local=True))
        if lb_gateway is not None:
            self.account.call_soon(lb_gateway.add_worker, self.endpoint, pod_id, url, health_url)
        cache = self.command.cached_models
        if cache is not None and self.command.model_references:
            cache.ensure(self.command.model_references)  # the worker is initializing meanwhile, as on RunPod
            env["NOTUS_MODEL_CACHE"] = str(cache.root)
        log_path, log = self._open_log(label)
        try:
            process = subprocess.Popen(
                guarded(self.command.argv),
                env=env,
                cwd=self.command.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
                start_new_session=True,
            )
        finally:
            if log is not None:
                log.close()
        worker = WorkerProcess(pod_id, label, process, log_path, time.monotonic())
        watcher = threading.Thread(target=self._watch, args=(worker,), name=f"watch-{label}", daemon=True)
        with self._lock:
            self.processes.append(worker)
            self._watchers.append(watcher)
            stopping = self._stopping
        if stopping:  # a replacement that raced with stop()
            _signal_group(process.pid, signal.SIGKILL)
        watcher.start()
        return worker

    def _open_log(self, label: str) -> tuple[Path | None, IO[bytes] | None]:
        if self.command.log_dir is None:
            return None, None
        self.command.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.command.log_dir / f"{label}.log"
        return path, path.open("wb")

    def _watch(self, worker: WorkerProcess) -> None:
        code = worker.process.wait()
        _signal_group(worker.pid, signal.SIGKILL)  # the SDK's heartbeat process, if it outlived the worker
        with self._lock:
            worker.exit_code = code
            replace = self.restart and not self._stopping and self._may_restart()
        self.account.call_soon(self.endpoint.worker_exited, worker.pod_id, code)
        if replace:
            self._spawn()

    def _may_restart(self) -> bool:
        now = time.monotonic()
        self._restarts = [moment for moment in self._restarts if now - moment < RESTART_WINDOW]
        if len(self._restarts) >= self.max_restarts:
            return False
        self._restarts.append(now)
        return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
