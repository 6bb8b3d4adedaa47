"""Deploy plans by endpoint type, without any network: what an LB endpoint gets, what a queue one keeps,
and what is refused (a change of type, an LB endpoint where the schema has no `type`, a queue scaler)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from notus_cli.deploy.plan import DeployRequest, plan_deploy
from notus_cli.deployments import load_deployments
from notus_cli.errors import ConfigError
from notus_cli.runpod.control import EndpointInfo, Template
from tests.test_deploy_plan import existing, request


def env_of(plan_request: DeployRequest) -> dict[str, str]:
    plan = plan_deploy(plan_request, endpoints=[], templates=[])
    return {var.key: var.value for var in plan.template.env}


def test_an_lb_deploy_gets_the_lb_type_scaler_and_worker_env() -> None:
    plan = plan_deploy(request(endpoint_type="lb"), endpoints=[], templates=[])
    assert plan.endpoint_type == "lb"
    wire = plan.endpoint.wire()
    assert (wire["type"], wire["scalerType"], wire["scalerValue"]) == ("LB", "REQUEST_COUNT", 4)
    env = {var.key: var.value for var in plan.template.env}
    # worker/settings.py reads these (docs/worker.md); 80 is RunPod's default PORT, PORT_HEALTH = PORT
    assert (env["NOTUS_ENDPOINT_TYPE"], env["PORT"], env["PORT_HEALTH"]) == ("lb", "80", "80")
    assert plan.changes[-1].detail.startswith("prod (lb) on ")


def test_a_queue_deploy_sends_no_type_and_no_lb_env() -> None:
    plan = plan_deploy(request(), endpoints=[], templates=[])
    assert plan.endpoint_type == "queue"
    assert "type" not in plan.endpoint.wire()
    assert plan.endpoint.scaler_type == "QUEUE_DELAY"
    assert not {"NOTUS_ENDPOINT_TYPE", "PORT", "PORT_HEALTH"} & set(env_of(request()))
    assert env_of(request(endpoint_type="lb")) != env_of(request())  # so its template has another name


def test_the_operators_env_wins_over_the_lb_env() -> None:
    assert env_of(request(endpoint_type="lb", env=(("PORT", "8080"),)))["PORT"] == "8080"


def test_an_update_keeps_the_type_runpod_reads_back_and_no_flag_keeps_lb() -> None:
    """saveEndpoint is a full replace: a redeploy without --type must neither reset nor change the type."""
    endpoints, templates = existing(request(endpoint_type="lb"))
    assert endpoints[0].type == "LB"
    plan = plan_deploy(request(workers_max=3), endpoints=endpoints, templates=templates)  # no --type
    assert plan.endpoint_type == "lb"
    assert [c.action for c in plan.changes] == ["update endpoint"]
    assert (plan.endpoint.wire()["type"], plan.endpoint.wire()["scalerType"]) == ("LB", "REQUEST_COUNT")
    queue = [endpoints[0].model_copy(update={"type": "QB", "scaler_type": "QUEUE_DELAY"})]
    assert plan_deploy(request(workers_max=3), endpoints=queue, templates=[]).endpoint.wire()["type"] == "QB"


@pytest.mark.parametrize(
    ("was", "asked", "said"), [("lb", "queue", r"load-balancing \(lb\)"), ("queue", "lb", "queue")]
)
def test_a_change_of_type_is_refused_with_the_way_round(was: str, asked: str, said: str) -> None:
    endpoints, templates = existing(request(endpoint_type=was))
    with pytest.raises(ConfigError, match=f"'prod' is a {said} endpoint on RunPod") as caught:
        plan_deploy(request(endpoint_type=asked), endpoints=endpoints, templates=templates)
    assert caught.value.hint == f"remove it with `notus down prod`, then `notus deploy prod --type {asked}`"


def test_an_endpoint_read_back_without_a_type_is_a_queue_endpoint() -> None:
    endpoints, templates = existing(request())
    assert (endpoints[0].type, endpoints[0].kind) == (None, "queue")
    with pytest.raises(ConfigError, match="is a queue endpoint"):
        plan_deploy(request(endpoint_type="lb"), endpoints=endpoints, templates=templates)


def test_lb_is_refused_where_the_schema_has_no_type() -> None:
    with pytest.raises(ConfigError, match="does not declare `type`") as caught:
        plan_deploy(request(endpoint_type="lb"), endpoints=[], templates=[], types=False)
    assert caught.value.hint == "deploy with --type queue"
    assert plan_deploy(request(), endpoints=[], templates=[], types=False).endpoint_type == "queue"


def test_lb_takes_the_request_count_scaler_only() -> None:
    with pytest.raises(ConfigError, match="--scaler delay does not apply to a load-balancing endpoint"):
        plan_deploy(request(endpoint_type="lb", scaler="delay"), endpoints=[], templates=[])
    plan = plan_deploy(request(endpoint_type="lb", scaler="requests", scaler_value=1), endpoints=[], templates=[])
    assert (plan.endpoint.scaler_type, plan.endpoint.scaler_value) == ("REQUEST_COUNT", 1)


def test_other_tools_lb_endpoints_read_back() -> None:
    made_elsewhere = EndpointInfo.model_validate({"id": "e2", "name": "web", "type": "LB", "templateId": None})
    assert made_elsewhere.kind == "lb"
    bare = Template.model_validate({"id": "t1", "name": "pod", "imageName": "i"})
    assert plan_deploy(request(), endpoints=[made_elsewhere], templates=[bare]).endpoint_type == "queue"


def test_a_deployments_file_without_endpoint_type_reads_as_queue(tmp_path: Path) -> None:
    """Files written before the field existed (another engineer's chat and bench code read it)."""
    old = {"name": "old", "endpoint_id": "e1", "template_id": "t1", "image": "i", "gpu": "AMPERE_80"}
    (tmp_path / "deployments.json").write_text(json.dumps({"deployments": {"old": old}}))
    assert load_deployments(tmp_path)["old"].endpoint_type == "queue"
