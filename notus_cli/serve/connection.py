"""How other commands find a running `notus serve`: one connection file per project.

The file (mode 0600: it holds the key) lives in the user state dir, named after the project's
directory (where its notus.toml is, usually the working directory), so two checkouts can each run a
stack and each `--local` finds its own. A file whose process has exited is not a running stack.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from notus_cli.files import PRIVATE, config_file, user_state_dir, write_atomic


# The emulator's LB gateway route (emulator/server.py): one template, as `runpod_lb_url` takes it.
def project_dir() -> Path:
    return config_file().parent.resolve()


def connection_file(project: Path | None = None) -> Path:
    """Where a running `notus serve` of `project` (default: this one) says how to reach it."""
    where = (project or project_dir()).resolve()
    return user_state_dir() / "serve" / f"{hashlib.sha256(str(where).encode()).hexdigest()[:16]}.json"


def write_connection(body: dict[str, Any]) -> Path:
    """Record this process's stack for this project (`body`: url, api_base, endpoint_id, api_key, ...)."""
    record = {**body, "project": str(project_dir()), "pid": os.getpid()}
    return write_atomic(connection_file(), json.dumps(record, indent=2), mode=PRIVATE)


def read_connection(path: Path | None = None) -> dict[str, Any] | None:
    """The running stack's connection (this project's by default), or None if there is none or it exited."""
    try:
        body = json.loads((path or connection_file()).read_text())
        os.kill(int(body["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dict(body) if isinstance(body, dict) else None


def other_stacks() -> list[dict[str, Any]]:
    """The running stacks of other projects (so `notus serve` can say they exist)."""
    mine = connection_file()
    found = []
    for path in sorted((user_state_dir() / "serve").glob("*.json")):
        body = read_connection(path) if path != mine else None
        if body is not None:
            found.append(body)
    return found


def remove_connection(endpoint_id: str) -> None:
    """Remove this project's file if it is still this process's stack (another may have replaced it)."""
    path = connection_file()
    with contextlib.suppress(OSError, ValueError, AttributeError):
        body = json.loads(path.read_text())
        if body.get("pid") == os.getpid() and body.get("endpoint_id") == endpoint_id:
            path.unlink()
