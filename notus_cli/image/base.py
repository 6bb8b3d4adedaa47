"""What the base image's config says about where the image can run: its CUDA version and its platform.

CUDA: vLLM's image (vllm-project/vllm docker/Dockerfile) builds its final stage `FROM
nvidia/cuda:${CUDA_VERSION}-...-ubuntu22.04`, and NVIDIA's CUDA images (gitlab.com/nvidia/
container-images/cuda, dist/<version>/.../base/Dockerfile) set `ENV CUDA_VERSION` (e.g. 12.8.1),
`NVIDIA_REQUIRE_CUDA` ("cuda>=12.8 brand=..."), and `NV_CUDA_CUDART_VERSION` (e.g. 12.8.90-1);
images from before 2021 also had a `com.nvidia.cuda.version` label. vLLM's own `ARG CUDA_VERSION`
is not kept in the image config, so the nvidia ENV is what there is. Deploy turns the major.minor
into RunPod's driver constraint (`minCudaVersion`), so workers never land on a host whose driver
is older than the image's CUDA.

Platform: RunPod's serverless GPU hosts are x86-64, so the real image is linux/amd64 wherever it
is built; an arm64 base or builder is refused with a message instead of a silently wrong image.
"""

from __future__ import annotations

import re
from typing import Any

from notus_cli.errors import BuildError
from notus_cli.image.events import Reporter, Warn

RUNPOD_PLATFORM = "linux/amd64"
LABEL_CUDA = "ai.notus.cuda.version"
LABEL_PLATFORM = "ai.notus.platform"
_CUDA_ENV = ("CUDA_VERSION", "NVIDIA_REQUIRE_CUDA", "NV_CUDA_CUDART_VERSION", "NV_CUDA_LIB_VERSION")
_CUDA_LABELS = ("com.nvidia.cuda.version",)
_MAJOR_MINOR = re.compile(r"(?:cuda>=)?(\d{1,2})\.(\d{1,2})", re.IGNORECASE)
# Docker reports machine names in Go's GOARCH terms; `uname -m` names are mapped to them.
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def cuda_version(image: dict[str, Any]) -> str | None:
    """The CUDA version ("12.8") an image was built for, from its config's env or labels; None if it says none."""
    config = image.get("Config") or {}
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    labels = config.get("Labels") or {}
    candidates = [env.get(name) for name in _CUDA_ENV] + [labels.get(name) for name in _CUDA_LABELS]
    for value in candidates:
        if value and (match := _MAJOR_MINOR.match(value.strip())):
            return f"{int(match[1])}.{int(match[2])}"
    return None


def image_platform(image: dict[str, Any]) -> str:
    """The "os/arch" of an inspected image (e.g. "linux/amd64")."""
    arch = str(image.get("Architecture") or "unknown")
    return f"{image.get('Os') or 'linux'}/{_ARCH.get(arch, arch)}"


def daemon_platform(version: dict[str, Any]) -> str:
    """The "os/arch" of the Docker daemon, from its /version answer (what its RUN steps execute natively)."""
    arch = str(version.get("Arch") or "unknown")
    return f"{version.get('Os') or 'linux'}/{_ARCH.get(arch, arch)}"


def check_platform(target: str, *, base: str, daemon: str, base_image: str) -> str | None:
    """Refuse a build whose result would not be `target`; return a warning when it works only by emulation.

    Raises BuildError when the base image is for another platform (its layers would make the image
    that platform, whatever the build is told).
    """
    if base != target:
        raise BuildError(
            f"the base image {base_image} is {base}, but the image must be {target}"
            + (" (RunPod's GPU hosts are x86-64)" if target == RUNPOD_PLATFORM else ""),
            hint=f"get the {target} variant: docker pull --platform {target} {base_image}",
        )
    if daemon != target:
        return (
            f"this Docker daemon runs {daemon}: the {target} build's RUN steps need emulation (QEMU/binfmt), "
            "which is slow; building on an x86-64 machine is faster"
        )
    return None


def emulation_hint(target: str, daemon: str) -> str:
    """What to tell someone whose builder cannot run the target platform's programs."""
    return (
        f"this Docker daemon runs {daemon} and cannot run {target} programs without emulation: "
        "install QEMU binfmt handlers (e.g. `docker run --privileged --rm tonistiigi/binfmt --install amd64`, "
        "or enable Rosetta/QEMU in Docker Desktop), or build on an x86-64 machine"
    )


def check_base(base: dict[str, Any], *, target: str, daemon: str, base_image: str, report: Reporter) -> str | None:
    """Check the base image can make a `target` image; return its CUDA version (None, with a warning, if unknown).

    Raises BuildError for a base image of another platform.
    """
    warning = check_platform(target, base=image_platform(base), daemon=daemon, base_image=base_image)
    if warning:
        report(Warn(warning))
    cuda = cuda_version(base)
    if cuda is None:
        report(
            Warn(
                f"the base image {base_image} does not say which CUDA it was built for (no CUDA_VERSION, "
                "NVIDIA_REQUIRE_CUDA or NV_CUDA_* in its env): deploy cannot set a driver constraint"
            )
        )
    return cuda


def base_labels(*, cuda_version: str | None, platform: str) -> dict[str, str]:
    """The labels that say where the image runs: the CUDA it needs (if known) and its platform."""
    return {LABEL_PLATFORM: platform} | ({LABEL_CUDA: cuda_version} if cuda_version else {})
