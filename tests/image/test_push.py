"""`notus push` and `notus build --push` to a real registry on loopback (Debian's docker-registry)."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from notus_cli.image.engine import DockerEngine
from notus_cli.image.pushed_images import last_pushed
from testbed.docker import Registry
from tests.image.conftest import Cli

pytestmark = pytest.mark.docker


def test_build_push_then_pull_back_by_digest(
    docker_cli: Cli, docker_api: docker.APIClient, registry: Registry, tiny_model: Path
) -> None:
    credentials = {
        "NOTUS_BUILD__REGISTRY_USERNAME": registry.username,
        "NOTUS_BUILD__REGISTRY_PASSWORD": registry.password,
    }
    result = docker_cli(
        "build", "--model-path", str(tiny_model), "--registry", registry.address, "--image", "team/notus",
        "--tag", "v1", "--push", env=credentials,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    repository = f"{registry.address}/team/notus"
    pushed = result.stdout.strip().splitlines()[-1]
    assert pushed.startswith(f"{repository}@sha256:")
    assert registry.password not in result.stdout + result.stderr

    recorded = last_pushed(docker_cli.project / ".notus")
    assert recorded is not None
    assert recorded.reference == pushed
    assert recorded.labels["ai.notus.model.manifest-digest"].startswith("sha256:")

    built_id = docker_api.inspect_image(f"{repository}:v1")["Id"]
    docker_api.remove_image(f"{repository}:v1")
    auth = {"username": registry.username, "password": registry.password}
    DockerEngine(docker_api).pull(pushed, auth)
    assert docker_api.inspect_image(pushed)["Id"] == built_id


def test_push_without_credentials_is_a_one_line_error(
    docker_cli: Cli, docker_api: docker.APIClient, registry: Registry, base_image: str
) -> None:
    docker_api.tag(base_image, f"{registry.address}/team/anonymous", tag="v1")
    result = docker_cli("push", f"{registry.address}/team/anonymous:v1")
    assert result.code == 1
    lines = result.error_lines
    assert lines[0].startswith(f"Error: push of {registry.address}/team/anonymous:v1 failed")
    assert "docker login" in lines[1]
    assert len(lines) == 2


def test_push_of_a_missing_image_says_to_build_first(docker_cli: Cli, registry: Registry) -> None:
    result = docker_cli("push", f"{registry.address}/team/never-built:v1", "--json")
    assert result.code == 1
    assert "there is no image" in result.error_lines[0]
    assert result.stdout == ""


def test_push_rejects_a_bad_reference(cli: Cli) -> None:
    result = cli("push", "Not A/Reference")
    assert result.code == 2
    assert result.error_lines[0].startswith("Error: IMAGE 'Not A/Reference' is not a valid image reference")
    assert json.dumps(result.stderr).count("Traceback") == 0
