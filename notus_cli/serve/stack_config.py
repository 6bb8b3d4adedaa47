"""What `notus serve` runs: the stack's settings, from flags over the environment over notus.toml.

Kept apart from the stack itself (serve/stack.py) so that reading a configuration, and refusing a bad
one, starts nothing and imports no server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from notus_cli.emulator.faults import FaultPlan, FaultSpecError, parse_faults
from notus_cli.endpoint_types import ENDPOINT_TYPES, EndpointType
from notus_cli.errors import ConfigError
from notus_cli.settings import NotusSettings

# --enforce-eager skips torch.compile (start-up on the CPU roughly halves). vLLM 0.32's CPU build
# crashes (IndexError in mamba_mixer2) when a prompt longer than one Mamba chunk hits the prefix
# cache, which every multi-turn chat does, so the tiny stack runs without prefix caching.
TINY_VLLM_ARGS = "--enforce-eager --no-enable-prefix-caching"
TINY_MAX_MODEL_LEN = 4096


@dataclass(frozen=True)
class StackConfig:
    model: Path | None = None  # None: the tiny model, written under models_dir
    workers: int = 1
    host: str = "127.0.0.1"
    port: int = 8300
    endpoint_id: str | None = None
    api_key: SecretStr | None = None  # None: a new random key
    vllm_python: str | None = None
    vllm_url: str | None = None  # use this vLLM instead of starting one
    max_num_seqs: int = 32
    max_model_len: int | None = None
    concurrency: int | None = None  # jobs per worker; default: vLLM's max_num_seqs shared among the workers
    vllm_args: str = ""
    rate_limit: float = 1.0
    worker_api_rtt_ms: float = 0.0  # emulated network round trips (see EmulatorConfig)
    public_api_rtt_ms: float = 0.0
    log_dir: Path = Path(".notus/serve")
    models_dir: Path = Path(".notus/models")
    startup_timeout: float = 900.0
    restart_workers: bool = True
    worker_env: Mapping[str, str] = field(default_factory=dict)
    write_connection: bool = True
    faults: str = ""  # a fault plan (emulator/faults.py parse_faults); empty: RunPod on a good day
    endpoint_type: EndpointType = "queue"  # lb: the emulator's LB gateway before workers serving HTTP

    @classmethod
    def from_settings(
        cls,
        settings: NotusSettings,
        *,
        tiny: bool,
        model: Path | None,
        workers: int | None,
        port: int | None,
        faults: str = "",
        endpoint_type: str = "queue",
    ) -> StackConfig:
        """Flags (non-None) over settings. Raises ConfigError for contradictory choices."""
        if tiny and model is not None:
            raise ConfigError("--tiny and --model exclude each other", hint="pass one of them")
        if not tiny and model is None:
            raise ConfigError("say which model to serve", hint="pass --tiny (a small random model) or --model PATH")
        kind = check_endpoint_type(endpoint_type)
        serve = settings.serve
        return cls(
            model=model,
            workers=workers if workers is not None else serve.workers,
            host=serve.host,
            port=port if port is not None else serve.port,
            endpoint_id=serve.endpoint_id,
            api_key=serve.api_key,
            vllm_python=settings.vllm_python,
            vllm_url=serve.vllm_url,
            max_num_seqs=serve.max_num_seqs,
            max_model_len=serve.max_model_len or (TINY_MAX_MODEL_LEN if tiny else None),
            concurrency=serve.concurrency,
            vllm_args=" ".join(part for part in (serve.vllm_args, TINY_VLLM_ARGS if tiny else "") if part),
            rate_limit=serve.rate_limit,
            worker_api_rtt_ms=serve.worker_api_rtt_ms,
            public_api_rtt_ms=serve.public_api_rtt_ms,
            log_dir=Path(serve.log_dir),
            startup_timeout=serve.startup_timeout,
            faults=faults,
            endpoint_type=kind,
        )

    def fault_plan(self) -> FaultPlan | None:
        """The parsed `faults`, or None when there are none. Raises ConfigError naming --faults."""
        if not self.faults:
            return None
        try:
            return parse_faults(self.faults)
        except FaultSpecError as exc:
            raise ConfigError(
                f"--faults: {exc}", hint="e.g. --faults 502:stream:1%,lost:job-done:2x,kill:60s (docs/faults.md)"
            ) from None


def check_endpoint_type(value: str) -> EndpointType:
    """`value` as an endpoint type. Raises ConfigError naming --type and what it takes."""
    for kind in ENDPOINT_TYPES:
        if value == kind:
            return kind
    raise ConfigError(f"--type must be queue or lb; got '{value}'", hint="queue: RunPod's job API; lb: load balancing")
