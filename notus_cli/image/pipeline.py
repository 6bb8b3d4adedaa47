"""`notus build`, `notus build --dry-run` and `notus push`, each as one library call.

A build is two daemon builds. Part 1 (dependencies + weights) is keyed by a hash of its inputs
(base image id, wheels, weights manifest, its Dockerfile) and tagged `notus-base:<key>`; when
that tag exists, part 1 is skipped and the weights are not even sent. Part 2 (settings, labels,
code) is small and always built on top. So a code change costs seconds, not a 60 GB upload.

Baked weights go in several layers of bounded size (`weights.weight_layers`), so a pull downloads
them in parallel; cached weights (`--weights cached`) put none in the image: the model id and the
commit RunPod is to cache go into its labels and ENV instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

import worker
from notus_cli.errors import ConfigError, RegistryError
from notus_cli.files import user_cache_dir, write_atomic
from notus_cli.image.base import LABEL_CUDA, base_labels, check_base, cuda_version
from notus_cli.image.context import BuildContext, Entry
from notus_cli.image.dockerfile import (
    LABEL_MANIFEST,
    LABEL_MODEL_ID,
    LABEL_REVISION,
    LABEL_WEIGHTS,
    image_labels,
    render_app,
    render_base,
)
from notus_cli.image.engine import DockerEngine, LayerInfo
from notus_cli.image.events import Phase, Reporter, ignore
from notus_cli.image.hub import HubUnreachable, download_weights, hub_files
from notus_cli.image.pushed_images import PushedImage, record_push
from notus_cli.image.weights import (
    WeightFile,
    WeightLayer,
    Weights,
    check_model_files,
    local_weights,
    serving_files,
    weight_layers,
)
from notus_cli.image.wheels import PythonTarget, fetch_wheels, worker_requirements
from notus_cli.image_reference import ImageRef, image_ref
from notus_cli.registry_credentials import DOCKER_HUB, find_registry_credentials
from notus_cli.settings import BuildSettings, NotusSettings
from notus_cli.words import plural

BASE_REPOSITORY = "notus-base"
TRACE_LABELS = (LABEL_MODEL_ID, LABEL_REVISION, LABEL_MANIFEST, LABEL_WEIGHTS)  # what a push records for deploy


@dataclass(frozen=True)
class BuildRequest:
    """Everything a build needs, resolved from settings and flags by the command."""

    settings: BuildSettings
    cache_dir: Path
    hf_token: SecretStr | None = None
    hf_endpoint: str | None = None  # None: huggingface_hub's default (HF_ENDPOINT)
    code_dir: Path | None = None  # the worker package to bake; None: the installed one

    @property
    def image(self) -> ImageRef:
        return image_ref(self.settings.image, self.settings.tag, self.settings.registry)


@dataclass(frozen=True)
class BuiltImage:
    reference: str
    image_id: str
    base_tag: str
    base_reused: bool
    layers: list[LayerInfo]
    labels: dict[str, str]
    cuda_version: str | None = None  # the base image's, "12.8"; None when it does not say
    size_bytes: int | None = None  # the built image's size as the daemon measures it (uncompressed)
    platform: str | None = None


@dataclass(frozen=True)
class PlannedLayer:
    name: str
    size: int | None  # None: known only once the base image has been asked for its Python
    content: str


@dataclass(frozen=True)
class BuildPlan:
    reference: str
    base_image: str
    layers: list[PlannedLayer]
    labels: dict[str, str]
    dockerfiles: dict[str, str]
    model_files: list[tuple[str, int]] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # what the plan could not check, one line each


def default_cache_dir(settings: BuildSettings) -> Path:
    """Where wheels, probes and file hashes are kept between builds (they are safe to delete)."""
    if settings.cache_dir is not None:
        return settings.cache_dir
    return user_cache_dir()


def build_image(request: BuildRequest, engine: DockerEngine, report: Reporter = ignore) -> BuiltImage:
    """Build and tag the image; returns its id, layers and labels.

    Raises ModelError (model files), BuildError (daemon, base image, a failed step) before or
    instead of tagging anything: a failed build leaves no new tag behind.
    """
    settings = request.settings
    reference = str(request.image)
    cached = _check_weights_mode(settings)
    if settings.model_path is not None:  # seconds, before the daemon is asked for anything
        check_model_files(settings.model_path, serving_files(settings.model_path))
    base = engine.ensure_image(settings.base_image, platform=settings.platform)
    cuda = check_base(
        base, target=settings.platform, daemon=engine.platform(), base_image=settings.base_image, report=report
    )
    target = _probe(engine, base["Id"], settings.base_python, request.cache_dir)
    model = _cached_model(request, report) if cached else _weights(request, report)
    wheels = fetch_wheels(worker_requirements(), target, cache_dir=request.cache_dir, report=report)
    groups = weight_layers(model.files, max_bytes=_layer_bytes(settings)) if isinstance(model, Weights) else []
    base_dockerfile = render_base(
        base_image=settings.base_image,
        python=target.executable,
        pip_wheel=wheels.pip_wheel,
        requirements=wheels.requirements,
        weight_layers=[group.name for group in groups],
    )
    key_source = [base["Id"], wheels.digest, model.manifest_digest, base_dockerfile]
    base_tag = f"{BASE_REPOSITORY}:{hashlib.sha256(json.dumps(key_source).encode()).hexdigest()[:20]}"
    reused = engine.inspect(base_tag) is not None
    if reused:
        report(Phase(f"dependency and weight layers unchanged: reusing {base_tag}"))
    else:
        report(Phase(f"building the dependency and weight layers ({_gib(model.size)} of weights)"))
        entries = [Entry.text("Dockerfile", base_dockerfile)]
        entries += [Entry.file(f"wheels/{p.name}", p) for p in sorted(wheels.directory.glob("*.whl"))]
        entries += _weight_entries(groups, model.manifest if isinstance(model, Weights) else b"")
        engine.build(BuildContext(entries), base_tag, platform=settings.platform)
    labels = image_labels(
        model_id=model.model_id,
        revision=model.revision,
        manifest_digest=model.manifest_digest if isinstance(model, Weights) else None,
        base_image=settings.base_image,
        base_digest=_repo_digest(base),
        weights="cached" if cached else "baked",
    ) | base_labels(cuda_version=cuda, platform=settings.platform)
    app_dockerfile = render_app(
        base_stage=base_tag,
        served_model_name=settings.served_model_name or model.model_id,
        vllm_python=target.executable,
        labels=labels,
        cached=(model.model_id, model.revision) if cached else None,
    )
    report(Phase("building the code layer"))
    image_id = engine.build(
        BuildContext([Entry.text("Dockerfile", app_dockerfile), *_code_entries(request.code_dir)]),
        reference,
        platform=settings.platform,
    )
    layers = engine.layers(reference, skip=engine.history_length(base["Id"]))
    size = int((engine.inspect(reference) or {}).get("Size") or 0) or None
    return BuiltImage(reference, image_id, base_tag, reused, layers, labels, cuda, size, settings.platform)


def plan_build(request: BuildRequest, report: Reporter = ignore) -> BuildPlan:
    """What a build would do, without the daemon: base, layers with expected sizes, labels, Dockerfiles.

    Local model files are checked (not hashed); a Hub model is listed, not downloaded.
    """
    settings = request.settings
    cached = _check_weights_mode(settings)
    unchecked: list[str] = []
    try:
        model_id, revision, files = _model_listing(request, report)
    except HubUnreachable as exc:  # a plan is still useful offline: the weights are what it cannot know
        model_id, revision, files = settings.model_id, settings.revision, []
        unchecked.append(f"{model_id}@{revision} on the Hugging Face Hub (commit, files, sizes): {exc.message}")
    code = _code_entries(request.code_dir)
    requirements = worker_requirements()
    labels = image_labels(
        model_id=model_id,
        revision=revision,
        manifest_digest=None if cached else "sha256:<computed at build time>",
        base_image=settings.base_image,
        base_digest=None,
        weights="cached" if cached else "baked",
    ) | base_labels(cuda_version="<read from the base image at build time>", platform=settings.platform)
    listed = [WeightFile(name, Path(name), size, "") for name, size in files]
    groups = [] if cached or unchecked else weight_layers(listed, max_bytes=_layer_bytes(settings))
    dockerfiles = {
        "base.Dockerfile": render_base(
            base_image=settings.base_image,
            python=settings.base_python,
            pip_wheel="pip-<version>-py3-none-any.whl",
            requirements=requirements,
            weight_layers=[group.name for group in groups],
        ),
        "app.Dockerfile": render_app(
            base_stage=f"{BASE_REPOSITORY}:<key>",
            served_model_name=settings.served_model_name or model_id,
            vllm_python=settings.base_python,
            labels=labels,
            cached=(model_id, revision) if cached else None,
        ),
    }
    layers = [
        PlannedLayer("base image", None, settings.base_image),
        PlannedLayer("worker venv", None, f"{len(requirements)} requirements: {', '.join(requirements)}"),
    ]
    for group in groups:
        extra = " + manifest" if group.with_manifest else ""
        layers.append(PlannedLayer(f"weights {group.name}", group.size, f"{plural(len(group.files), 'file')}{extra}"))
    if unchecked and not cached:
        layers.append(PlannedLayer("weights", None, f"{model_id}@{revision}: not listed (the Hub was not reached)"))
    if cached:
        size = sum(size for _, size in files)
        layers.append(PlannedLayer("weights", 0, f"none: RunPod caches {model_id}@{revision[:12]} ({_gib(size)})"))
    layers.append(PlannedLayer("code", sum(e.size for e in code), f"{len(code)} files of the worker in /opt/notus/app"))
    return BuildPlan(str(request.image), settings.base_image, layers, labels, dockerfiles, files, unchecked)


def push_image(
    ref: ImageRef, engine: DockerEngine, *, settings: NotusSettings, state_dir: Path, report: Reporter = ignore
) -> PushedImage:
    """Push a local image with the registry's credentials (`find_registry_credentials`, the one lookup)
    and remember its digest, CUDA version and size for deploy; raises RegistryError."""
    image = engine.inspect(str(ref))
    if image is None:
        raise RegistryError(f"there is no image {ref} on this Docker daemon", hint="build it first: notus build")
    credentials = find_registry_credentials(ref.registry or DOCKER_HUB, settings)
    report(Phase(f"pushing {ref}" + (f" as {credentials.username} ({credentials.source})" if credentials else "")))
    digest = engine.push(ref, credentials.docker_auth() if credentials else {})  # {}: no second lookup by docker-py
    labels = (image.get("Config") or {}).get("Labels") or {}
    pushed = PushedImage(
        repository=ref.repository,
        tag=ref.tag,
        digest=digest,
        image_id=str(image["Id"]),
        pushed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        labels={k: v for k, v in labels.items() if k in TRACE_LABELS},
        cuda_version=labels.get(LABEL_CUDA) or cuda_version(image),  # an image not built by notus: its env
        size_bytes=int(image.get("Size") or 0) or None,
    )
    record_push(state_dir, pushed)
    return pushed


@dataclass(frozen=True)
class CachedModel:
    """A Hub model RunPod caches on its hosts: only its id and the commit go into the image."""

    model_id: str
    revision: str  # the commit `revision` resolved to
    size: int  # bytes of its serving files on the Hub (what RunPod downloads)
    files: tuple[()] = ()

    @property
    def manifest_digest(self) -> str:
        return f"cached:{self.model_id}@{self.revision}"


def _check_weights_mode(settings: BuildSettings) -> bool:
    """True for cached weights. Raises ConfigError for cached weights from a local directory."""
    if settings.weights_mode == "cached" and settings.model_path is not None:
        raise ConfigError(
            "--weights cached takes the model from the Hugging Face Hub, not from --model-path",
            hint="pass --weights baked to bake the local directory, or drop --model-path",
        )
    return settings.weights_mode == "cached"


def _cached_model(request: BuildRequest, report: Reporter) -> CachedModel:
    settings = request.settings
    report(Phase(f"resolving {settings.model_id}@{settings.revision} on the Hugging Face Hub (cached weights)"))
    token = request.hf_token.get_secret_value() if request.hf_token else None
    commit, remote = hub_files(settings.model_id, revision=settings.revision, token=token, endpoint=request.hf_endpoint)
    return CachedModel(settings.model_id, commit, sum(int(meta.size or 0) for meta in remote.values()))


def _layer_bytes(settings: BuildSettings) -> int:
    return int(settings.weight_layer_gb * 1e9)


def _weight_entries(layers: list[WeightLayer], manifest: bytes) -> list[Entry]:
    """The build context's weights/<layer>/: model/<file> for each file, the manifest in the first."""
    entries = []
    for layer in layers:
        entries += [Entry.file(f"weights/{layer.name}/model/{f.name}", f.source) for f in layer.files]
        if layer.with_manifest:
            entries.append(Entry.text(f"weights/{layer.name}/weights-manifest.json", manifest))
    return entries


