"""An emulator whose control plane starts echo workers, and a `notus` runner pointed at it.

RunPod's control plane cannot be reached from here, so the emulator stands in for it (the one thing
these tests fake); the workers it starts are real runpod SDK processes with the echo handler.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from notus_cli.emulator import EmulatorConfig
from notus_cli.emulator.scaler import command_factory
from notus_cli.image.dockerfile import LABEL_MODEL_ID, LABEL_REVISION
from notus_cli.image.pushed_images import PushedImage, record_push
from testbed.common import ROOT
from testbed.common import notus as run_notus
from testbed.emulator import Harness, echo_command


def control_harness(log_dir: Path) -> Harness:
    """A Harness whose saveEndpoint endpoints run echo workers with their template's env."""
    harness = Harness.start(log_dir, EmulatorConfig(sweep_interval=0.1))
    harness.emulator.worker_factory = command_factory(harness.emulator, echo_command(log_dir, concurrency=4))
    harness.emulator.control.rules.template_release_delay = 0.0  # tests that wait it out set their own
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
    """`notus` with exactly the environment `env` (see notus_env): the shared runner, testbed.common."""
    return run_notus(*args, cwd=cwd, base_env=env, stdin=stdin or "", timeout=120)


def pushed_project(directory: Path, digest: str) -> Path:
    """`directory` as a project whose last `notus push` was registry.test/notus@`digest` (Nemotron's labels)."""
    labels = {LABEL_MODEL_ID: "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", LABEL_REVISION: "0123abc"}
    record_push(directory / ".notus", PushedImage("registry.test/notus", "v1", digest, "sha256:1", "now", labels))
    return directory


class Session:
    """Runs `notus` in one project with one key and keeps everything it printed."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.project, self.env = project, env
        self.printed: list[str] = []

    def __call__(self, *args: str, code: int = 0, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = notus(*args, cwd=self.project, env=self.env, stdin=stdin)
        self.printed += [result.stdout, result.stderr]
        assert result.returncode == code, f"notus {' '.join(args)}: {result.returncode}\n{result.stdout}{result.stderr}"
        assert "Traceback" not in result.stderr
        return result
