"""URLs of OpenAI-compatible servers, read the same way by every command that takes --base-url."""

from __future__ import annotations

from urllib.parse import urlsplit

from notus_cli.errors import ConfigError
from notus_cli.runpod.urls import RUNPOD_HOST


def openai_base(url: str) -> str:
    """`http://host:8000` or `http://host:8000/v1` both mean the API under `/v1`."""
    base = url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"--base-url must start with http:// or https://; got '{url}'")
    return base if base.endswith("/v1") else base + "/v1"


def is_runpod_host(url: str) -> bool:
    """RunPod's own API (its OpenAI route takes the account key); no other host is ever sent that key."""
    host = urlsplit(url.strip()).hostname or ""
    return host == RUNPOD_HOST or host.endswith("." + RUNPOD_HOST.split(".", 1)[1])
