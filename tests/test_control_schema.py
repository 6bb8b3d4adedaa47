"""Every control-plane request the deploy path sends passes RunPod's schema, in both of its shapes.

RunPod's API cannot be reached from here, so its schema is our fixture (notus_cli/emulator/runpod_schema.py,
written from RunPod's published sources) and the emulator stands in for the server. The test drives
the real library code of each path (create, update, template swap, private image, --force-cold's scale
to zero and back, bench --deploy, down) against the emulator over HTTP, then checks every request it
received against the fixture on its own: the document validates and the variables coerce, so no
request carries a field the schema does not declare.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLSchema, OperationDefinitionNode, get_operation_ast, parse, validate
from graphql.execution.values import get_variable_values
from pydantic import SecretStr

from notus_cli.bench.deploy_hooks import ControlPlaneScaler, temporary_endpoints
from notus_cli.deploy.apply import apply_deploy, plan_tear_down, tear_down
from notus_cli.deploy.plan import DeployRequest, plan_deploy, plan_on
from notus_cli.deploy.request import DeployFlags, control_plane, deploy_request
from notus_cli.emulator.runpod_schema import schema
from notus_cli.errors import ConfigError
from notus_cli.registry_credentials import RegistryCredentials
from notus_cli.runpod.control import ControlPlane
from notus_cli.runpod.gpus import resolve_pool
from notus_cli.settings import NotusSettings, load_settings
from testbed.control import notus_env, pushed_project
from testbed.emulator import Harness

PASSWORD = "ghp_not-a-real-token-0123456789"
PATH_OPERATIONS = {
    "Endpoints",
    "Templates",
    "InputFields",
    "RegistryAuths",
    "SaveRegistryAuth",
    "SaveTemplate",
    "SaveEndpoint",
    "UpdateEndpointTemplate",
    "DeleteEndpoint",
    "DeleteTemplate",
}


@pytest.fixture(params=[False, True], ids=["schema-without-standby", "schema-with-standby"])
def declared(request: pytest.FixtureRequest, control_emulator: Harness) -> Iterator[bool]:
    rules = control_emulator.emulator.control.rules
    previous, rules.declares_workers_standby = rules.declares_workers_standby, request.param
    yield request.param
    rules.declares_workers_standby = previous


@pytest.fixture
def settings(control_emulator: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NotusSettings:
    project = pushed_project(tmp_path, "sha256:" + "5c" * 32)
    monkeypatch.chdir(project)
    for variable, value in notus_env(control_emulator.url, control_emulator.key).items():
        if variable.startswith(("NOTUS_", "RUNPOD_")):
            monkeypatch.setenv(variable, value)
    return load_settings()


def deploy(control: ControlPlane, request: DeployRequest) -> str:
    return apply_deploy(plan_on(control, request), control, api_base_url=None).deployment.endpoint_id


def check_against_fixture(sent: list[dict[str, Any]], fixture: GraphQLSchema) -> set[str]:
    """Asserts every request validates against `fixture` and its variables coerce; returns the operations."""
    operations: set[str] = set()
    for body in sent:
        document = parse(body["query"])
        assert validate(fixture, document) == [], body["query"]
        operation = get_operation_ast(document)
        assert isinstance(operation, OperationDefinitionNode)
        coerced = get_variable_values(fixture, operation.variable_definitions or (), body["variables"])
        assert not isinstance(coerced, list), [error.message for error in coerced]
        assert operation.name is not None
        operations.add(operation.name.value)
    return operations


def saved_endpoints(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [body["variables"]["input"] for body in sent if "mutation SaveEndpoint" in body["query"]]


def test_every_request_of_the_deploy_path_passes_runpods_schema(
    control_emulator: Harness, declared: bool, settings: NotusSettings
) -> None:
    control_emulator.emulator.control.rules.private_registries = frozenset({"registry.test"})
    received = control_emulator.emulator.control.requests
    start = len(received)
    name = f"schema-{'with' if declared else 'without'}"
    key = SecretStr(control_emulator.key)
    credentials = RegistryCredentials("registry.test", f"robot-{declared}", SecretStr(PASSWORD), "test")
    try:
        request = deploy_request(settings, DeployFlags(name=name, workers_max=1, idle_timeout=1))
        request = dataclasses.replace(request, registry=credentials, cuda_version="12.8")
        with control_plane(settings, key) as control:
            endpoint_id = deploy(control, request)  # create (with a registry auth)
            deploy(control, dataclasses.replace(request, workers_max=2, workers_min=1))  # update
            deploy(control, dataclasses.replace(request, image="registry.test/notus:v9"))  # template swap
        scaler = ControlPlaneScaler(settings, key)  # --force-cold
        scaler.scale_to_zero(endpoint_id)
        scaler.restore(endpoint_id)
        with temporary_endpoints(settings, say=lambda _line: None, image="registry.test/notus:tmp").create(
            resolve_pool("a100")
        ):
            pass  # bench --deploy: created, then removed
        with control_plane(settings, key) as control:
            tear_down(plan_tear_down(control, name), control)  # down
    finally:
        control_emulator.emulator.control.rules.private_registries = frozenset()

    sent = received[start:]
    operations = check_against_fixture(sent, schema(declares_workers_standby=declared))
    assert all(("workersStandby" in saved) is declared for saved in saved_endpoints(sent))
    assert operations >= PATH_OPERATIONS
    assert all(PASSWORD not in str(body) for body in sent if "SaveRegistryAuth" not in body["query"])


def test_a_registry_auth_is_made_once_and_the_template_names_it(
    control_emulator: Harness, settings: NotusSettings
) -> None:
    """A private image: with credentials, the template names RunPod's registry auth and a worker starts."""
    control = control_emulator.emulator.control
    control.rules.private_registries = frozenset({"registry.test"})
    key = SecretStr(control_emulator.key)
    credentials = RegistryCredentials("registry.test", "robot2", SecretStr(PASSWORD), "test")
    try:
        request = deploy_request(settings, DeployFlags(name="pulls", workers_min=1, idle_timeout=1))
        request = dataclasses.replace(request, registry=credentials)
        before = len(control.mutations)
        with control_plane(settings, key) as runpod:
            endpoint_id = deploy(runpod, request)
            deploy(runpod, dataclasses.replace(request, image="registry.test/notus:v2"))  # finds the auth
        assert control.mutations[before:].count("saveRegistryAuth") == 1
        spec: dict[str, Any] = control.specs[endpoint_id]
        template = control.templates[spec["templateId"]]
        assert control.registry_auths[template["containerRegistryAuthId"]]["username"] == "robot2"
        control_emulator.wait_ready(control_emulator.emulator.endpoints[endpoint_id], 1, timeout=60)
        with control_plane(settings, key) as runpod:
            tear_down(plan_tear_down(runpod, "pulls"), runpod)
    finally:
        control.rules.private_registries = frozenset()


