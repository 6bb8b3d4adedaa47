"""An emulator whose control plane starts echo workers, and a `notus` runner pointed at it.

RunPod's control plane cannot be reached from here, so the emulator stands in for it (the one thing
these tests fake); the workers it starts are real runpod SDK processes with the echo handler.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from notus_cli.emulator import EmulatorConfig
from notus_cli.emulator.scaler import command_factory
from tests.support.emulator import ROOT, Harness, echo_command


def control_harness(log_dir: Path) -> Harness:
    """A Harness whose saveEndpoint endpoints run echo workers with their template's env."""
    harness = Harness.start(log_dir, EmulatorConfig(sweep_interval=0.1))
    harness.emulator.worker_factory = command_factory(harness.emulator, echo_command(log_dir, concurrency=4))
    return harness


def notus_env(url: str, key: str) -> dict[str, str]:
    """The environment that points `notus` (this checkout's) at an emulator's control and data planes."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("NOTUS_", "RUNPOD_"))}
    env.update(
        NOTUS_RUNPOD_GRAPHQL_URL=f"{url}/graphql",
        NOTUS_RUNPOD_API_URL=f"{url}/v2",
        RUNPOD_API_KEY=key,
        PYTHONPATH=str(ROOT),
    )
    return env


def notus(*args: str, cwd: Path, env: Mapping[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notus_cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(env),
        input=stdin,
        timeout=120,
    )
