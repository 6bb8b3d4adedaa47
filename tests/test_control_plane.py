"""The emulator's control plane: RunPod's rules for templates and endpoints, and its autoscaling.

The control plane is ours (RunPod's cannot be reached from here); the workers it starts are real
runpod SDK processes with the echo handler, so scaling is measured on real process starts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from notus_cli.emulator import JobState
from notus_cli.errors import RunPodQueryError
from notus_cli.runpod.control import EndpointInput, EnvVar, TemplateInput
from notus_cli.runpod.graphql import RunPodGraphQL
from notus_cli.runpod.serverless import RetryPolicy
from testbed.common import wait_for
from testbed.emulator import Harness


@pytest.fixture
def harness(control_emulator: Harness) -> Harness:
    return control_emulator


@pytest.fixture
def runpod(harness: Harness) -> Iterator[RunPodGraphQL]:
    with RunPodGraphQL(SecretStr(harness.key), url=f"{harness.url}/graphql", retry=RetryPolicy(attempts=1)) as client:
        yield client


def template(runpod: RunPodGraphQL, name: str, **env: str) -> str:
    saved = runpod.save_template(
        TemplateInput(
            name=name,
            image_name="r/notus:1",
            container_disk_in_gb=20,
            env=tuple(EnvVar(key=k, value=v) for k, v in env.items()),
        )
    )
    return saved.id


def live_workers(harness: Harness, endpoint_id: str) -> int:
    endpoint = harness.emulator.endpoints.get(endpoint_id)
    if endpoint is None:
        return 0
    return harness.emulator.call(lambda: sum(w.alive for w in endpoint.workers.values()))


def test_api_key_in_the_url_or_a_bearer_header(harness: Harness) -> None:
    body = {"query": "query { gpuTypes { id } }"}
    assert httpx.post(f"{harness.url}/graphql?api_key={harness.key}", json=body).status_code == 200
    bearer = {"Authorization": f"Bearer {harness.key}"}
    assert httpx.post(f"{harness.url}/graphql", json=body, headers=bearer).status_code == 200
    assert httpx.post(f"{harness.url}/graphql?api_key=rpa_NOPE", json=body).status_code == 401


def test_the_schema_rejects_fields_runpod_lacks(harness: Harness) -> None:
    body = {"query": "query { myself { endpoints { id secretField } } }"}
    answer = httpx.post(f"{harness.url}/graphql?api_key={harness.key}", json=body).json()
    assert "secretField" in answer["errors"][0]["message"]


def test_template_names_are_unique_and_templates_in_use_stay(runpod: RunPodGraphQL) -> None:
    template_id = template(runpod, "rules-a")
    with pytest.raises(RunPodQueryError, match="unique"):
        template(runpod, "rules-a")
    endpoint = runpod.save_endpoint(
        EndpointInput(name="rules", template_id=template_id, gpu_ids="AMPERE_80", workers_max=0)
    )
    with pytest.raises(RunPodQueryError, match="in use"):
        runpod.delete_template("rules-a")
    runpod.delete_endpoint(endpoint.id)
    runpod.delete_template("rules-a")
    assert all(t.name != "rules-a" for t in runpod.templates())


def test_save_endpoint_is_a_full_replace(runpod: RunPodGraphQL) -> None:
    template_id = template(runpod, "replace-a")
    endpoint = runpod.save_endpoint(
        EndpointInput(name="replace", template_id=template_id, gpu_ids="AMPERE_80", workers_max=0, idle_timeout=60)
    )
    answer = runpod.execute(
        "mutation($input: EndpointInput!) { saveEndpoint(input: $input) { workersStandby idleTimeout workersMax } }",
        {"input": {"id": endpoint.id, "name": "replace", "templateId": template_id, "gpuIds": "AMPERE_80"}},
    )
    assert answer["saveEndpoint"] == {"workersStandby": 1, "idleTimeout": 5, "workersMax": 3}  # RunPod's defaults
    with pytest.raises(RunPodQueryError, match="scale both to 0"):
        runpod.delete_endpoint(endpoint.id)


def test_bad_endpoint_specs_name_the_field(runpod: RunPodGraphQL) -> None:
    template_id = template(runpod, "bad-spec")
    with pytest.raises(RunPodQueryError, match="gpuIds"):
        runpod.save_endpoint(EndpointInput(name="bad", template_id=template_id, gpu_ids="TPU_9"))
    with pytest.raises(RunPodQueryError, match="workersMin"):
        runpod.save_endpoint(
            EndpointInput(name="bad", template_id=template_id, gpu_ids="AMPERE_80", workers_min=3, workers_max=1)
        )


def test_scale_from_zero_counts_the_cold_start_then_back_to_zero(harness: Harness, runpod: RunPodGraphQL) -> None:
    template_id = template(runpod, "cold-a", GREETING="cold")
    endpoint = runpod.save_endpoint(
        EndpointInput(
            name="cold", template_id=template_id, gpu_ids="AMPERE_80", workers_min=0, workers_max=1, idle_timeout=1
        )
    )
    harness.wait_sweeps()  # the autoscaler has looked at the new endpoint (twice)
    assert live_workers(harness, endpoint.id) == 0  # workersMin 0: nothing runs until a job comes
    with harness.http(endpoint.id) as client:
        submitted = time.monotonic()
        body = client.post("/runsync", json={"input": {"env": "GREETING"}}).json()
    assert body["status"] == "COMPLETED", body
    assert body["output"] == [{"env": "cold"}]  # the template's env reached the worker
    job = harness.emulator.endpoints[endpoint.id].get(body["id"])
    assert job is not None
    assert job.worker_started is not None
    assert job.worker_started >= submitted  # its worker was started for it ...
    assert body["delayTime"] >= (job.worker_started - submitted) * 1000  # ... and the wait counts as delay
    wait_for(lambda: live_workers(harness, endpoint.id) == 0, timeout=20)  # idle 1 s: scaled to zero
    runpod.save_endpoint(endpoint.model_copy(update={"workers_max": 0}))
    runpod.delete_endpoint(endpoint.id)


def test_queue_scales_up_to_workers_max(harness: Harness, runpod: RunPodGraphQL) -> None:
    template_id = template(runpod, "burst-a")
    endpoint = runpod.save_endpoint(
        EndpointInput(
            name="burst",
            template_id=template_id,
            gpu_ids="AMPERE_80",
            workers_min=1,
            workers_max=2,
            scaler_type="REQUEST_COUNT",
            scaler_value=1,
            idle_timeout=1,
        )
    )
    wait_for(lambda: live_workers(harness, endpoint.id) == 1, timeout=20)
    emulated = harness.emulator.endpoints[endpoint.id]
    harness.wait_ready(emulated, 1)
    with harness.http(endpoint.id) as client:
        ids = [client.post("/run", json={"input": {"sleep": 3}}).json()["id"] for _ in range(8)]
        wait_for(lambda: live_workers(harness, endpoint.id) == 2, timeout=20)
        harness.wait_sweeps(5)  # five more autoscaler ticks while the burst of 8 jobs runs
        assert live_workers(harness, endpoint.id) == 2  # never above workersMax
        for job_id in ids:
            wait_for(lambda job_id=job_id: client.get(f"/status/{job_id}").json()["status"] == "COMPLETED", 60)
    wait_for(lambda: live_workers(harness, endpoint.id) == 1, timeout=20)  # back to workersMin
    workers = harness.emulator.call(lambda: {job.worker_id for job in emulated.jobs.values() if job.id in ids})
    assert len(workers) == 2  # the burst was shared by both workers


def test_rolling_release_moves_jobs_to_the_new_template(harness: Harness, runpod: RunPodGraphQL) -> None:
    old = template(runpod, "roll-a", VERSION="1")
    endpoint = runpod.save_endpoint(
        EndpointInput(name="roll", template_id=old, gpu_ids="AMPERE_80", workers_min=1, workers_max=1)
    )
    with harness.http(endpoint.id) as client:
        assert client.post("/runsync", json={"input": {"env": "VERSION"}}).json()["output"] == [{"env": "1"}]
        runpod.update_endpoint_template(endpoint.id, template(runpod, "roll-b", VERSION="2"))

        def new_version() -> bool:
            body = client.post("/runsync", json={"input": {"env": "VERSION"}}).json()
            return bool(body.get("output") == [{"env": "2"}])

        wait_for(new_version, timeout=30, interval=0.2)
    wait_for(lambda: live_workers(harness, endpoint.id) == 1, timeout=20)  # the old worker stopped
    states = harness.emulator.call(lambda: [j.state for j in harness.emulator.endpoints[endpoint.id].jobs.values()])
    assert JobState.FAILED not in states  # nothing was lost on the way
