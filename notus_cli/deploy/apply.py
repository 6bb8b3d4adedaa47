"""Carry out deploy plans and tear-downs through the control plane, and remember the result locally.

Only mutations that the plan lists are sent: an unchanged deploy sends none. The order keeps the
endpoint serving throughout: the new template first, then the settings (`saveEndpoint` with the
full spec, still on the current template), then the switch (`updateEndpointTemplate`, a rolling
release). `tear_down` scales the endpoint to zero (RunPod refuses to delete one with workers), deletes
it, then deletes every template of the deployment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from notus_cli.deploy.plan import DeployPlan, template_prefix
from notus_cli.deploy.state import Deployment, forget_deployment, load_deployments, save_deployment
from notus_cli.errors import ConfigError, RunPodQueryError
from notus_cli.runpod.control import ControlPlane, EndpointInfo, Template, TemplateInput


@dataclass(frozen=True)
class TearDown:
    """What `notus down` will remove (and, once done, removed)."""

    name: str
    endpoint: EndpointInfo | None
    templates: tuple[Template, ...]
    forgotten: bool = False  # the local record existed

    @property
    def empty(self) -> bool:
        return self.endpoint is None and not self.templates and not self.forgotten


@dataclass
class DeployResult:
    deployment: Deployment
    done: list[str] = field(default_factory=list)  # what changed on RunPod, for people


def apply_deploy(
    plan: DeployPlan, control: ControlPlane, *, api_base_url: str | None, state: Path | None = None
) -> DeployResult:
    """Send the plan's mutations and record the deployment. Raises what the control plane raises."""
    done: list[str] = []
    actions = {change.action for change in plan.changes}
    template_id = plan.existing_template.id if plan.existing_template else None
    if "create template" in actions or template_id is None:
        template_id = _save_template(control, plan.template)
        done.append(f"created template {plan.template.name}")
    endpoint = plan.endpoint
    if plan.existing is None:
        endpoint_id = control.save_endpoint(endpoint.model_copy(update={"template_id": template_id, "id": None})).id
        done.append(f"created endpoint {endpoint.name} ({endpoint_id})")
    else:
        endpoint_id = plan.existing.id
        if "update endpoint" in actions:
            control.save_endpoint(endpoint)
            done.append(f"updated endpoint {endpoint.name}")
        if "rolling release" in actions:
            control.update_endpoint_template(endpoint_id, template_id)
            done.append(f"rolling release to {plan.template.name}")
    deployment = Deployment(
        name=plan.request.name,
        endpoint_id=endpoint_id,
        template_id=template_id,
        image=plan.request.image,
        gpu=plan.request.pools[0].id,  # the preferred pool: what cost figures use
        model_revision=plan.request.model_revision,
        api_base_url=api_base_url,
        extra={
            "gpu_ids": endpoint.gpu_ids,
            "max_model_len": str(plan.max_model_len),
            "max_num_seqs": str(plan.max_num_seqs),
        },
    )
    save_deployment(deployment, state)
    return DeployResult(deployment, done)


def _save_template(control: ControlPlane, template: TemplateInput) -> str:
    """Create the template; if a retried request already did (RunPod then refuses the name), use that one."""
    try:
        return control.save_template(template).id
    except RunPodQueryError:
        twin = next((t for t in control.templates() if t.name == template.name), None)
        if twin is None or (twin.image_name, twin.env) != (template.image_name, template.env):
            raise
        return twin.id


def find_endpoint(control: ControlPlane, name: str, state: Path | None = None) -> EndpointInfo | None:
    """The endpoint of deployment `name`: by the id remembered locally, else by its name on RunPod."""
    endpoints = control.endpoints()
    known = load_deployments(state).get(name)
    if known is not None:
        match = next((e for e in endpoints if e.id == known.endpoint_id), None)
        if match is not None:
            return match
    return next((e for e in endpoints if e.name == name), None)


def what_to_remove(control: ControlPlane, name: str, state: Path | None = None) -> TearDown:
    """Everything deployment `name` has on RunPod and locally; empty when there is nothing."""
    endpoint = find_endpoint(control, name, state)
    prefix = template_prefix(name)
    templates = tuple(t for t in control.templates() if t.name.startswith(prefix))
    return TearDown(name, endpoint, templates, forgotten=name in load_deployments(state))


def plan_tear_down(control: ControlPlane, name: str, state: Path | None = None) -> TearDown:
    """What `notus down NAME` would remove. Raises ConfigError if there is nothing by that name."""
    result = what_to_remove(control, name, state)
    if result.empty:
        raise ConfigError(f"nothing is deployed as '{name}'", hint="see `notus endpoints`")
    return result


def scaled_to_zero(endpoint: EndpointInfo) -> EndpointInfo:
    """The endpoint's full spec with no worker allowed: saveEndpoint replaces the whole endpoint."""
    return endpoint.model_copy(update={"workers_min": 0, "workers_max": 0, "workers_standby": 0})


def tear_down(plan: TearDown, control: ControlPlane, state: Path | None = None) -> list[str]:
    """Scale to zero, delete the endpoint, delete its templates, forget it locally; returns what was done."""
    done: list[str] = []
    if plan.endpoint is not None:
        endpoint = plan.endpoint
        if endpoint.workers_min or endpoint.workers_max or endpoint.workers_standby:
            control.save_endpoint(scaled_to_zero(endpoint))
            done.append(f"scaled {endpoint.name} to zero")
        control.delete_endpoint(endpoint.id)
        done.append(f"deleted endpoint {endpoint.name} ({endpoint.id})")
    for template in plan.templates:
        control.delete_template(template.name)
        done.append(f"deleted template {template.name}")
    if plan.forgotten:
        forget_deployment(plan.name, state)
    return done
