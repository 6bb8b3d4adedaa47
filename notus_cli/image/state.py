"""What `notus push` remembers for `notus deploy`: the pushed image's digest, in `.notus/images.json`.

Deploy should run exactly the bytes that were pushed, so it reads the digest from here instead of
trusting a tag that may have moved. Nothing secret is stored.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from notus_cli.settings import config_path

STATE_FILE = "images.json"


def state_dir() -> Path:
    """The project's `.notus/` directory, next to its notus.toml."""
    return config_path().parent / ".notus"


@dataclass(frozen=True)
class PushedImage:
    repository: str
    tag: str | None
    digest: str
    image_id: str
    pushed_at: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        """repository@digest: what a RunPod template should name."""
        return f"{self.repository}@{self.digest}"


def record_push(state_dir: Path, pushed: PushedImage) -> Path:
    """Remember `pushed` as the latest push (and the latest of its repository); returns the state file."""
    path = state_dir / STATE_FILE
    state = _load(path)
    entry = asdict(pushed) | {"reference": pushed.reference}
    state.setdefault("repositories", {})[pushed.repository] = entry
    state["last"] = entry
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)
    return path


def last_pushed(state_dir: Path, repository: str | None = None) -> PushedImage | None:
    """The latest push (of `repository`, if given), or None if nothing was pushed from this project."""
    state = _load(state_dir / STATE_FILE)
    entry = state.get("repositories", {}).get(repository) if repository else state.get("last")
    if not isinstance(entry, dict):
        return None
    entry = {k: v for k, v in entry.items() if k in PushedImage.__dataclass_fields__}
    return PushedImage(**entry)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
