"""Where `notus bench` aims: a deployment by name, a RunPod endpoint id, the running `notus serve`,
an OpenAI-compatible URL, or the deployment on a given GPU. One `TargetSpec` says which, and
`make_target` turns it into the Target the load generator drives.

RunPod endpoints are benchmarked through their native job API by default (queue delay and
execution time per request); `route="openai"` goes through their OpenAI route instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from tokenizers import Tokenizer

from notus_cli.bench.runpod_target import RunPodTarget
from notus_cli.bench.targets import HttpOptions, OpenAIChatTarget, Target
from notus_cli.deploy.state import Deployment, find_deployment, load_deployments
from notus_cli.errors import ConfigError, EndpointUnreachable
from notus_cli.runpod.gpus import GpuPool, resolve_pool
from notus_cli.settings import NotusSettings
from notus_cli.targets import (
    RunPodAddress,
    check_one_target,
    deployment_endpoint,
    endpoint_by_id,
    local_endpoint,
    openai_server,
)

ROUTES = ("native", "openai")


@dataclass(frozen=True)
class TargetSpec:
    """A resolved target. `url` is the OpenAI base URL, or for RunPod the API base (…/v2)."""

    kind: str  # openai | runpod
    url: str
    source: str  # how it was named, for the report: "deployment prod", "--endpoint", "notus serve", "--base-url"
    endpoint_id: str | None = None
    api_key: SecretStr | None = None
    gpu: str | None = None  # the pool a deployment runs on, for cost when --gpu is not given
    route: str = "native"

    def describe(self) -> dict[str, Any]:
        """For the report's settings: never the key, only whether one was sent."""
        return {
            "kind": self.kind,
            "base_url": self.url if self.endpoint_id is None else f"{self.url}/{self.endpoint_id}",
            "source": self.source,
            "endpoint_id": self.endpoint_id,
            "route": self.route if self.endpoint_id else None,
            "api_key": self.api_key is not None,
        }


def resolve_target(
    settings: NotusSettings,
    *,
    name: str | None = None,
    endpoint: str | None = None,
    local: bool = False,
    base_url: str | None = None,
    gpu: str | None = None,
    route: str = "native",
) -> TargetSpec:
    """The one target these options name. Raises ConfigError (none, several, unknown name, no key,
    no deployment on `gpu`) or EndpointUnreachable (--local without a running `notus serve`)."""
    check_route(route)
    check_one_target(name=name, endpoint=endpoint, local=local, base_url=base_url)
    if name:
        return _runpod(deployment_endpoint(find_deployment(name), settings), route)
    if endpoint:
        return _runpod(endpoint_by_id(endpoint, settings), route)
    if local:
        found = local_endpoint()
        if found is None:
            raise EndpointUnreachable("--local: no `notus serve` is running", hint="start one: notus serve --tiny")
        return _runpod(found, route)
    url = base_url or settings.bench.base_url
    if url:
        if route != "native":
            raise ConfigError("--route applies to RunPod targets only (NAME, --endpoint, --local)")
        server = openai_server(url, settings, settings.bench.api_key)
        return TargetSpec(kind="openai", url=url, source=server.source, api_key=server.key)
    if gpu:
        return _runpod(deployment_endpoint(deployment_on(resolve_pool(gpu), gpu), settings), route)
    raise ConfigError(
        "no server to benchmark",
        hint="name a deployment (notus bench NAME), or pass --endpoint ID, --local (notus serve), "
        "--base-url URL (an OpenAI-compatible server) or --gpu GPU",
    )


def deployment_on(pool: GpuPool, asked: str) -> Deployment:
    """The one deployment on `pool`. Raises ConfigError (exit 2) saying how to deploy one, or to pick one."""
    found = [d for d in load_deployments().values() if pool.id in [part.strip() for part in d.gpu.split(",")]]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(sorted(d.name for d in found))
        raise ConfigError(f"several deployments run on {pool.id}: {names}", hint="name one: notus bench NAME")
    raise ConfigError(
        f"no deployment runs on GPU '{asked}' ({pool.id})",
        hint=f"deploy one with `notus deploy NAME --gpu {asked}`, or add --deploy to benchmark a temporary endpoint",
    )


def _runpod(address: RunPodAddress, route: str) -> TargetSpec:
    return runpod_spec(address.api_base, address.endpoint_id, address.source, address.key, route, gpu=address.gpu)


def runpod_spec(
    api_base: str, endpoint_id: str, source: str, key: SecretStr, route: str, *, gpu: str | None = None
) -> TargetSpec:
    """A RunPod endpoint through its job API (native) or its OpenAI route."""
    base = api_base.rstrip("/")
    if route == "openai":
        return TargetSpec("openai", f"{base}/{endpoint_id}/openai/v1", source, None, key, gpu, route)
    return TargetSpec("runpod", base, source, endpoint_id, key, gpu, route)


def check_route(route: str) -> str:
    """Raises ConfigError unless `route` is one of ROUTES."""
    if route not in ROUTES:
        raise ConfigError(f"--route must be one of {', '.join(ROUTES)}; got '{route}'")
    return route


def make_target(
    spec: TargetSpec,
    *,
    model: str | None,
    sampling: dict[str, Any],
    ignore_eos: bool,
    tokenizer: Tokenizer | None,
    timeout: float,
    max_connections: int,
) -> Target:
    """The Target for a resolved spec."""
    common: HttpOptions = {
        "api_key": spec.api_key,
        "sampling": sampling,
        "ignore_eos": ignore_eos,
        "tokenizer": tokenizer,
        "timeout": timeout,
        "max_connections": max_connections,
    }
    if spec.kind == "runpod":
        assert spec.endpoint_id is not None
        return RunPodTarget(spec.endpoint_id, api_base=spec.url, **common)
    return OpenAIChatTarget(spec.url, model=model, **common)
