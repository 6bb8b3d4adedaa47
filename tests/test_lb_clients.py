"""Chat and bench find an endpoint's type themselves and reach an LB endpoint at its LB URL.

Where the type comes from: the running `notus serve`'s connection file (written here as serve writes
it, with this process's pid: alive while the test runs), a deployments.json entry, or the control
plane, which is the emulator's on loopback (RunPod's API cannot be reached from here). Fakes: a
control plane whose schema has no `Endpoint.type` cannot be made with the emulator (its schema is
RunPod's), so that one answers from an httpx MockTransport; the deployed LB endpoint's workers are
real `python -m worker` processes whose vLLM is testbed.openai_stub (the vLLM test has the real one).
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from rich.console import Console

from notus_cli.bench.compare import compare
from notus_cli.bench.endpoints import resolve_target
from notus_cli.chat.backends import OpenAIServer, RunPodJobs
from notus_cli.chat.target_backend import backend_for
from notus_cli.commands.serve import _show, _status_table
from notus_cli.deployments import Deployment, save_deployment
from notus_cli.emulator import EmulatorConfig
from notus_cli.emulator.scaler import command_factory
from notus_cli.endpoint_types import ask_control_plane
from notus_cli.errors import ConfigError
from notus_cli.output import Output
from notus_cli.runpod.control import TemplateInput
from notus_cli.runpod.graphql import RunPodGraphQL
from notus_cli.serve.connection import remove_connection, write_connection
from notus_cli.serve.stack import StackInfo, StackSnapshot, WorkerView
from notus_cli.settings import load_settings
from notus_cli.targets import RunPodAddress, TargetFlags, deployment_endpoint, resolve_address
from testbed.bench_runs import bench_run
from testbed.common import notus as run_notus
from testbed.control import notus as control_notus
from testbed.control import notus_env
from testbed.emulator import Harness, lb_command
from testbed.openai_stub import StubConfig, running_stub
from testbed.serving import README_EXAMPLE, notus_serve

ANSWER = "Blessed is the man that findeth wisdom, and the man that getteth understanding. "
SHORT = ("-s", "temperature=0", "-s", "max_tokens=12", "--no-think")
SAVE_ENDPOINT = "mutation($input: EndpointInput!) { saveEndpoint(input: $input) { id type } }"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project of its own (its notus.toml decides the connection file and .notus/), and no RunPod settings."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOTUS_CONFIG", str(tmp_path / "notus.toml"))
    for name in ("RUNPOD_ENDPOINT_BASE_URL", "NOTUS_RUNPOD_API_URL", "NOTUS_RUNPOD_GRAPHQL_URL", "NOTUS_RUNPOD_LB_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def serving(project: Path) -> Iterator[dict[str, Any]]:
    """The connection file of a running `notus serve --type lb` (as StackInfo.connection() writes it)."""
    body = {
        "url": "http://127.0.0.1:9",
        "api_base": "http://127.0.0.1:9/v2",
        "endpoint_id": "lbstack",
        "endpoint_type": "lb",
        "endpoint_url": "http://127.0.0.1:9/lb/lbstack",
        "lb_url": "http://127.0.0.1:9/lb/lbstack",
        "lb_url_template": "http://127.0.0.1:9/lb/{endpoint_id}",
        "api_key": "rpa_local",
    }
    write_connection(body)
    yield body
    remove_connection("lbstack")


def test_local_reads_the_type_and_lb_url_from_the_connection_file(serving: dict[str, Any]) -> None:
    address = resolve_address(load_settings(), TargetFlags(local=True))
    assert isinstance(address, RunPodAddress)
    assert (address.endpoint_type, address.lb_url) == ("lb", "http://127.0.0.1:9/lb/lbstack")
    backend = backend_for(address)
    assert isinstance(backend, OpenAIServer)  # the OpenAI client, at the LB URL, with the stack's key
    assert backend.base_url == "http://127.0.0.1:9/lb/lbstack/v1"
    assert backend._headers() == {"Authorization": "Bearer rpa_local"}
    assert backend.label == "notus serve at http://127.0.0.1:9, load balancing at http://127.0.0.1:9/lb/lbstack"
    spec = resolve_target(load_settings(), local=True)
    assert (spec.kind, spec.url, spec.route) == ("lb", "http://127.0.0.1:9/lb/lbstack/v1", "openai")
    assert spec.api_key is not None
    assert spec.api_key.get_secret_value() == "rpa_local"
    assert spec.describe()["endpoint_type"] == "lb"
    native = resolve_target(load_settings(), local=True, route="native")
    assert (native.kind, native.url, native.route) == ("lb", "http://127.0.0.1:9/lb/lbstack", "native")
    assert "/chat" in str(native.route_means)
    with pytest.raises(ConfigError, match="load-balancing endpoint, which has no jobs"):
        resolve_target(load_settings(), local=True, route="openai-job")


def test_a_connection_file_without_a_type_is_a_queue_stack(project: Path) -> None:
    """A `notus serve` from before LB endpoints wrote no endpoint_type."""
    write_connection(
        {"url": "http://127.0.0.1:9", "api_base": "http://127.0.0.1:9/v2", "endpoint_id": "old", "api_key": "k"}
    )
    try:
        address = resolve_address(load_settings(), TargetFlags(local=True))
        assert isinstance(address, RunPodAddress)
        assert (address.endpoint_type, address.lb_url) == ("queue", None)
        assert isinstance(backend_for(address), RunPodJobs)
        spec = resolve_target(load_settings(), local=True)
        assert (spec.kind, spec.route, spec.endpoint_type) == ("runpod", "openai-job", "queue")
    finally:
        remove_connection("old")


def test_a_deployment_on_runpod_gets_runpods_lb_url(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", "rp-key")
    deployment = Deployment("prod", "abc123", "tpl", "img", "AMPERE_80", endpoint_type="lb")
    address = deployment_endpoint(deployment, load_settings())
    assert (address.endpoint_type, address.lb_url) == ("lb", "https://abc123.api.runpod.ai")
    monkeypatch.setenv("NOTUS_RUNPOD_LB_URL", "https://lb.example/{endpoint_id}")  # the setting moves it
    assert deployment_endpoint(deployment, load_settings()).lb_url == "https://lb.example/abc123"
    queue = deployment_endpoint(dataclasses.replace(deployment, endpoint_type="queue"), load_settings())
    assert (queue.endpoint_type, queue.lb_url) == ("queue", None)
    untyped = deployment_endpoint(Deployment("old", "abc123", "tpl", "img", "AMPERE_80"), load_settings())
    assert untyped.endpoint_type == "queue", "an entry written before LB endpoints is a queue endpoint"


def test_a_deployment_on_an_emulator_gets_its_gateway(serving: dict[str, Any]) -> None:
    """Deployed with `notus deploy --type lb` against `notus serve`'s control plane: its gateway at the same origin."""
    deployment = Deployment("dev", "ep9", "tpl", "img", "AMPERE_80", api_base_url="http://127.0.0.1:9/v2")
    address = deployment_endpoint(dataclasses.replace(deployment, endpoint_type="lb"), load_settings())
    assert address.lb_url == "http://127.0.0.1:9/lb/ep9"
    assert address.key.get_secret_value() == "rpa_local"


