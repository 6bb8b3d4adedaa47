"""What `notus status` and `notus endpoints` report: settings from the control plane, health from the endpoint.

The type shown is RunPod's (`type` read back), not the local record's, so an endpoint made or
changed elsewhere is shown as it is; its URL is where clients reach it: `/v2/<id>` (the job API)
for a queue endpoint, the LB URL (settings.runpod_lb_url) for a load-balancing one. Health comes
from `/v2/<id>/health` for both (the emulator counts LB workers there; RunPod does not publish
whether it answers it for LB endpoints, so a failure is shown, not raised).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pydantic import SecretStr

from notus_cli.deploy.apply import find_endpoint
from notus_cli.deployments import Deployment, load_deployments
from notus_cli.errors import ConfigError, NotusError
from notus_cli.runpod.control import ControlPlane, EndpointInfo, Template
from notus_cli.runpod.protocol import lb
from notus_cli.runpod.serverless import Health, ServerlessClient


@dataclass(frozen=True)
class EndpointStatus:
    endpoint: EndpointInfo
    template: Template | None
    deployment: Deployment | None
    health: Health | None
    health_error: str | None = None  # why health could not be read (the settings are still shown)
    url: str = ""  # where clients reach the endpoint (module docstring)

    @property
    def weights(self) -> str:
        """Where the workers' weights come from: the cached model's reference, or "baked into the image"."""
        references = self.endpoint.model_references or ()
        return f"cached model {', '.join(references)}" if references else "baked into the image"

    @property
    def downloading(self) -> str | None:
        """While a cached-model endpoint's workers initialize, RunPod may be downloading the model
        (runpod/docs serverless/workers/overview.mdx: Initializing covers "downloading cached models",
        not billed); /health only counts them as initializing, so this says what that can mean."""
        starting = self.health.workers.get("initializing", 0) if self.health else 0
        if not starting or not self.endpoint.model_references:
            return None
        return f"{starting} initializing: starting, or waiting while RunPod downloads the cached model (not billed)"

    @property
    def problems(self) -> tuple[str, ...]:
        """What looks wrong, in words: jobs waiting on an endpoint no worker of which has started."""
        health, template = self.health, self.template
        if health is None or not health.in_queue or any(health.workers.values()):
            return ()
        waiting = f"{health.in_queue} job(s) wait and no worker has started"
        if template is not None and template.container_registry_auth_id is None:
            return (
                f"{waiting}: the template names no registry credential, so RunPod cannot pull "
                f"{template.image_name} if its registry is private (GHCR packages are private by default)",
            )
        return (f"{waiting}: RunPod may have no free GPU in the chosen pools, or cannot pull the image",)


@dataclass(frozen=True)
class Listed:
    endpoint: EndpointInfo
    local_name: str | None  # the deployment that remembers it, if any


def endpoint_status(
    control: ControlPlane, name: str, *, api_key: SecretStr, api_base_url: str, lb_url_template: str
) -> EndpointStatus:
    """Raises ConfigError if no endpoint is deployed as `name`."""
    endpoint = find_endpoint(control, name)
    if endpoint is None:
        raise ConfigError(f"no endpoint named '{name}' on RunPod", hint="see `notus endpoints`, or deploy it")
    deployment = load_deployments().get(name)
    template = next((t for t in control.templates() if t.id == endpoint.template_id), None)
    base = (deployment.api_base_url if deployment and deployment.api_base_url else None) or api_base_url
    url = lb.lb_url(lb_url_template, endpoint.id) if endpoint.kind == "lb" else f"{base.rstrip('/')}/v2/{endpoint.id}"
    try:
        health = asyncio.run(_health(endpoint.id, api_key, base))
    except NotusError as exc:
        return EndpointStatus(endpoint, template, deployment, None, exc.message, url=url)
    return EndpointStatus(endpoint, template, deployment, health, url=url)


def list_endpoints(control: ControlPlane) -> list[Listed]:
    by_id = {d.endpoint_id: name for name, d in load_deployments().items()}
    return [Listed(e, by_id.get(e.id)) for e in control.endpoints()]


async def _health(endpoint_id: str, api_key: SecretStr, base_url: str) -> Health:
    async with ServerlessClient(endpoint_id, api_key, base_url=base_url, timeout=10.0) as client:
        return await client.health()
