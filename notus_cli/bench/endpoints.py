"""Where `notus bench` aims, as the load generator needs it: notus_cli.targets reads the flags into an
address (as for `notus chat`), `resolve_target` adds bench's --route and keeps it as a `TargetSpec`
(what the report records), and `make_target` turns that into the request sender the load generator
drives (notus_cli.bench.senders).

RunPod endpoints are benchmarked the way `notus chat` talks to them by default: jobs (/run, /stream,
/status, so each request's queue delay and execution time are known) whose input is an OpenAI chat
request for the worker's OpenAI route (chat.backends.RunPodJobs). `native` sends the worker's own
input shape instead, and `openai` goes through RunPod's HTTP OpenAI route (/openai/v1), which is
what an OpenAI SDK pointed at the endpoint uses.

A load-balancing (LB) endpoint has no jobs: its workers serve the OpenAI API themselves at the LB URL
(notus_cli.endpoint_types finds it), so it is benchmarked as any OpenAI-compatible server is, with
the RunPod key as the bearer: `openai` (the default) streams its /v1/chat/completions, `native` its
workers' own /chat route with the worker's native input, the same request as the queue's `native` jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from tokenizers import Tokenizer

from notus_cli.bench.runpod_target import RunPodTarget
from notus_cli.bench.senders import HttpOptions, LBNativeTarget, OpenAIChatTarget, Target
from notus_cli.endpoint_types import EndpointType
from notus_cli.errors import ConfigError
from notus_cli.openai_url import is_runpod_host
from notus_cli.runpod.protocol import routes
from notus_cli.settings import NotusSettings
from notus_cli.targets import OpenAIAddress, RunPodAddress, TargetFlags, resolve_address

ROUTES = ("openai-job", "native", "openai")
DEFAULT_ROUTE = "openai-job"  # what `notus chat` sends: bench measures the path chat users take
ROUTE_MEANINGS = {
    "openai-job": "jobs (/run, /stream) with an OpenAI chat request as input, as notus chat sends",
    "native": "jobs (/run, /stream) with the worker's native input",
    "openai": "RunPod's OpenAI route (/openai/v1), as an OpenAI SDK sends",
}
OPENAI_SERVER_MEANS = "an OpenAI-compatible server's streamed /chat/completions, not a RunPod endpoint"
LB_ROUTES = ("openai", "native")
LB_ROUTE_MEANINGS = {
    "openai": "the workers' own OpenAI API at the LB URL's /v1, straight to a worker with no queue",
    "native": "the workers' own /chat at the LB URL with the native input, straight to a worker with no queue",
}


@dataclass(frozen=True)
class TargetSpec:
    """A resolved target. `url` is the OpenAI base URL, or for RunPod the API base (…/v2)."""

    kind: str  # openai | runpod | lb
    url: str  # for an LB endpoint: its OpenAI base URL (route openai) or its LB URL (route native)
    source: str  # how it was named, for the report: "deployment prod", "--endpoint", "notus serve", "--base-url"
    endpoint_id: str | None = None
    api_key: SecretStr | None = None
    gpu: str | None = None  # the pool a deployment runs on, for cost when --gpu is not given
    route: str = DEFAULT_ROUTE  # for an OpenAI server named by --base-url: "openai"
    gpu_count: int = 1  # GPUs per worker of a deployment, for cost
    endpoint_type: EndpointType | None = None  # RunPod targets: queue or lb; None for an OpenAI server

    @property
    def route_means(self) -> str | None:
        """What the route is, in words: a URL given by --base-url is RunPod's route only on RunPod's hosts."""
        if self.kind == "lb":
            return LB_ROUTE_MEANINGS.get(self.route)
        if self.kind == "openai" and self.source == "--base-url" and not is_runpod_host(self.url):
            return OPENAI_SERVER_MEANS
        return ROUTE_MEANINGS.get(self.route)

    def describe(self) -> dict[str, Any]:
        """For the report's settings: never the key, only whether one was sent."""
        return {
            "kind": self.kind,
            "base_url": self.url if self.endpoint_id is None else f"{self.url}/{self.endpoint_id}",
            "source": self.source,
            "endpoint_id": self.endpoint_id,
            "route": self.route,
            "route_means": self.route_means,
            "endpoint_type": self.endpoint_type,
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
    route: str | None = None,
) -> TargetSpec:
    """The one target these options name (read by notus_cli.targets, as for `notus chat`).

    Without a target flag: [bench] base_url, then the deployment on `gpu`. Raises ConfigError (none,
    several, unknown name, no key, no deployment on `gpu`, --route with an OpenAI URL) or
    EndpointUnreachable (--local without a running `notus serve`).
    """
    if route is not None:
        check_route(route)
    flags = TargetFlags(name=name, endpoint=endpoint, local=local, base_url=base_url)
    address = resolve_address(
        settings, flags, default_base_url=settings.bench.base_url, openai_key=settings.bench.api_key, gpu=gpu
    )
    if isinstance(address, OpenAIAddress):
        if route is not None:
            raise ConfigError("--route applies to RunPod targets only (NAME, --endpoint, --local)")
        return TargetSpec(
            kind="openai", url=address.base_url, source=address.source, api_key=address.key, route="openai"
        )
    return _runpod(address, route)


def _runpod(address: RunPodAddress, route: str | None) -> TargetSpec:
    if address.openai_base_url is not None:
        return lb_spec(address, route)
    return runpod_spec(
        address.api_base, address.endpoint_id, address.source, address.key, route or DEFAULT_ROUTE,
        gpu=address.gpu, gpu_count=address.gpu_count,
    )  # fmt: skip


def lb_spec(address: RunPodAddress, route: str | None = None) -> TargetSpec:
    """An LB endpoint: an OpenAI-compatible server at its LB URL. Raises ConfigError for a job route."""
    route = route or LB_ROUTES[0]
    if route not in LB_ROUTES:
        raise ConfigError(
            f"--route {route}: {address.label} is a load-balancing endpoint, which has no jobs",
            hint="drop --route (its workers' own OpenAI API), or pass --route native (their /chat)",
        )
    assert address.openai_base_url is not None
    assert address.lb_url is not None
    url = address.openai_base_url if route == "openai" else address.lb_url
    return TargetSpec("lb", url, address.source, None, address.key, address.gpu, route, address.gpu_count, "lb")


def runpod_spec(
    api_base: str,
    endpoint_id: str,
    source: str,
    key: SecretStr,
    route: str,
    *,
    gpu: str | None = None,
    gpu_count: int = 1,
) -> TargetSpec:
    """A RunPod endpoint through its job API (`openai-job`, `native`) or its OpenAI route (`openai`)."""
    check_route(route)
    base = api_base.rstrip("/")
    if route == "openai":
        url = routes.openai_base(routes.endpoint_base(base, endpoint_id))
        return TargetSpec("openai", url, source, None, key, gpu, route, gpu_count, "queue")
    return TargetSpec("runpod", base, source, endpoint_id, key, gpu, route, gpu_count, "queue")


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
        return RunPodTarget(spec.endpoint_id, api_base=spec.url, job_route=spec.route, **common)
    if spec.kind == "lb" and spec.route == "native":
        return LBNativeTarget(spec.url, model=model, **common)
    return OpenAIChatTarget(spec.url, model=model, **common)