def test_a_saved_lb_deployment_is_found_by_name(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", "rp-key")
    save_deployment(Deployment("prod", "abc123", "tpl", "img", "AMPERE_80", endpoint_type="lb"))
    spec = resolve_target(load_settings(), name="prod")
    assert (spec.kind, spec.url, spec.endpoint_type) == ("lb", "https://abc123.api.runpod.ai/v1", "lb")


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Harness, str, str]]:
    """An emulator with an LB endpoint and a queue endpoint made through its control plane (no workers)."""
    harness = Harness.start(tmp_path_factory.mktemp("control"))
    ids = []
    try:
        with RunPodGraphQL(SecretStr(harness.key), url=f"{harness.url}/graphql") as runpod:
            template = runpod.save_template(
                TemplateInput(name="lbc-tpl", image_name="r/notus:1", container_disk_in_gb=20)
            )
            for name, kind in (("lbc-lb", {"type": "LB", "scalerType": "REQUEST_COUNT"}), ("lbc-queue", {})):
                spec = {"name": name, "templateId": template.id, "gpuIds": "AMPERE_80", "workersMax": 0, **kind}
                ids.append(runpod.execute(SAVE_ENDPOINT, {"input": spec})["saveEndpoint"]["id"])
        yield harness, ids[0], ids[1]
    finally:
        harness.close()


