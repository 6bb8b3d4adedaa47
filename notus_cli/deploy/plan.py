"""What `notus deploy` wants on RunPod, how that differs from what is there, and what it may cost.

A deploy is described by a `DeployRequest` (flags over notus.toml, already resolved). `plan_deploy`
checks that the model fits each GPU pool, derives the worker settings from the fit (tensor
parallelism, max model length, concurrency), builds the template and the full endpoint spec, and
compares them with what RunPod has, so applying the plan twice changes nothing the second time.

`saveEndpoint` is a full replace, so an update carries over what Notus does not set (network
volumes, CUDA filters, cached models, the endpoint's `type`: `CARRIED_FIELDS`) from the endpoint as
RunPod has it, and `workersStandby` is part of the spec only where RunPod's schema declares it (`standby`).

The endpoint's type (queue or load balancing) and what follows from it are in endpoint_type.py.

Templates are named `<deployment>__<image tag or digest>-<hash of their content>`: a new image (or
new worker settings) gives a new template, which the endpoint is switched to with
`updateEndpointTemplate` (a rolling release); the `__` keeps one deployment's templates apart from
another's, so `notus down` can find them all.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from notus_cli.deploy.endpoint_type import lb_env, resolve_type, scaler_for
from notus_cli.deploy.fits import check_fits, fit_pools
from notus_cli.errors import ConfigError
from notus_cli.model.fit import Fit, weights_bytes
from notus_cli.model.shape import NEMOTRON_3_NANO, ModelShape
from notus_cli.registry_credentials import RegistryCredentials
from notus_cli.runpod.control import (
    CARRIED_FIELDS,
    ENDPOINT_TYPES,
    ControlPlane,
    EndpointInfo,
    EndpointInput,
    EndpointKind,
    EnvVar,
    FlashBootType,
    ScalerType,
    Template,
    TemplateInput,
)
from notus_cli.runpod.gpus import GpuPool

DEFAULT_MAX_MODEL_LEN = 32768
MAX_NUM_SEQS_CAP = 1024  # vLLM 0.32's default on H100/H200/B200 (256 on smaller cards); memory bounds it first
BASE_IMAGE_GB = 20  # vLLM's image and the worker's environment, without the weights (when the size is unknown)
DISK_HEADROOM = 1.2
GB = 10**9
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{2,39}$")  # RunPod: name is String!, at least 3 (runpodctl AGENTS.md)
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SCALERS: dict[str, ScalerType] = {"delay": "QUEUE_DELAY", "requests": "REQUEST_COUNT"}
# Endpoint fields a deploy sets; a difference in any of them means saveEndpoint with the full spec.
SETTINGS = (
    "gpu_ids",
    "gpu_count",
    "workers_min",
    "workers_max",
    "idle_timeout",
    "scaler_type",
    "scaler_value",
    "flash_boot_type",
    "locations",
    "model_references",
    "min_cuda_version",
)
HF_MODEL_URL = "https://huggingface.co"


@dataclass(frozen=True)
class DeployRequest:
    name: str
    image: str
    model_id: str
    pools: tuple[GpuPool, ...]
    endpoint_type: EndpointKind | None = None  # None: as RunPod has the endpoint, else queue
    gpu_count: int = 1
    workers_min: int = 0
    workers_max: int = 1
    idle_timeout: int = 5
    scaler: str | None = None  # delay | requests; None: the type's (delay for queue, requests for lb)
    scaler_value: int = 4
    flashboot: bool = True
    locations: str | None = None
    max_model_len: int | None = None
    container_disk_gb: int | None = None
    env: tuple[tuple[str, str], ...] = ()
    model_revision: str | None = None
    model_dir: Path | None = None  # read the model's config.json from here, when at hand
    weights: str = "baked"  # or "cached": RunPod caches model_id at model_revision (a commit) for the workers
    registry: RegistryCredentials | None = None  # for a private image: RunPod pulls it with these
    cuda_version: str | None = None  # the base image's CUDA ("12.8"): hosts with an older driver are excluded
    image_size_bytes: int | None = None  # the pushed image's measured size (weights included: they are a layer)


@dataclass(frozen=True)
class Change:
    action: str  # create template | create endpoint | update endpoint | rolling release
    detail: str


@dataclass(frozen=True)
class DeployPlan:
    request: DeployRequest
    template: TemplateInput
    endpoint: EndpointInput  # the full spec; id and templateId are those of RunPod's when the endpoint exists
    existing: EndpointInfo | None
    existing_template: Template | None  # a template with the wanted name, already on RunPod
    current_template: Template | None  # the template the endpoint runs now
    changes: tuple[Change, ...]
    fits: tuple[tuple[GpuPool, Fit], ...]
    max_model_len: int
    max_num_seqs: int
    notes: tuple[str, ...] = field(default=())
    endpoint_type: EndpointKind = "queue"

    @property
    def usd_per_hour(self) -> tuple[float, float]:
        """Cheapest and dearest $/hour of one running flex worker across the chosen pools.

        RunPod publishes only the flex rate; active (always-on) workers are discounted through its
        sales team (runpod/docs serverless/pricing.mdx), so the flex rate is their upper bound.
        """
        prices = [pool.usd_per_hour * self.request.gpu_count for pool in self.request.pools]
        return min(prices), max(prices)

    @property
    def max_usd_per_hour(self) -> float:
        """The most the endpoint can cost per hour: every allowed worker busy on the dearest pool."""
        return self.usd_per_hour[1] * self.request.workers_max


def check_name(name: str) -> str:
    """Raises ConfigError unless `name` is a valid deployment name."""
    if not NAME.match(name):
        raise ConfigError(
            f"NAME '{name}' is not a valid deployment name",
            hint="use 3 to 40 lowercase letters, digits and '-', starting with a letter or digit",
        )
    return name


def parse_env(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    """`K=V` strings (V may hold anything, '=' and newlines too). Raises ConfigError naming --env."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not ENV_KEY.match(key):
            raise ConfigError(f"--env '{pair[:40]}' is not KEY=VALUE", hint="KEY: letters, digits and '_'")
        parsed[key] = value
    return tuple(parsed.items())


