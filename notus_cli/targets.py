"""Where a request goes: the one reading of the target flags `notus chat` and `notus bench` share.

A target is a deployment by name (its endpoint id and API base from .notus/deployments.json), a
RunPod endpoint id, the running `notus serve`, or the base URL of any OpenAI-compatible server; at
most one may be given. A RunPod address also knows its endpoint's type, and an LB endpoint's URL
(notus_cli.endpoint_types finds both), so the user never builds that URL. `resolve_address` turns
the flags into an address (a `RunPodAddress` or an `OpenAIAddress`) and raises the same errors for both commands:

    several targets, none at all, an unknown name                  ConfigError (exit 2)
    no RunPod key                                                   AuthError (exit 5)
    --local while no `notus serve` is running                      EndpointUnreachable (exit 3)

Once requests flow, a refused key is an AuthError (exit 5) too from a RunPod endpoint and from an
OpenAI-compatible server alike, in chat and bench. Each command then turns the
address into what it sends with: chat a backend (notus_cli.chat.target_backend), bench a request sender
(notus_cli.bench.endpoints); an LB endpoint is an OpenAI-compatible server at its LB URL to both.

The RunPod key only ever goes to RunPod's API; a deployment on the local emulator gets that emulator's
own key, and any other server OPENAI_API_KEY (or a key the command's settings give).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from notus_cli.deployments import Deployment, find_deployment, load_deployments
from notus_cli.endpoint_types import EndpointType, ask_control_plane, endpoint_type, graphql_url, lb_url
from notus_cli.errors import AuthError, ConfigError, EndpointUnreachable
from notus_cli.openai_url import is_runpod_host, openai_base
from notus_cli.runpod.gpus import resolve_pool
from notus_cli.runpod.urls import RUNPOD_API_URL
from notus_cli.runpod_key import find_api_key
from notus_cli.serve.connection import other_stacks, project_dir, read_connection
from notus_cli.settings import NotusSettings

TARGET_FLAGS = "NAME, --endpoint ID, --local or --base-url URL"


@dataclass(frozen=True)
class TargetFlags:
    """The target flags as given on the command line (at most one of them)."""

    name: str | None = None
    endpoint: str | None = None
    local: bool = False
    base_url: str | None = None


@dataclass(frozen=True)
class RunPodAddress:
    api_base: str  # https://api.runpod.ai/v2, or an emulator's …/v2
    endpoint_id: str
    key: SecretStr
    source: str  # how it was named: "deployment prod", "endpoint abc123", "notus serve"
    gpu: str | None = None  # the pool a deployment runs on
    gpu_count: int = 1  # GPUs per worker, as deployed: what a cost figure multiplies by
    endpoint_type: EndpointType = "queue"
    lb_url: str | None = None  # an LB endpoint's base URL: its worker's routes follow (/v1/..., /chat)

    @property
    def openai_base_url(self) -> str | None:
        """An LB endpoint's OpenAI API (its worker serves /v1 itself); None for a queue endpoint."""
        return f"{self.lb_url}/v1" if self.endpoint_type == "lb" and self.lb_url else None

    @property
    def label(self) -> str:
        """What a person reads: "prod (abc123)", "endpoint abc123", "notus serve at http://…"."""
        if self.source == "notus serve":
            return f"notus serve at {self.api_base.removesuffix('/v2')}"
        if self.source.startswith("deployment "):
            return f"{self.source.removeprefix('deployment ')} ({self.endpoint_id})"
        return self.source


@dataclass(frozen=True)
class OpenAIAddress:
    base_url: str  # …/v1
    key: SecretStr | None
    source: str = "--base-url"

    @property
    def label(self) -> str:
        return self.base_url


Address = RunPodAddress | OpenAIAddress


def resolve_address(
    settings: NotusSettings,
    flags: TargetFlags,
    *,
    default_base_url: str | None = None,
    openai_key: SecretStr | None = None,
    gpu: str | None = None,
    default_local: bool = False,
) -> Address:
    """The one target `flags` name.

    With no target flag: `default_base_url` (a command's setting), then the deployment on `gpu`, then
    the running `notus serve` when `default_local`. `openai_key` (a command's own key setting) wins for
    OpenAI-compatible servers. Raises ConfigError (several or no targets, unknown name, no or
    several deployments on `gpu`) or EndpointUnreachable (--local without a running `notus serve`).
    """
    check_one_target(flags)
    if flags.base_url:
        return openai_server(flags.base_url, settings, openai_key)
    if flags.name:
        return deployment_endpoint(find_deployment(flags.name), settings)
    if flags.endpoint:
        return endpoint_by_id(flags.endpoint, settings)
    if flags.local:
        return require_local()
    if default_base_url:
        return openai_server(default_base_url, settings, openai_key)
    if gpu:
        return deployment_endpoint(deployment_on(gpu), settings)
    found = local_endpoint() if default_local else None
    if found is not None:
        return found
    hint = "no `notus serve` is running to use by default" if default_local else "or --gpu GPU: its deployment"
    raise ConfigError(f"say which endpoint to use: {TARGET_FLAGS}", hint=hint)


