"""One configuration model: `notus.toml`, then the environment, then flags (flags win).

Built by `load_settings()` when a command needs it and passed down explicitly; nothing reads the
environment at import time. Secrets are `SecretStr`, so they never print by accident.

    # notus.toml
    vllm_python = ".venv-vllm/bin/python"

Environment: `NOTUS_<KEY>` (nested sections as `NOTUS_<SECTION>__<KEY>`), plus the conventional
`RUNPOD_API_KEY` and `HF_TOKEN`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from notus_cli.errors import ConfigError
from notus_cli.files import config_file
from notus_cli.image_reference import check_part
from notus_cli.runpod.protocol.lb import URL_TEMPLATE as RUNPOD_LB_URL
from notus_cli.runpod.urls import RUNPOD_API_URL, RUNPOD_GRAPHQL_URL


class ServeSettings(BaseModel):
    """`notus serve`: the local RunPod (emulator, workers, one vLLM). Flags win over these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="the address the emulator listens on")
    port: int = Field(8300, ge=0, le=65535, description="a port from 0 (any free port) to 65535")
    workers: int = Field(1, ge=1, le=64, description="worker processes, from 1 to 64")
    endpoint_id: str | None = Field(
        None, pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="lowercase letters, digits and '-'; default random"
    )
    api_key: SecretStr | None = Field(None, description="the key clients must send; default random per start")
    concurrency: int | None = Field(None, ge=1, le=4096, description="jobs per worker; default max_num_seqs / workers")
    max_num_seqs: int = Field(32, ge=1, le=4096, description="vLLM's max_num_seqs, from 1 to 4096")
    max_model_len: int | None = Field(None, ge=16, description="vLLM's context length (--tiny: 4096)")
    vllm_args: str = Field(
        "", description="extra vLLM flags, shell-quoted (--tiny adds --enforce-eager --no-enable-prefix-caching)"
    )
    vllm_url: str | None = Field(None, description="an already running vLLM to use instead of starting one")
    rate_limit: float = Field(1.0, ge=0, description="a multiple of RunPod's rate limits; 0 turns them off")
    worker_api_rtt_ms: float = Field(
        0.0, ge=0, le=10_000, description="emulated round trip of the worker-facing API, in ms (0 to 10000)"
    )
    public_api_rtt_ms: float = Field(
        0.0, ge=0, le=10_000, description="emulated round trip of the public API, in ms (0 to 10000)"
    )
    log_dir: str = Field(".notus/serve", description="where vLLM's and the workers' logs go")
    startup_timeout: float = Field(900.0, gt=0, description="seconds to wait for vLLM and the workers")


# --- build: `notus build` / `notus push` ([build] in notus.toml, NOTUS_BUILD__<KEY> in the environment) ---
DEFAULT_MODEL_ID = "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"
DEFAULT_BASE_IMAGE = "vllm/vllm-openai:v0.32.0"  # the vLLM release our CPU tests run


class BuildSettings(BaseModel):
    """What `notus build` bakes and where `notus push` sends it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_id: str = Field(DEFAULT_MODEL_ID, min_length=1, description="a Hugging Face model id (org/name)")
    revision: str = Field("main", min_length=1, description="a branch, tag or commit of the model repository")
    model_path: Path | None = Field(None, description="a local model directory (no download)")
    served_model_name: str | None = Field(None, description="the model name clients see (default: the model id)")
    image: str = Field("notus", description="an image repository name such as 'notus' or 'team/notus'")
    tag: str = Field("latest", description="an image tag: letters, digits, '_', '.', '-' (at most 128)")
    registry: str | None = Field(None, description="a registry host[:port][/namespace] such as 'ghcr.io/acme'")
    base_image: str = Field(DEFAULT_BASE_IMAGE, description="the image with vLLM that the worker is added to")
    base_python: str = Field("python3", min_length=1, description="the base image's Python, the one with vLLM")
    registry_username: str | None = Field(None, description="a registry user (else the Docker config is used)")
    registry_password: SecretStr | None = Field(None, description="the registry password or token")
    cache_dir: Path | None = Field(None, description="where wheels and file hashes are cached (default ~/.cache/notus)")
    platform: Literal["linux/amd64", "linux/arm64"] = Field(
        "linux/amd64", description="linux/amd64 (what RunPod's GPU hosts run) or linux/arm64 (local use only)"
    )
    weights: Literal["cached", "baked"] | None = Field(
        None, description="cached (RunPod caches the Hub model) or baked (in the image); default: by model_path"
    )
    weight_layer_gb: float = Field(5.0, gt=0, le=100, description="the most GB of weights per image layer, above 0")

    @property
    def weights_mode(self) -> Literal["cached", "baked"]:
        """Cached for a Hub model, baked for a local directory, unless set (see the README)."""
        return self.weights or ("baked" if self.model_path is not None else "cached")

    @field_validator("image", "tag", "registry", "base_image")
    @classmethod
    def _reference_part(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_part(str(info.field_name), value)


class BenchSettings(BaseModel):
    """`[bench]` in notus.toml (NOTUS_BENCH__<KEY> in the environment): defaults for `notus bench`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = Field(None, description="an OpenAI-compatible server URL, e.g. http://127.0.0.1:8000")
    model: str | None = Field(None, description="the model name to ask the server for")
    tokenizer: str | None = Field(None, description="a model directory holding tokenizer.json")
    gpu: str | None = Field(None, description="a GPU alias or RunPod pool id, e.g. a100, for cost figures")
    api_key: SecretStr | None = Field(None, description="the key the server expects as a Bearer token")


