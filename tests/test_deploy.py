"""`notus deploy` and friends end to end: the real CLI against the emulator's control plane on loopback.

RunPod cannot be reached from here, so the emulator stands in for its control and data planes; the
endpoint's workers are real runpod SDK processes (echo handler) started by the emulator's autoscaler.
Every command runs with one known API key, and no output, log or state file may contain it.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.control import Session, notus_env, pushed_project
from testbed.emulator import Harness, wait_for

AWKWARD = 'quote " back\\slash\nnew line = $HOME'
DIGEST = "sha256:" + "cd" * 32


@pytest.fixture
def harness(control_emulator: Harness) -> Harness:
    return control_emulator


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory whose last `notus push` is a known digest."""
    return pushed_project(tmp_path, DIGEST)


def deployed(harness: Harness, name: str) -> list[str]:
    specs = harness.emulator.call(lambda: [s["name"] for s in harness.emulator.control.specs.values()])
    return [spec for spec in specs if spec == name]


def test_deploy_lifecycle(harness: Harness, project: Path) -> None:
    control = harness.emulator.control
    run = Session(project, notus_env(harness.url, harness.key))
    env_flags = ["--env", f"NOTUS_TEST_VALUE={AWKWARD}", "--idle-timeout", "2"]

    before = len(control.mutations)
    plan = run("deploy", "life", "--dry-run", "--workers-max", "2", *env_flags).stdout
    assert len(control.mutations) == before  # a dry run sends no mutation
    assert "create template" in plan
    assert "create endpoint" in plan
    assert "AMPERE_80" in plan
    assert "$2.74/hour per running worker (flex rate); at most $5.47/hour at workers-max" in plan
    line = " ".join(plan.split())
    assert "any CUDA driver (the image's CUDA is unknown: `notus build` records it), regions any" in line

    run("deploy", "life", "--yes", "--workers-max", "2", *env_flags)
    assert control.mutations[before:] == ["saveTemplate", "saveEndpoint"]
    state = json.loads((project / ".notus" / "deployments.json").read_text())["deployments"]["life"]
    assert state["image"] == f"registry.test/notus@{DIGEST}"
    assert state["model_revision"] == "0123abc"
    assert state["api_base_url"] == f"{harness.url}/v2"

    # a request through the deployed endpoint: a worker cold-starts and sees the env exactly as given
    with harness.http(state["endpoint_id"]) as client:
        body = client.post("/runsync", json={"input": {"env": "NOTUS_TEST_VALUE"}}).json()
    assert body["status"] == "COMPLETED", body
    assert body["output"] == [{"env": AWKWARD}]

    before = len(control.mutations)
    again = run("deploy", "life", "--yes", "--workers-max", "2", *env_flags)
    assert "No changes" in again.stdout
    assert control.mutations[before:] == []  # idempotent

    run("deploy", "life", "--yes", "--workers-max", "2", *env_flags, "--image", "registry.test/notus:v2")
    assert control.mutations[before:] == ["saveTemplate", "updateEndpointTemplate"]  # rolling release only

    before = len(control.mutations)
    run(
        "deploy",
        "life",
        "--yes",
        "--workers-max",
        "3",
        "--workers-min",
        "1",
        *env_flags,
        "--image",
        "registry.test/notus:v2",
    )
    assert control.mutations[before:] == ["saveEndpoint"]
    spec = control.specs[state["endpoint_id"]]
    assert (spec["workersMin"], spec["workersMax"], spec["idleTimeout"]) == (1, 3, 2)
    assert spec["flashBootType"] == "FLASHBOOT"

    status = run("status", "life").stdout
    assert run("status").stdout.splitlines()[0] == status.splitlines()[0], "the one saved deployment is the default"
    assert "min 1, max 3, standby 1 (as RunPod reports it)" in status
    assert "registry.test/notus:v2" in status
    assert "completed 1" in status
    listed = json.loads(run("endpoints", "--json").stdout)
    assert any(e["name"] == "life" and e["deployment"] == "life" for e in listed)

    refused = run("down", "life", code=2, stdin="y\n")  # no terminal to confirm at: nothing removed
    assert "Hint: pass --yes" in refused.stderr
    assert deployed(harness, "life") == ["life"]
    run("down", "life", "--yes")
    assert deployed(harness, "life") == []
    assert not [t for t in control.templates.values() if t["name"].startswith("life__")]
    assert state["endpoint_id"] not in harness.emulator.endpoints
    assert "life" not in json.loads((project / ".notus" / "deployments.json").read_text())["deployments"]
    run("down", "life", "--yes", code=2)  # nothing left to remove

    logs = [p.read_text(errors="replace") for p in harness.log_dir.rglob("*") if p.is_file()]
    files = [p.read_text() for p in (project / ".notus").iterdir()]
    for text in run.printed + logs + files:
        assert harness.key not in text


