"""Reading an inspected base image's config: the CUDA version and the platform, and the platform rules.

The inputs are the shapes `docker inspect` returns for NVIDIA's CUDA images (their env variables as
NVIDIA's CUDA Dockerfiles set them) and for older images that carried a label instead.
"""

from __future__ import annotations

from typing import Any

import pytest

from notus_cli.errors import BuildError
from notus_cli.image.base import check_platform, cuda_version, daemon_platform, emulation_hint, image_platform


def inspected(
    env: list[str] | None = None, labels: dict[str, str] | None = None, arch: str = "amd64"
) -> dict[str, Any]:
    return {"Os": "linux", "Architecture": arch, "Config": {"Env": env, "Labels": labels}}


@pytest.mark.parametrize(
    ("env", "labels", "expected"),
    [
        (["PATH=/usr/bin", "CUDA_VERSION=12.8.1", "NV_CUDA_CUDART_VERSION=12.8.90-1"], None, "12.8"),
        (["NVIDIA_REQUIRE_CUDA=cuda>=12.9 brand=tesla,driver>=535,driver<536"], None, "12.9"),
        (["NV_CUDA_CUDART_VERSION=12.2.140-1"], {}, "12.2"),
        (["NVIDIA_REQUIRE_CUDA=CUDA>=11.8"], None, "11.8"),
        ([], {"com.nvidia.cuda.version": "10.1.243"}, "10.1"),
        (["PATH=/usr/bin", "CUDA_VERSION="], {"maintainer": "NVIDIA CORPORATION"}, None),
        (None, None, None),
    ],
)
def test_cuda_version_from_env_or_labels(
    env: list[str] | None, labels: dict[str, str] | None, expected: str | None
) -> None:
    assert cuda_version(inspected(env, labels)) == expected


def test_platform_names_follow_dockers_arch_names() -> None:
    assert image_platform(inspected(arch="amd64")) == "linux/amd64"
    assert image_platform(inspected(arch="aarch64")) == "linux/arm64"
    assert daemon_platform({"Os": "linux", "Arch": "arm64"}) == "linux/arm64"


def test_an_arm64_builder_is_told_it_needs_emulation_and_a_foreign_base_is_refused() -> None:
    """An arm64 laptop's daemon (which cannot exist here) with an amd64 base: the build goes on by
    emulation, with a warning; an arm64 base for an amd64 image is an error naming both."""
    warning = check_platform("linux/amd64", base="linux/amd64", daemon="linux/arm64", base_image="b:1")
    assert warning is not None
    assert "runs linux/arm64" in warning
    assert "emulation" in warning
    assert check_platform("linux/amd64", base="linux/amd64", daemon="linux/amd64", base_image="b:1") is None
    with pytest.raises(BuildError, match=r"b:1 is linux/arm64, but the image must be linux/amd64") as caught:
        check_platform("linux/amd64", base="linux/arm64", daemon="linux/arm64", base_image="b:1")
    assert caught.value.hint == "get the linux/amd64 variant: docker pull --platform linux/amd64 b:1"
    assert "binfmt" in emulation_hint("linux/amd64", "linux/arm64")