def model_shape(request: DeployRequest) -> ModelShape:
    if request.model_dir is not None and (request.model_dir / "config.json").is_file():
        return ModelShape.from_dir(request.model_dir)
    return NEMOTRON_3_NANO


def plan_on(control: ControlPlane, request: DeployRequest) -> DeployPlan:
    """The plan against what `control` runs, with the disputed fields its schema declares (read queries only)."""
    return plan_deploy(
        request,
        endpoints=control.endpoints(),
        templates=control.templates(),
        standby=control.declares("EndpointInput", "workersStandby"),
        types=control.declares("EndpointInput", "type"),
    )


def plan_deploy(
    request: DeployRequest,
    *,
    endpoints: list[EndpointInfo],
    templates: list[Template],
    standby: bool = False,
    types: bool = True,
) -> DeployPlan:
    """The plan against RunPod's current endpoints and templates. Raises ConfigError if the model does not
    fit, or the type cannot be had (module docstring).

    `standby`: RunPod's EndpointInput declares workersStandby (ControlPlane.declares), so it is set too;
    `types`: it declares `type`, without which no LB endpoint is planned.
    """
    shape = model_shape(request)
    max_model_len = request.max_model_len or min(DEFAULT_MAX_MODEL_LEN, shape.max_position_embeddings)
    if max_model_len > shape.max_position_embeddings:
        raise ConfigError(
            f"--max-model-len {max_model_len} exceeds the model's context ({shape.max_position_embeddings} tokens)",
            hint=f"use at most {shape.max_position_embeddings}",
        )
    fits = fit_pools(request.pools, shape=shape, gpu_count=request.gpu_count, max_model_len=max_model_len)
    fp8 = "fp8" in request.model_id.lower()
    notes = check_fits(fits, request.gpu_count, fp8=fp8, shape=shape, max_model_len=max_model_len)
    max_num_seqs = max(1, min(MAX_NUM_SEQS_CAP, *(fit.max_sequences for _pool, fit in fits)))
    existing = next((e for e in endpoints if e.name == request.name), None)
    kind = resolve_type(request.name, request.endpoint_type, existing, types=types)
    scaler = scaler_for(request.scaler, kind)
    template = _template(request, shape, kind, fp8=fp8, max_model_len=max_model_len, max_num_seqs=max_num_seqs)
    by_name = {t.name: t for t in templates}
    current = next((t for t in templates if existing and t.id == existing.template_id), None)
    carried = {name: getattr(existing, name) for name in CARRIED_FIELDS} if existing else {}
    if request.cuda_version:
        carried["min_cuda_version"] = cuda_floor(request.cuda_version)
    if request.weights == "cached":  # baked: whatever the endpoint has is carried over, not cleared
        carried["model_references"] = (model_reference(request.model_id, request.model_revision or "main"),)
    if kind == "lb":  # a queue endpoint keeps what it reads back (QB, or none: RunPod's default)
        carried["type"] = ENDPOINT_TYPES["lb"]
    endpoint = EndpointInput(
        **carried,
        id=existing.id if existing else None,
        name=request.name,
        template_id=existing.template_id if existing else "",
        gpu_ids=",".join(pool.id for pool in request.pools),
        gpu_count=request.gpu_count,
        workers_min=request.workers_min,
        workers_max=request.workers_max,
        workers_standby=request.workers_min if standby else None,
        idle_timeout=request.idle_timeout,
        scaler_type=SCALERS[scaler],
        scaler_value=request.scaler_value,
        flash_boot_type=_flashboot(request.flashboot),
        locations=request.locations,
    )
    changes = _diff(template, endpoint, existing, current, by_name.get(template.name), standby=standby)
    return DeployPlan(
        request=request,
        template=template,
        endpoint=endpoint,
        existing=existing,
        existing_template=by_name.get(template.name),
        current_template=current,
        changes=changes,
        fits=fits,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        notes=notes + _cuda_notes(endpoint),
        endpoint_type=kind,
    )