def test_a_save_whose_answer_was_lost(harness: Harness, project: Path) -> None:
    """RunPod made the template but the answer was lost (502): deploy looks it up by name instead of
    sending saveTemplate again, and carries on with the template that was made."""
    control = harness.emulator.control
    control.inject(502, lost="saveTemplate")
    run = Session(project, notus_env(harness.url, harness.key))
    before = len(control.mutations)
    result = json.loads(run("deploy", "lost", "--yes", "--json", "--workers-max", "1").stdout)
    assert control.mutations[before:] == ["saveTemplate", "saveEndpoint"]
    assert [change["action"] for change in result["changes"]] == ["create template", "create endpoint"]
    assert result["deployment"]["template_id"] in control.templates
    assert result["deployment"]["gpu"] == "AMPERE_80"
    run("down", "lost", "--yes")


def test_a_gpu_that_cannot_hold_the_model_is_refused(harness: Harness, project: Path) -> None:
    run = Session(project, notus_env(harness.url, harness.key))
    result = run("deploy", "small", "--gpu", "a40", "--yes", code=2)
    assert "needs FP8 weights" in result.stderr
    assert "a100 (AMPERE_80)" in result.stderr
    result = run("deploy", "small", "--gpu", "4090", "--dry-run", code=2)
    assert "cannot hold the model" in result.stderr
    assert deployed(harness, "small") == []


def test_bad_flags_name_the_flag(harness: Harness, project: Path) -> None:
    run = Session(project, notus_env(harness.url, harness.key))
    assert "--region" in run("deploy", "--region", "mars", "--dry-run", code=2).stderr
    assert "--env" in run("deploy", "--env", "no-equals", "--dry-run", code=2).stderr
    assert "--scaler" in run("deploy", "--scaler", "magic", "--dry-run", code=2).stderr
    assert "unknown GPU 'tpu'" in run("deploy", "--gpu", "tpu", "--dry-run", code=2).stderr


def test_a_rejected_key_is_reported_and_never_shown(harness: Harness, project: Path) -> None:
    wrong = "rpa_THISKEYISWRONG0000"
    run = Session(project, notus_env(harness.url, wrong))
    for args in (("deploy", "--dry-run"), ("status", "x"), ("endpoints",), ("down", "x", "--yes")):
        assert "RunPod rejected the API key" in run(*args, code=5).stderr
    assert all(wrong not in text for text in run.printed)


def test_login_stores_the_key_0600_and_commands_use_it(harness: Harness, project: Path) -> None:
    env = notus_env(harness.url, harness.key)
    env.pop("RUNPOD_API_KEY")
    env["HOME"] = str(project / "home")
    env["XDG_CONFIG_HOME"] = str(project / "home" / ".config")
    run = Session(project, env)
    assert "no RunPod API key" in run("endpoints", code=5).stderr
    refused = run("login", stdin="rpa_WRONG\n", code=5).stderr
    assert "RunPod rejected this API key; nothing was stored" in refused
    assert "notus login" not in refused, "the hint sends the user back to the command they just ran"
    assert "no RunPod API key on stdin" in run("login", code=2).stderr
    run("login", stdin=harness.key + "\n")
    stored = project / "home" / ".config" / "notus" / "credentials.toml"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    run("endpoints")
    assert all(harness.key not in text for text in run.printed)


