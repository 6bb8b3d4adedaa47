"""`notus build` against a real dockerd: what ends up in the image, in which layers, and what never does."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import docker
import pytest

import worker
from notus_cli.errors import BuildError
from notus_cli.image.context import BuildContext, Entry
from notus_cli.image.engine import DockerEngine
from notus_cli.image.events import Event, Progress
from notus_cli.image.pipeline import BuildRequest, build_image
from notus_cli.settings import BuildSettings
from testbed.docker import Dockerd
from tests.image.conftest import Cli

pytestmark = pytest.mark.docker

HF_TOKEN = "hf_buildTimeSecretThatMustNotLeak42"


@dataclass
class Built:
    reference: str
    result: dict[str, Any]
    image: dict[str, Any]
    history: list[dict[str, Any]]  # oldest first
    files: dict[str, dict[str, bytes]]  # layer diff id -> path -> content (regular files only)
    layer_order: list[str]  # diff ids, oldest first
    saved: bytes  # `docker save` output


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
    dockerd: Dockerd,
    docker_api: docker.APIClient,
    base_image: str,
    build_cache: Path,
    tiny_model: Path,
) -> Built:
    """One build through the CLI, with an HF token in its environment, saved and unpacked for inspection."""
    project = tmp_path_factory.mktemp("project")
    cli = Cli(project, {"DOCKER_HOST": dockerd.host, "NOTUS_BUILD__CACHE_DIR": str(build_cache)})
    result = cli(
        "build", "--model-path", str(tiny_model), "--base-image", base_image, "--image", "notus-test/app",
        "--tag", "t1", "--model-id", "acme/tiny", "--json", env={"HF_TOKEN": HF_TOKEN},
    )  # fmt: skip
    assert result.code == 0, result.stderr
    api = docker_api
    reference = "notus-test/app:t1"
    saved = b"".join(api.get_image(reference))
    files, order = _layers(saved)
    return Built(
        reference=reference,
        result=json.loads(result.stdout),
        image=api.inspect_image(reference),
        history=list(reversed(api.history(reference))),
        files=files,
        layer_order=order,
        saved=saved,
    )


def _layers(saved: bytes) -> tuple[dict[str, dict[str, bytes]], list[str]]:
    files: dict[str, dict[str, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        for layer in manifest["Layers"]:
            raw = outer.extractfile(layer).read()  # type: ignore[union-attr]
            diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
            with tarfile.open(fileobj=io.BytesIO(raw)) as inner:
                members = [m for m in inner.getmembers() if m.isfile()]
                files[diff_id] = {m.name: inner.extractfile(m).read() for m in members}  # type: ignore[union-attr]
    return files, list(files)


def test_labels_trace_the_image_to_its_model_and_weights(built: Built) -> None:
    labels = built.image["Config"]["Labels"]
    assert labels["ai.notus.model.id"] == "acme/tiny"
    assert labels["ai.notus.model.revision"] == "local"
    assert labels["ai.notus.version"] == labels["org.opencontainers.image.version"]
    assert labels["org.opencontainers.image.base.name"] == "notus-test/base:bookworm"
    manifest = next(
        f["opt/notus/weights-manifest.json"] for f in built.files.values() if "opt/notus/weights-manifest.json" in f
    )
    assert labels["ai.notus.model.manifest-digest"] == "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert built.result["labels"] == {k: v for k, v in labels.items() if k in built.result["labels"]}


def test_baked_settings_and_entrypoint_need_no_network_or_token(built: Built) -> None:
    config = built.image["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["NOTUS_MODEL"] == "/opt/notus/model"
    assert env["NOTUS_SERVED_MODEL_NAME"] == "acme/tiny"
    assert env["NOTUS_VLLM_PYTHON"] == "/usr/bin/python3"  # the base image's Python, found by the probe
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert config["Entrypoint"] == ["/opt/notus/venv/bin/python", "-m", "worker"]


def test_layer_order_weights_in_layers_then_a_small_code_layer_last(built: Built, tiny_model: Path) -> None:
    sized = [h for h in built.history if h["Size"] > 0]
    *_, venv, small_files, shards, code = sized
    assert "/opt/notus/venv" in venv["CreatedBy"]
    assert "/opt/notus/" in small_files["CreatedBy"]  # config, tokenizer and manifest first
    assert "/opt/notus/" in shards["CreatedBy"]
    assert "/opt/notus/app/" in code["CreatedBy"]
    assert code["Size"] < 256 * 1024
    first, second = built.files[built.layer_order[-3]], built.files[built.layer_order[-2]]
    code_layer = built.files[built.layer_order[-1]]
    model_files = {p.name for p in tiny_model.iterdir() if p.name != "README.md"}
    assert set(second) == {"opt/notus/model/model.safetensors"}
    assert {p.removeprefix("opt/notus/model/") for p in first if p.startswith("opt/notus/model/")} == model_files - {
        "model.safetensors"
    }
    assert "opt/notus/weights-manifest.json" in first
    worker_files = {
        p.relative_to(Path(worker.__file__).parent).as_posix() for p in Path(worker.__file__).parent.rglob("*.py")
    }
    assert {p.removeprefix("opt/notus/app/worker/") for p in code_layer} == worker_files
    assert any(p.startswith("opt/notus/venv/") for p in built.files[built.layer_order[-4]])


def test_manifest_hashes_match_the_files_in_the_image(built: Built) -> None:
    everything = {path: data for layer in built.files.values() for path, data in layer.items()}
    manifest = json.loads(everything["opt/notus/weights-manifest.json"])
    assert manifest["files"]
    for entry in manifest["files"]:
        data = everything[f"opt/notus/model/{entry['path']}"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["size"]


def test_the_hf_token_is_in_no_layer_history_or_config(built: Built) -> None:
    assert HF_TOKEN.encode() not in built.saved  # layers, image config, history: all of `docker save`
    assert HF_TOKEN not in json.dumps(built.image)
    assert HF_TOKEN not in json.dumps(built.history)


@pytest.fixture
def code_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "worker"
    shutil.copytree(Path(worker.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_a_code_change_rebuilds_only_the_code_layer_without_resending_weights(
    docker_api: docker.APIClient, base_image: str, build_cache: Path, tiny_model: Path, code_copy: Path
) -> None:
    settings = BuildSettings(model_path=tiny_model, base_image=base_image, image="notus-test/cache", tag="v1")
    request = BuildRequest(settings, build_cache, code_dir=code_copy)
    build_image(request, DockerEngine(docker_api))
    (code_copy / "handler.py").write_text((code_copy / "handler.py").read_text() + "\n# a code-only change\n")
    events: list[Event] = []
    second = build_image(
        replace(request, settings=settings.model_copy(update={"tag": "v2"})),
        DockerEngine(docker_api, events.append),
        events.append,
    )
    assert second.base_reused
    sent = [e.total for e in events if isinstance(e, Progress) and e.task == "sending context"]
    assert sent
    assert max(s or 0 for s in sent) < 256 * 1024  # only the Dockerfile and the worker code went to the daemon
    first_layers = docker_api.inspect_image("notus-test/cache:v1")["RootFS"]["Layers"]
    second_layers = docker_api.inspect_image("notus-test/cache:v2")["RootFS"]["Layers"]
    assert first_layers[:-1] == second_layers[:-1]  # base, venv and weights layers: the very same
    assert first_layers[-1] != second_layers[-1]


def test_dry_run_prints_the_plan_without_a_daemon(cli: Cli, tiny_model: Path) -> None:
    result = cli("build", "--model-path", str(tiny_model), "--dry-run", "--json")
    assert result.code == 0, result.stderr
    plan = json.loads(result.stdout)
    weights = [layer for layer in plan["layers"] if layer["name"].startswith("weights ")]
    assert [layer["name"] for layer in weights] == ["weights layer-00", "weights layer-01"]
    model_bytes = sum(p.stat().st_size for p in tiny_model.iterdir() if p.name != "README.md")
    assert sum(w["size"] for w in weights) == model_bytes
    assert plan["base_image"] == "vllm/vllm-openai:v0.32.0"
    assert "COPY weights/layer-00/ /opt/notus/" in plan["dockerfiles"]["base.Dockerfile"]
    assert "COPY weights/layer-01/ /opt/notus/" in plan["dockerfiles"]["base.Dockerfile"]
    assert 'ENTRYPOINT ["/opt/notus/venv/bin/python", "-m", "worker"]' in plan["dockerfiles"]["app.Dockerfile"]
    text = cli("build", "--model-path", str(tiny_model), "--dry-run")
    assert text.code == 0
    assert "Dry run" in text.stderr
    assert "ai.notus.model.id" in text.stdout


@pytest.fixture
def broken_models(tiny_model: Path, tmp_path: Path) -> dict[str, Path]:
    no_config = tmp_path / "no-config"
    shutil.copytree(tiny_model, no_config)
    (no_config / "config.json").unlink()
    missing_shard = tmp_path / "missing-shard"
    shutil.copytree(tiny_model, missing_shard)
    (missing_shard / "model.safetensors").rename(missing_shard / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (missing_shard / "model.safetensors.index.json").write_text(json.dumps(index))
    return {"no-config": no_config, "missing-shard": missing_shard, "missing-dir": tmp_path / "nowhere"}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-dir", "does not exist"),
        ("no-config", "no config.json"),
        ("missing-shard", "model-00002-of-00002.safetensors"),
        ("unknown-base", "notus-test/no-such-base:1 is not on this daemon"),
        ("no-daemon", "cannot reach the Docker daemon"),
        ("bad-name", "--image: 'Notus-Test/BAD' is not valid"),
    ],
)
def test_bad_inputs_give_one_line_errors_and_leave_nothing_tagged(
    docker_cli: Cli,
    docker_api: docker.APIClient,
    broken_models: dict[str, Path],
    tiny_model: Path,
    case: str,
    expected: str,
) -> None:
    args = [
        "build",
        "--model-path",
        str(broken_models.get(case, tiny_model)),
        "--image",
        "notus-test/bad",
        "--tag",
        case,
    ]
    env: dict[str, str] = {}
    if case == "unknown-base":
        args += ["--base-image", "notus-test/no-such-base:1"]
    if case == "no-daemon":
        env["DOCKER_HOST"] = f"unix://{docker_cli.project}/nothing-here.sock"
    if case == "bad-name":
        args[args.index("notus-test/bad")] = "Notus-Test/BAD"
    result = docker_cli(*args, env=env)
    assert result.code != 0
    lines = result.error_lines
    assert lines[0].startswith("Error: ")
    assert expected in lines[0]
    assert len(lines) <= 2  # the error, then at most a hint
    assert "Traceback" not in result.stderr
    assert docker_api.images(name="notus-test/bad") == []


def test_a_failed_step_names_the_step_and_its_last_lines(docker_api: docker.APIClient, base_image: str) -> None:
    dockerfile = f"FROM {base_image}\nRUN echo preparing && echo the-last-words && exit 3\n"
    with pytest.raises(BuildError) as caught:
        DockerEngine(docker_api).build(BuildContext([Entry.text("Dockerfile", dockerfile)]), "notus-test/failing:1")
    message = caught.value.message
    assert message.startswith("step 2/2 (RUN echo preparing && echo the-last-words && exit 3) failed")
    assert "returned a non-zero code: 3" in message
    assert message.rstrip().endswith("the-last-words")  # the tail of its output ends the message
    assert docker_api.images(name="notus-test/failing") == []
