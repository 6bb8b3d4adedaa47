"""The RunPod API key: where it is found, and how `notus login` keeps it.

Order: RUNPOD_API_KEY (or notus.toml's runpod_api_key), then the key `notus login` stored in the
user config dir (`$XDG_CONFIG_HOME/notus/credentials.toml`, mode 0600), then runpodctl's and the
runpod SDK's `~/.runpod/config.toml`. The key is a SecretStr from the moment it is read; it is
never printed, and the only file written holding it is created 0600.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from notus_cli.errors import AuthError, ConfigError
from notus_cli.files import PRIVATE, user_config_dir, write_atomic
from notus_cli.settings import NotusSettings

CREDENTIALS_FILE = "credentials.toml"


@dataclass(frozen=True)
class ApiKey:
    value: SecretStr
    source: str  # where it came from, for messages (never the key itself)


KEYS_PAGE = "https://www.runpod.io/console/user/settings"


def runpodctl_config() -> Path:
    return Path.home() / ".runpod" / "config.toml"


def find_api_key(settings: NotusSettings) -> ApiKey:
    """The first key found (see the module docstring). Raises AuthError when there is none."""
    if settings.runpod_api_key is not None and settings.runpod_api_key.get_secret_value():
        return ApiKey(settings.runpod_api_key, "RUNPOD_API_KEY")
    for path, keys in (
        (user_config_dir() / CREDENTIALS_FILE, ("api_key",)),
        (runpodctl_config(), ("apikey", "api_key")),
    ):
        value = _read_key(path, keys)
        if value:
            return ApiKey(SecretStr(value), str(path))
    raise AuthError(
        "no RunPod API key found",
        hint=f"set RUNPOD_API_KEY, or store one with `notus login` (keys: {KEYS_PAGE})",
    )


def store_api_key(key: SecretStr) -> Path:
    """Write the key to the user config dir, readable by this user only (0600); returns the file."""
    value = key.get_secret_value().strip()
    if not value or any(c.isspace() or c in '"\\' for c in value):
        raise ConfigError("the API key is empty or has spaces, quotes or backslashes", hint="paste the key alone")
    return write_atomic(user_config_dir() / CREDENTIALS_FILE, f'api_key = "{value}"\n', mode=PRIVATE)


def _read_key(path: Path, keys: tuple[str, ...]) -> str | None:
    """A key from a TOML file, top level or in a [default]/[profile] table; None if absent or unreadable."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    tables = [data, *(value for value in data.values() if isinstance(value, dict))]
    for table in tables:
        for key in keys:
            if isinstance(table.get(key), str) and table[key].strip():
                return str(table[key]).strip()
    return None
