"""Which backend a `notus chat` command line means: NAME, --endpoint ID, --local or --base-url URL."""

from __future__ import annotations

import os

import httpx
from pydantic import SecretStr

from notus_cli.chat.backends import Backend, OpenAIServer, RunPodJobs
from notus_cli.errors import ConfigError
from notus_cli.openai_url import is_runpod_host, openai_base
from notus_cli.runpod.serverless import DEFAULT_BASE_URL, ServerlessClient
from notus_cli.settings import NotusSettings

# Long enough for a cold start: RunPod holds the first request while a worker boots.
RUNPOD_TIMEOUT = httpx.Timeout(300.0, connect=10.0)


def resolve_backend(
    settings: NotusSettings,
    *,
    name: str | None = None,
    endpoint: str | None = None,
    local: bool = False,
    base_url: str | None = None,
) -> Backend:
    """Raises ConfigError for zero or several targets, an unknown deployment, or a missing key.

    With no target at all, a running `notus serve` is used when there is one.
    """
    given = [flag for flag, value in (("NAME", name), ("--endpoint", endpoint), ("--base-url", base_url)) if value]
    given += ["--local"] if local else []
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)} exclude each other", hint="pass one target")
    if base_url:
        return OpenAIServer(openai_base(base_url), api_key=openai_key(base_url, settings.runpod_api_key))
    if name:
        from notus_cli.deploy.state import find_deployment

        deployment = find_deployment(name)
        return _runpod(
            deployment.endpoint_id,
            runpod_key(settings),
            deployment.api_base_url or DEFAULT_BASE_URL,
            label=f"{name} ({deployment.endpoint_id})",
        )
    if endpoint:
        base = os.environ.get("RUNPOD_ENDPOINT_BASE_URL") or DEFAULT_BASE_URL
        return _runpod(endpoint, runpod_key(settings), base, label=f"endpoint {endpoint}")
    return _local(required=local)


def _local(*, required: bool) -> Backend:
    from notus_cli.serve.stack import connection_file, read_connection

    connection = read_connection()
    if connection is None:
        if required:
            raise ConfigError(
                f"no `notus serve` is running (no live {connection_file()})", hint="start one: notus serve --tiny"
            )
        raise ConfigError(
            "say which endpoint to chat with: NAME, --endpoint ID, --local or --base-url URL",
            hint="no `notus serve` is running to use by default",
        )
    return _runpod(
        str(connection["endpoint_id"]),
        SecretStr(str(connection["api_key"])),
        str(connection["api_base"]),
        label=f"notus serve at {connection['url']}",
    )


def _runpod(endpoint_id: str, key: SecretStr, base_url: str, *, label: str) -> Backend:
    client = ServerlessClient(endpoint_id, key, base_url=base_url, timeout=RUNPOD_TIMEOUT)
    return RunPodJobs(client, label=label)


def runpod_key(settings: NotusSettings) -> SecretStr:
    if settings.runpod_api_key is None:
        raise ConfigError("no RunPod API key", hint="set RUNPOD_API_KEY (or runpod_api_key in notus.toml)")
    return settings.runpod_api_key


def openai_key(base_url: str, runpod: SecretStr | None) -> SecretStr | None:
    """RUNPOD_API_KEY for RunPod's own hosts (their OpenAI route), OPENAI_API_KEY for any other server.

    A RunPod key is never sent to another host.
    """
    if is_runpod_host(base_url):
        return runpod
    key = os.environ.get("OPENAI_API_KEY")
    return SecretStr(key) if key else None