def test_the_control_plane_says_which_endpoint_is_lb(control: tuple[Harness, str, str]) -> None:
    harness, lb_id, queue_id = control
    url = f"{harness.url}/graphql"
    assert ask_control_plane(lb_id, SecretStr(harness.key), url) == "lb"
    assert ask_control_plane(queue_id, SecretStr(harness.key), url) == "queue"
    assert ask_control_plane("nosuchendpoint", SecretStr(harness.key), url) == "queue"


def test_an_endpoint_id_under_an_emulator_reaches_its_gateway(
    control: tuple[Harness, str, str], project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--endpoint ID with the API moved to the emulator: its control plane and gateway share its origin."""
    harness, lb_id, queue_id = control
    monkeypatch.setenv("RUNPOD_ENDPOINT_BASE_URL", f"{harness.url}/v2")
    monkeypatch.setenv("RUNPOD_API_KEY", harness.key)
    spec = resolve_target(load_settings(), endpoint=lb_id)
    assert (spec.kind, spec.url, spec.endpoint_type) == ("lb", f"{harness.url}/lb/{lb_id}/v1", "lb")
    assert "LB URL" in str(spec.route_means)
    queue = resolve_target(load_settings(), endpoint=queue_id)
    assert (queue.kind, queue.url, queue.endpoint_type) == ("runpod", f"{harness.url}/v2", "queue")


def test_without_introspection_nothing_is_read_and_the_endpoint_is_a_queue(
    control: tuple[Harness, str, str],
) -> None:
    harness, lb_id, _queue_id = control
    harness.emulator.control.rules.introspection = False
    try:
        assert ask_control_plane(lb_id, SecretStr(harness.key), f"{harness.url}/graphql") == "queue"
    finally:
        harness.emulator.control.rules.introspection = True


def test_type_is_never_asked_where_the_schema_does_not_declare_it() -> None:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        query = json.loads(request.content)["query"]
        asked.append(query)
        if "__type" in query:
            return httpx.Response(200, json={"data": {"__type": {"fields": [{"name": "id"}, {"name": "name"}]}}})
        return httpx.Response(400, json={"errors": [{"message": "Cannot query field 'type' on type 'Endpoint'."}]})

    with httpx.Client(transport=httpx.MockTransport(answer)) as http:
        assert ask_control_plane("ep1", SecretStr("k"), "http://cp.test/graphql", http=http) == "queue"
    assert len(asked) == 1, "only the introspection was sent"
    assert "__type" in asked[0]


def test_an_unreachable_control_plane_means_the_queue_at_once() -> None:
    """Nothing listens on port 9: the job API then says what is wrong, as before LB endpoints."""
    assert ask_control_plane("ep1", SecretStr("k"), "http://127.0.0.1:9/graphql") == "queue"


def test_the_stacks_own_endpoint_by_id_is_typed_from_its_connection_file(
    serving: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`notus serve` made its endpoint without the control plane, which does not list it."""
    monkeypatch.setenv("RUNPOD_ENDPOINT_BASE_URL", "http://127.0.0.1:9/v2")
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_local")
    address = resolve_address(load_settings(), TargetFlags(endpoint="lbstack"))
    assert isinstance(address, RunPodAddress)
    assert (address.endpoint_type, address.lb_url) == ("lb", "http://127.0.0.1:9/lb/lbstack")


@pytest.mark.vllm
def test_serve_type_lb_answers_chat_a_native_request_and_bench(tmp_path: Path) -> None:
    """`notus serve --tiny --type lb` as a user runs it (real vLLM on the CPU, real LB workers behind the
    emulator's gateway): chat and bench find it with --local, and the native route answers a bearer key."""
    with notus_serve("--tiny", "--type", "lb", cwd=tmp_path) as served:
        info = served.info
        key = info["api_key"]
        chat = run_notus("chat", "--local", "--once", "What is wisdom?", *SHORT, cwd=tmp_path, timeout=180)
        with httpx.Client(base_url=info["lb_url"], timeout=300) as http:
            native = http.post("/chat", json=README_EXAMPLE, headers={"Authorization": f"Bearer {key}"})
            keyless = http.post("/chat", json=README_EXAMPLE)
        tokenizer = str(tmp_path / ".notus" / "models" / "tiny")
        bench = run_notus(
            "bench", "--local", "--tokenizer", tokenizer, "--input-len", "16", "--output-len", "8",
            "--num-prompts", "3", "--concurrency", "2", "--out", str(tmp_path / "run"),
            cwd=tmp_path, timeout=300, env={"COLUMNS": "80"},
        )  # fmt: skip
        native_bench = run_notus(
            "bench", "--local", "--route", "native", "--tokenizer", tokenizer, "--input-len", "16",
            "--output-len", "8", "--num-prompts", "2", "--concurrency", "1", "--out", str(tmp_path / "native"),
            cwd=tmp_path, timeout=300,
        )  # fmt: skip
    assert (info["endpoint_type"], info["lb_url"]) == ("lb", f"{info['url']}/lb/{info['endpoint_id']}")
    assert info["openai_base_url"] == f"{info['lb_url']}/v1"
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip(), "a streamed answer was printed"
    assert native.status_code == 200, native.text
    completion = native.json()
    assert completion["object"] == "chat.completion", "the object itself, not RunPod's one-item list"
    assert completion["model"] == info["served_model_name"]
    assert completion["usage"]["completion_tokens"] >= 1
    assert native.headers["x-runpod-worker-id"]
    assert keyless.status_code == 401
    assert bench.returncode == 0, bench.stderr
    assert "on a load-balancing endpoint" in bench.stdout + bench.stderr
    result = json.loads((tmp_path / "run" / "bench.json").read_text())
    target = result["settings"]["target"]
    assert (target["endpoint_type"], target["base_url"]) == ("lb", info["openai_base_url"])
    summaries = [level["summary"] for level in result["levels"]]
    assert [(s["completed"], s["failed"]) for s in summaries] == [(3, 0)], summaries
    assert native_bench.returncode == 0, native_bench.stderr
    native_run = json.loads((tmp_path / "native" / "bench.json").read_text())
    native_target = native_run["settings"]["target"]
    assert (native_target["route"], native_target["base_url"]) == ("native", info["lb_url"])
    assert [(lv["summary"]["completed"], lv["summary"]["output_tokens"]) for lv in native_run["levels"]] == [(2, 16)]
    assert served.code == 0
    assert "stopped" in served.stderr.read_text()


def test_serve_shows_an_lb_endpoint_whole_at_80_columns(project: Path) -> None:
    """What `notus serve --type lb` prints once ready (the stack itself is the vLLM test's): the LB URL,
    a curl of the native /chat route with the bearer key, the OpenAI base URL, no job routes."""
    info = StackInfo(
        url="http://127.0.0.1:8300",
        endpoint_id="h3k9x2m4q8w1z7",
        api_key=SecretStr("rpa_" + "0" * 40),
        served_model_name="nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
        model="/tmp/tiny",
        vllm_url="http://127.0.0.1:8000",
        log_dir=Path(".notus/serve"),
        workers=1,
        endpoint_type="lb",
    )
    shown = shown_at_80(info)
    assert "…" not in shown, shown
    assert "LB URL" in shown
    assert "http://127.0.0.1:8300/lb/h3k9x2m4q8w1z7 " in shown
    assert "load balancing" in shown
    assert f"curl -s {info.lb_url}/chat -H 'Authorization: Bearer rpa_{'0' * 40}'" in shown
    assert "OpenAI(base_url='http://127.0.0.1:8300/lb/h3k9x2m4q8w1z7/v1'" in shown
    assert "/runsync" not in shown
    assert "runpod SDK" not in shown, "the runpod SDK speaks the job API only"
    queue_shown = shown_at_80(dataclasses.replace(info, endpoint_type="queue"))
    assert "…" not in queue_shown, queue_shown
    assert "queue (jobs: /run, /stream)" in queue_shown
    assert "/v2/h3k9x2m4q8w1z7/runsync" in queue_shown
    connection = info.connection()
    assert (connection["endpoint_type"], connection["lb_url"]) == ("lb", "http://127.0.0.1:8300/lb/h3k9x2m4q8w1z7")
    queue = dataclasses.replace(info, endpoint_type="queue").connection()
    assert (queue["endpoint_type"], queue["lb_url"], queue["endpoint_url"]) == (
        "queue", None, "http://127.0.0.1:8300/v2/h3k9x2m4q8w1z7",
    )  # fmt: skip


def shown_at_80(info: StackInfo) -> str:
    stdout, stderr = io.StringIO(), io.StringIO()
    out = Output(stdout=Console(file=stdout, width=80, soft_wrap=True), stderr=Console(file=stderr, width=80))
    _show(out, info, generated_key=True, tiny=False)
    return stdout.getvalue()


def test_compare_puts_a_queue_and_an_lb_endpoint_side_by_side_on_the_same_route() -> None:
    """The endpoint type is what such a comparison is about: shown, not refused; the route must still match."""
    queue, lb_run = bench_run(route="openai"), bench_run(route="openai")
    queue.settings["target"]["endpoint_type"] = "queue"
    lb_run.settings["target"].update(endpoint_type="lb", base_url="https://abc.api.runpod.ai/v1")
    done = compare([("queue", queue), ("lb", lb_run)])
    assert done.unlike == []
    assert "Differs: endpoint type: queue vs lb" in done.notes
    older = bench_run(route="openai")  # a bench.json from before LB endpoints: a queue endpoint's
    assert "endpoint type" not in " ".join(compare([("old", older), ("queue", queue)]).notes)
    with pytest.raises(ConfigError, match="route: openai-job vs openai"):
        compare([("jobs", bench_run(route="openai-job")), ("lb", lb_run)])


def test_serves_live_table_counts_requests_on_an_lb_endpoint() -> None:
    """No queue and no jobs: the title counts the requests in flight, each worker's `running` its own."""
    workers = [WorkerView("worker-1", "p1", "running", 2, 5, None), WorkerView("worker-2", "p2", "idle", 0, 3, None)]
    jobs = {"inQueue": 0, "inProgress": 0, "completed": 0, "failed": 0}
    snapshot = StackSnapshot(workers, {"jobs": jobs}, vllm_alive=True)
    assert _status_table(snapshot, lb_endpoint=True).title == "load balancing: 2 requests in flight"
    assert str(_status_table(snapshot).title).startswith("queue 0  running 0")


def test_a_deployed_lb_endpoint_is_reached_by_name_and_by_id(tmp_path: Path, tiny_model: Path) -> None:
    """`notus deploy --type lb` against the emulator's control plane (RunPod's stand-in), whose workers are
    real `python -m worker` processes in LB mode; only their vLLM is faked (testbed.openai_stub)."""
    logs = tmp_path / "logs"
    with running_stub(StubConfig(answer=ANSWER)) as stub_url:
        harness = Harness.start(logs, EmulatorConfig(sweep_interval=0.1))
        harness.emulator.worker_factory = command_factory(harness.emulator, lb_command(logs, stub_url))
        env = notus_env(harness.url, harness.key)
        project = tmp_path / "project"
        project.mkdir()
        try:
            deploy = control_notus(
                "deploy", "dev", "--type", "lb", "--image", "notus:latest", "--max-model-len", "4096", "--yes",
                cwd=project, env=env,
            )  # fmt: skip
            assert deploy.returncode == 0, deploy.stderr
            saved = json.loads((project / ".notus" / "deployments.json").read_text())["deployments"]["dev"]
            by_name = control_notus("chat", "dev", "--once", "hi", cwd=project, env=env)
            by_id = control_notus("chat", "--endpoint", saved["endpoint_id"], "--once", "hi", cwd=project, env=env)
            bench = control_notus(
                "bench", "dev", "--tokenizer", str(tiny_model), "--input-len", "8", "--output-len", "4",
                "--num-prompts", "2", "--concurrency", "1", "--out", str(tmp_path / "run"), cwd=project, env=env,
            )  # fmt: skip
        finally:
            harness.close()
    assert saved["endpoint_type"] == "lb"
    for chat in (by_name, by_id):
        assert chat.returncode == 0, chat.stderr
        assert chat.stdout.strip() == ANSWER.strip(), "the answer came from the LB workers"
    assert bench.returncode == 0, bench.stderr
    target = json.loads((tmp_path / "run" / "bench.json").read_text())["settings"]["target"]
    assert (target["endpoint_type"], target["base_url"]) == ("lb", f"{harness.url}/lb/{saved['endpoint_id']}/v1")
