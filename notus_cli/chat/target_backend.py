"""The backend a `notus chat` target means: the address notus_cli.targets reads from the flags
(NAME, --endpoint ID, --local or --base-url URL; with none, a running `notus serve`), ready to talk to.
"""

from __future__ import annotations

import httpx

from notus_cli.chat.backends import Backend, OpenAIServer, RunPodJobs, ServerHints
from notus_cli.runpod.serverless import ServerlessClient
from notus_cli.settings import NotusSettings
from notus_cli.targets import Address, OpenAIAddress, TargetFlags, resolve_address

LB_HINTS = ServerHints(
    key="the endpoint takes your RunPod API key (RUNPOD_API_KEY, or `notus login`)",
    route="is it a load-balancing endpoint? `notus endpoints` lists each endpoint's type",
)
# Long enough for a cold start: RunPod holds the first request while a worker boots.
RUNPOD_TIMEOUT = httpx.Timeout(300.0, connect=10.0)


def resolve_backend(settings: NotusSettings, flags: TargetFlags) -> Backend:
    """Raises what resolve_address raises: ConfigError (several or no targets, unknown name, no key) or
    EndpointUnreachable (--local with no `notus serve` running)."""
    return backend_for(resolve_address(settings, flags, default_local=True))


def backend_for(address: Address) -> Backend:
    """A queue endpoint answers through jobs (/run + /stream); an LB endpoint, and any other server, through
    its OpenAI API (an LB endpoint's at its LB URL, with the RunPod key as the bearer)."""
    if isinstance(address, OpenAIAddress):
        return OpenAIServer(address.base_url, api_key=address.key)
    if address.openai_base_url is not None:
        label = f"{address.label}, load balancing at {address.lb_url}"
        return OpenAIServer(address.openai_base_url, api_key=address.key, label=label, hints=LB_HINTS)
    client = ServerlessClient(address.endpoint_id, address.key, base_url=address.api_base, timeout=RUNPOD_TIMEOUT)
    return RunPodJobs(client, label=address.label)
