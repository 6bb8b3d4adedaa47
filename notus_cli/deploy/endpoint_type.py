"""An endpoint's type, queue or load balancing (LB), and what follows from it for a deploy.

An LB endpoint (RunPod's rules: notus_cli/runpod/protocol/lb.py, docs/load-balancing.md) gets
`type: "LB"`, the request-count scaler and the worker's LB env in its template; it is planned only
where RunPod's schema declares `EndpointInput.type` (RunPodGraphQL.declares), since without it
saveEndpoint would make a queue endpoint. A deployment's type is never changed in place: RunPod
publishes no way to (its REST API's updateEndpoint lists the mutable fields, and `type` is not one:
runpod/docs api-reference-v2/openapi.json; runpod/flash keys an endpoint by its class and name, so
a new type there is a new endpoint: core/resources/resource_manager.py get_resource_key), so the
plan refuses and says to remove it first.
"""

from __future__ import annotations

from notus_cli.errors import ConfigError
from notus_cli.runpod.control import EndpointInfo, EndpointKind, lb_refusal
from notus_cli.runpod.protocol import lb

ENDPOINT_TYPE_ENV = "NOTUS_ENDPOINT_TYPE"  # the worker's mode (worker/settings.py endpoint_type, docs/worker.md)
NAMES: dict[EndpointKind, str] = {"queue": "queue", "lb": "load-balancing (lb)"}
# What each type trades, in one line (runpod/docs serverless/load-balancing/overview.mdx, the comparison).
TRADE_OFFS: dict[EndpointKind, str] = {
    "queue": "queue: RunPod's queue, with retries and job ids; it costs round trips",
    "lb": "lb: no queue, lower latency; no retries; busy workers drop requests",
}


def resolve_type(name: str, asked: EndpointKind | None, existing: EndpointInfo | None, *, types: bool) -> EndpointKind:
    """The type to deploy: the one asked for, else the endpoint's own. Raises ConfigError for a change of
    type (module docstring) or an LB endpoint where the schema has no `type`."""
    kind = asked or (existing.kind if existing is not None else "queue")
    if existing is not None and existing.kind != kind:
        raise ConfigError(
            f"'{name}' is a {NAMES[existing.kind]} endpoint on RunPod ({existing.id}); "
            f"RunPod publishes no way to change an endpoint's type in place",
            hint=f"remove it with `notus down {name}`, then `notus deploy {name} --type {kind}`",
        )
    if kind == "lb" and not types:
        raise lb_refusal()
    return kind


def scaler_for(asked: str | None, kind: EndpointKind) -> str:
    """The autoscaler: an LB endpoint takes request count only (runpod/flash load_balancer_sls_resource.py
    refuses QUEUE_DELAY; runpod/docs api-reference-v2 EndpointScaling: QUEUE_DELAY "queue-based endpoints only")."""
    scaler = asked or ("requests" if kind == "lb" else "delay")
    if kind == "lb" and scaler != "requests":
        raise ConfigError(
            "--scaler delay does not apply to a load-balancing endpoint: RunPod scales those on request count",
            hint="drop --scaler (or [deploy] scaler in notus.toml) for --type lb, or use --scaler requests",
        )
    return scaler


def lb_env(kind: EndpointKind) -> dict[str, str]:
    """An LB worker's env: its mode and RunPod's ports, written out (runpod/docs load-balancing/overview.mdx:
    PORT 80, PORT_HEALTH = PORT). RunPod sets the ports once when it creates an LB endpoint and not on a
    later template (runpod/flash core/resources/serverless.py, _preserve_platform_env), so each
    template of a rolling release carries them itself."""
    if kind != "lb":
        return {}
    port = str(lb.DEFAULT_PORT)
    return {ENDPOINT_TYPE_ENV: "lb", lb.PORT_ENV: port, lb.PORT_HEALTH_ENV: port}
