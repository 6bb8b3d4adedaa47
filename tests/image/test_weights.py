"""Model files are checked and hashed before any build: real files on disk, no daemon needed."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from notus_cli.errors import ModelError
from notus_cli.image.weights import local_weights, manifest_bytes, weight_layers


@pytest.fixture
def model(tiny_model: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    return copy


def sharded(model: Path) -> Path:
    """Turn the tiny model into an index plus two shards, the layout of real checkpoints."""
    whole = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").unlink()
    (model / "model-00001-of-00002.safetensors").write_bytes(whole)
    (model / "model-00002-of-00002.safetensors").write_bytes(whole)
    shards = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    index = {"metadata": {}, "weight_map": shards}
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    return model


def test_manifest_lists_every_serving_file_with_its_sha256(model: Path, tmp_path: Path) -> None:
    (model / "notes.txt").write_text("not served")
    weights = local_weights(model, model_id="org/tiny", cache_dir=tmp_path / "cache")
    manifest = json.loads(weights.manifest)
    names = [entry["path"] for entry in manifest["files"]]
    assert not {"notes.txt", "README.md"} & set(names)
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= set(names)
    for entry in manifest["files"]:
        data = (model / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["size"] == len(data)
    assert weights.manifest_digest == "sha256:" + hashlib.sha256(weights.manifest).hexdigest()
    assert weights.revision == "local"


def test_manifest_is_deterministic_and_the_hash_cache_notices_changes(model: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = local_weights(model, model_id="org/tiny", cache_dir=cache)
    assert (cache / "hashes.json").exists()
    again = local_weights(model, model_id="org/tiny", cache_dir=cache)
    assert again.manifest == first.manifest == manifest_bytes(first.files)
    (model / "generation_config.json").write_text('{"bos_token_id": 1}')  # new size, new mtime
    changed = local_weights(model, model_id="org/tiny", cache_dir=cache)
    assert changed.manifest_digest != first.manifest_digest


def test_sharded_model_with_every_shard_passes(model: Path, tmp_path: Path) -> None:
    weights = local_weights(sharded(model), model_id="org/tiny", cache_dir=tmp_path / "cache")
    assert {f.name for f in weights.files} >= {"model.safetensors.index.json", "model-00002-of-00002.safetensors"}


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda m: shutil.rmtree(m), "does not exist"),
        (lambda m: (m / "config.json").unlink(), "no config.json"),
        (lambda m: (m / "config.json").write_text("{not json"), "config.json"),
        (lambda m: (sharded(m) / "model-00002-of-00002.safetensors").unlink(), "model-00002-of-00002.safetensors"),
        (lambda m: (m / "model.safetensors").write_bytes((m / "model.safetensors").read_bytes()[:-100]), "corrupt"),
        (lambda m: (m / "model.safetensors").write_bytes(b"\xff" * 64), "not a readable safetensors"),
        (lambda m: (m / "model.safetensors").unlink(), "no .safetensors"),
        (lambda m: (m / "tokenizer.json").write_text("{}"), "tokenizer.json"),
        (lambda m: (m / "tokenizer.json").unlink(), "no tokenizer"),
    ],
    ids=[
        "missing-dir",
        "no-config",
        "bad-config",
        "missing-shard",
        "truncated",
        "garbage",
        "no-weights",
        "bad-tokenizer",
        "no-tokenizer",
    ],
)
def test_broken_models_fail_with_a_message_naming_the_problem(
    model: Path, tmp_path: Path, break_it: object, message: str
) -> None:
    break_it(model)  # type: ignore[operator]
    with pytest.raises(ModelError) as caught:
        local_weights(model, model_id="org/tiny", cache_dir=tmp_path / "cache")
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_weight_layers_are_bounded_small_files_first_and_every_file_in_exactly_one(model: Path, tmp_path: Path) -> None:
    for n in (3, 4, 5):
        (model / f"model-0000{n}-of-00005.safetensors").write_bytes((model / "model.safetensors").read_bytes())
    weights = local_weights(model, model_id="org/tiny", cache_dir=tmp_path / "cache")
    shard = (model / "model.safetensors").stat().st_size
    layers = weight_layers(weights.files, max_bytes=2 * shard + 10)
    assert [layer.name for layer in layers] == ["layer-00", "layer-01", "layer-02"]
    assert layers[0].with_manifest
    assert not any(f.name.endswith(".safetensors") for f in layers[0].files)  # config, tokenizer, template
    assert [len(layer.files) for layer in layers[1:]] == [2, 2]
    assert all(layer.size <= 2 * shard + 10 for layer in layers[1:])
    names = [f.name for layer in layers for f in layer.files]
    assert sorted(names) == sorted(f.name for f in weights.files)  # each once: the manifest still covers all
    assert weight_layers(reversed(weights.files), max_bytes=2 * shard + 10) == layers  # order-independent


def test_a_shard_larger_than_the_bound_gets_a_layer_of_its_own(model: Path, tmp_path: Path) -> None:
    weights = local_weights(sharded(model), model_id="org/tiny", cache_dir=tmp_path / "cache")
    layers = weight_layers(weights.files, max_bytes=1000)
    assert [[f.name for f in layer.files] for layer in layers[1:]] == [
        ["model-00001-of-00002.safetensors"],
        ["model-00002-of-00002.safetensors"],
    ]
