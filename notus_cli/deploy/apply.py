"""Carry out deploy plans and tear-downs through the control plane, and remember the result locally.

Only mutations that the plan lists are sent: an unchanged deploy sends none. The order keeps the
endpoint serving throughout: the new template first, then the settings (`saveEndpoint` with the
full spec, still on the current template), then the switch (`updateEndpointTemplate`, a rolling
release). A private image's template names RunPod's registry auth for its credentials, found by
name or else created (`registry_auth`).

No create is sent twice blindly: when an answer is lost (RunPodAnswerLost), the thing is looked up
first, a template by its name (unique on RunPod, and holding a hash of its content), an endpoint by
its name and the template id this deploy just gave it, and only created again if it is not there.

`tear_down` scales the endpoint to zero (RunPod refuses to delete one with workers), deletes it,
forgets the deployment locally at once, then deletes the deployment's templates, waiting out
RunPod's "up to 2 minutes to delete a template after its most recent use" (runpod/docs
sdks/graphql/manage-pod-templates) with a bounded retry; what is left, a second `down` removes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from notus_cli.deploy.plan import SETTINGS, DeployPlan, registry_auth_name, template_prefix
from notus_cli.deployments import Deployment, forget_deployment, load_deployments, save_deployment
from notus_cli.errors import ConfigError, RunPodAnswerLost, RunPodError, RunPodQueryError
from notus_cli.registry_credentials import RegistryCredentials
from notus_cli.runpod.control import ControlPlane, EndpointInfo, EndpointInput, Template, TemplateInput

T = TypeVar("T")
LOOKS = 3  # after a lost answer: how often to look for the result before creating again
LOOK_PAUSE = 1.0  # seconds between looks (a gateway may answer before the backend has finished)
TEMPLATE_RELEASE_WAIT = 150.0  # seconds `down` waits for RunPod to let a just-used template go
TEMPLATE_RETRY_PAUSES = (1.0, 2.0, 4.0, 8.0)  # then every 10 s


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
        template = plan.template
        if plan.request.registry is not None:
            auth_id = registry_auth(control, plan.request.registry, done)
            template = template.model_copy(update={"container_registry_auth_id": auth_id})
        template_id = _save_template(control, template)
        done.append(f"created template {plan.template.name}")
    endpoint = plan.endpoint
    if plan.existing is None:
        endpoint_id = _create_endpoint(control, endpoint.model_copy(update={"template_id": template_id, "id": None}))
        done.append(f"created endpoint {endpoint.name} ({endpoint_id})")
    else:
        endpoint_id = plan.existing.id
        if "update endpoint" in actions:
            _update_endpoint(control, endpoint)
            done.append(f"updated endpoint {endpoint.name}")
        if "rolling release" in actions:
            _switch_template(control, endpoint_id, template_id)
            done.append(f"rolling release to {plan.template.name}")
    deployment = Deployment(
        name=plan.request.name,
        endpoint_id=endpoint_id,
        template_id=template_id,
        image=plan.request.image,
        gpu=plan.request.pools[0].id,  # the preferred pool: what cost figures use
        model_revision=plan.request.model_revision,
        api_base_url=api_base_url,
        endpoint_type=plan.endpoint_type,
        extra={
            "gpu_ids": endpoint.gpu_ids,
            "gpu_count": str(endpoint.gpu_count),  # GPUs per worker: what a cost figure multiplies by
            "max_model_len": str(plan.max_model_len),
            "max_num_seqs": str(plan.max_num_seqs),
        },
    )
    save_deployment(deployment, state)
    return DeployResult(deployment, done)


def registry_auth(control: ControlPlane, credentials: RegistryCredentials, done: list[str] | None = None) -> str:
    """The id of RunPod's registry auth for `credentials`: found by its name, else created. Never logs the password.

    RunPod does not return passwords, so an auth found by name is trusted to hold the same ones;
    a changed password needs that auth deleted in RunPod's console (or a new username) first.
    """
    name = registry_auth_name(credentials)

    def find() -> str | None:
        return next((auth.id for auth in control.registry_auths() if auth.name == name), None)

    found = find()
    if found is not None:
        return found
    username, password = credentials.username, credentials.password
    auth_id = _send_once(
        lambda: control.save_registry_auth(name, username, password).id, find, f"creating registry auth {name}"
    )
    if done is not None:
        done.append(f"saved registry credentials for {credentials.host} ({credentials.source}) as {name}")
    return auth_id


def _save_template(control: ControlPlane, template: TemplateInput) -> str:
    """Create the template; if an earlier attempt already did (RunPod then refuses the name), use that one."""

    def find() -> str | None:
        twin = next((t for t in control.templates() if t.name == template.name), None)
        same = twin is not None and (twin.image_name, twin.env) == (template.image_name, template.env)
        return twin.id if twin is not None and same else None

    try:
        return _send_once(lambda: control.save_template(template).id, find, f"creating template {template.name}")
    except RunPodQueryError:
        twin_id = find()
        if twin_id is None:
            raise
        return twin_id


def _create_endpoint(control: ControlPlane, endpoint: EndpointInput) -> str:
    """Create the endpoint; after a lost answer, the one by this name on this deploy's new template is it."""

    def find() -> str | None:
        ours = [e for e in control.endpoints() if e.name == endpoint.name and e.template_id == endpoint.template_id]
        return ours[0].id if ours else None

    return _send_once(lambda: control.save_endpoint(endpoint).id, find, f"creating endpoint {endpoint.name}")


