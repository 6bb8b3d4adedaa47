"""Weights from the Hub: huggingface_hub's real download code against a loopback Hub.

The Hub itself is faked (testbed.fake_hub): it cannot be reached from these machines.
Everything else is real: huggingface_hub's HTTP client, its cache layout and resume logic.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from notus_cli.errors import ModelError
from notus_cli.image.hub import download_weights
from notus_cli.image.pipeline import BuildRequest, plan_build
from notus_cli.image.weights import Weights
from notus_cli.model.safetensors_io import write_safetensors
from notus_cli.settings import BuildSettings
from testbed.fake_hub import FakeHub
from tests.image.conftest import offline_hub

TOKEN = "hf_loopbackTokenNeverLeavesTheHost"


@pytest.fixture
def hub(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    repo = tmp_path / "repo"
    shutil.copytree(tiny_model, repo)
    (repo / "original.bin").write_bytes(b"a format we do not serve")
    with offline_hub("acme/tiny", repo, tmp_path / "hf-cache", monkeypatch) as server:
        yield server


def fetch(hub: FakeHub, tmp_path: Path, *, revision: str = "main", model_id: str = "acme/tiny") -> Weights:
    cache = tmp_path / "notus-cache"
    return download_weights(model_id, revision=revision, token=TOKEN, endpoint=hub.url, cache_dir=cache)


def test_download_resolves_the_revision_and_takes_only_serving_files(hub: FakeHub, tmp_path: Path) -> None:
    weights = fetch(hub, tmp_path)
    assert weights.revision == hub.commit
    names = {f.name for f in weights.files}
    assert {"model.safetensors", "config.json"} <= names
    assert not {"original.bin", "README.md"} & names
    assert not hub.file_gets("original.bin")
    for file in weights.files:
        assert file.sha256 == hashlib.sha256((hub.directory / file.name).read_bytes()).hexdigest()
        assert f"snapshots/{hub.commit}" in str(weights.directory)
    assert {r.authorization for r in hub.requests} == {f"Bearer {TOKEN}"}


def test_a_second_build_reuses_the_cache(hub: FakeHub, tmp_path: Path) -> None:
    fetch(hub, tmp_path)
    gets = len([r for r in hub.requests if r.method == "GET" and "/resolve/" in r.path])
    again = fetch(hub, tmp_path)
    assert len([r for r in hub.requests if r.method == "GET" and "/resolve/" in r.path]) == gets
    assert again.revision == hub.commit


def test_a_dropped_connection_resumes_with_a_range_request(hub: FakeHub, tmp_path: Path) -> None:
    big = hub.directory / "extra.safetensors"  # bigger than huggingface_hub's 10 MB read size
    write_safetensors(big, {"x": np.arange(6_000_000, dtype=np.float32)}, bfloat16=False, metadata={})
    hub.drop_once.add(big.name)
    weights = fetch(hub, tmp_path)
    ranges = [r.range for r in hub.file_gets(big.name)]
    assert len(ranges) == 2
    assert ranges[0] is None
    assert str(ranges[1]).startswith("bytes=")
    shard = next(f for f in weights.files if f.name == big.name)
    assert shard.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()


def test_a_file_that_does_not_match_the_hub_sha256_is_refused(hub: FakeHub, tmp_path: Path) -> None:
    hub.wrong_sha256.add("model.safetensors")
    with pytest.raises(ModelError, match="does not match the Hub"):
        fetch(hub, tmp_path)


def test_unknown_repository_and_revision_are_clear_errors(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="has no revision 'v9'"):
        fetch(hub, tmp_path, revision="v9")
    with pytest.raises(ModelError, match="was not found on the Hub"):
        fetch(hub, tmp_path, model_id="acme/missing")


def test_dry_run_lists_the_hub_files_at_the_resolved_commit_without_downloading(hub: FakeHub, tmp_path: Path) -> None:
    settings = BuildSettings(model_id="acme/tiny", revision="main")
    plan = plan_build(BuildRequest(settings, tmp_path / "cache", hf_endpoint=hub.url))
    assert plan.labels["ai.notus.model.revision"] == hub.commit
    assert dict(plan.model_files)["model.safetensors"] == (hub.directory / "model.safetensors").stat().st_size
    assert "original.bin" not in dict(plan.model_files)
    assert not [r for r in hub.requests if r.method == "GET" and "/resolve/" in r.path]
