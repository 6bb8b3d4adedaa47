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
from notus_cli.bench.targets import OpenAIChatTarget, Target, api_key_for
from notus_cli.deploy.state import Deployment, find_deployment, load_deployments
from notus_cli.errors import ConfigError, EndpointUnreachable
from notus_cli.runpod.gpus import GpuPool, resolve_pool
from notus_cli.runpod.serverless import DEFAULT_BASE_URL
from notus_cli.settings import NotusSettings

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
    given = [flag for flag, value in (("NAME", name), ("--endpoint", endpoint), ("--base-url", base_url)) if value]
    given += ["--local"] if local else []
    if len(given) > 1:
        raise ConfigError(f"give one target, not {' and '.join(given)}", hint="NAME, --endpoint, --local or --base-url")
    if name:
        return _runpod(find_deployment(name), settings, route)
    if endpoint:
        return runpod_spec(DEFAULT_BASE_URL, endpoint, "--endpoint", _runpod_key(settings, DEFAULT_BASE_URL), route)
    if local:
        return _local(route)
    url = base_url or settings.bench.base_url
    if url:
        if route != "native":
            raise ConfigError("--route applies to RunPod targets only (NAME, --endpoint, --local)")
        key = api_key_for(url, settings.bench.api_key, settings.runpod_api_key)
        return TargetSpec(kind="openai", url=url, source="--base-url", api_key=key)
    if gpu:
        return _runpod(deployment_on(resolve_pool(gpu), gpu), settings, route)
    raise ConfigError(
        "no server to benchmark",
        hint="name a deployment (notus bench NAME), or pass --endpoint ID, --local (notus serve), "
        "--base-url URL (an OpenAI-compatible server) or --gpu GPU",
    )


def deployment_on(pool: GpuPool, asked: str) -> Deployment:
    """The one deployment on `pool`. Raises ConfigError (exit 2) saying how to deploy one, or to pick one."""
    found = [d for d in load_deployments().values() if pool.id in _pools(d)]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(sorted(d.name for d in found))
        raise ConfigError(f"several deployments run on {pool.id}: {names}", hint="name one: notus bench NAME")
    raise ConfigError(
        f"no deployment runs on GPU '{asked}' ({pool.id})",
        hint=f"deploy one with `notus deploy NAME --gpu {asked}`, or add --deploy to benchmark a temporary endpoint",
    )


def _pools(deployment: Deployment) -> list[str]:
    return [part.strip() for part in deployment.gpu.split(",") if part.strip()]


def _runpod(deployment: Deployment, settings: NotusSettings, route: str) -> TargetSpec:
    api_base = deployment.api_base_url or DEFAULT_BASE_URL
    key = _local_key(api_base) or _runpod_key(settings, api_base)
    pools = _pools(deployment)
    source = f"deployment {deployment.name}"
    return runpod_spec(api_base, deployment.endpoint_id, source, key, route, gpu=pools[0] if pools else None)


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


def _runpod_key(settings: NotusSettings, api_base: str) -> SecretStr:
    if settings.runpod_api_key is None:
        raise ConfigError(
            f"a RunPod API key is needed to benchmark an endpoint at {api_base}",
            hint="set RUNPOD_API_KEY (or runpod_api_key in notus.toml)",
        )
    return settings.runpod_api_key


def _connection() -> dict[str, Any] | None:
    from notus_cli.serve.stack import read_connection  # the stack module pulls in the emulator

    return read_connection()


def _local_key(api_base: str) -> SecretStr | None:
    """The running `notus serve`'s key, when `api_base` is its address (a deployment on the emulator)."""
    connection = _connection()
    if connection and connection.get("api_base", "").rstrip("/") == api_base.rstrip("/"):
        return SecretStr(str(connection["api_key"]))
    return None


def _local(route: str) -> TargetSpec:
    connection = _connection()
    if connection is None:
        raise EndpointUnreachable("--local: no `notus serve` is running", hint="start one: notus serve --tiny")
    key = SecretStr(str(connection["api_key"]))
    return runpod_spec(str(connection["api_base"]), str(connection["endpoint_id"]), "notus serve", key, route)


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
    common: dict[str, Any] = {
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