def _update_endpoint(control: ControlPlane, endpoint: EndpointInput) -> None:
    """saveEndpoint with the full spec; after a lost answer, sent again only if RunPod does not show it."""
    wanted = endpoint.model_dump(include=set(SETTINGS))

    def find() -> bool | None:
        now = next((e for e in control.endpoints() if e.id == endpoint.id), None)
        return True if now is not None and now.model_dump(include=set(SETTINGS)) == wanted else None

    _send_once(lambda: bool(control.save_endpoint(endpoint)), find, f"the update of endpoint {endpoint.name}")


def _switch_template(control: ControlPlane, endpoint_id: str, template_id: str) -> None:
    """updateEndpointTemplate; after a lost answer, sent again only if the endpoint is not on the template."""

    def find() -> bool | None:
        return True if any(e.id == endpoint_id and e.template_id == template_id for e in control.endpoints()) else None

    def send() -> bool:
        control.update_endpoint_template(endpoint_id, template_id)
        return True

    _send_once(send, find, f"the rolling release of endpoint {endpoint_id}")


def _send_once(create: Callable[[], T], find: Callable[[], T | None], what: str) -> T:
    """`create()`, and after a lost answer look (`find`) before sending again; it is sent at most twice."""
    for _attempt in range(2):
        try:
            return create()
        except RunPodAnswerLost:
            for look in range(LOOKS):
                found = find()
                if found is not None:
                    return found
                if look + 1 < LOOKS:
                    time.sleep(LOOK_PAUSE)
    raise RunPodError(
        f"RunPod did not confirm {what}, twice, and its result cannot be found",
        hint="see `notus endpoints`, then run the same command again: it looks before it creates",
    )


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
    standby = None if endpoint.workers_standby is None else 0
    return endpoint.model_copy(update={"workers_min": 0, "workers_max": 0, "workers_standby": standby})


def tear_down(
    plan: TearDown,
    control: ControlPlane,
    state: Path | None = None,
    *,
    say: Callable[[str], None] | None = None,
    release_wait: float | None = None,
) -> list[str]:
    """Scale to zero, delete the endpoint, forget it locally, delete its templates; returns what was done.

    Raises RunPodError naming `notus down` when a template is still refused after `release_wait` s
    (default TEMPLATE_RELEASE_WAIT).
    """
    done: list[str] = []
    if plan.endpoint is not None:
        endpoint = plan.endpoint
        if endpoint.workers_min or endpoint.workers_max:
            control.save_endpoint(scaled_to_zero(endpoint))
            done.append(f"scaled {endpoint.name} to zero")
        _delete_endpoint(control, endpoint.id)
        done.append(f"deleted endpoint {endpoint.name} ({endpoint.id})")
    if plan.forgotten:
        forget_deployment(plan.name, state)  # the endpoint is gone: nothing may target it any more
    deadline = time.monotonic() + (TEMPLATE_RELEASE_WAIT if release_wait is None else release_wait)
    for template in plan.templates:
        try:
            _delete_template(control, template.name, deadline, say)
        except RunPodError as exc:
            if done:  # say what did happen: the paid part may be gone already
                raise RunPodError(f"{'; '.join(done)}; but {exc.message}", hint=exc.hint) from exc
            raise
        done.append(f"deleted template {template.name}")
    return done


def _delete_endpoint(control: ControlPlane, endpoint_id: str) -> None:
    """deleteEndpoint; a lost answer is checked by looking, since the endpoint is either there or gone."""
    try:
        control.delete_endpoint(endpoint_id)
    except RunPodAnswerLost:
        if any(e.id == endpoint_id for e in control.endpoints()):
            raise


def _delete_template(control: ControlPlane, name: str, deadline: float, say: Callable[[str], None] | None) -> None:
    """deleteTemplate, retried while RunPod still holds a just-used template, until `deadline`."""
    for attempt in range(10_000):
        try:
            control.delete_template(name)
            return
        except RunPodError as exc:
            if not any(t.name == name for t in control.templates()):
                return  # gone (a lost answer, or removed meanwhile)
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunPodError(
                    f"RunPod still refuses to delete template {name}: {exc.message}",
                    hint="RunPod can take up to 2 minutes to release a template after its last use; "
                    "run the same `notus down` again in a minute",
                ) from exc
            if say is not None:
                say(f"template {name} is still held by RunPod after its last use; retrying ({left:.0f} s left)")
            pause = TEMPLATE_RETRY_PAUSES[attempt] if attempt < len(TEMPLATE_RETRY_PAUSES) else 10.0
            time.sleep(min(pause, left))
