"""The built image starts and answers a chat request, on the CPU, with no network.

What cannot exist here is the GPU build of vLLM that the real base image carries (no GPU, no
Docker Hub). In its place the host's vLLM CPU build (.venv-vllm, and the interpreter it was made
from) is mounted read-only into the container at the same paths and named by NOTUS_VLLM_PYTHON.
Everything else is the image as built: its entrypoint, its worker venv, its baked model and
settings, offline mode. The job goes through the worker's own `--test_input` path.
"""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from notus_cli.image.engine import DockerEngine
from notus_cli.image.pipeline import BuildRequest, build_image
from notus_cli.settings import BuildSettings
from testbed.vllm import MAX_MODEL_LEN, TEST_VLLM_ARGS, vllm_python

pytestmark = [pytest.mark.docker, pytest.mark.vllm]


def host_vllm_mounts() -> tuple[str, dict[str, dict[str, str]]]:
    """The vLLM interpreter path and the read-only binds that make it work inside the container."""
    python = Path(vllm_python())
    venv = python.parent.parent.resolve()
    binds = {str(venv): {"bind": str(venv), "mode": "ro"}}
    config = dict(line.split(" = ", 1) for line in (venv / "pyvenv.cfg").read_text().splitlines() if " = " in line)
    home = Path(config["home"]).resolve().parent  # the interpreter's prefix, e.g. a pyenv version
    if not str(home).startswith("/usr"):  # a Debian /usr Python is in the image already
        binds[str(home)] = {"bind": str(home), "mode": "ro"}
    return str(venv / "bin" / "python"), binds


def test_the_built_image_answers_a_chat_request(
    docker_api: docker.APIClient, base_image: str, build_cache: Path, tiny_model: Path
) -> None:
    settings = BuildSettings(model_path=tiny_model, base_image=base_image, image="notus-test/run", tag="cpu")
    build_image(BuildRequest(settings, build_cache), DockerEngine(docker_api))
    python, binds = host_vllm_mounts()
    job = {"input": {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8, "temperature": 0}}
    env = {
        "NOTUS_VLLM_PYTHON": python,
        "NOTUS_MAX_MODEL_LEN": str(MAX_MODEL_LEN),
        "NOTUS_VLLM_ARGS": TEST_VLLM_ARGS,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_HOST_IP": "127.0.0.1",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_NO_USAGE_STATS": "1",
    }
    container = docker_api.create_container(
        "notus-test/run:cpu",
        command=["--test_input", json.dumps(job)],
        environment=env,
        network_disabled=True,
        host_config=docker_api.create_host_config(binds=binds, network_mode="none"),
    )
    try:
        docker_api.start(container)
        status = docker_api.wait(container, timeout=900)["StatusCode"]
        stdout = docker_api.logs(container, stdout=True, stderr=False).decode()
        stderr = docker_api.logs(container, stdout=False, stderr=True).decode()
    finally:
        docker_api.remove_container(container, force=True)
    assert status == 0, stderr[-3000:]
    answer = json.loads(stdout)
    assert answer["object"] == "chat.completion"
    assert answer["model"] == "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"  # the baked served name
    assert answer["usage"]["completion_tokens"] == 8
    assert "vLLM ready" in stderr