class DeploySettings(BaseModel):
    """`[deploy]` in notus.toml (NOTUS_DEPLOY__<KEY>): defaults for `notus deploy`. Flags win."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu: str = Field("a100", min_length=1, description="GPU aliases or pool ids, comma-separated (a100,h100)")
    gpu_count: int = Field(1, ge=1, le=8, description="GPUs per worker (tensor parallelism), from 1 to 8")
    workers_min: int = Field(0, ge=0, le=100, description="workers always on, from 0 to 100 (0: scale to zero)")
    workers_max: int = Field(1, ge=1, le=100, description="most workers at once, from 1 to 100")
    idle_timeout: int = Field(5, ge=1, le=3600, description="seconds an idle worker stays up, from 1 to 3600")
    scaler: Literal["delay", "requests"] = Field("delay", description="delay (queue delay) or requests (count)")
    scaler_value: int = Field(4, ge=1, description="seconds of queue delay, or requests per worker (at least 1)")
    flashboot: bool = Field(True, description="true to keep FlashBoot snapshots (faster cold starts)")
    region: str | None = Field(None, description="is (Iceland), eu (Europe) or data-centre ids (EUR-IS-1,...)")
    max_model_len: int | None = Field(None, ge=256, description="context length (default: 32768, or what fits)")
    container_disk_gb: int | None = Field(None, ge=10, le=1000, description="container disk in GB (default: sized)")
    image: str | None = Field(None, description="the image to deploy (default: the last `notus push`)")


class NotusSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NOTUS_", env_nested_delimiter="__", extra="forbid", populate_by_name=True, frozen=True
    )

    vllm_python: str | None = Field(None, description="the Python of a virtual environment with vLLM installed")
    runpod_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("runpod_api_key", "RUNPOD_API_KEY"), description="a RunPod API key"
    )
    hf_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("hf_token", "HF_TOKEN"), description="a Hugging Face access token"
    )
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("openai_api_key", "OPENAI_API_KEY"),
        description="the key for an OpenAI-compatible server (--base-url); never sent to RunPod",
    )
    runpod_api_url: str = Field(
        RUNPOD_API_URL,
        validation_alias=AliasChoices("runpod_api_url", "NOTUS_RUNPOD_API_URL", "RUNPOD_ENDPOINT_BASE_URL"),
        description="RunPod's serverless API base URL (the runpod SDK's RUNPOD_ENDPOINT_BASE_URL works too)",
    )
    runpod_graphql_url: str = Field(RUNPOD_GRAPHQL_URL, description="RunPod's GraphQL API URL")
    # One template holds the endpoint id wherever the URL puts it: RunPod's subdomain, or the
    # emulator's path (`http://127.0.0.1:8000/lb/{endpoint_id}`).
    runpod_lb_url: str = Field(
        RUNPOD_LB_URL, description="load-balancing endpoints' base URL, a template containing {endpoint_id}"
    )
    serve: ServeSettings = Field(ServeSettings(), description="the [serve] section (notus serve)")
    build: BuildSettings = Field(BuildSettings(), description="the [build] section")
    bench: BenchSettings = Field(BenchSettings(), description="the [bench] table: base_url, model, tokenizer, gpu")
    deploy: DeploySettings = Field(DeploySettings(), description="the [deploy] section (notus deploy)")

    @field_validator("runpod_lb_url")
    @classmethod
    def _holds_endpoint_id(cls, value: str) -> str:
        if "{endpoint_id}" not in value or not value.startswith(("http://", "https://")):
            raise ValueError(
                "must be an http(s) URL containing {endpoint_id}, e.g. https://{endpoint_id}.api.runpod.ai"
            )
        return value.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = config_file()
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file)


def load_settings(**flags: Any) -> NotusSettings:
    """Merge notus.toml, the environment and the given flags (None means "not given").

    Raises ConfigError naming where each bad value came from and what is allowed.
    """
    given = {key: value for key, value in flags.items() if value is not None}
    try:
        return NotusSettings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, given), hint="fix the value, or remove it to use the default") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file()} is not valid TOML: {exc}") from None


def _describe(exc: ValidationError, flags: dict[str, Any]) -> str:
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc)
        top, sub = (loc[0] if loc else ""), (loc[1] if len(loc) > 1 else None)
        env_name = f"NOTUS_{key.upper().replace('.', '__')}"
        section_flags = flags.get(top) if isinstance(flags.get(top), dict) else None
        if section_flags is not None and sub in section_flags:
            origin = f"--{str(sub).replace('_', '-')}"
        elif top in flags and section_flags is None:
            origin = f"--{top.replace('_', '-')}"
        elif env_name in os.environ:
            origin = f"environment variable {env_name}"
        else:
            origin = f"{config_file()}: key '{key}'"
        model, field = _field(loc)
        if error["type"] == "extra_forbidden":
            problems.append(f"{origin}: unknown setting (known settings: {', '.join(model.model_fields)})")
            continue
        # our own validators already say what is allowed
        allowed = (
            f" (expected {field.description})" if field and field.description and error["type"] != "value_error" else ""
        )
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{origin}: {message}{allowed}")
    return "; ".join(problems)


def _field(loc: list[str]) -> tuple[type[BaseModel], FieldInfo | None]:
    """The model that holds the setting at `loc` and its field (nested sections included)."""
    model: type[BaseModel] = NotusSettings
    field: FieldInfo | None = None
    for depth, part in enumerate(loc):
        field = model.model_fields.get(part)
        if field is None:
            return model, None
        annotation = field.annotation
        if depth < len(loc) - 1 and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return model, field