def model_reference(model_id: str, revision: str) -> str:
    """RunPod's cached-model reference (runpodctl `--model-reference`: https://huggingface.co/<org>/<model>:<ref>)."""
    return f"{HF_MODEL_URL}/{model_id}:{revision}"


def _cached_env(request: DeployRequest) -> dict[str, str]:
    """What the worker needs to find a cached model (see worker/model_cache.py); nothing when baked."""
    if request.weights != "cached":
        return {}
    return {
        "NOTUS_WEIGHTS": "cached",
        "NOTUS_MODEL": request.model_id,
        "NOTUS_MODEL_REVISION": str(request.model_revision),
    }


def container_disk_gb(shape: ModelShape, *, fp8: bool, baked: bool = True, image_size_bytes: int | None = None) -> int:
    """Room for the unpacked image with headroom, in whole tens of GB (Nemotron BF16: 100).

    From the pushed image's measured size when known (baked weights are layers of it); else the
    weights plus BASE_IMAGE_GB, a guess at vLLM's image. Cached weights do not count: RunPod keeps
    them on its own volume, not the container disk.
    """
    if image_size_bytes:
        return max(10, math.ceil(image_size_bytes / GB * DISK_HEADROOM / 10) * 10)
    weights_gb = weights_bytes(shape, fp8_experts=fp8) / GB if baked else 0.0
    return max(10, math.ceil((weights_gb + BASE_IMAGE_GB) * DISK_HEADROOM / 10) * 10)


def cuda_floor(version: str) -> str:
    """The major.minor of a CUDA version ("12.8.1" -> "12.8"): minCudaVersion's form (runpodctl serverless create)."""
    parts = version.strip().split(".")
    if len(parts) < 2 or not all(part.isdigit() for part in parts[:2]):
        raise ConfigError(f"the image's CUDA version '{version}' is not MAJOR.MINOR", hint="rebuild with `notus build`")
    return f"{int(parts[0])}.{int(parts[1])}"


