"""`notus deploy` to `notus serve`'s stack, then a chat request answered by the real tiny vLLM (CPU build).

RunPod's control plane is the emulator's (RunPod cannot be reached from here); the deployed endpoint's
worker is a real `python -m worker` process the emulator starts for it, talking to the session's vLLM.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from notus_cli.serve.stack import LocalStack
from testbed.control import notus, notus_env

pytestmark = pytest.mark.vllm


def ask(stack: LocalStack, endpoint_id: str) -> dict[str, Any]:
    """One chat job through the endpoint's /runsync; asserts it completed with one chat.completion."""
    info = stack.info
    request = {"input": {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}}
    response: dict[str, Any] = httpx.post(
        f"{info.api_base}/{endpoint_id}/runsync",
        json=request,
        headers={"Authorization": f"Bearer {info.api_key.get_secret_value()}"},
        timeout=180,
    ).json()
    assert response["status"] == "COMPLETED", response
    assert [item["object"] for item in response["output"]] == ["chat.completion"]
    return response


def test_deploy_then_chat_through_the_deployed_endpoint(local_stack: LocalStack, tmp_path: Path) -> None:
    info = local_stack.info
    key = info.api_key.get_secret_value()
    rules = local_stack.emulator.control.rules
    rules.template_release_delay = 0.0  # RunPod's 2 minutes are tested in test_deploy.py
    env = notus_env(info.url, key)
    args = ("deploy", "chat", "--image", "registry.test/notus:v1", "--max-model-len", "4096", "--yes")
    result = notus(*args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    deployments = json.loads((tmp_path / ".notus" / "deployments.json").read_text())["deployments"]
    endpoint_id = deployments["chat"]["endpoint_id"]
    response = ask(local_stack, endpoint_id)
    (completion,) = response["output"]
    assert completion["model"] == info.served_model_name
    assert response["delayTime"] > 0  # a worker had to start for it (scale from zero)
    down = notus("down", "chat", "--yes", cwd=tmp_path, env=env)
    assert down.returncode == 0, down.stderr
    assert key not in result.stdout + result.stderr + down.stdout + down.stderr


def test_cached_weights_deploy_then_chat(local_stack: LocalStack, tmp_path: Path) -> None:
    """`--weights cached`: the endpoint names the model at a pinned commit; the emulator "downloads" it
    (the stack's tiny model, published under its served name) into its RunPod-like cache before the
    worker starts, and the worker checks that snapshot is there before taking the job."""
    info = local_stack.info
    key = info.api_key.get_secret_value()
    commit = "5a" * 20
    env = notus_env(info.url, key) | {"NOTUS_BUILD__REVISION": commit}
    args = ("deploy", "cached", "--image", "registry.test/notus:code-only", "--weights", "cached")
    result = notus(*args, "--max-model-len", "4096", "--yes", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    endpoint_id = json.loads((tmp_path / ".notus" / "deployments.json").read_text())["deployments"]["cached"][
        "endpoint_id"
    ]
    try:
        ask(local_stack, endpoint_id)
        repo = "models--" + info.served_model_name.replace("/", "--")
        snapshot = local_stack.cached_models.root / repo / "snapshots" / commit
        assert (snapshot / "config.json").is_file()
        logs = "".join(p.read_text() for p in (info.log_dir / endpoint_id).glob("worker-*.log"))
        assert f"at {snapshot}" in logs  # the worker found the pinned snapshot in the cache
    finally:
        down = notus("down", "cached", "--yes", cwd=tmp_path, env=env)
        assert down.returncode == 0, down.stderr
