"""Image references (`[registry/]name[:tag][@digest]`), checked with Docker's own grammar.

A bad name is caught before anything is downloaded or built, with a message that says which part
is wrong; the daemon's own error for it arrives only after the whole context was sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from notus_cli.errors import ConfigError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = (
    r"(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::[0-9]+)?"
)
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}"
_NAME = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"

NAME_RE = re.compile(_NAME)
TAG_RE = re.compile(_TAG)
REGISTRY_RE = re.compile(rf"{_DOMAIN}(?:/{_COMPONENT})*")
REFERENCE_RE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")

_RULES = {
    "image": "lowercase letters, digits and separators (. _ -) in '/'-separated parts, e.g. 'notus' or 'team/notus'",
    "tag": "letters, digits, '_', '.' and '-', at most 128, not starting with '.' or '-'",
    "registry": "a host, optional :port and optional /namespace, e.g. 'ghcr.io/acme' or 'localhost:5000'",
    "base_image": "an image reference such as 'vllm/vllm-openai:v0.32.0'",
}


@dataclass(frozen=True)
class ImageRef:
    """A repository plus a tag and/or a digest."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def registry(self) -> str | None:
        """The registry host, or None for Docker Hub."""
        first, _, rest = self.repository.partition("/")
        return first if rest and ("." in first or ":" in first or first == "localhost") else None


def check_part(field: str, value: str) -> str:
    """Validate one settings field that is part of an image reference; raise ValueError saying what is allowed."""
    pattern = {"image": NAME_RE, "tag": TAG_RE, "registry": REGISTRY_RE, "base_image": REFERENCE_RE}[field]
    if field == "image" and ":" in value.rsplit("/", 1)[-1]:
        raise ValueError(f"{value!r} has a tag: give the tag as the tag setting (--tag)")
    if not pattern.fullmatch(value) or len(value) > 255:
        raise ValueError(f"{value!r} is not valid: use {_RULES[field]}")
    return value


def parse_reference(text: str, *, what: str = "IMAGE") -> ImageRef:
    """Split a full reference; raises ConfigError naming `what` if it does not follow Docker's grammar."""
    match = REFERENCE_RE.fullmatch(text.strip())
    if not match or len(text) > 255:
        raise ConfigError(
            f"{what} {text!r} is not a valid image reference",
            hint="use [registry/]name[:tag], lowercase, e.g. localhost:5000/team/notus:v1",
        )
    return ImageRef(match["name"], match["tag"], match["digest"])


def image_ref(image: str, tag: str, registry: str | None) -> ImageRef:
    """The reference `notus build` tags: the registry (if any), the image name, the tag."""
    repository = f"{registry.rstrip('/')}/{image}" if registry else image
    return parse_reference(f"{repository}:{tag}", what="the image")


def docker_hub_notes(reference: str) -> tuple[str, ...]:
    """What a deploy should say about a reference with no registry host: RunPod pulls it from Docker
    Hub (Docker's rule for a bare name), which for a tag built here is almost never what was meant."""
    parsed = parse_reference(reference)
    if parsed.registry is not None:
        return ()
    hub = parsed.repository if "/" in parsed.repository else f"library/{parsed.repository}"
    return (f"{reference} names no registry: RunPod pulls it from Docker Hub as docker.io/{hub}",)
