"""What `notus push` remembers for `notus deploy`: the pushed image's digest, in `.notus/images.json`.

Deploy should run exactly the bytes that were pushed, so it reads the digest from here instead of
trusting a tag that may have moved. Nothing secret is stored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from notus_cli.files import read_json_object, write_atomic

STATE_FILE = "images.json"


@dataclass(frozen=True)
class PushedImage:
    repository: str
    tag: str | None
    digest: str
    image_id: str
    pushed_at: str
    labels: dict[str, str] = field(default_factory=dict)
    cuda_version: str | None = None  # the base image's CUDA (e.g. "12.8"): deploy's driver constraint
    size_bytes: int | None = None  # the image's measured size: deploy sizes the container disk from it

    @property
    def reference(self) -> str:
        """repository@digest: what a RunPod template should name."""
        return f"{self.repository}@{self.digest}"


def record_push(state_dir: Path, pushed: PushedImage) -> Path:
    """Remember `pushed` as the latest push (and the latest of its repository); returns the state file."""
    path = state_dir / STATE_FILE
    state = read_json_object(path)
    entry = asdict(pushed) | {"reference": pushed.reference}
    state.setdefault("repositories", {})[pushed.repository] = entry
    state["last"] = entry
    return write_atomic(path, json.dumps(state, indent=2) + "\n")


def last_pushed(state_dir: Path, repository: str | None = None) -> PushedImage | None:
    """The latest push (of `repository`, if given), or None if nothing was pushed from this project."""
    state = read_json_object(state_dir / STATE_FILE)
    entry = state.get("repositories", {}).get(repository) if repository else state.get("last")
    if not isinstance(entry, dict):
        return None
    entry = {k: v for k, v in entry.items() if k in PushedImage.__dataclass_fields__}
    return PushedImage(**entry)
