"""A stand-in `nvidia-smi` for tests: this machine has no NVIDIA GPU, and bench prices a server on
loopback only when this machine has a card of the priced pool (notus_cli.bench.measured)."""

from __future__ import annotations

import os
from pathlib import Path


def nvidia_smi_env(directory: Path, *names: str) -> dict[str, str]:
    """An environment whose PATH finds an `nvidia-smi` listing `names` (as `--query-gpu=name` does)."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "nvidia-smi"
    lines = "".join(f"echo '{name}'\n" for name in names)
    script.write_text(f"#!/bin/sh\n{lines}")
    script.chmod(0o755)
    return {"PATH": f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"}
