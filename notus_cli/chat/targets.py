"""Which backend a `notus chat` command line means: NAME, --endpoint ID, --local or --base-url URL.

The flags are read as `notus bench` reads them (notus_cli.targets); with none, a running
`notus serve` is used.
"""

from __future__ import annotations

import httpx

from notus_cli.chat.backends import Backend, OpenAIServer, RunPodJobs
from notus_cli.deploy.state import find_deployment
from notus_cli.errors import ConfigError
from notus_cli.runpod.serverless import ServerlessClient
from notus_cli.settings import NotusSettings
from notus_cli.targets import (
    TARGET_FLAGS,
    RunPodAddress,
    check_one_target,
    deployment_endpoint,
    endpoint_by_id,
    local_endpoint,
    openai_server,
)
from notus_cli.targets import connection_file as serve_connection_file

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
    """Raises ConfigError for zero or several targets, an unknown deployment, or a missing key."""
    check_one_target(name=name, endpoint=endpoint, local=local, base_url=base_url)
    if base_url:
        server = openai_server(base_url, settings)
        return OpenAIServer(server.base_url, api_key=server.key)
    if name:
        deployed = deployment_endpoint(find_deployment(name), settings)
        return _runpod(deployed, label=f"{name} ({deployed.endpoint_id})")
    if endpoint:
        return _runpod(endpoint_by_id(endpoint, settings), label=f"endpoint {endpoint}")
    address = local_endpoint()
    if address is None and local:
        raise ConfigError(
            f"no `notus serve` is running (no live {serve_connection_file()})", hint="start one: notus serve --tiny"
        )
    if address is None:
        raise ConfigError(
            f"say which endpoint to chat with: {TARGET_FLAGS}", hint="no `notus serve` is running to use by default"
        )
    return _runpod(address, label=f"notus serve at {address.api_base.removesuffix('/v2')}")


def _runpod(address: RunPodAddress, *, label: str) -> Backend:
    client = ServerlessClient(address.endpoint_id, address.key, base_url=address.api_base, timeout=RUNPOD_TIMEOUT)
    return RunPodJobs(client, label=label)
