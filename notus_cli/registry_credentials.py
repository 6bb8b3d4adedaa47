"""Credentials for a private container registry: where Notus finds them, and how `notus login` keeps them.

RunPod keeps them as a registry auth (GraphQL `saveRegistryAuth`) that a template references;
`notus push` hands them to the Docker daemon. Both find them with `find_registry_credentials`, the
one lookup, in this order (the first that has the host wins):

1. Settings: `build.registry_username` + `build.registry_password` in notus.toml or
   NOTUS_BUILD__REGISTRY_USERNAME / NOTUS_BUILD__REGISTRY_PASSWORD. They are for the host of
   `build.registry` (for any host when no registry is set).
2. `notus login --registry HOST`: `$XDG_CONFIG_HOME/notus/registries.json`, mode 0600.
3. Docker's own store (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`), read as the
   docker CLI reads it: `credHelpers[host]`, else `credsStore`, asked with
   `docker-credential-<helper> get` and the host on stdin; then the base64 `auth` of `auths[host]`.

The password is a SecretStr from the moment it is read; it is never printed or logged, and the only
file Notus writes holding it is created 0600.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from notus_cli.errors import ConfigError, RegistryError
from notus_cli.files import PRIVATE, read_json_object, user_config_dir, write_atomic
from notus_cli.image_reference import parse_reference
from notus_cli.settings import NotusSettings

REGISTRIES_FILE = "registries.json"
DOCKER_HUB = "docker.io"
# The names Docker Hub goes by in Docker's config (the CLI itself stores "https://index.docker.io/v1/").
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
_HUB_KEY = "https://index.docker.io/v1/"
_HOST = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]{1,5})?$")
_HELPER_TIMEOUT = 30.0


@dataclass(frozen=True)
class RegistryCredentials:
    host: str  # e.g. "ghcr.io"
    username: str
    password: SecretStr
    source: str  # where they came from, for messages (never the password)

    def docker_auth(self) -> dict[str, str]:
        """The auth config docker-py sends the daemon for a push or pull."""
        return {"username": self.username, "password": self.password.get_secret_value(), "serveraddress": self.host}


def normalize_host(text: str, *, what: str = "--registry") -> str:
    """The registry host of `text` ("https://ghcr.io/v2/" -> "ghcr.io"; Docker Hub's names -> "docker.io").

    Raises ConfigError naming `what` when it is not a host[:port].
    """
    value = text.strip()
    host = urlsplit(value).netloc if "://" in value else value.split("/", 1)[0]
    if not _HOST.fullmatch(host):
        raise ConfigError(
            f"{what} {text!r} is not a registry host",
            hint="give the host and optional port alone, e.g. ghcr.io, docker.io or localhost:5000",
        )
    host = host.lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def registry_host(image: str) -> str:
    """The host an image reference is pulled from ("ghcr.io/acme/notus@sha256:..." -> "ghcr.io")."""
    return normalize_host(parse_reference(image, what="the image").registry or DOCKER_HUB, what="the image's registry")


def credentials_for_image(image: str, settings: NotusSettings) -> RegistryCredentials | None:
    """The credentials for the registry `image` lives in, or None (a public image needs none)."""
    return find_registry_credentials(registry_host(image), settings)


def find_registry_credentials(host: str, settings: NotusSettings) -> RegistryCredentials | None:
    """The first credentials found for `host` (order in the module docstring), or None.

    Raises ConfigError for a bad host, RegistryError when a configured Docker credential helper
    is missing or fails (Docker itself would fail the same way).
    """
    host = normalize_host(host, what="the registry host")
    for found in (_from_settings(host, settings), _from_notus_login(host)):
        if found is not None:
            return found
    return _from_docker(host)


def store_registry_credentials(host: str, username: str, password: SecretStr) -> Path:
    """Remember credentials for `host` for `notus push` and `notus deploy`; the file is 0600. Returns it.

    Raises ConfigError naming the parameter that is empty or malformed.
    """
    host = normalize_host(host)
    if not username.strip() or any(c.isspace() or c == ":" for c in username.strip()):
        raise ConfigError("--username is empty or has spaces or ':'", hint="give the registry user name alone")
    secret = password.get_secret_value().strip()
    if not secret or any(c in "\r\n" for c in secret):
        raise ConfigError("the registry password is empty or has more than one line", hint="paste the password alone")
    path = user_config_dir() / REGISTRIES_FILE
    stored = read_json_object(path)
    stored[host] = {"username": username.strip(), "password": secret}
    return write_atomic(path, json.dumps(stored, indent=2) + "\n", mode=PRIVATE)


def _from_settings(host: str, settings: NotusSettings) -> RegistryCredentials | None:
    build = settings.build
    if not build.registry_username or build.registry_password is None:
        return None
    if not build.registry_password.get_secret_value():
        return None
    if build.registry is not None and registry_host(f"{build.registry}/x") != host:
        return None
    return RegistryCredentials(host, build.registry_username, build.registry_password, "build.registry_username")


def _from_notus_login(host: str) -> RegistryCredentials | None:
    path = user_config_dir() / REGISTRIES_FILE
    entry = read_json_object(path).get(host)
    if not isinstance(entry, dict):
        return None
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username and password:
        return RegistryCredentials(host, username, SecretStr(password), str(path))
    return None


def docker_config_file() -> Path:
    """Docker's client config: `$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`."""
    directory = os.environ.get("DOCKER_CONFIG")
    return (Path(directory) if directory else Path.home() / ".docker") / "config.json"


def _from_docker(host: str) -> RegistryCredentials | None:
    path = docker_config_file()
    config = read_json_object(path)
    helpers = _table(config, "credHelpers")
    helper = next((str(v) for k, v in helpers.items() if _same_host(k, host)), None) or config.get("credsStore")
    if isinstance(helper, str) and helper:
        found = _ask_helper(helper, host)
        if found is not None:
            return found
    auths = _table(config, "auths")
    entry = next((v for k, v in auths.items() if _same_host(k, host) and isinstance(v, dict)), None)
    return _decode_auth(entry, host, str(path)) if entry else None


def _ask_helper(helper: str, host: str) -> RegistryCredentials | None:
    """`docker-credential-<helper> get`, the host on stdin, as docker does; None if it has nothing for it."""
    program = f"docker-credential-{helper}"
    binary = shutil.which(program)
    if binary is None:
        raise RegistryError(
            f"Docker's config ({docker_config_file()}) names the credential helper {program}, which is not on PATH",
            hint=f"install it, remove it from the Docker config, or run `notus login --registry {host}`",
        )
    server = _HUB_KEY if host == DOCKER_HUB else host
    try:
        done = subprocess.run(
            [binary, "get"], input=server, capture_output=True, text=True, timeout=_HELPER_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RegistryError(f"{program} did not answer: {type(exc).__name__}") from None
    if done.returncode != 0:
        if "credentials not found" in (done.stdout + done.stderr).lower():
            return None
        raise RegistryError(f"{program} get failed with exit code {done.returncode}")  # its output may hold secrets
    try:
        answer: Any = json.loads(done.stdout)
        username, secret = str(answer["Username"]), str(answer["Secret"])
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"{program} get answered with something other than its JSON credentials") from None
    if not username or not secret or username == "<token>":  # an identity token is no username/password pair
        return None
    return RegistryCredentials(host, username, SecretStr(secret), program)


def _decode_auth(entry: dict[str, Any], host: str, source: str) -> RegistryCredentials | None:
    """An `auths` entry: base64 "user:password" in `auth` (or the older username/password keys)."""
    username, password = entry.get("username"), entry.get("password")
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            username, _, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
    if isinstance(username, str) and isinstance(password, str) and username and password:
        return RegistryCredentials(host, username, SecretStr(password), source)
    return None


def _same_host(key: str, host: str) -> bool:
    try:
        return normalize_host(key) == host
    except ConfigError:
        return False


def _table(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    return value if isinstance(value, dict) else {}
