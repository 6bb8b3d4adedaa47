"""RunPod cached models: the worker finds the deployed snapshot, deploy pins it, the emulator models the cache.

RunPod's hosts and the Hugging Face Hub cannot be reached from here: the emulator stands in for
RunPod's control plane and its model cache (a temporary directory laid out like
/runpod-volume/huggingface-cache/hub), with the tiny model as the "downloaded" files. The workers
are real processes; these use the echo handler (the vLLM end-to-end is in test_deploy_vllm.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from notus_cli.emulator import LocalWorkers
from notus_cli.emulator.endpoint import Endpoint
from notus_cli.emulator.models import CachedModels, ModelReference
from notus_cli.serve.vllm import vllm_env
from testbed.control import notus, notus_env, pushed_project
from testbed.emulator import Harness, wait_for
from testbed.vllm import MAX_MODEL_LEN, TEST_VLLM_ARGS, vllm_python
from worker.model_cache import CachedModelMissing, find_snapshot

COMMIT = "1f0e2d3c4b5a69788796a5b4c3d2e1f0a1b2c3d4"
OTHER = "9" * 40
MODEL = "acme/tiny-chat"


def lay_out(root: Path, model_dir: Path, commit: str, *, branch: str | None = "main") -> Path:
    """What RunPod's cache holds after downloading `model_dir` at `commit` (CachedModels, the emulator's)."""
    cache = CachedModels(root, {MODEL: model_dir})
    cache.ensure([f"https://huggingface.co/{MODEL}:{commit}"])
    if branch:
        (root / "models--acme--tiny-chat" / "refs").mkdir(exist_ok=True)
        (root / "models--acme--tiny-chat" / "refs" / branch).write_text(commit)
    return root / "models--acme--tiny-chat" / "snapshots" / commit


def test_the_cache_is_laid_out_like_runpods_and_the_pinned_snapshot_is_found(tiny_model: Path, tmp_path: Path) -> None:
    snapshot = lay_out(tmp_path, tiny_model, COMMIT)
    assert snapshot == tmp_path / "models--acme--tiny-chat" / "snapshots" / COMMIT
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(p.name for p in tiny_model.iterdir() if p.is_file())
    assert find_snapshot(tmp_path, MODEL, COMMIT) == snapshot
    assert find_snapshot(tmp_path, MODEL, "main") == snapshot  # a branch through refs/main


def test_another_revision_in_the_cache_is_refused_naming_the_path(tiny_model: Path, tmp_path: Path) -> None:
    lay_out(tmp_path, tiny_model, OTHER)
    with pytest.raises(CachedModelMissing) as error:
        find_snapshot(tmp_path, MODEL, COMMIT)
    message = str(error.value)
    assert str(tmp_path / "models--acme--tiny-chat" / "snapshots" / COMMIT) in message
    assert OTHER[:12] in message  # what is there instead


def test_a_worker_whose_cache_lacks_the_model_exits_1_naming_where_it_looked(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NOTUS_")},
        "NOTUS_WEIGHTS": "cached",
        "NOTUS_MODEL": MODEL,
        "NOTUS_MODEL_REVISION": COMMIT,
        "NOTUS_MODEL_CACHE": str(tmp_path),
    }
    result = subprocess.run([sys.executable, "-m", "worker"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert str(tmp_path / "models--acme--tiny-chat") in result.stderr
    assert "Traceback" not in result.stderr


def test_cached_weights_need_a_hub_id(tmp_path: Path) -> None:
    env = {**os.environ, "NOTUS_WEIGHTS": "cached", "NOTUS_MODEL": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "worker"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "NOTUS_MODEL" in result.stderr
    assert "org/name" in result.stderr


@pytest.mark.parametrize(
    "text",
    [
        "acme/tiny-chat:main",
        "https://huggingface.co/acme:main",
        "https://huggingface.co/acme/tiny-chat",
        "http://x/y:z",
    ],
)
def test_model_references_must_be_runpods_format(text: str) -> None:
    with pytest.raises(ValueError, match="modelReferences"):
        ModelReference.parse(text)


def test_cached_deploy_pins_the_commit_and_the_emulator_downloads_it_before_the_worker_starts(
    control_emulator: Harness, tiny_model: Path, tmp_path: Path
) -> None:
    harness = control_emulator
    cache = CachedModels(tmp_path / "runpod-volume" / "huggingface-cache" / "hub", {MODEL: tiny_model})
    cache.download_delay = 1.5
    factory = harness.emulator.worker_factory
    assert factory is not None

    def with_cache(endpoint: Endpoint, env: Mapping[str, str]) -> LocalWorkers:
        pool = factory(endpoint, env)
        pool.command = replace(pool.command, cached_models=cache)
        return pool

    harness.emulator.worker_factory = with_cache
    project = pushed_project(tmp_path / "project", "sha256:" + "ab" * 32)
    env = notus_env(harness.url, harness.key) | {"NOTUS_BUILD__MODEL_ID": MODEL, "NOTUS_BUILD__REVISION": COMMIT}
    try:
        args = ("deploy", "cached", "--image", "registry.test/x:v1", "--weights", "cached", "--max-model-len", "4096")
        result = notus(*args, "--yes", "--json", cwd=project, env=env)
        assert result.returncode == 0, result.stderr
        plan = json.loads(result.stdout)
        endpoint_id = plan["deployment"]["endpoint_id"]
        spec = harness.emulator.call(lambda: dict(harness.emulator.control.specs[endpoint_id]))
        assert spec["modelReferences"] == [f"https://huggingface.co/{MODEL}:{COMMIT}"]
        template = harness.emulator.call(lambda: harness.emulator.control.templates[spec["templateId"]])
        template_env = {var["key"]: var["value"] for var in template["env"]}
        assert template_env["NOTUS_WEIGHTS"] == "cached"
        assert (template_env["NOTUS_MODEL"], template_env["NOTUS_MODEL_REVISION"]) == (MODEL, COMMIT)
        with harness.http(endpoint_id) as http:
            job = http.post("/run", json={"input": {"prompt": "hi"}}).json()
            # while the model "downloads", /health counts the worker as initializing, and status says why
            wait_for(lambda: http.get("/health").json()["workers"].get("initializing", 0) >= 1, timeout=30)
            status = notus("status", "cached", "--json", cwd=project, env=env)
            assert status.returncode == 0, status.stderr
            assert "downloads the cached model" in (json.loads(status.stdout)["downloading"] or "")
            done = wait_for(lambda: _finished(http, job["id"]), timeout=60)
            assert done["status"] == "COMPLETED", done
            assert (cache.root / "models--acme--tiny-chat" / "snapshots" / COMMIT / "config.json").is_file()
        again = notus(*args, "--yes", "--json", cwd=project, env=env)  # the same deploy changes nothing
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["done"] == []
    finally:
        harness.emulator.worker_factory = factory
        notus("down", "cached", "--yes", cwd=project, env=env)


def _finished(http: httpx.Client, job_id: str) -> dict[str, object] | None:
    body = http.get(f"/status/{job_id}").json()
    return body if body["status"] in ("COMPLETED", "FAILED") else None


def test_the_emulator_refuses_two_cached_models_on_one_endpoint(control_emulator: Harness, tmp_path: Path) -> None:
    query = (
        "mutation($input: EndpointInput!) { saveEndpoint(input: $input) { id } }",
        {"input": {"name": "two", "templateId": "none", "gpuIds": "AMPERE_80", "modelReferences": ["a", "b"]}},
    )
    body = httpx.post(
        f"{control_emulator.url}/graphql",
        json={"query": query[0], "variables": query[1]},
        headers={"Authorization": f"Bearer {control_emulator.key}"},
    ).json()
    assert "errors" in body


@pytest.mark.vllm
def test_a_worker_runs_vllm_offline_on_the_cached_snapshot(tiny_model: Path, tmp_path: Path) -> None:
    """The container's path for cached weights, minus the GPU: `python -m worker` finds the snapshot in
    a cache laid out like RunPod's, starts its own vLLM (CPU build) on it with the Hub unreachable,
    answers one job, and logs how vLLM's start-up split into model load and warm-up."""
    snapshot = lay_out(tmp_path / "hub", tiny_model, COMMIT)
    env = vllm_env({}) | {
        "NOTUS_VLLM_PYTHON": vllm_python(),
        "NOTUS_MAX_MODEL_LEN": str(MAX_MODEL_LEN),
        "NOTUS_VLLM_ARGS": TEST_VLLM_ARGS,
        "NOTUS_WEIGHTS": "cached",
        "NOTUS_MODEL": MODEL,
        "NOTUS_MODEL_REVISION": COMMIT,
        "NOTUS_MODEL_CACHE": str(tmp_path / "hub"),
        "HF_ENDPOINT": "http://127.0.0.1:9",  # nothing listens: any Hub request would fail
    }
    job = {"input": {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}}
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--test_input", json.dumps(job)],
        capture_output=True,
        text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("NOTUS_")}, **env},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["object"] == "chat.completion"
    assert f"--model {snapshot}" in result.stderr
    assert f"--served-model-name {MODEL}" in result.stderr
    split = next(line for line in result.stderr.splitlines() if "vLLM start-up: model load" in line)
    assert "model load ?" not in split  # vLLM logged its weight-loading time and the worker read it
    assert "engine warm-up ?" not in split
