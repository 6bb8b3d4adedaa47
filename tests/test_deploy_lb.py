"""`notus deploy --type lb` end to end: the real CLI against the emulator's control plane, and a first
request through the LB gateway to an endpoint scaled to zero (a cold start).

RunPod cannot be reached from here, so the emulator stands in for its control plane and LB gateway;
the workers its autoscaler starts are real `python -m worker` processes in LB mode. What is faked:
vLLM, which cannot run here in seconds, is testbed.openai_stub (a real HTTP server answering as vLLM does).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from notus_cli.emulator import EmulatorConfig
from notus_cli.emulator.scaler import command_factory
from testbed.control import Session, notus_env, pushed_project
from testbed.emulator import Harness, lb_command
from testbed.openai_stub import MODEL, StubConfig, running_stub

DIGEST = "sha256:" + "1b" * 32
SAVE_TEMPLATE = "mutation($input: SaveTemplateInput) { saveTemplate(input: $input) { id } }"
SAVE_ENDPOINT = "mutation($input: EndpointInput!) { saveEndpoint(input: $input) { id type scalerType } }"


@pytest.fixture
def lb_harness(tmp_path: Path) -> Iterator[Harness]:
    """An emulator whose control plane starts LB workers (`python -m worker` on the stub) for its endpoints."""
    with running_stub(StubConfig(answer="Hello from the stub. ", itl=0.01)) as stub:
        harness = Harness.start(tmp_path / "logs", EmulatorConfig(sweep_interval=0.1))
        harness.emulator.worker_factory = command_factory(harness.emulator, lb_command(tmp_path / "workers", stub))
        harness.emulator.control.rules.template_release_delay = 0.0
        try:
            yield harness
        finally:
            harness.close()


def test_deploy_status_endpoints_and_down_of_an_lb_deployment_and_its_cold_start(
    lb_harness: Harness, tmp_path: Path
) -> None:
    harness, control = lb_harness, lb_harness.emulator.control
    lb_template = f"{harness.url}/lb/{{endpoint_id}}"
    run = Session(pushed_project(tmp_path / "project", DIGEST), notus_env(harness.url, harness.key))
    run.env["NOTUS_RUNPOD_LB_URL"] = lb_template
    run.env["COLUMNS"] = "80"

    plan = run("deploy", "chat", "--type", "lb", "--dry-run").stdout
    assert "type lb: no queue, lower latency; no retries; busy workers drop requests" in plan
    run("deploy", "chat", "--type", "lb", "--workers-min", "0", "--workers-max", "1", "--idle-timeout", "60", "--yes")
    state = json.loads((run.project / ".notus" / "deployments.json").read_text())["deployments"]["chat"]
    assert state["endpoint_type"] == "lb"
    endpoint_id = state["endpoint_id"]
    spec = control.specs[endpoint_id]
    assert (spec["type"], spec["scalerType"], spec["workersMin"]) == ("LB", "REQUEST_COUNT", 0)
    env = {var["key"]: var["value"] for var in control.templates[spec["templateId"]]["env"]}
    assert (env["NOTUS_ENDPOINT_TYPE"], env["PORT"], env["PORT_HEALTH"]) == ("lb", "80", "80")
    assert harness.emulator.endpoints[endpoint_id].workers == {}  # scaled to zero: nothing runs yet

    # the first request starts a worker and waits for it, then is served by it (RunPod's LB URL shape)
    started = time.monotonic()
    with httpx.Client(headers={"Authorization": f"Bearer {harness.key}"}, timeout=90) as client:
        answer = client.post(f"{harness.url}/lb/{endpoint_id}/v1/chat/completions", json=chat())
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"].startswith("Hello from the stub.")
    assert answer.headers["x-runpod-worker-id"] in harness.emulator.endpoints[endpoint_id].workers
    assert time.monotonic() - started > 0.2  # a process started for it: a cold start, not a warm worker

    status = run("status", "chat").stdout
    assert f"│ type        │ lb: {harness.url}/lb/{endpoint_id}" in status
    assert json.loads(run("status", "chat", "--json").stdout)["endpoint_type"] == "lb"
    assert json.loads(run("status", "chat", "--json").stdout)["url"] == f"{harness.url}/lb/{endpoint_id}"
    listed = json.loads(run("endpoints", "--json").stdout)
    assert [(e["name"], e["endpoint_type"]) for e in listed] == [("chat", "lb")]
    assert " lb " in run("endpoints").stdout

    # a queue deploy to the same name is refused, with the way round; nothing is sent
    before = len(control.mutations)
    refused = run("deploy", "chat", "--type", "queue", "--yes", code=2)
    assert "'chat' is a load-balancing (lb) endpoint on RunPod" in " ".join(refused.stderr.split())
    assert "notus down chat" in refused.stderr
    assert control.mutations[before:] == []

    run("down", "chat", "--yes")
    assert endpoint_id not in control.specs
    assert endpoint_id not in harness.emulator.endpoints
    assert "chat" not in json.loads((run.project / ".notus" / "deployments.json").read_text())["deployments"]
    for text in run.printed:
        assert harness.key not in text


def test_an_lb_endpoint_saved_without_a_scaler_scales_on_request_count(lb_harness: Harness) -> None:
    graphql = httpx.Client(base_url=lb_harness.url, headers={"Authorization": f"Bearer {lb_harness.key}"})
    try:
        template = {"name": "lb-bare", "imageName": "r/notus:1", "containerDiskInGb": 20, "volumeInGb": 0}
        saved = graphql.post("/graphql", json={"query": SAVE_TEMPLATE, "variables": {"input": template}}).json()
        spec = {"name": "lb-bare", "templateId": saved["data"]["saveTemplate"]["id"], "gpuIds": "AMPERE_80"}
        answer = save(graphql, spec | {"type": "LB"})
        assert answer["data"]["saveEndpoint"]["scalerType"] == "REQUEST_COUNT"
        refused = save(graphql, spec | {"type": "LB", "scalerType": "QUEUE_DELAY"})
        assert "scales on REQUEST_COUNT only" in refused["errors"][0]["message"]
        assert save(graphql, spec)["data"]["saveEndpoint"]["scalerType"] == "QUEUE_DELAY"  # a queue one: as before
        assert "type must be QB or LB" in save(graphql, spec | {"type": "LOAD_BALANCER"})["errors"][0]["message"]
    finally:
        graphql.close()


def save(graphql: httpx.Client, spec: dict[str, Any]) -> dict[str, Any]:
    body = {"query": SAVE_ENDPOINT, "variables": {"input": spec}}
    answer: dict[str, Any] = graphql.post("/graphql", json=body).json()
    return answer


def chat() -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
