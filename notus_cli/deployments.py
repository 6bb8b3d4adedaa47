"""What `notus deploy` remembers so other commands can target an endpoint by name.

Kept in the project's `.notus/deployments.json` (next to notus.toml), written atomically. It holds
ids, never secrets. `endpoint_type` is "queue" or "lb" (how clients reach it: the job API, or the
LB URL); a file written before it existed reads as "queue", which every deployment then was.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from notus_cli.errors import ConfigError
from notus_cli.files import project_state_dir, write_atomic

STATE_FILE = "deployments.json"


@dataclass(frozen=True)
class Deployment:
    name: str
    endpoint_id: str
    template_id: str
    image: str
    gpu: str
    model_revision: str | None = None
    api_base_url: str | None = None  # set when the endpoint is not RunPod's (e.g. the local emulator)
    endpoint_type: str = "queue"  # queue | lb (notus_cli.runpod.control.EndpointKind)
    extra: dict[str, str] = field(default_factory=dict)


def load_deployments(directory: Path | None = None) -> dict[str, Deployment]:
    """Raises ConfigError when the state file exists but cannot be read."""
    path = (directory or project_state_dir()) / STATE_FILE
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {name: Deployment(**entry) for name, entry in raw.get("deployments", {}).items()}
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", hint="fix or delete the file; it only caches ids") from None


def find_deployment(name: str, directory: Path | None = None) -> Deployment:
    """Raises ConfigError naming the known deployments when `name` is not one of them."""
    deployments = load_deployments(directory)
    if name not in deployments:
        known = ", ".join(sorted(deployments)) or "none yet"
        raise ConfigError(f"no deployment named '{name}' (known: {known})", hint="deploy it with `notus deploy NAME`")
    return deployments[name]


def save_deployment(deployment: Deployment, directory: Path | None = None) -> Path:
    return _write({**_raw(directory), deployment.name: asdict(deployment)}, directory)


def forget_deployment(name: str, directory: Path | None = None) -> None:
    raw = _raw(directory)
    raw.pop(name, None)
    _write(raw, directory)


def _raw(directory: Path | None) -> dict[str, dict[str, object]]:
    return {name: asdict(d) for name, d in load_deployments(directory).items()}


def _write(deployments: dict[str, dict[str, object]], directory: Path | None) -> Path:
    path = (directory or project_state_dir()) / STATE_FILE
    return write_atomic(path, json.dumps({"deployments": deployments}, indent=2, sort_keys=True) + "\n")
