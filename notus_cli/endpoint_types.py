"""Which of RunPod's two endpoint types an endpoint is, and where an LB endpoint answers.

A queue endpoint takes jobs (/v2/{id}/run, /stream); a load-balancing (LB) endpoint is the workers'
own HTTP server at `https://{id}.api.runpod.ai` (docs/load-balancing.md). Clients find the type
themselves, so a user never builds an LB URL:

    the running `notus serve`   its connection file's `endpoint_type` and `lb_url` (serve/connection.py)
    a saved deployment          its `.notus/deployments.json` entry's `endpoint_type` (absent: queue)
    an endpoint id              the control plane's endpoints, whose `type` "LB" is load balancing
                                (runpod.control.endpoint_kind), read where the schema declares it

The LB URL comes from a template holding `{endpoint_id}`: `runpod_lb_url` (RunPod's by default).
An API base that is not RunPod's is an emulator (`notus serve`), whose control plane (/graphql) and
LB gateway (/lb/{endpoint_id}) share its origin (emulator/server.py), so neither needs setting there.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from pydantic import SecretStr

from notus_cli.errors import AuthError, EndpointUnreachable, RunPodError
from notus_cli.runpod import control
from notus_cli.runpod.graphql import RunPodGraphQL
from notus_cli.runpod.protocol import lb
from notus_cli.runpod.protocol.limits import RetryPolicy
from notus_cli.runpod.urls import RUNPOD_API_URL, RUNPOD_GRAPHQL_URL
from notus_cli.settings import NotusSettings

log = logging.getLogger("notus")

EndpointType = control.EndpointKind
ENDPOINT_TYPES: tuple[EndpointType, ...] = tuple(control.ENDPOINT_TYPES)
IN_WORDS: dict[str, str] = {"queue": "a queue endpoint", "lb": "a load-balancing endpoint"}

# The object type's fields, as RunPodGraphQL.declares asks for an input type's: `type` is read only
# where the schema declares it (a server without it would refuse the whole query).
Q_ENDPOINT_FIELDS = 'query EndpointFields { __type(name: "Endpoint") { fields { name } } }'
Q_ENDPOINT_TYPES = "query EndpointTypes { myself { endpoints { id type } } }"
LOOKUP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def endpoint_type(value: object) -> EndpointType:
    """A stored type (connection file, deployments.json): "lb", else the queue, which is also what
    entries written before LB endpoints existed mean."""
    return "lb" if value == "lb" else "queue"


def _emulator_origin(api_base: str, settings_url: str, runpod_url: str) -> bool:
    """An API base off RunPod's, with the setting left at RunPod's default: an emulator's."""
    return api_base.rstrip("/") != RUNPOD_API_URL and settings_url == runpod_url


def lb_template(api_base: str, settings: NotusSettings) -> str:
    """The LB URL template that goes with an endpoint under `api_base` (module docstring)."""
    if _emulator_origin(api_base, settings.runpod_lb_url, lb.URL_TEMPLATE):
        return lb.emulator_template(api_base.rstrip("/").removesuffix("/v2"))
    return settings.runpod_lb_url


def graphql_url(api_base: str, settings: NotusSettings) -> str:
    """The control plane that knows the endpoints under `api_base` (module docstring)."""
    if _emulator_origin(api_base, settings.runpod_graphql_url, RUNPOD_GRAPHQL_URL):
        return api_base.rstrip("/").removesuffix("/v2") + "/graphql"
    return settings.runpod_graphql_url


def lb_url(api_base: str, endpoint_id: str, settings: NotusSettings) -> str:
    return lb.lb_url(lb_template(api_base, settings), endpoint_id)


def ask_control_plane(endpoint_id: str, key: SecretStr, url: str, *, http: httpx.Client | None = None) -> EndpointType:
    """The endpoint's type as the control plane at `url` says. A control plane that cannot say (no
    answer, a refused key or introspection, no `type` in its schema, no such endpoint) means the
    queue: the job API then gives its own errors, as it did before LB endpoints existed."""
    with RunPodGraphQL(key, url=url, http=http, retry=RetryPolicy(attempts=1), timeout=LOOKUP_TIMEOUT) as runpod:
        try:
            if "type" not in _fields(runpod.execute(Q_ENDPOINT_FIELDS)):
                return "queue"
            endpoints = runpod.endpoints()
        except (RunPodError, AuthError, EndpointUnreachable) as exc:
            log.debug("the control plane at %s did not say endpoint %s's type: %s", url, endpoint_id, exc)
            return "queue"
    return next((endpoint.kind for endpoint in endpoints if endpoint.id == endpoint_id), "queue")


def _fields(data: dict[str, Any]) -> set[str]:
    found = data.get("__type") or {}
    fields = found.get("fields") if isinstance(found, dict) else None
    return {str(f.get("name")) for f in fields or [] if isinstance(f, dict)}