def test_runpodctl_config_is_read(harness: Harness, project: Path) -> None:
    env = notus_env(harness.url, harness.key)
    env.pop("RUNPOD_API_KEY")
    env["HOME"] = str(project / "home")
    (project / "home" / ".runpod").mkdir(parents=True)
    (project / "home" / ".runpod" / "config.toml").write_text(f'apikey = "{harness.key}"\napiurl = "x"\n')
    Session(project, env)("endpoints")


def test_gpus_lists_fit_and_price(project: Path, harness: Harness) -> None:
    run = Session(project, notus_env(harness.url, harness.key))
    rows = json.loads(run("gpus", "--json", "--max-model-len", "8192").stdout)
    by_pool = {row["pool"]: row for row in rows}
    assert by_pool["AMPERE_48"]["verdict"] == "needs FP8"
    assert by_pool["AMPERE_80"]["verdict"] == "fits"
    assert by_pool["AMPERE_80"]["usd_per_hour"] == pytest.approx(2.736)
    assert by_pool["HOPPER_141"]["max_sequences"] > by_pool["AMPERE_80"]["max_sequences"]
    assert by_pool["ADA_24"]["verdict"] == "too small"


def test_status_of_an_unknown_endpoint(harness: Harness, project: Path) -> None:
    result = Session(project, notus_env(harness.url, harness.key))("status", "ghost", code=2)
    assert "no endpoint named 'ghost'" in result.stderr


def test_a_lost_save_endpoint_answer_still_ends_with_one_endpoint(harness: Harness, project: Path) -> None:
    """The first saveEndpoint is carried out but its answer is lost: deploy finds the endpoint (by its
    name and the template it just made) instead of creating a second, billed one."""
    control = harness.emulator.control
    control.inject(502, lost="saveEndpoint")
    run = Session(project, notus_env(harness.url, harness.key))
    before = len(control.mutations)
    result = json.loads(run("deploy", "once", "--yes", "--json").stdout)
    assert control.mutations[before:] == ["saveTemplate", "saveEndpoint"]
    assert deployed(harness, "once") == ["once"]
    assert result["deployment"]["endpoint_id"] in control.specs
    run("down", "once", "--yes")


@pytest.mark.parametrize("declared", [False, True], ids=["schema-without-standby", "schema-with-standby"])
def test_workers_min_0_scales_to_zero_in_both_schema_shapes(harness: Harness, project: Path, declared: bool) -> None:
    control = harness.emulator.control
    previous, control.rules.declares_workers_standby = control.rules.declares_workers_standby, declared
    try:
        run = Session(project, notus_env(harness.url, harness.key))
        start = len(control.requests)
        state = json.loads(run("deploy", "zero", "--yes", "--json", "--workers-min", "0", "--idle-timeout", "1").stdout)
        endpoint_id = state["deployment"]["endpoint_id"]
        saves = [r["variables"]["input"] for r in control.requests[start:] if "saveEndpoint" in r["query"]]
        assert [("workersStandby" in save) for save in saves] == [declared]
        with harness.http(endpoint_id) as client:
            assert client.post("/runsync", json={"input": {"echo": 1}}).json()["status"] == "COMPLETED"
        endpoint = harness.emulator.endpoints[endpoint_id]
        alive = lambda: harness.emulator.call(lambda: sum(w.alive for w in endpoint.workers.values()))  # noqa: E731
        wait_for(lambda: alive() == 0, timeout=30)  # idle 1 s past the job: no worker left
        run("down", "zero", "--yes")
    finally:
        control.rules.declares_workers_standby = previous


