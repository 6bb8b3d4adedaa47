"""The local stack behind `notus serve`: one vLLM, N worker processes and the emulator.

    with LocalStack(StackConfig(workers=2)) as stack:      # starts everything, waits until ready
        info = stack.info                                  # URL, endpoint id, key, OpenAI base URL

The emulator also answers RunPod's GraphQL control plane, so `notus deploy` can create endpoints
here; their workers are started the same way (see `notus_cli.emulator.scaler`).

Workers are unmodified `python -m worker` processes pointed at the one vLLM with NOTUS_VLLM_URL
(so they start no vLLM of their own) and at the emulator with the RUNPOD_WEBHOOK_* variables.
They share that vLLM, so each takes max_num_seqs / workers jobs at once (unless `concurrency` says
otherwise): a job is IN_PROGRESS only while vLLM is working on it, as with one worker per GPU.
Every child runs in its own process group and `stop()` ends them all: workers first (they may
still report), then vLLM, then the emulator. A worker that dies while serving is replaced, as on
RunPod; the jobs it was running end FAILED (see notus_cli.emulator.endpoint).

Once ready, the connection (URL, endpoint id, key) is written to a file only the user can read
(serve/connection.py), so other commands and scripts can find a running `notus serve`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from notus_cli.emulator import Emulator, EmulatorConfig, EmulatorServer, LocalWorkers, WorkerCommand, new_key
from notus_cli.emulator.models import CachedModels
from notus_cli.emulator.scaler import command_factory
from notus_cli.emulator.worker_killer import WorkerKiller
from notus_cli.endpoint_types import EndpointType
from notus_cli.errors import ConfigError, EngineError, ModelError
from notus_cli.model.tiny import write_tiny_model
from notus_cli.runpod.protocol import lb, routes
from notus_cli.serve.connection import remove_connection, write_connection
from notus_cli.serve.stack_config import StackConfig
from notus_cli.serve.vllm import VllmProcess, resolve_vllm_python, vllm_env
from worker.model_cache import MODEL_ID
from worker.settings import WorkerSettings

WORKER_READY_TIMEOUT = 180.0


@dataclass(frozen=True)
class StackInfo:
    url: str  # the emulator, e.g. http://127.0.0.1:8300
    endpoint_id: str
    api_key: SecretStr
    served_model_name: str
    model: str
    vllm_url: str
    log_dir: Path
    workers: int
    faults: str = ""  # the fault plan it was started with, as given
    endpoint_type: EndpointType = "queue"

    def connection(self) -> dict[str, Any]:
        """What the connection file says (the key included: the file is the user's alone)."""
        return {
            "url": self.url,
            "api_base": self.api_base,
            "endpoint_id": self.endpoint_id,
            "endpoint_type": self.endpoint_type,
            "endpoint_url": self.endpoint_url,
            "lb_url": self.lb_url if self.endpoint_type == "lb" else None,
            "lb_url_template": self.lb_url_template,
            "api_key": self.api_key.get_secret_value(),
            "openai_base_url": self.openai_base_url,
            "served_model_name": self.served_model_name,
            "model": self.model,
            "workers": self.workers,
            "log_dir": str(self.log_dir),
            "faults": self.faults,
        }

    @property
    def api_base(self) -> str:
        """What RUNPOD_ENDPOINT_BASE_URL / ServerlessClient(base_url=...) take."""
        return f"{self.url}/v2"

    @property
    def lb_url_template(self) -> str:
        """What NOTUS_RUNPOD_LB_URL would be for this emulator: its gateway serves every LB endpoint here."""
        return lb.emulator_template(self.url)

    @property
    def lb_url(self) -> str:
        """The endpoint's URL as an LB endpoint (`notus serve --type lb`): the gateway, then the worker's own path."""
        return lb.lb_url(self.lb_url_template, self.endpoint_id)

    @property
    def endpoint_url(self) -> str:
        """Where the endpoint's routes begin: the job API's …/v2/{id}, or an LB endpoint's URL."""
        return self.lb_url if self.endpoint_type == "lb" else f"{self.api_base}/{self.endpoint_id}"

    @property
    def openai_base_url(self) -> str:
        """An LB worker serves /v1 itself; a queue endpoint relays it at …/openai/v1."""
        return f"{self.lb_url}/v1" if self.endpoint_type == "lb" else routes.openai_base(self.endpoint_url)


@dataclass(frozen=True)
class WorkerView:
    label: str
    pod_id: str
    state: str  # initializing | idle | running | unhealthy | exited | lost
    running: int
    done: int
    exit_code: int | None


@dataclass(frozen=True)
class StackSnapshot:
    workers: list[WorkerView]
    health: dict[str, Any]
    vllm_alive: bool


class LocalStack:
    def __init__(self, config: StackConfig, *, on_progress: Callable[[str], None] | None = None) -> None:
        self.config = config
        self._progress = on_progress or (lambda _message: None)
        key = config.api_key.get_secret_value() if config.api_key else new_key()
        self.api_key = SecretStr(key)
        emulator_config = dataclasses.replace(
            EmulatorConfig().scaled_rate_limits(config.rate_limit),
            worker_api_rtt_ms=config.worker_api_rtt_ms,
            public_api_rtt_ms=config.public_api_rtt_ms,
            faults=config.fault_plan(),
        )
        self.emulator = Emulator(emulator_config, api_keys=[key])
        self.endpoint = self.emulator.create_endpoint(
            config.endpoint_id, name="notus-local", max_workers=config.workers
        )
        if config.endpoint_type == "lb":  # before its workers start: they get RunPod's LB env (emulator/workers.py)
            self.emulator.lb.serve(self.endpoint)
        self.server: EmulatorServer | None = None
        self.vllm: VllmProcess | None = None
        self.workers: LocalWorkers | None = None
        self.killer: WorkerKiller | None = None
        self._info: StackInfo | None = None
        self._vllm_python = ""
        # RunPod's model cache on this "host": endpoints deployed with --weights cached find their model here
        self.cached_models = CachedModels(Path(tempfile.mkdtemp(prefix="notus-model-cache-")))

    @property
    def info(self) -> StackInfo:
        if self._info is None:
            raise RuntimeError("the stack has not started")
        return self._info

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> StackInfo:
        """Start everything and wait until every worker polls. Raises ConfigError, ModelError, EngineError."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> StackInfo:
        config = self.config
        self._check()
        try:  # bind first: a port in use should fail in a second, not after vLLM's start-up
            self.server = EmulatorServer(self.emulator, config.host, config.port)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {config.host}:{config.port}: {exc.strerror}",
                hint="pick another --port (0: any free)",
            ) from None
        model = self._model()
        vllm_url, served = self._engine(model)
        self.server.start()
        self._progress(f"emulator listening on {self.server.url}")
        command = self._worker_command(vllm_url, served)
        if MODEL_ID.fullmatch(served):  # the emulated Hub has the served model under its name
            self.cached_models.publish(served, model)
        self.workers = LocalWorkers(self.emulator, self.endpoint, command)
        self.emulator.worker_factory = command_factory(self.emulator, command)  # endpoints made with `notus deploy`
        self.workers.start(config.workers)
        self._wait_for_workers()
        self.workers.restart = config.restart_workers
        kill_every = self.emulator.faults.kill_every
        if kill_every:
            self.killer = WorkerKiller([self.workers], kill_every, busy=self._busy).start()
        self._info = StackInfo(
            url=self.server.url,
            endpoint_id=self.endpoint.id,
            api_key=self.api_key,
            served_model_name=served,
            model=str(model),
            vllm_url=vllm_url,
            log_dir=config.log_dir,
            workers=config.workers,
            faults=config.faults,
            endpoint_type=config.endpoint_type,
        )
        if config.write_connection:
            write_connection(self._info.connection())
        return self._info

    def _check(self) -> None:
        config = self.config
        seqs = config.max_num_seqs
        if config.concurrency is not None and config.concurrency > seqs:
            raise ConfigError(f"concurrency {config.concurrency} exceeds max_num_seqs {seqs}", hint="lower it")
        if _missing("runpod"):
            raise ConfigError("the runpod SDK is not installed here", hint="pip install 'notus[worker]'")
        if not config.vllm_url:
            self._vllm_python = resolve_vllm_python(config.vllm_python)

    def _model(self) -> Path:
        if self.config.model is None:
            self._progress("writing the tiny model (random weights: its answers are random text)")
            return write_tiny_model(self.config.models_dir.resolve() / "tiny", force=True).path
        model = self.config.model.expanduser()
        if not (model / "config.json").is_file():
            raise ModelError(
                f"{model} is not a model directory (no config.json)",
                hint="pass a directory from `notus model` or a download",
            )
        return model.resolve()

    def _engine(self, model: Path) -> tuple[str, str]:
        """Start vLLM (or use the configured one); returns its URL and served model name."""
        config = self.config
        if config.vllm_url:
            return config.vllm_url.rstrip("/"), _served_name(config.vllm_url)
        settings = WorkerSettings(
            model=str(model),
            vllm_python=self._vllm_python,
            max_model_len=config.max_model_len,
            max_num_seqs=config.max_num_seqs,
            vllm_args=config.vllm_args,
        )
        log_path = config.log_dir / "vllm.log"
        self._progress(f"starting vLLM on {model.name} (log: {log_path})")
        self.vllm = VllmProcess.start(settings, log_path, env=vllm_env())
        started = time.monotonic()
        last = [0.0]

        def tick(waited: float) -> None:
            if waited - last[0] >= 15:
                last[0] = waited
                self._progress(f"waiting for vLLM ({waited:.0f} s)")

        self.vllm.wait_until_ready(config.startup_timeout, tick)
        self._progress(f"vLLM ready in {time.monotonic() - started:.0f} s")
        return self.vllm.base_url, settings.served_model_name

    def _worker_command(self, vllm_url: str, served: str) -> WorkerCommand:
        config = self.config
        env = {
            "NOTUS_VLLM_URL": vllm_url,
            "NOTUS_SERVED_MODEL_NAME": served,
            "NOTUS_MAX_NUM_SEQS": str(config.max_num_seqs),
            "NOTUS_CONCURRENCY": str(config.concurrency or math.ceil(config.max_num_seqs / config.workers)),
            **config.worker_env,
        }
        return WorkerCommand(
            argv=(sys.executable, "-m", "worker"), env=env, log_dir=config.log_dir, cached_models=self.cached_models
        )

    def _wait_for_workers(self) -> None:
        assert self.workers is not None
        self._progress(f"starting {self.config.workers} worker(s) (logs: {self.config.log_dir}/worker-N.log)")
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while True:
            snapshot = self.snapshot()
            dead = [worker for worker in snapshot.workers if worker.exit_code is not None]
            if dead:
                log = self.workers.find(dead[0].pod_id).log_path
                raise EngineError(
                    f"{dead[0].label} exited with code {dead[0].exit_code} while starting", hint=f"see {log}"
                )
            if all(worker.state in ("idle", "running") for worker in snapshot.workers):
                self._progress("workers ready")
                return
            if time.monotonic() > deadline:
                raise EngineError("the workers were not ready in time", hint=f"see {self.config.log_dir}")
            time.sleep(0.2)

    def snapshot(self) -> StackSnapshot:
        """The workers and queue right now; safe from any thread."""

        def read() -> StackSnapshot:
            workers = [
                WorkerView(w.label, w.pod_id, w.state, len(w.in_flight), w.completed, w.exit_code)
                for w in self.endpoint.workers.values()
            ]
            return StackSnapshot(workers, self.endpoint.health(), self.vllm is None or self.vllm.alive())

        return self.emulator.call(read)

    def _busy(self, pod_id: str) -> bool:
        """Whether the emulator has a job in flight on that worker (the killer strikes mid-job only)."""
        return self.emulator.call(lambda: bool(getattr(self.endpoint.workers.get(pod_id), "in_flight", None)))

    def stop(self) -> None:
        """Stop workers, then vLLM, then the emulator; idempotent, never raises for a child already gone."""
        if self.killer is not None:
            self.killer.stop()
        if self.workers is not None:
            self.workers.stop()
        if self.vllm is not None:
            self.vllm.stop()
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.cached_models.root, ignore_errors=True)
        if self._info is not None and self.config.write_connection:
            remove_connection(self._info.endpoint_id)


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def _served_name(vllm_url: str) -> str:
    try:
        models = httpx.get(f"{vllm_url.rstrip('/')}/v1/models", timeout=10).json()["data"]
        return str(models[0]["id"])
    except (httpx.HTTPError, KeyError, IndexError, ValueError):
        raise EngineError(f"no vLLM answers at {vllm_url}", hint="start it, or unset serve.vllm_url") from None
