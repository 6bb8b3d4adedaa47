"""Weights in several image layers, and images with no weights at all (cached), built by a real dockerd.

The Hugging Face Hub is the loopback stand-in of testbed.fake_hub (it cannot be reached
from here); the daemon, the build and the image inspection are real.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from notus_cli.image.engine import DockerEngine
from notus_cli.image.pipeline import BuildRequest, build_image
from notus_cli.settings import BuildSettings
from testbed.fake_hub import FakeHub
from tests.image.conftest import offline_hub

pytestmark = pytest.mark.docker


def layer_files(api: docker.APIClient, reference: str) -> list[dict[str, bytes]]:
    """The regular files of each layer of `reference`, oldest layer first (from `docker save`)."""
    saved = b"".join(api.get_image(reference))
    layers = []
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        for name in json.load(outer.extractfile("manifest.json"))[0]["Layers"]:  # type: ignore[arg-type]
            with tarfile.open(fileobj=io.BytesIO(outer.extractfile(name).read())) as inner:  # type: ignore[union-attr]
                layers.append({m.name: inner.extractfile(m).read() for m in inner.getmembers() if m.isfile()})  # type: ignore[union-attr]
    return layers


@pytest.fixture
def four_shards(tiny_model: Path, tmp_path: Path) -> Path:
    """The tiny model's weights as four shards (copies of its one file; each a whole safetensors file)."""
    model = tmp_path / "sharded"
    shutil.copytree(tiny_model, model)
    whole = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").unlink()
    names = [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
    for name in names:
        (model / name).write_bytes(whole)
    index = {"metadata": {}, "weight_map": {f"t{i}": name for i, name in enumerate(names)}}
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    return model


def test_weights_are_split_into_bounded_layers_with_the_manifest_first(
    docker_api: docker.APIClient, base_image: str, build_cache: Path, four_shards: Path
) -> None:
    shard = (four_shards / "model-00001-of-00004.safetensors").stat().st_size
    bound = 2 * shard + 1000  # two shards per layer
    settings = BuildSettings(
        model_path=four_shards, base_image=base_image, image="notus-test/split", tag="v1", weight_layer_gb=bound / 1e9
    )
    built = build_image(BuildRequest(settings, build_cache), DockerEngine(docker_api))
    layers = layer_files(docker_api, built.reference)
    weight_layers = [layer for layer in layers if any(p.startswith("opt/notus/model/") for p in layer)]
    assert len(weight_layers) == 3  # config/tokenizer/manifest, then two layers of two shards
    first, *shard_layers = weight_layers
    assert "opt/notus/weights-manifest.json" in first
    assert not any(p.endswith(".safetensors") for p in first)
    for layer in shard_layers:
        assert sorted(p.rsplit("/", 1)[1] for p in layer)[0].endswith(".safetensors")
        assert len(layer) == 2
        assert sum(len(data) for data in layer.values()) <= bound
    manifest = json.loads(first["opt/notus/weights-manifest.json"])
    everything = {path: data for layer in weight_layers for path, data in layer.items()}
    assert {f"opt/notus/model/{e['path']}" for e in manifest["files"]} == set(everything) - {
        "opt/notus/weights-manifest.json"
    }
    for entry in manifest["files"]:  # every file's sha256 is still traceable through the one manifest
        assert hashlib.sha256(everything[f"opt/notus/model/{entry['path']}"]).hexdigest() == entry["sha256"]
    labels = built.labels
    digest = "sha256:" + hashlib.sha256(first["opt/notus/weights-manifest.json"]).hexdigest()
    assert labels["ai.notus.model.manifest-digest"] == digest
    assert labels["ai.notus.model.weights"] == "baked"


@pytest.fixture
def hub(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with offline_hub("acme/tiny", tiny_model, tmp_path / "hf-cache", monkeypatch) as server:
        yield server


def test_a_cached_weights_image_holds_no_weights_and_names_the_commit(
    docker_api: docker.APIClient, base_image: str, build_cache: Path, hub: FakeHub
) -> None:
    settings = BuildSettings(model_id="acme/tiny", revision="main", base_image=base_image, image="notus-test/cached")
    built = build_image(BuildRequest(settings, build_cache, hf_endpoint=hub.url), DockerEngine(docker_api))
    assert not [r for r in hub.requests if r.method == "GET" and "/resolve/" in r.path]  # nothing downloaded
    layers = layer_files(docker_api, built.reference)
    assert not any(p.startswith(("opt/notus/model/", "opt/notus/weights-manifest")) for layer in layers for p in layer)
    assert built.labels["ai.notus.model.weights"] == "cached"
    assert built.labels["ai.notus.model.revision"] == hub.commit
    assert "ai.notus.model.manifest-digest" not in built.labels
    env = dict(item.split("=", 1) for item in docker_api.inspect_image(built.reference)["Config"]["Env"])
    assert env["NOTUS_WEIGHTS"] == "cached"
    assert (env["NOTUS_MODEL"], env["NOTUS_MODEL_REVISION"]) == ("acme/tiny", hub.commit)
    assert env["HF_HUB_OFFLINE"] == "1"