def test_down_waits_out_a_template_runpod_still_holds(harness: Harness, project: Path) -> None:
    control = harness.emulator.control
    run = Session(project, notus_env(harness.url, harness.key))
    run("deploy", "held", "--yes")
    control.rules.template_release_delay = 2.0
    try:
        result = run("down", "held", "--yes")
    finally:
        control.rules.template_release_delay = 0.0
    said = " ".join(result.stderr.split())
    assert said.count("is still held by RunPod after its last use; retrying") == 1  # not once per retry
    assert not [t for t in control.templates.values() if t["name"].startswith("held__")]


def test_a_second_down_finishes_what_the_first_could_not(harness: Harness, project: Path) -> None:
    control = harness.emulator.control
    run = Session(project, notus_env(harness.url, harness.key))
    run("deploy", "twice", "--yes")
    control.rules.template_release_delay = 60.0
    settings_env = notus_env(harness.url, harness.key)
    try:
        first = subprocess_down(project, settings_env)
    finally:
        control.rules.template_release_delay = 0.0
    assert "deleted endpoint twice" in first  # what the first down did, it says
    assert "but RunPod still refuses to delete template" in first
    assert deployed(harness, "twice") == []  # the endpoint went first ...
    assert "twice" not in json.loads((project / ".notus" / "deployments.json").read_text())["deployments"]
    assert [t["name"] for t in control.templates.values() if t["name"].startswith("twice__")]  # ... a template stayed
    run("down", "twice", "--yes")
    assert not [t for t in control.templates.values() if t["name"].startswith("twice__")]


def subprocess_down(project: Path, env: dict[str, str]) -> str:
    """`notus down twice` with the template wait cut to 1 s (RunPod's 2 minutes are too long for a test)."""
    code = (
        "import sys; import notus_cli.deploy.apply as a; a.TEMPLATE_RELEASE_WAIT = 1.0; "
        "from notus_cli.app import main; sys.argv = ['notus', 'down', 'twice', '--yes']; main()"
    )
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, capture_output=True, text=True, cwd=project, env=env, timeout=60)
    assert result.returncode == 6, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return " ".join(result.stderr.split())


def test_a_private_image_without_credentials_never_starts_and_status_says_why(harness: Harness, project: Path) -> None:
    control = harness.emulator.control
    control.rules.private_registries = frozenset({"registry.test"})
    try:
        run = Session(project, notus_env(harness.url, harness.key))
        state = json.loads(run("deploy", "private", "--yes", "--json").stdout)
        endpoint_id = state["deployment"]["endpoint_id"]
        with harness.http(endpoint_id) as client:
            job = client.post("/run", json={"input": {"echo": 1}}).json()["id"]
            harness.wait_sweeps(3)  # three autoscaler ticks with a queued job: each would have started a worker
            assert client.get(f"/status/{job}").json()["status"] == "IN_QUEUE"
        assert harness.emulator.call(lambda: len(harness.emulator.endpoints[endpoint_id].workers)) == 0
        status = run("status", "private")
        said = " ".join(status.stderr.split())
        assert "no worker has started: the template names no registry credential" in said
        assert "registry.test/notus@" in said
        run("down", "private", "--yes")
    finally:
        control.rules.private_registries = frozenset()


def test_lost_answers_to_an_update_and_a_rolling_release_are_not_sent_twice(harness: Harness, project: Path) -> None:
    control = harness.emulator.control
    run = Session(project, notus_env(harness.url, harness.key))
    run("deploy", "again", "--yes")
    before = len(control.mutations)
    control.inject(502, lost="saveEndpoint")
    run("deploy", "again", "--yes", "--workers-max", "2")
    control.inject(502, lost="updateEndpointTemplate")
    run("deploy", "again", "--yes", "--workers-max", "2", "--image", "registry.test/notus:v3")
    assert control.mutations[before:] == ["saveEndpoint", "saveTemplate", "updateEndpointTemplate"]
    (spec,) = [s for s in control.specs.values() if s["name"] == "again"]
    assert spec["workersMax"] == 2
    assert control.templates[spec["templateId"]]["imageName"] == "registry.test/notus:v3"
    run("down", "again", "--yes")
