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
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from notus_cli.errors import ConfigError

CONFIG_FILE = "notus.toml"


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
    vllm_args: str = Field("", description="extra vLLM flags, shell-quoted (--tiny adds --enforce-eager)")
    vllm_url: str | None = Field(None, description="an already running vLLM to use instead of starting one")
    rate_limit: float = Field(1.0, ge=0, description="a multiple of RunPod's rate limits; 0 turns them off")
    log_dir: str = Field(".notus/serve", description="where vLLM's and the workers' logs go")
    startup_timeout: float = Field(900.0, gt=0, description="seconds to wait for vLLM and the workers")


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
    serve: ServeSettings = Field(ServeSettings(), description="the [serve] section (notus serve)")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("NOTUS_CONFIG", CONFIG_FILE))
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
        raise ConfigError(f"{config_path()} is not valid TOML: {exc}") from None


def config_path() -> Path:
    return Path(os.environ.get("NOTUS_CONFIG", CONFIG_FILE))


def _describe(exc: ValidationError, flags: dict[str, Any]) -> str:
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc)
        top = loc[0] if loc else ""
        leaf = loc[-1] if loc else ""
        from_flag = top in flags and (len(loc) == 1 or (isinstance(flags[top], dict) and leaf in flags[top]))
        if from_flag:
            origin = f"--{leaf.replace('_', '-')}"
        elif f"NOTUS_{key.upper().replace('.', '__')}" in os.environ:
            origin = f"environment variable NOTUS_{key.upper().replace('.', '__')}"
        else:
            origin = f"{config_path()}: key '{key}'"
        fields = _fields_at(loc[:-1])
        field = fields.get(leaf)
        allowed = f" (expected {field.description})" if field and field.description else ""
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message, allowed = "unknown setting", f" (known settings: {', '.join(fields)})"
        problems.append(f"{origin}: {message}{allowed}")
    return "; ".join(problems)


def _fields_at(path: list[str]) -> dict[str, Any]:
    """The fields of the (nested) section at `path`, e.g. ["serve"] -> ServeSettings' fields."""
    model: Any = NotusSettings
    for part in path:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return {}
        model = annotation
    return dict(model.model_fields)
