"""`notus serve` as a user starts it: a process of its own printing its connection as JSON, stopped with
Ctrl-C's signal however the test ends. For the tests that need the whole stack (vLLM, workers, emulator)."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.common import notus_command

# The seed's request, as its client sends it to /runsync.
README_EXAMPLE = {
    "input": {
        "messages": [
            {"role": "system", "content": "You are a wise counselor guided by KJV scripture."},
            {"role": "user", "content": "What does the Bible say about wisdom?"},
        ],
        "temperature": 0.7,
        "max_tokens": 2048,
        "top_p": 0.9,
    }
}


@dataclass
class Served:
    process: subprocess.Popen[str]
    stderr: Path  # what serve said (its progress, warnings, "stopped")
    info: dict[str, Any] = field(default_factory=dict)  # the connection JSON it printed once ready
    code: int | None = None  # its exit code, once stopped


@contextmanager
def notus_serve(*args: str, cwd: Path) -> Iterator[Served]:
    """Run `notus serve ARGS --port 0 --json` in `cwd` until the block ends, then SIGINT it and wait."""
    stderr = cwd / "stderr.txt"
    with stderr.open("w") as errors:
        process = subprocess.Popen(
            notus_command("serve", *args, "--port", "0", "--json"),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,
        )
        served = Served(process, stderr)
        try:
            served.info = read_connection(process)
            yield served
        finally:
            process.send_signal(signal.SIGINT)
            served.code = process.wait(120)
            if process.stdout is not None:
                process.stdout.close()


def read_connection(serve: subprocess.Popen[str]) -> dict[str, Any]:
    """The connection JSON `notus serve --json` prints once everything is ready."""
    assert serve.stdout is not None
    text = ""
    for line in serve.stdout:
        text += line
        if line.rstrip() == "}":
            result: dict[str, Any] = json.loads(text)
            return result
    raise AssertionError(f"notus serve exited with {serve.wait()} before it was ready")
