"""The worker's settings, read from `NOTUS_*` environment variables once at start.

A bad value stops the worker before vLLM starts, with a message that names the variable and what
it accepts: a mistyped template on RunPod should fail in a second, not after a 5-minute load.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.model_cache import MODEL_ID, RUNPOD_MODEL_CACHE, find_snapshot

log = logging.getLogger("notus.worker")

DEFAULT_MODEL = "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"


class SettingsError(Exception):
    """One or more NOTUS_* variables are invalid; the message lists each with what it accepts."""


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTUS_", extra="ignore", frozen=True, populate_by_name=True)

    model: str = Field(DEFAULT_MODEL, min_length=1, description="a model directory or Hugging Face id")
    served_model_name: str = Field(DEFAULT_MODEL, min_length=1, description="the name clients see")
    max_model_len: int | None = Field(None, ge=16, description="an integer of at least 16 (default: the model's)")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="a number above 0 and at most 1")
    max_num_seqs: int = Field(32, ge=1, le=4096, description="an integer from 1 to 4096")
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="an integer from 1 to 64")
    reasoning_parser: str = Field("nemotron_v3", description="a vLLM reasoning parser name, or empty for none")
    tool_call_parser: str = Field("qwen3_coder", description="a vLLM tool-call parser name, or empty for none")
    trust_remote_code: bool = Field(False, description="true or false")
    concurrency: int | None = Field(None, ge=1, le=4096, description="jobs at once; defaults to max_num_seqs")
    vllm_args: str = Field("", description="extra vLLM flags, shell-quoted")
    vllm_python: str = Field(sys.executable, min_length=1, description="the Python that has vLLM installed")
    vllm_port: int = Field(0, ge=0, le=65535, description="a port from 0 (any free port) to 65535")
    vllm_url: str | None = Field(None, description="an already running vLLM server; none is started")
    startup_timeout: float = Field(1800.0, gt=0, description="seconds to wait for vLLM to become healthy")
    request_timeout: float = Field(900.0, gt=0, description="seconds one request to vLLM may take")
    log_content: bool = Field(False, description="true to log message text (off by default for privacy)")
    # Where the weights come from: baked into the image at NOTUS_MODEL, or a RunPod cached model
    # (NOTUS_MODEL is then its Hugging Face id, found at NOTUS_MODEL_REVISION under NOTUS_MODEL_CACHE).
    weights: Literal["baked", "cached"] = Field("baked", description="baked or cached")
    model_revision: str = Field("main", min_length=1, description="the deployed commit (or a branch) of a cached model")
    model_cache: str = Field(RUNPOD_MODEL_CACHE, min_length=1, description="the Hugging Face hub cache RunPod fills")
    # Load-time flags (see the README, "Getting the weights to the GPU"): our images and cached
    # models only ever hold safetensors, so vLLM need not look for other formats; the load strategy
    # stays vLLM's own default (lazy mmap, prefetch on NFS) unless set: "prefetch" suits network volumes.
    load_format: str = Field("safetensors", min_length=1, description="a vLLM --load-format, e.g. safetensors or auto")
    safetensors_load_strategy: Literal["", "lazy", "eager", "prefetch"] = Field(
        "", description="empty (vLLM's default), lazy, eager or prefetch"
    )
    async_scheduling: bool = Field(
        True, description="true to pass vLLM --async-scheduling (NVIDIA's recipe; vLLM >= 0.11 has the flag)"
    )
    reasoning_budget: int | None = Field(
        None, ge=-1, description="-1 (no budget) or the most thinking tokens per job (default: all but the answer's)"
    )
    answer_tokens: int = Field(512, ge=0, description="tokens of max_tokens kept for the answer (at most half)")
    stream_coalesce: bool = Field(
        True, description="true to merge what vLLM streams while the previous item is being sent (false: per token)"
    )
    prompt_job_start: bool = Field(
        True, description="true to start a job as soon as it is taken (false: the runpod SDK's 0.1 s poll)"
    )

    # Which RunPod endpoint type the worker serves: "queue" takes jobs with the runpod SDK; "lb" is a
    # load-balancing endpoint's HTTP server (worker/lb.py). PORT, PORT_HEALTH and HEALTH_CHECK_PATH are
    # RunPod's own names for an LB worker's ports and health route (runpod/docs
    # serverless/load-balancing/overview: PORT default 80, PORT_HEALTH default PORT; HEALTH_CHECK_PATH
    # default /ping), so they carry no NOTUS_ prefix.
    endpoint_type: Literal["queue", "lb"] = Field("queue", description="queue or lb")
    port: int = Field(80, ge=1, le=65535, validation_alias="PORT", description="a port from 1 to 65535")
    port_health: int | None = Field(
        None, ge=1, le=65535, validation_alias="PORT_HEALTH", description="a port from 1 to 65535 (default: PORT)"
    )
    health_check_path: str = Field(
        "/ping", pattern=r"^/\S*$", validation_alias="HEALTH_CHECK_PATH", description="a path starting with /"
    )

    @field_validator("vllm_args")
    @classmethod
    def _shell_quoted(cls, value: str) -> str:
        shlex.split(value)  # raises ValueError on unbalanced quotes
        return value

    @field_validator("vllm_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else None

    @model_validator(mode="after")
    def _cached_model_id(self) -> WorkerSettings:
        if self.weights == "cached" and not MODEL_ID.fullmatch(self.model):
            raise ValueError(f"NOTUS_MODEL {self.model!r} must be a Hugging Face id (org/name) with cached weights")
        return self

    @model_validator(mode="after")
    def _concurrency_within_engine(self) -> WorkerSettings:
        if self.concurrency is not None and self.concurrency > self.max_num_seqs:
            raise ValueError(f"NOTUS_CONCURRENCY ({self.concurrency}) exceeds NOTUS_MAX_NUM_SEQS ({self.max_num_seqs})")
        return self

    @property
    def job_concurrency(self) -> int:
        return self.concurrency or self.max_num_seqs

    @property
    def health_port(self) -> int:
        return self.port_health or self.port

    @property
    def extra_vllm_args(self) -> list[str]:
        return shlex.split(self.vllm_args)


def load_worker_settings() -> WorkerSettings:
    """Read the settings from the environment.

    Raises SettingsError naming every bad variable, its value and what it accepts.
    """
    try:
        return WorkerSettings()
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    fields = WorkerSettings.model_fields
    by_alias = {field.validation_alias: field for field in fields.values() if isinstance(field.validation_alias, str)}
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        field = fields.get(name) or by_alias.get(name)
        variable = (name if name in by_alias else f"NOTUS_{name.upper()}") if name else "settings"
        accepts = f"; expected {field.description}" if field and field.description else ""
        given = f" (got {error['input']!r})" if name and not isinstance(error["input"], dict) else ""
        lines.append(f"{variable}{given}: {error['msg']}{accepts}")
    return "invalid worker settings:\n  " + "\n  ".join(lines)


def resolve_weights(settings: WorkerSettings) -> WorkerSettings:
    """The settings with NOTUS_MODEL pointing at the deployed snapshot (cached weights), else unchanged.

    Raises CachedModelMissing when the cache lacks the deployed model or revision.
    """
    if settings.weights != "cached":
        return settings
    snapshot = find_snapshot(Path(settings.model_cache), settings.model, settings.model_revision)
    log.info("cached model %s@%s at %s", settings.model, settings.model_revision[:12], snapshot)
    served = settings.served_model_name if "served_model_name" in settings.model_fields_set else settings.model
    return settings.model_copy(update={"model": str(snapshot), "served_model_name": served})
