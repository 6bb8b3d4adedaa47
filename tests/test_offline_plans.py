"""The build and deploy plans offline: no network, no key. Each prints its plan and a line for what it
could not check, and exits 0 without a traceback. The Hub and RunPod are a loopback port nobody listens on."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from notus_cli.image.hub import HubUnreachable, hub_files
from testbed.common import notus as run_notus
from testbed.control import pushed_project


def closed_url() -> str:
    """A loopback URL nobody listens on (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def offline_env(home: Path, project: Path | None = None) -> dict[str, str]:
    """No RunPod key anywhere, a fresh HOME, and a Hub that cannot be reached."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTUS_", "RUNPOD_", "HF_"))}
    return env | {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "HF_ENDPOINT": closed_url(),
        "HF_HOME": str(home / "hf"),
        "NOTUS_CONFIG": str((project or home) / "notus.toml"),  # its notus.toml and .notus/ beside it
    }


def test_hub_files_raises_hub_unreachable_for_a_connection_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(HubUnreachable, match="could not be reached"):
        hub_files("acme/model", revision="main", token=None, endpoint=closed_url())


@pytest.mark.parametrize(
    "flags",
    [(), ("--weights", "cached"), ("--weights", "baked"), ("--model-id", "acme/tiny", "--json")],
    ids=["default", "cached", "baked", "model-id-json"],
)
def test_build_dry_run_offline_prints_the_plan_and_what_it_could_not_check(
    tmp_path: Path, flags: tuple[str, ...]
) -> None:
    done = run_notus("build", "--dry-run", *flags, cwd=tmp_path, base_env=offline_env(tmp_path), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    if "--json" in flags:
        plan = json.loads(done.stdout)
        assert plan["unchecked"]
        assert "acme/tiny@main" in plan["unchecked"][0]
        assert "could not be reached" in plan["unchecked"][0]
        assert any(layer["name"] == "code" for layer in plan["layers"])
        return
    assert "Plan for" in done.stdout
    assert "app.Dockerfile" in done.stdout
    assert "not checked:" in " ".join(done.stderr.split())


def test_deploy_dry_run_needs_no_key(tmp_path: Path) -> None:
    project = pushed_project(tmp_path, "sha256:" + "ab" * 32)
    done = run_notus("deploy", "--dry-run", cwd=project, base_env=offline_env(tmp_path / "home", project), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    err = " ".join(done.stderr.split())
    assert "not checked: what RunPod already runs" in err
    assert "no RunPod API key" in err
    assert "create" in done.stdout
    assert "cost:" in done.stdout


def test_deploy_dry_run_with_a_key_but_no_network_plans_and_says_so(tmp_path: Path) -> None:
    project = pushed_project(tmp_path, "sha256:" + "ab" * 32)
    env = offline_env(tmp_path / "home", project) | {
        "RUNPOD_API_KEY": "rpa_OFFLINEKEY0000",
        "NOTUS_RUNPOD_GRAPHQL_URL": closed_url(),
    }
    done = run_notus("deploy", "--dry-run", "--json", cwd=project, base_env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    plan = json.loads(done.stdout)
    assert plan["dry_run"]
    assert plan["unchecked"]
    assert "planned as a new endpoint" in plan["unchecked"][0]
    assert "rpa_OFFLINEKEY0000" not in done.stdout + done.stderr
