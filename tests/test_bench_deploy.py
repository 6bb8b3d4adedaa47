"""`notus bench --deploy` and `--force-cold`: the benchmark wired to `notus deploy`'s code.

RunPod cannot be reached from here, so the emulator stands in for its control plane (templates,
endpoints, the autoscaler) and its data plane; the workers it starts for an endpoint are real
runpod SDK processes with the echo handler. What must hold: a temporary endpoint is benchmarked,
then it is gone (endpoint, template, local record) however the run ends; `--force-cold` scales a
deployed endpoint to zero and puts its whole spec back.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from notus_cli.bench.deploy_hooks import temporary_endpoints
from notus_cli.deployments import load_deployments
from notus_cli.runpod.gpus import resolve_pool
from notus_cli.settings import load_settings
from testbed.common import notus_command, wait_for
from testbed.control import Session, notus_env, pushed_project
from testbed.emulator import Harness
from tests.fake_nvidia import nvidia_smi_env

DIGEST = "sha256:" + "be" * 32
CREATED = re.compile(r"created endpoint (bench-ampere-80-[0-9a-f]{6}) \((\w+)\)")


@pytest.fixture
def harness(control_emulator: Harness) -> Harness:
    return control_emulator


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return pushed_project(tmp_path, DIGEST)


def workload(tiny_model: Path) -> list[str]:
    return ["--tokenizer", str(tiny_model), "--input-len", "8", "--output-len", "8", "--warmup", "0"]


def left_behind(harness: Harness, name: str) -> dict[str, list[str]]:
    """What the emulator still has of deployment `name`: endpoints and templates (empty lists: nothing)."""

    def look() -> dict[str, list[str]]:
        control = harness.emulator.control
        return {
            "endpoints": [i for i, s in control.specs.items() if s["name"] == name],
            "templates": [t["name"] for t in control.templates.values() if t["name"].startswith(f"{name}__")],
            "data plane": [i for i, e in harness.emulator.endpoints.items() if e.name == name],
        }

    return harness.emulator.call(look)


def created(stderr: str) -> tuple[str, str]:
    found = CREATED.search(" ".join(stderr.split()))  # the console wraps long lines
    assert found, stderr
    return found[1], found[2]


def test_deploy_benches_a_temporary_endpoint_then_removes_it(harness: Harness, project: Path, tiny_model: Path) -> None:
    control = harness.emulator.control
    # The emulator's workers run on this machine, which (as a stand-in nvidia-smi says) has no NVIDIA GPU.
    no_gpu = nvidia_smi_env(project / "bin")
    run = Session(project, {**notus_env(harness.url, harness.key), **no_gpu})
    base = ["bench", "--gpu", "a100", "--deploy", *workload(tiny_model), "--concurrency", "1,2", "--num-prompts", "4"]

    before = len(control.mutations)
    asked = run(*base, code=2)  # not at a terminal, no --yes: nothing is created
    assert "--deploy spends money: confirm with --yes" in asked.stderr
    named = run("bench", "prod", *base[1:], "--yes", code=2)
    assert "--deploy benches the endpoint it creates: drop NAME" in named.stderr
    assert control.mutations[before:] == []

    done = run(*base, "--yes", "--json")
    said = " ".join(done.stderr.split())
    # 600 s to start + 2 levels × 120 s = 840 s at $0.00076/s
    assert "temporary endpoint on AMPERE_80 ($2.74/h)" in said
    assert "about 14 min of one worker, about $0.64" in said
    name, endpoint_id = created(done.stderr)
    assert f"deleted endpoint {name} ({endpoint_id})" in said
    data = json.loads(done.stdout)
    assert data["settings"]["target"]["source"] == f"temporary endpoint {name}"
    assert data["settings"]["target"]["endpoint_id"] == endpoint_id
    assert data["settings"]["target"]["base_url"] == f"{harness.url}/v2/{endpoint_id}"
    assert [level["summary"]["completed"] for level in data["levels"]] == [4, 4]
    for level in data["levels"]:
        assert level["summary"]["failed"] == 0
        assert level["cost"] is None  # an A100 was deployed in the emulator, but this machine's CPU served it
    measured = data["measured_on"]
    assert (measured["toy"], measured["priced"]) == (True, False)
    assert measured["why_unpriced"] == "a CPU served it, not a GPU"
    assert control.mutations[before:] == [
        "saveTemplate",
        "saveEndpoint",
        "saveEndpoint",  # workers to 0 first: RunPod refuses to delete an endpoint with workers
        "deleteEndpoint",
        "deleteTemplate",
    ]
    assert left_behind(harness, name) == {"endpoints": [], "templates": [], "data plane": []}
    assert load_deployments(project / ".notus") == {}
    assert all(harness.key not in text for text in run.printed)


def test_a_run_that_fails_after_creating_the_endpoint_still_removes_it(
    harness: Harness, project: Path, tiny_model: Path
) -> None:
    """The dataset is read once the endpoint answers, so a bad --dataset fails with the endpoint up."""
    broken = project / "chats.json"
    broken.write_text("{ not json")
    run = Session(project, notus_env(harness.url, harness.key))
    failed = run("bench", "--gpu", "a100", "--deploy", "--yes", *workload(tiny_model), "--dataset", str(broken), code=2)
    assert "--dataset" in failed.stderr
    name, _endpoint_id = created(failed.stderr)
    assert left_behind(harness, name) == {"endpoints": [], "templates": [], "data plane": []}
    assert load_deployments(project / ".notus") == {}


def test_ctrl_c_and_an_endpoint_made_twice_leave_nothing(
    harness: Harness, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RunPod made the endpoint but its answer was lost (502): the deploy finds it instead of making a
    second one; then the run is interrupted (KeyboardInterrupt, as Ctrl-C raises). The endpoint, the
    template and the local record go, and Ctrl-C works again afterwards."""
    for variable, value in notus_env(harness.url, harness.key).items():
        if variable.startswith(("NOTUS_", "RUNPOD_")):
            monkeypatch.setenv(variable, value)
    monkeypatch.setenv("NOTUS_CONFIG", str(project / "notus.toml"))
    control = harness.emulator.control
    control.inject(502, lost="saveEndpoint")
    said: list[str] = []
    endpoints = temporary_endpoints(load_settings(), say=said.append, image="registry.test/notus:bench")
    seen: dict[str, Any] = {}

    def interrupted_run() -> None:
        with endpoints.create(resolve_pool("a100")) as spec:
            seen["name"] = name = spec.source.removeprefix("temporary endpoint ")
            seen["twins"] = left_behind(harness, name)["endpoints"]
            seen["recorded"] = name in load_deployments(project / ".notus")
            assert (spec.kind, spec.url, spec.gpu) == ("runpod", f"{harness.url}/v2", "AMPERE_80")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_run()
    assert len(seen["twins"]) == 1  # one endpoint, though its answer was lost
    assert seen["recorded"]
    assert left_behind(harness, seen["name"]) == {"endpoints": [], "templates": [], "data plane": []}
    assert load_deployments(project / ".notus") == {}
    assert sum(line.startswith("deleted endpoint") for line in said) == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_the_run_removes_the_endpoint(harness: Harness, project: Path, tiny_model: Path) -> None:
    """SIGINT to `notus bench --deploy` while its jobs run: exit 130, a line saying so, nothing left."""
    command = notus_command("bench", "--gpu", "a100", "--deploy", "--yes", *workload(tiny_model),
                            "--concurrency", "1", "--num-prompts", "100000", "--duration", "60")  # fmt: skip
    env = notus_env(harness.url, harness.key)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    with subprocess.Popen(command, cwd=project, env=env, **quiet) as bench:

        def running() -> str | None:
            found = [e for e in harness.emulator.endpoints.values() if e.name.startswith("bench-")]
            return found[0].name if found and found[0].counts().completed >= 2 else None

        name = wait_for(lambda: harness.emulator.call(running), 60.0, 0.1)
        bench.send_signal(signal.SIGINT)
        _, stderr = bench.communicate(timeout=60)
    assert bench.returncode == 130, stderr
    assert "interrupted: the temporary endpoint was removed" in stderr
    assert "Traceback" not in stderr
    assert left_behind(harness, name) == {"endpoints": [], "templates": [], "data plane": []}
    assert load_deployments(project / ".notus") == {}