def check_one_target(flags: TargetFlags) -> None:
    """Raises ConfigError when more than one target is given."""
    named = (("NAME", flags.name), ("--endpoint", flags.endpoint), ("--base-url", flags.base_url))
    given = [flag for flag, value in named if value] + (["--local"] if flags.local else [])
    if len(given) > 1:
        raise ConfigError(f"give one target, not {' and '.join(given)}", hint=TARGET_FLAGS)


def deployment_endpoint(deployment: Deployment, settings: NotusSettings) -> RunPodAddress:
    """A deployment's endpoint, with the key its API base takes and the type `notus deploy` recorded
    (`endpoint_type`; entries without one are queue endpoints). Raises ConfigError without a key."""
    api_base = deployment.api_base_url or RUNPOD_API_URL
    key = _local_key(api_base) or runpod_key(settings, api_base)
    pools = [part.strip() for part in deployment.gpu.split(",") if part.strip()]
    kind = endpoint_type(deployment.endpoint_type)
    return RunPodAddress(
        api_base,
        deployment.endpoint_id,
        key,
        f"deployment {deployment.name}",
        pools[0] if pools else None,
        int(deployment.extra.get("gpu_count", "1")),
        kind,
        lb_url(api_base, deployment.endpoint_id, settings) if kind == "lb" else None,
    )


def deployment_on(gpu: str) -> Deployment:
    """The one deployment on the pool `gpu` names. Raises ConfigError saying how to deploy one, or pick one."""
    pool = resolve_pool(gpu)
    found = [d for d in load_deployments().values() if pool.id in [part.strip() for part in d.gpu.split(",")]]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(sorted(d.name for d in found))
        raise ConfigError(f"several deployments run on {pool.id}: {names}", hint="name one (NAME)")
    raise ConfigError(
        f"no deployment runs on GPU '{gpu}' ({pool.id})",
        hint=f"deploy one with `notus deploy NAME --gpu {gpu}`, or add --deploy to benchmark a temporary endpoint",
    )


def endpoint_by_id(endpoint_id: str, settings: NotusSettings) -> RunPodAddress:
    """A RunPod endpoint by id, under the settings' API base (RUNPOD_ENDPOINT_BASE_URL moves it, as for the SDK),
    of the type the control plane says (the running `notus serve`'s own endpoint: its connection file)."""
    api_base = settings.runpod_api_url
    key = runpod_key(settings, api_base)
    local = local_endpoint()
    if local is not None and (local.api_base, local.endpoint_id) == (api_base.rstrip("/"), endpoint_id):
        kind = local.endpoint_type  # made without the control plane, which does not list it
    else:
        kind = ask_control_plane(endpoint_id, key, graphql_url(api_base, settings))
    url = lb_url(api_base, endpoint_id, settings) if kind == "lb" else None
    return RunPodAddress(api_base, endpoint_id, key, f"endpoint {endpoint_id}", endpoint_type=kind, lb_url=url)


def local_endpoint() -> RunPodAddress | None:
    """The running `notus serve`'s endpoint, of the type it serves, or None when none is running."""
    connection = read_connection()
    if connection is None:
        return None
    key = SecretStr(str(connection["api_key"]))
    kind = endpoint_type(connection.get("endpoint_type"))
    url = str(connection["lb_url"]) if kind == "lb" and connection.get("lb_url") else None
    return RunPodAddress(
        str(connection["api_base"]), str(connection["endpoint_id"]), key, "notus serve", endpoint_type=kind, lb_url=url
    )


def require_local() -> RunPodAddress:
    """--local: the running `notus serve`. Raises EndpointUnreachable when none is running."""
    found = local_endpoint()
    if found is None:
        others = ", ".join(str(stack.get("project")) for stack in other_stacks())
        hint = f"one runs for {others}: run this there, or start one here" if others else "start one"
        raise EndpointUnreachable(
            f"--local: no `notus serve` is running for this project ({project_dir()})",
            hint=f"{hint}: notus serve --tiny",
        )
    return found


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
    Raises AuthError when there is none (the same failure, and exit code, as `notus deploy`'s)."""
    try:
        return find_api_key(settings).value
    except AuthError as exc:
        raise AuthError(f"a RunPod API key is needed for the endpoint at {api_base}", hint=exc.hint) from None


def _local_key(api_base: str) -> SecretStr | None:
    """The running `notus serve`'s key, when `api_base` is its address (a deployment on the emulator)."""
    connection = read_connection()
    if connection and str(connection.get("api_base", "")).rstrip("/") == api_base.rstrip("/"):
        return SecretStr(str(connection["api_key"]))
    return None
