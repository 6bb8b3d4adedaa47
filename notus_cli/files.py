"""Where Notus keeps its files, and the one way it writes them.

User directories follow the XDG base-directory spec (looked up when called, never at import, so a
test's HOME and XDG_* variables apply): config (the RunPod key, personas), data (chat history),
state (`notus serve`'s connection file), cache (downloaded weights). Project state (pushed images,
deployments) lives in `.notus/` next to the project's notus.toml.

`write_atomic` is the only writer: a uniquely named temporary file in the same directory, created
with its final mode (0600 for anything holding a secret or a conversation), then renamed over the
target, so a reader never sees half a file and two concurrent writers never share a temporary name.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

CONFIG_FILE = "notus.toml"
PRIVATE = 0o600
PUBLIC = 0o644


def config_file() -> Path:
    """The project's settings file: $NOTUS_CONFIG, else notus.toml in the working directory."""
    return Path(os.environ.get("NOTUS_CONFIG", CONFIG_FILE))


def project_state_dir() -> Path:
    """The project's `.notus/` directory, next to its notus.toml (pushed images, deployments)."""
    return config_file().parent / ".notus"


def _xdg(variable: str, *fallback: str) -> Path:
    base = os.environ.get(variable) or str(Path.home().joinpath(*fallback))
    return Path(base) / "notus"


def user_config_dir() -> Path:
    """`$XDG_CONFIG_HOME/notus` (default `~/.config/notus`)."""
    return _xdg("XDG_CONFIG_HOME", ".config")


def user_data_dir() -> Path:
    """`$XDG_DATA_HOME/notus` (default `~/.local/share/notus`)."""
    return _xdg("XDG_DATA_HOME", ".local", "share")


def user_state_dir() -> Path:
    """`$XDG_STATE_HOME/notus` (default `~/.local/state/notus`)."""
    return _xdg("XDG_STATE_HOME", ".local", "state")


def user_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/notus` (default `~/.cache/notus`)."""
    return _xdg("XDG_CACHE_HOME", ".cache")


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; {} when the file is missing, unreadable, or holds no object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_atomic(path: Path, data: str | bytes, *, mode: int = PUBLIC) -> Path:
    """Replace `path` with `data` in one step, the file created with `mode`; returns `path`.

    Missing parent directories are made (0700 when the file is private). Raises OSError.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if mode == PRIVATE else 0o777)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