def test_force_cold_scales_a_deployment_to_zero_and_restores_it(
    harness: Harness, project: Path, tiny_model: Path
) -> None:
    """A deployment kept warm (workersMin 1): --force-cold stops its worker, measures a worker starting, and
    the endpoint ends with exactly the spec it had."""
    control = harness.emulator.control
    run = Session(project, notus_env(harness.url, harness.key))
    run("deploy", "warm", "--yes", "--workers-min", "1", "--workers-max", "2", "--idle-timeout", "60")
    endpoint_id = load_deployments(project / ".notus")["warm"].endpoint_id
    harness.wait_ready(harness.emulator.endpoints[endpoint_id], 1, timeout=60)
    spec_before = harness.emulator.call(lambda: dict(control.specs[endpoint_id]))
    assert spec_before["workersMin"] == 1

    before = len(control.mutations)
    done = run("bench", "warm", "--cold-start", "--force-cold", *workload(tiny_model), "--concurrency", "1",
               "--num-prompts", "2", "--json")  # fmt: skip
    assert control.mutations[before:] == ["saveEndpoint", "saveEndpoint"]  # to zero, and back
    assert harness.emulator.call(lambda: dict(control.specs[endpoint_id])) == spec_before
    data = json.loads(done.stdout)
    cold = data["cold_start"]
    assert cold["ok"], cold["error"]
    assert cold["worker_start"] > 0
    assert cold["queue"] is not None
    assert cold["first_token"] is not None
    assert data["levels"][0]["summary"]["completed"] == 2
    run("down", "warm", "--yes")
