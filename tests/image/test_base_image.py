"""What `notus build` learns from the base image, against a real dockerd: CUDA version, platform, size;
and `notus login --registry` + `notus push` against a real registry on loopback.

No registry with NVIDIA's images is reachable, so the CUDA base is the local Debian test base plus the
env an nvidia/cuda image sets (the variables and value shapes of NVIDIA's CUDA base Dockerfiles, which
vLLM's image is built FROM), made here by a one-line build.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import stat
import tarfile
from pathlib import Path
from typing import Any

import docker
import pytest

from notus_cli.files import user_config_dir
from notus_cli.image.context import BuildContext, Entry
from notus_cli.image.engine import DockerEngine
from notus_cli.image.pushed_images import last_pushed
from testbed.docker import Registry
from tests.image.conftest import Cli

pytestmark = pytest.mark.docker

CUDA_BASE = "notus-test/cuda-base:12.8.1"
CUDA_ENV = (
    'NVARCH=x86_64 NVIDIA_REQUIRE_CUDA="cuda>=12.8 brand=tesla,driver>=470,driver<471" '
    "NV_CUDA_CUDART_VERSION=12.8.90-1 CUDA_VERSION=12.8.1"
)


@pytest.fixture(scope="module")
def cuda_base(docker_api: docker.APIClient, base_image: str) -> str:
    dockerfile = f"FROM {base_image}\nENV {CUDA_ENV}\n"
    DockerEngine(docker_api).build(BuildContext([Entry.text("Dockerfile", dockerfile)]), CUDA_BASE)
    return CUDA_BASE


@pytest.fixture(scope="module")
def cuda_built(
    tmp_path_factory: pytest.TempPathFactory, docker_api: docker.APIClient, cuda_base: str, build_cache: Path,
    tiny_model: Path, dockerd: Any,
) -> tuple[dict[str, Any], str]:  # fmt: skip
    """One `notus build --json` on the CUDA base: (its JSON result, its stderr)."""
    cli = Cli(
        tmp_path_factory.mktemp("project"), {"DOCKER_HOST": dockerd.host, "NOTUS_BUILD__CACHE_DIR": str(build_cache)}
    )
    result = cli(
        "build", "--model-path", str(tiny_model), "--base-image", cuda_base, "--image", "notus-test/cuda-app",
        "--tag", "t1", "--json",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_the_base_images_cuda_version_is_recorded_in_labels_and_result(
    cuda_built: tuple[dict[str, Any], str], docker_api: docker.APIClient
) -> None:
    built, stderr = cuda_built
    image = docker_api.inspect_image(built["reference"])
    assert built["cuda_version"] == "12.8"
    assert image["Config"]["Labels"]["ai.notus.cuda.version"] == "12.8"
    assert "CUDA" not in stderr  # no warning: the base image said


def test_the_image_is_pinned_to_linux_amd64_and_its_size_measured(
    cuda_built: tuple[dict[str, Any], str], docker_api: docker.APIClient
) -> None:
    built, _ = cuda_built
    image = docker_api.inspect_image(built["reference"])
    assert (image["Os"], image["Architecture"]) == ("linux", "amd64")
    assert image["Config"]["Labels"]["ai.notus.platform"] == "linux/amd64"
    assert built["platform"] == "linux/amd64"
    assert built["size_bytes"] == image["Size"]
    layers = sum(int(h["Size"]) for h in docker_api.history(built["reference"]))
    assert built["size_bytes"] == layers  # the daemon's Size is every layer, base included


def test_a_base_without_cuda_builds_with_a_warning_and_no_cuda_version(
    docker_cli: Cli, docker_api: docker.APIClient, tiny_model: Path
) -> None:
    result = docker_cli("build", "--model-path", str(tiny_model), "--image", "notus-test/no-cuda", "--json")
    assert result.code == 0, result.stderr
    built = json.loads(result.stdout)
    assert built["cuda_version"] is None
    assert "Warning: the base image notus-test/base:bookworm does not say which CUDA" in result.stderr
    assert "ai.notus.cuda.version" not in docker_api.inspect_image(built["reference"])["Config"]["Labels"]


def test_a_base_image_for_another_platform_is_refused_before_building(
    docker_cli: Cli, docker_api: docker.APIClient, tiny_model: Path
) -> None:
    """What an arm64 laptop would pull without the pin: an arm64 base. The build stops with a message
    instead of making an image RunPod's x86-64 hosts cannot run."""
    arm64 = _load_image(docker_api, "notus-test/arm64-base:1", architecture="arm64")
    result = docker_cli("build", "--model-path", str(tiny_model), "--base-image", arm64, "--image", "notus-test/arm")
    assert result.code == 1
    lines = result.error_lines
    assert lines[0] == (
        f"Error: the base image {arm64} is linux/arm64, but the image must be linux/amd64 "
        "(RunPod's GPU hosts are x86-64)"
    )
    assert lines[1] == f"Hint: get the linux/amd64 variant: docker pull --platform linux/amd64 {arm64}"
    assert docker_api.images(name="notus-test/arm") == []