@pytest.mark.parametrize("types", [True, False], ids=["schema-with-type", "schema-without-type"])
def test_an_lb_deploy_sends_its_type_on_every_save_and_only_where_declared(
    control_emulator: Harness, declared: bool, types: bool, settings: NotusSettings
) -> None:
    """Create, update, template swap and down of an LB deployment pass the fixture in each shape; every
    saveEndpoint (a full replace, the scale to zero of down included) carries `type: "LB"`, so none
    resets it. Where EndpointInput has no `type`, the deploy is refused before any mutation."""
    control = control_emulator.emulator.control
    previous, control.rules.declares_type = control.rules.declares_type, types
    start, mutations = len(control.requests), len(control.mutations)
    name = f"lb-{'with' if declared else 'without'}-{'type' if types else 'none'}"
    key = SecretStr(control_emulator.key)
    try:
        request = deploy_request(settings, DeployFlags(name=name, endpoint_type="lb", workers_max=1, idle_timeout=1))
        with control_plane(settings, key) as runpod:
            if not types:
                with pytest.raises(ConfigError, match="does not declare `type`"):
                    deploy(runpod, request)
                with pytest.raises(ConfigError, match="does not declare `type`"):  # the client refuses on its own too
                    runpod.save_endpoint(plan_deploy(request, endpoints=[], templates=[]).endpoint)
                assert control.mutations[mutations:] == []
                return
            endpoint_id = deploy(runpod, request)
            updated = dataclasses.replace(request, endpoint_type=None, workers_max=2)  # no --type: it stays LB
            deploy(runpod, updated)
            deploy(runpod, dataclasses.replace(updated, image="registry.test/notus:lb2"))  # a rolling release
            assert control.specs[endpoint_id]["type"] == "LB"
            assert control.specs[endpoint_id]["scalerType"] == "REQUEST_COUNT"
            tear_down(plan_tear_down(runpod, name), runpod)
    finally:
        control.rules.declares_type = previous
    sent = control.requests[start:]
    check_against_fixture(sent, schema(declares_workers_standby=declared, declares_type=types))
    saves = saved_endpoints(sent)
    assert len(saves) == 3  # create, update, scale to zero
    assert all(saved["type"] == "LB" and saved["scalerType"] == "REQUEST_COUNT" for saved in saves)
