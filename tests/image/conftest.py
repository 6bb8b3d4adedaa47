"""Fixtures for `notus build` / `notus push`: a real dockerd, a local base image, a local registry.

(The folder is not called `build`: pytest skips folders of that name by default.)

All are started once per session (dockerd starts in about a second; the base image costs about a
minute of debootstrap on a fresh machine, then comes from a cached tar). Nothing here is skipped
when a tool is missing: CI must run these tests, so a missing package fails loudly instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from testbed.common import ROOT, notus
from testbed.docker import Dockerd, Registry, import_base_image, start_dockerd, start_registry
from testbed.fake_hub import FakeHub


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    daemon = start_dockerd(tmp_path_factory.mktemp("dockerd"))
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def docker_api(dockerd: Dockerd) -> Iterator[docker.APIClient]:
    with dockerd.client() as client:
        yield client


@pytest.fixture(scope="session")
def base_image(docker_api: docker.APIClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    return import_base_image(docker_api, tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    server = start_registry(tmp_path_factory.mktemp("registry"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def build_cache() -> Path:
    """notus' build cache (wheels, probes, hashes), kept in the git-ignored .notus/test-cache so the
    worker's wheels are downloaded once per machine, not once per run (CI starts without it)."""
    path = ROOT / ".notus" / "test-cache" / "build-cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """The `Error:` line and what follows it (progress lines before it are left out)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        starts = [i for i, line in enumerate(lines) if line.startswith("Error: ")]
        return lines[starts[-1] :] if starts else lines


class Cli:
    """The real `notus` entry point in a subprocess, run in its own project directory."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.project = project
        self.env = {"NOTUS_CONFIG": str(project / "notus.toml"), **env}  # its own notus.toml and .notus/

    def __call__(self, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> CliResult:
        done = notus(*args, cwd=self.project, env=self.env | (env or {}), stdin=stdin, timeout=900)
        return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(tmp_path: Path, build_cache: Path) -> Cli:
    """`notus` with no daemon: DOCKER_HOST points at a socket nobody listens on."""
    project = tmp_path / "project"
    project.mkdir()
    nobody = f"unix://{tmp_path}/no-daemon.sock"
    return Cli(project, {"DOCKER_HOST": nobody, "NOTUS_BUILD__CACHE_DIR": str(build_cache)})


@pytest.fixture
def docker_cli(cli: Cli, dockerd: Dockerd, base_image: str) -> Cli:
    """`notus` against the test dockerd, building on the local base image by default."""
    cli.env |= {"DOCKER_HOST": dockerd.host, "NOTUS_BUILD__BASE_IMAGE": base_image}
    return cli


@contextmanager
def offline_hub(repo_id: str, directory: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A loopback Hub serving `directory` as `repo_id`, with huggingface_hub online and caching under `cache`."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read once, at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    server = FakeHub(repo_id, directory).start()
    try:
        yield server
    finally:
        server.stop()
