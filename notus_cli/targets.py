"""Which endpoint a command talks to: `notus chat` and `notus bench` read their target flags alike.

A target is a deployment by name (its endpoint id and API base from .notus/deployments.json), a
RunPod endpoint id, the running `notus serve`, or the base URL of any OpenAI-compatible server; at
most one may be given. The RunPod key only ever goes to RunPod's API; a deployment on the local
emulator gets that emulator's own key, and any other server OPENAI_API_KEY (or a key the command's
settings give).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from notus_cli.deploy.credentials import find_api_key
from notus_cli.deploy.state import Deployment
from notus_cli.errors import ConfigError, RunPodAuthError
from notus_cli.openai_url import is_runpod_host, openai_base
from notus_cli.runpod.urls import RUNPOD_API_URL
from notus_cli.settings import NotusSettings

TARGET_FLAGS = "NAME, --endpoint ID, --local or --base-url URL"


@dataclass(frozen=True)
class RunPodAddress:
    api_base: str  # https://api.runpod.ai/v2, or an emulator's …/v2
    endpoint_id: str
    key: SecretStr
    source: str  # how it was named: "deployment prod", "endpoint abc123", "notus serve"
    gpu: str | None = None  # the pool a deployment runs on


@dataclass(frozen=True)
class OpenAIAddress:
    base_url: str  # …/v1
    key: SecretStr | None
    source: str = "--base-url"


def check_one_target(*, name: str | None, endpoint: str | None, local: bool, base_url: str | None) -> None:
    """Raises ConfigError when more than one target is given."""
    given = [flag for flag, value in (("NAME", name), ("--endpoint", endpoint), ("--base-url", base_url)) if value]
    given += ["--local"] if local else []
    if len(given) > 1:
        raise ConfigError(f"give one target, not {' and '.join(given)}", hint=TARGET_FLAGS)


def deployment_endpoint(deployment: Deployment, settings: NotusSettings) -> RunPodAddress:
    """A deployment's endpoint, with the key its API base takes. Raises ConfigError without one."""
    api_base = deployment.api_base_url or RUNPOD_API_URL
    key = _local_key(api_base) or runpod_key(settings, api_base)
    pools = [part.strip() for part in deployment.gpu.split(",") if part.strip()]
    return RunPodAddress(
        api_base, deployment.endpoint_id, key, f"deployment {deployment.name}", pools[0] if pools else None
    )


def endpoint_by_id(endpoint_id: str, settings: NotusSettings) -> RunPodAddress:
    """A RunPod endpoint by id, under the settings' API base (RUNPOD_ENDPOINT_BASE_URL moves it, as for the SDK)."""
    api_base = settings.runpod_api_url
    return RunPodAddress(api_base, endpoint_id, runpod_key(settings, api_base), f"endpoint {endpoint_id}")


def local_endpoint() -> RunPodAddress | None:
    """The running `notus serve`'s endpoint, or None when none is running."""
    connection = _connection()
    if connection is None:
        return None
    key = SecretStr(str(connection["api_key"]))
    return RunPodAddress(str(connection["api_base"]), str(connection["endpoint_id"]), key, "notus serve")


def openai_server(base_url: str, settings: NotusSettings, key: SecretStr | None = None) -> OpenAIAddress:
    """Any OpenAI-compatible server. `key` (a command's own setting) wins; then the RunPod key for
    RunPod's hosts (their OpenAI route), the settings' OPENAI_API_KEY for any other."""
    if key is None and is_runpod_host(base_url):
        key = runpod_key(settings, base_url)
    elif key is None:
        key = settings.openai_api_key
    return OpenAIAddress(openai_base(base_url), key)


def runpod_key(settings: NotusSettings, api_base: str) -> SecretStr:
    """The key `notus deploy` would use (RUNPOD_API_KEY, `notus login`, runpodctl's config).
    Raises ConfigError when there is none."""
    try:
        return find_api_key(settings).value
    except RunPodAuthError:
        raise ConfigError(
            f"a RunPod API key is needed for the endpoint at {api_base}",
            hint="set RUNPOD_API_KEY, or run `notus login`",
        ) from None


def connection_file() -> Path:
    """Where a running `notus serve` writes how to reach it."""
    from notus_cli.serve.stack import connection_file as path  # the stack module pulls in the emulator

    return path()


def _connection() -> dict[str, Any] | None:
    from notus_cli.serve.stack import read_connection

    return read_connection()


def _local_key(api_base: str) -> SecretStr | None:
    """The running `notus serve`'s key, when `api_base` is its address (a deployment on the emulator)."""
    connection = _connection()
    if connection and str(connection.get("api_base", "")).rstrip("/") == api_base.rstrip("/"):
        return SecretStr(str(connection["api_key"]))
    return None
