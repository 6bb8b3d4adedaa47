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


class BenchSettings(BaseModel):
    """`[bench]` in notus.toml (NOTUS_BENCH__<KEY> in the environment): defaults for `notus bench`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = Field(None, description="an OpenAI-compatible server URL, e.g. http://127.0.0.1:8000")
    model: str | None = Field(None, description="the model name to ask the server for")
    tokenizer: str | None = Field(None, description="a model directory holding tokenizer.json")
    gpu: str | None = Field(None, description="a GPU alias or RunPod pool id, e.g. a100, for cost figures")
    api_key: SecretStr | None = Field(None, description="the key the server expects as a Bearer token")


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
    bench: BenchSettings = Field(BenchSettings(), description="the [bench] table: base_url, model, tokenizer, gpu")

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
        key = ".".join(str(part) for part in error["loc"])
        top = str(error["loc"][0]) if error["loc"] else ""
        if top in flags:
            origin = f"--{top.replace('_', '-')}"
        elif f"NOTUS_{key.upper().replace('.', '__')}" in os.environ:
            origin = f"environment variable NOTUS_{key.upper().replace('.', '__')}"
        else:
            origin = f"{config_path()}: key '{key}'"
        field = NotusSettings.model_fields.get(top)
        allowed = (
            f" (expected {field.description})"
            if field and field.description and error["type"] != "extra_forbidden"
            else ""
        )
        message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
        if error["type"] == "extra_forbidden":
            allowed = f" (known settings: {', '.join(NotusSettings.model_fields)})"
        problems.append(f"{origin}: {message}{allowed}")
    return "; ".join(problems)
