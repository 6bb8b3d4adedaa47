"""From flags, notus.toml and the last push to a DeployRequest, and the control-plane client to use.

Flags win over `[deploy]` in notus.toml, which wins over the defaults. The image defaults to the
digest `notus push` recorded, so deploy runs exactly the bytes that were pushed; its labels give
the model id and revision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, cast

from pydantic import SecretStr

from notus_cli.deploy.plan import DeployRequest, check_name, parse_env
from notus_cli.errors import ConfigError
from notus_cli.files import project_state_dir
from notus_cli.image.dockerfile import LABEL_MODEL_ID, LABEL_REVISION, LABEL_WEIGHTS
from notus_cli.image.hub import hub_files
from notus_cli.image.pushed_images import PushedImage, last_pushed
from notus_cli.registry_credentials import credentials_for_image
from notus_cli.runpod.control import EndpointKind
from notus_cli.runpod.gpus import resolve_pools
from notus_cli.runpod.graphql import RunPodGraphQL
from notus_cli.runpod.regions import resolve_locations
from notus_cli.runpod.urls import RUNPOD_API_URL
from notus_cli.runpod_key import find_api_key
from notus_cli.settings import NotusSettings
from worker.model_cache import COMMIT

T = TypeVar("T")
DEFAULT_NAME = "notus"


@dataclass(frozen=True)
class DeployFlags:
    """`notus deploy`'s flags; None means "not given"."""

    name: str | None = None
    endpoint_type: str | None = None  # queue | lb; None: as RunPod has it, else queue
    image: str | None = None
    gpu: str | None = None
    gpu_count: int | None = None
    workers_min: int | None = None
    workers_max: int | None = None
    idle_timeout: int | None = None
    scaler: str | None = None
    scaler_value: int | None = None
    flashboot: bool | None = None
    region: str | None = None
    max_model_len: int | None = None
    env: tuple[str, ...] = ()
    weights: str | None = None  # cached | baked


def deploy_request(settings: NotusSettings, flags: DeployFlags) -> DeployRequest:
    """Raises ConfigError naming the flag or setting that is wrong."""
    d = settings.deploy
    workers_min = _pick(flags.workers_min, d.workers_min)
    workers_max = _pick(flags.workers_max, d.workers_max)
    if workers_min > workers_max:
        raise ConfigError(
            f"--workers-min {workers_min} exceeds --workers-max {workers_max}", hint="raise --workers-max"
        )
    image, pushed = _image(settings, flags.image)
    labels = dict(pushed.labels) if pushed is not None else {}
    model_id = labels.get(LABEL_MODEL_ID, settings.build.model_id)
    weights = _weights(settings, flags.weights, labels)
    revision = labels.get(LABEL_REVISION)
    if weights == "cached":
        revision = _pinned_revision(settings, model_id, revision or settings.build.revision)
    return DeployRequest(
        name=check_name(flags.name or DEFAULT_NAME),
        image=image,
        model_id=model_id,
        model_revision=revision,
        weights=weights,
        pools=tuple(resolve_pools(_pick(flags.gpu, d.gpu))),
        endpoint_type=_endpoint_type(flags.endpoint_type),
        gpu_count=_pick(flags.gpu_count, d.gpu_count),
        workers_min=workers_min,
        workers_max=workers_max,
        idle_timeout=_pick(flags.idle_timeout, d.idle_timeout),
        scaler=_pick(flags.scaler, d.scaler if "scaler" in d.model_fields_set else None),  # None: the type's
        scaler_value=_pick(flags.scaler_value, d.scaler_value),
        flashboot=_pick(flags.flashboot, d.flashboot),
        locations=resolve_locations(_pick(flags.region, d.region)),
        max_model_len=_pick(flags.max_model_len, d.max_model_len),
        container_disk_gb=d.container_disk_gb,
        env=parse_env(list(flags.env)),
        model_dir=settings.build.model_path,
        cuda_version=pushed.cuda_version if pushed is not None else None,
        image_size_bytes=pushed.size_bytes if pushed is not None else None,
        registry=credentials_for_image(image, settings),
    )


def control_plane(settings: NotusSettings, key: SecretStr | None = None) -> RunPodGraphQL:
    """The GraphQL client for the configured URL and key. Raises AuthError when no key is found."""
    return RunPodGraphQL(key or find_api_key(settings).value, url=settings.runpod_graphql_url)


def verify_api_key(settings: NotusSettings, key: SecretStr) -> None:
    """One harmless query; raises AuthError if RunPod rejects `key`."""
    with control_plane(settings, key) as control:
        control.endpoints()


def api_base_url(settings: NotusSettings) -> str | None:
    """The data plane's base URL to remember with a deployment, when it is not RunPod's own."""
    url = settings.runpod_api_url.rstrip("/")
    return None if url == RUNPOD_API_URL else url


def _image(settings: NotusSettings, flag: str | None) -> tuple[str, PushedImage | None]:
    """The image to deploy, and what `notus push` recorded of it (labels, CUDA, size) when it was that push."""
    image = flag or settings.deploy.image
    pushed = last_pushed(project_state_dir())
    if image:
        same = pushed is not None and image in (pushed.reference, f"{pushed.repository}:{pushed.tag}")
        return image, pushed if same else None
    if pushed is None:
        raise ConfigError(
            "no image to deploy", hint="pass --image REF, or build and push one with `notus build --push`"
        )
    return pushed.reference, pushed


def _weights(settings: NotusSettings, flag: str | None, labels: dict[str, str]) -> str:
    """--weights, else how the image was built (its label), else [build] weights, else baked (as before).

    Raises ConfigError for a value other than cached or baked."""
    weights = flag or labels.get(LABEL_WEIGHTS) or settings.build.weights or "baked"
    if weights not in ("cached", "baked"):
        raise ConfigError(f"--weights '{weights}': choose cached or baked", hint="see `notus deploy --help`")
    return weights


def _endpoint_type(flag: str | None) -> EndpointKind | None:
    """--type; raises ConfigError for a value other than queue or lb."""
    if flag is None or flag in ("queue", "lb"):
        return cast("EndpointKind | None", flag)
    raise ConfigError(f"--type '{flag}': choose queue or lb", hint="see `notus deploy --help`")


def _pinned_revision(settings: NotusSettings, model_id: str, revision: str) -> str:
    """The commit a cached model is pinned to: RunPod caches exactly it, and the worker checks it.

    A branch or tag is resolved on the Hugging Face Hub; raises ModelError if that fails."""
    if COMMIT.fullmatch(revision):
        return revision
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    commit, _files = hub_files(model_id, revision=revision, token=token, endpoint=None)
    return commit


def _pick(flag: T | None, setting: T) -> T:
    return setting if flag is None else flag
