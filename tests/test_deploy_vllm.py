"""`notus deploy` to `notus serve`'s stack, then a chat request answered by the real tiny vLLM (CPU build).

RunPod's control plane is the emulator's (RunPod cannot be reached from here); the deployed endpoint's
worker is a real `python -m worker` process the emulator starts for it, talking to the session's vLLM.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from notus_cli.serve.stack import LocalStack
from tests.support.control import notus, notus_env

pytestmark = pytest.mark.vllm


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
    request = {"input": {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}}
    response = httpx.post(
        f"{info.api_base}/{endpoint_id}/runsync",
        json=request,
        headers={"Authorization": f"Bearer {key}"},
        timeout=180,
    ).json()
    assert response["status"] == "COMPLETED", response
    (completion,) = response["output"]
    assert completion["object"] == "chat.completion"
    assert completion["model"] == info.served_model_name
    assert response["delayTime"] > 0  # a worker had to start for it (scale from zero)
    down = notus("down", "chat", "--yes", cwd=tmp_path, env=env)
    assert down.returncode == 0, down.stderr
    assert key not in result.stdout + result.stderr + down.stdout + down.stderr