def _cuda_notes(endpoint: EndpointInput) -> tuple[str, ...]:
    """A CUDA filter set elsewhere that leaves no host for the image's CUDA floor, in words."""
    if not endpoint.allowed_cuda_versions or not endpoint.min_cuda_version:
        return ()
    floor = _version(endpoint.min_cuda_version)
    allowed = [v.strip() for v in endpoint.allowed_cuda_versions.split(",") if v.strip()]
    if not floor or any(_version(v) >= floor for v in allowed):
        return ()
    return (
        f"the endpoint allows CUDA {', '.join(allowed)} only (set outside Notus) but the image needs "
        f"{endpoint.min_cuda_version} or newer: no host will match until allowedCudaVersions is changed",
    )


def _version(text: str) -> tuple[int, ...]:
    """The leading numeric parts of a version: (12, 8) for 12.8, () if there are none."""
    parts: list[int] = []
    for part in text.strip().split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def registry_auth_name(credentials: RegistryCredentials) -> str:
    """The name Notus gives RunPod's registry auth for these credentials (found again by it)."""
    return f"notus-{credentials.host}-{credentials.username}"[:60]


def template_prefix(name: str) -> str:
    """Every template of deployment `name` starts with this (see the module docstring)."""
    return f"{name}__"


def _template(
    request: DeployRequest,
    shape: ModelShape,
    kind: EndpointKind,
    *,
    fp8: bool,
    max_model_len: int,
    max_num_seqs: int,
) -> TemplateInput:
    env = {
        "NOTUS_MAX_MODEL_LEN": str(max_model_len),
        "NOTUS_MAX_NUM_SEQS": str(max_num_seqs),
        "NOTUS_TENSOR_PARALLEL_SIZE": str(request.gpu_count),
        **lb_env(kind),
        **_cached_env(request),
        **dict(request.env),  # the operator's --env wins
    }
    disk = request.container_disk_gb or container_disk_gb(
        shape, fp8=fp8, baked=request.weights != "cached", image_size_bytes=request.image_size_bytes
    )
    hashed: dict[str, object] = {"image": request.image, "env": env, "disk": disk}
    if request.registry is not None:  # a new credential is a new template (the key is absent without one)
        hashed["registry"] = registry_auth_name(request.registry)
    content = json.dumps(hashed, sort_keys=True)
    digest = hashlib.sha256(content.encode()).hexdigest()[:6]
    return TemplateInput(
        name=f"{template_prefix(request.name)}{_image_label(request.image)}-{digest}",
        image_name=request.image,
        container_disk_in_gb=disk,
        env=tuple(EnvVar(key=key, value=value) for key, value in env.items()),
        is_serverless=True,
        readme=f"Notus: {request.model_id} served by vLLM (deployment {request.name})",
    )


def _image_label(image: str) -> str:
    """The tag, or the first 12 hex digits of the digest, of an image reference."""
    if "@" in image:
        return image.rsplit("@", 1)[1].split(":", 1)[-1][:12]
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return re.sub(r"[^A-Za-z0-9._-]", "-", tag)[:40]


def _flashboot(enabled: bool) -> FlashBootType:
    return "FLASHBOOT" if enabled else "OFF"


def _diff(
    template: TemplateInput,
    endpoint: EndpointInput,
    existing: EndpointInfo | None,
    current: Template | None,
    same_name: Template | None,
    *,
    standby: bool,
) -> tuple[Change, ...]:
    changes: list[Change] = []
    switching = existing is None or current is None or current.name != template.name
    if switching and same_name is None:
        changes.append(Change("create template", f"{template.name} ({template.image_name})"))
    if existing is None:
        changes.append(Change("create endpoint", f"{endpoint.name} ({endpoint.kind}) on {endpoint.gpu_ids}"))
        return tuple(changes)
    differences = [
        f"{field_name}: {getattr(existing, field_name)!r} -> {getattr(endpoint, field_name)!r}"
        for field_name in ((*SETTINGS, "workers_standby") if standby else SETTINGS)
        if getattr(existing, field_name) != getattr(endpoint, field_name)
    ]
    if differences:
        changes.append(Change("update endpoint", "; ".join(differences)))
    if current is None or current.name != template.name:
        was = current.name if current else existing.template_id
        changes.append(Change("rolling release", f"template {was} -> {template.name}"))
    return tuple(changes)