def _weights(request: BuildRequest, report: Reporter) -> Weights:
    settings = request.settings
    if settings.model_path is not None:
        return local_weights(
            settings.model_path, model_id=settings.model_id, cache_dir=request.cache_dir, report=report
        )
    token = request.hf_token.get_secret_value() if request.hf_token else None
    return download_weights(
        settings.model_id,
        revision=settings.revision,
        token=token,
        cache_dir=request.cache_dir,
        endpoint=request.hf_endpoint,
        report=report,
    )


def _model_listing(request: BuildRequest, report: Reporter) -> tuple[str, str, list[tuple[str, int]]]:
    settings = request.settings
    if settings.model_path is not None:
        names = serving_files(settings.model_path)
        check_model_files(settings.model_path, names)
        return settings.model_id, "local", [(n, (settings.model_path / n).stat().st_size) for n in names]
    report(Phase(f"listing {settings.model_id}@{settings.revision} on the Hugging Face Hub"))
    token = request.hf_token.get_secret_value() if request.hf_token else None
    commit, remote = hub_files(settings.model_id, revision=settings.revision, token=token, endpoint=request.hf_endpoint)
    return settings.model_id, commit, sorted((name, int(meta.size or 0)) for name, meta in remote.items())


def _probe(engine: DockerEngine, image_id: str, python: str, cache_dir: Path) -> PythonTarget:
    """The base image's Python, asked once per image id and remembered."""
    path = cache_dir / "probes" / f"{hashlib.sha256(f'{image_id} {python}'.encode()).hexdigest()[:20]}.json"
    if path.exists():
        return PythonTarget(**json.loads(path.read_text()))
    target = engine.probe_python(image_id, python)
    write_atomic(path, json.dumps(target.__dict__))  # a build killed mid-write leaves no half a probe
    return target


def _code_entries(code_dir: Path | None) -> list[Entry]:
    """The worker package, the code layer's whole content (the worker never imports notus_cli)."""
    root = code_dir or Path(worker.__file__).parent
    return [Entry.file(f"app/worker/{p.relative_to(root).as_posix()}", p) for p in sorted(root.rglob("*.py"))]


def _repo_digest(image: dict[str, Any]) -> str | None:
    digests = image.get("RepoDigests") or []
    return str(digests[0]).rsplit("@", 1)[1] if digests else None


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"
