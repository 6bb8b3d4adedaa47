"""What every test file shares: the repository's root, a poll-until helper, and the one way to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 60.0, interval: float = 0.05) -> T:
    """Poll `check()` until it returns something truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def notus_command(*args: str) -> list[str]:
    """The command line that runs `notus ARGS` (for a test that must hold the process: Popen, pexpect)."""
    return [sys.executable, "-m", "notus_cli", *args]


def notus(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str = "",
    timeout: float = 300.0,
    base_env: Mapping[str, str] | None = None,
    **extra_env: str,
) -> subprocess.CompletedProcess[str]:
    """`notus ARGS` in a process of its own, as a person runs it: `python -m notus_cli`.

    It sees `base_env` (default: this test's hermetic environment from conftest) with this checkout first
    on PYTHONPATH, then `env` and `extra_env` on top; it runs in `cwd` (default: the test's own working
    directory, which conftest makes a fresh one); stdin is `stdin` (never the terminal pytest runs in).
    """
    full = {**(os.environ if base_env is None else base_env), "PYTHONPATH": str(ROOT), **(env or {}), **extra_env}
    return subprocess.run(
        notus_command(*args),
        input=stdin,
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
