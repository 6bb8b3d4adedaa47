"""The GraphQL client against the emulator's control plane over loopback (RunPod itself is out of reach).

HTTP 429/500 and slow answers are injected into the emulator, since RunPod cannot be asked to misbehave.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from notus_cli.errors import (
    AuthError,
    EndpointUnreachable,
    RunPodAnswerLost,
    RunPodError,
    RunPodQueryError,
    RunPodRateLimited,
)
from notus_cli.runpod.control import EndpointInput, EnvVar, TemplateInput
from notus_cli.runpod.graphql import RunPodGraphQL, mask
from notus_cli.runpod.serverless import RetryPolicy
from testbed.emulator import Harness, wait_for

FAST = RetryPolicy(attempts=3, base=0.01, cap=0.05)
AWKWARD = 'say "hi"\\n, a back\\slash,\na newline, {"json": true} and $dollar'


@pytest.fixture
def harness(control_emulator: Harness) -> Harness:
    return control_emulator


@pytest.fixture
def sent() -> list[dict[str, object]]:
    return []


@pytest.fixture
def client(harness: Harness, sent: list[dict[str, object]]) -> Iterator[RunPodGraphQL]:
    def record(request: httpx.Request) -> None:
        sent.append(json.loads(request.content))

    http = httpx.Client(event_hooks={"request": [record]})
    with RunPodGraphQL(SecretStr(harness.key), url=f"{harness.url}/graphql", http=http, retry=FAST) as runpod:
        yield runpod
    http.close()


def test_values_travel_as_variables_and_arrive_intact(client: RunPodGraphQL, sent: list[dict[str, object]]) -> None:
    saved = client.save_template(
        TemplateInput(
            name="vars-intact", image_name="r/notus:1", container_disk_in_gb=100, env=(EnvVar(key="X", value=AWKWARD),)
        )
    )
    assert saved.env_dict() == {"X": AWKWARD}
    assert next(t for t in client.templates() if t.id == saved.id).env_dict() == {"X": AWKWARD}
    query = str(sent[0]["query"])
    assert "vars-intact" not in query
    assert "hi" not in query
    assert sent[0]["variables"]["input"]["env"] == [{"key": "X", "value": AWKWARD}]
    assert client.mutations == 1


def test_graphql_errors_become_their_message(client: RunPodGraphQL) -> None:
    template = TemplateInput(name="taken", image_name="r/notus:1", container_disk_in_gb=100)
    client.save_template(template)
    with pytest.raises(RunPodQueryError, match="Template name must be unique"):
        client.save_template(template)


def test_a_rejected_key_says_so_without_showing_it(harness: Harness) -> None:
    wrong = "rpa_WRONGKEY0123456789"
    runpod = RunPodGraphQL(SecretStr(wrong), url=f"{harness.url}/graphql?api_key={wrong}", retry=FAST)
    with runpod, pytest.raises(AuthError, match="RunPod rejected the API key") as caught:
        runpod.endpoints()
    assert wrong not in str(caught.value.message) + str(caught.value.hint)


def test_429_and_500_are_retried_then_succeed(
    harness: Harness, client: RunPodGraphQL, sent: list[dict[str, object]]
) -> None:
    """Queries only: whether a mutation may be sent again is a rule of its own."""
    harness.emulator.control.inject(429)
    harness.emulator.control.inject(500)
    assert isinstance(client.endpoints(), list)
    assert len(sent) == 3, "two retries, then the answer"
    assert all(body["query"] == sent[0]["query"] for body in sent), "the same query each time"


def test_429_that_persists_is_rate_limited(
    harness: Harness, client: RunPodGraphQL, sent: list[dict[str, object]]
) -> None:
    harness.emulator.control.inject(429, count=3)
    with pytest.raises(RunPodRateLimited):
        client.gpu_pools()
    assert len(sent) == FAST.attempts, "every attempt the policy allows, and no more"


def test_500_that_persists_is_an_error(harness: Harness, client: RunPodGraphQL, sent: list[dict[str, object]]) -> None:
    harness.emulator.control.inject(503, count=3)
    with pytest.raises(RunPodError, match="HTTP 503"):
        client.gpu_types()
    assert len(sent) == FAST.attempts


def test_timeouts_are_retried_and_bounded(harness: Harness) -> None:
    url = f"{harness.url}/graphql?api_key={harness.key}"
    short = httpx.Timeout(0.3, connect=1.0)
    attempts: list[httpx.Request] = []
    http = httpx.Client(event_hooks={"request": [attempts.append]})
    with http, RunPodGraphQL(SecretStr(harness.key), url=url, retry=FAST, http=http, timeout=short) as runpod:
        harness.emulator.control.inject(delay=1.0)
        assert runpod.gpu_pools()
        assert len(attempts) == 2, "the first attempt timed out, the second answered"
        harness.emulator.control.inject(delay=1.0, count=3)
        with pytest.raises(EndpointUnreachable) as caught:
            runpod.gpu_pools()
        assert len(attempts) == 2 + FAST.attempts, "bounded: as many attempts as the policy allows"
    assert harness.key not in caught.value.message
    assert "api_key=***" in caught.value.message


def test_typed_results(client: RunPodGraphQL) -> None:
    template = client.save_template(TemplateInput(name="typed", image_name="r/notus:2", container_disk_in_gb=50))
    endpoint = client.save_endpoint(
        EndpointInput(name="typed", template_id=template.id, gpu_ids="AMPERE_80,ADA_80_PRO", workers_max=0)
    )
    assert endpoint.id
    assert endpoint.gpu_ids == "AMPERE_80,ADA_80_PRO"
    assert endpoint.workers_standby == 1  # read back (RunPod's default), though never sent
    assert endpoint.flash_boot_type == "FLASHBOOT"
    pools = {pool.id: pool for pool in client.gpu_pools()}
    assert "NVIDIA H200" in pools["HOPPER_141"].gpu_type_ids  # gpuTypes ids, as RunPod's
    assert "NVIDIA H100 80GB HBM3" in pools["ADA_80_PRO"].gpu_type_ids
    assert any(gpu.id == "NVIDIA L40S" and gpu.memory_in_gb == 48 for gpu in client.gpu_types())
    client.delete_endpoint(endpoint.id)
    client.delete_template("typed")


def test_mask_hides_keys_in_urls_and_text() -> None:
    text = "GET https://api.runpod.io/graphql?api_key=rpa_SECRET&x=1 failed for rpa_OTHER"
    assert mask(text, "rpa_OTHER") == "GET https://api.runpod.io/graphql?api_key=***&x=1 failed for ***"


def test_unreachable_api() -> None:
    runpod = RunPodGraphQL(SecretStr("rpa_K"), url="http://127.0.0.1:9/graphql", retry=FAST)
    with runpod, pytest.raises(EndpointUnreachable, match="did not answer"):
        runpod.endpoints()


def test_a_mutation_is_not_repeated_after_a_5xx_or_a_timeout(harness: Harness, client: RunPodGraphQL) -> None:
    control = harness.emulator.control
    before = len(control.requests)
    control.inject(500)
    with pytest.raises(RunPodAnswerLost, match="did not answer SaveTemplate"):
        client.save_template(TemplateInput(name="once-500", image_name="r/notus:1", container_disk_in_gb=20))
    assert len(control.requests) == before  # the one request was the injected 500: nothing sent again
    control.inject(502, lost="saveEndpoint")
    template = client.save_template(TemplateInput(name="once-lost", image_name="r/notus:1", container_disk_in_gb=20))
    spec = EndpointInput(name="once-lost", template_id=template.id, gpu_ids="AMPERE_80", workers_max=0)
    with pytest.raises(RunPodAnswerLost, match="SaveEndpoint"):
        client.save_endpoint(spec)
    assert [s["name"] for s in control.specs.values()].count("once-lost") == 1  # carried out once, answer lost
    url = f"{harness.url}/graphql?api_key={harness.key}"
    with RunPodGraphQL(SecretStr(harness.key), url=url, retry=FAST, timeout=httpx.Timeout(0.3)) as slow:
        control.inject(delay=1.0)
        with pytest.raises(RunPodAnswerLost, match="ReadTimeout"):
            slow.save_template(TemplateInput(name="once-slow", image_name="r/notus:1", container_disk_in_gb=20))
    # the timed-out request is still carried out, once: exactly why it must not be sent again
    wait_for(lambda: "saveTemplate" in control.mutations[-1:] and "once-slow" in str(control.templates), timeout=10)
    assert [t["name"] for t in control.templates.values()].count("once-slow") == 1


def test_a_mutation_is_retried_where_runpod_cannot_have_run_it(harness: Harness, client: RunPodGraphQL) -> None:
    harness.emulator.control.inject(429)
    saved = client.save_template(TemplateInput(name="after-429", image_name="r/notus:1", container_disk_in_gb=20))
    assert saved.name == "after-429"


@pytest.mark.parametrize("declared", [False, True])
def test_workers_standby_is_sent_only_where_the_schema_declares_it(
    harness: Harness, sent: list[dict[str, object]], declared: bool
) -> None:
    control = harness.emulator.control
    previous, control.rules.declares_workers_standby = control.rules.declares_workers_standby, declared
    http = httpx.Client(event_hooks={"request": [lambda request: sent.append(json.loads(request.content))]})
    try:
        with RunPodGraphQL(SecretStr(harness.key), url=f"{harness.url}/graphql", http=http, retry=FAST) as runpod:
            template = runpod.save_template(
                TemplateInput(name=f"standby-{declared}", image_name="r/notus:1", container_disk_in_gb=20)
            )
            for _ in range(2):
                runpod.save_endpoint(
                    EndpointInput(
                        name=f"standby-{declared}",
                        template_id=template.id,
                        gpu_ids="AMPERE_80",
                        workers_max=0,
                        workers_standby=0,
                        id=None,
                    )
                )
    finally:
        control.rules.declares_workers_standby = previous
        http.close()
    saves = [body for body in sent if "saveEndpoint" in str(body["query"])]
    assert [("workersStandby" in body["variables"]["input"]) for body in saves] == [declared, declared]  # type: ignore[index, operator]
    assert sum("__type" in str(body["query"]) for body in sent) == 1  # asked once per client


def test_an_unknown_input_field_is_refused_like_runpod_refuses_it(harness: Harness) -> None:
    body = {
        "query": "mutation S($input: EndpointInput!) { saveEndpoint(input: $input) { id } }",
        "variables": {"input": {"name": "x", "templateId": "t", "gpuIds": "AMPERE_80", "workersStandby": 0}},
    }
    answer = httpx.post(f"{harness.url}/graphql?api_key={harness.key}", json=body)
    assert answer.status_code == 400
    message = answer.json()["errors"][0]["message"]
    assert "'EndpointInput' not to include unknown field 'workersStandby'" in message  # graphql-core's wording


def test_a_template_without_volume_in_gb_is_refused(harness: Harness) -> None:
    """RunPod's docs list volumeInGb among SaveTemplateInput's required fields (0 for serverless)."""
    body = {
        "query": "mutation T($input: SaveTemplateInput!) { saveTemplate(input: $input) { id } }",
        "variables": {"input": {"name": "no-volume", "imageName": "r/notus:1", "containerDiskInGb": 20}},
    }
    answer = httpx.post(f"{harness.url}/graphql?api_key={harness.key}", json=body)
    assert answer.status_code == 400
    assert "volumeInGb" in answer.json()["errors"][0]["message"]


def test_a_refused_introspection_counts_as_not_declared(harness: Harness) -> None:
    """Where RunPod turns introspection off, the disputed field is not sent (the safe side) and nothing fails."""
    control = harness.emulator.control
    control.rules.introspection, control.rules.declares_workers_standby = False, True
    start = len(control.requests)
    try:
        with RunPodGraphQL(SecretStr(harness.key), url=f"{harness.url}/graphql", retry=FAST) as runpod:
            assert runpod.declares("EndpointInput", "workersStandby") is False
            assert runpod.declares("EndpointInput", "workersStandby") is False
    finally:
        control.rules.introspection, control.rules.declares_workers_standby = True, False
    assert sum("__type" in r["query"] for r in control.requests[start:]) == 1  # asked once per client