def test_the_platform_setting_is_checked_against_the_base(docker_cli: Cli, tiny_model: Path) -> None:
    arm = docker_cli("build", "--model-path", str(tiny_model), env={"NOTUS_BUILD__PLATFORM": "linux/arm64"})
    assert arm.code == 1
    assert "is linux/amd64, but the image must be linux/arm64" in arm.error_lines[0]
    bad = docker_cli("build", "--model-path", str(tiny_model), env={"NOTUS_BUILD__PLATFORM": "windows/amd64"})
    assert bad.code == 2
    assert "environment variable NOTUS_BUILD__PLATFORM" in bad.error_lines[0]
    assert "'linux/amd64' or 'linux/arm64'" in bad.error_lines[0]


def test_login_checks_with_the_registry_then_push_uses_the_stored_credentials(
    docker_cli: Cli, docker_api: docker.APIClient, registry: Registry, cuda_built: tuple[dict[str, Any], str]
) -> None:
    """`notus login --registry` verifies through the daemon (a wrong password stores nothing), then
    `notus push` needs no credentials in its environment; the password is never printed."""
    login = ("login", "--registry", registry.address, "--username", registry.username, "--password-stdin")
    wrong = docker_cli(*login, stdin="not-the-password\n")
    assert wrong.code == 1
    assert wrong.error_lines[0].startswith(f"Error: {registry.address} refused the login of {registry.username}")
    assert not (user_config_dir() / "registries.json").exists()

    right = docker_cli(*login, stdin=registry.password + "\n")
    assert right.code == 0, right.stderr
    stored = user_config_dir() / "registries.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600

    built, _ = cuda_built
    target = f"{registry.address}/team/cuda"
    docker_api.tag(built["reference"], target, tag="v1")
    pushed = docker_cli("push", f"{target}:v1")
    assert pushed.code == 0, pushed.stderr
    assert f"as{registry.username}({stored})" in "".join(pushed.stderr.split())  # rich wraps long lines
    for result in (wrong, right, pushed):
        assert registry.password not in result.stdout + result.stderr
    recorded = last_pushed(docker_cli.project / ".notus")
    assert recorded is not None
    assert recorded.reference == pushed.stdout.strip().splitlines()[-1]
    assert recorded.cuda_version == "12.8"
    assert recorded.size_bytes == docker_api.inspect_image(f"{target}:v1")["Size"]


def test_push_uses_dockers_own_config_for_the_host(
    docker_cli: Cli, docker_api: docker.APIClient, registry: Registry, base_image: str
) -> None:
    """Credentials from `docker login` (the base64 `auths` entry of ~/.docker/config.json) are enough."""
    encoded = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    config = Path.home() / ".docker" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"auths": {registry.address: {"auth": encoded}}}))
    docker_api.tag(base_image, f"{registry.address}/team/from-docker-config", tag="v1")
    result = docker_cli("push", f"{registry.address}/team/from-docker-config:v1")
    assert result.code == 0, result.stderr
    assert f"({config})" in "".join(result.stderr.split())
    assert registry.password not in result.stdout + result.stderr


def _load_image(api: docker.APIClient, reference: str, *, architecture: str) -> str:
    """`docker load` an image whose config says `architecture` (one small layer), as a foreign pull would leave."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        data = b"not a real arm64 system\n"
        info = tarfile.TarInfo("etc/notus-test")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()]},
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [reference], "Layers": ["layer/layer.tar"]}]
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, content in (
            (config_name, config_bytes),
            ("layer/layer.tar", layer_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    api.load_image(archive.getvalue())
    return reference
