"""docs/tour.md, run: the first hour's commands, in the doc's order, from a clean state, each checked
against the output the doc shows under it, so a changed flag or message fails here, not for a new user.

Nothing is faked: `notus serve --tiny` starts its own vLLM (CPU build), workers and emulator, and the
deploy steps talk to that emulator's control plane, as the doc says. Two things differ from a person's
terminal, both said here: the stack listens on a free port (NOTUS_SERVE__PORT; the doc's 127.0.0.1:8300
becomes it in every command and expected line) so the test can run next to another stack, and the
"second terminal" is a background process whose output goes to a file. HOME, the state dir and the
project dir are the test's own (tests/conftest.py's hermetic_env). See testbed/tour.py for the markup.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.common import ROOT, wait_for
from testbed.procs import descendants, running
from testbed.tour import Step, fill, missing, read_tour
from testbed.vllm import free_port

TOUR = ROOT / "docs" / "tour.md"
DOC_ADDRESS = "127.0.0.1:8300"
# What the first hour covers (the list); the doc may add more, not less.
COVERED = [
    "notus serve --tiny",
    "notus chat --local --once",
    "| notus chat --local",
    "notus bench --local",
    "--out",
    "notus bench compare",
    "notus build --dry-run",
    "notus gpus",
    "notus deploy --dry-run",
    "notus deploy tour",
    "notus status",
    "notus down",
]


class Tour:
    """Runs the steps like a shell in a project directory, with a second terminal for `notus serve`."""

    def __init__(self, project: Path, env: dict[str, str], address: str) -> None:
        self.project, self.env, self.address = project, env, address
        self.printed: list[str] = []
        self.timings: list[tuple[str, float]] = []
        self.second: subprocess.Popen[bytes] | None = None
        self.second_log = project.parent / "terminal-2.log"
        self.second_seen = 0  # how much of its log the steps before have checked

    def run(self, step: Step) -> None:
        started = time.monotonic()
        command = fill(step.command.replace(DOC_ADDRESS, self.address), self.printed)
        expected = tuple(line.replace(DOC_ADDRESS, self.address) for line in step.expected)
        if step.interrupt:
            printed = self._interrupt()
        elif step.background:
            printed = self._start(command, expected)
        elif command.startswith("export "):
            self.env.update(dict(assignment.split("=", 1) for assignment in shlex.split(command)[1:]))
            printed = ""
        else:
            printed = self._shell(command)
        self.printed.append(printed)
        self.timings.append((step.command, time.monotonic() - started))
        lost = missing(expected, printed)
        assert not lost, f"`{command}` did not print {lost}; it printed:\n{printed}{self._second_tail()}"

    def _shell(self, command: str) -> str:
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=self.project,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        printed = result.stdout + result.stderr
        assert result.returncode == 0, f"`{command}` exited {result.returncode}:\n{printed}{self._second_tail()}"
        assert "Traceback" not in printed, printed
        return printed

    def _start(self, command: str, expected: tuple[str, ...]) -> str:
        """The second terminal's command, left running once it has printed what the doc shows."""
        assert self.second is None, "one command at a time in the second terminal"
        with self.second_log.open("wb") as log:
            self.second = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=self.project,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        second = self.second

        def ready() -> bool:
            assert second.poll() is None, f"`{command}` exited {second.returncode}:\n{self._second_text()}"
            return not missing(expected, self._second_text())

        wait_for(ready, timeout=900, interval=0.5)
        printed = self._second_text()
        self.second_seen = len(printed)
        return printed

    def _interrupt(self) -> str:
        """Ctrl-C in the second terminal: it stops, exit 0, and leaves no process behind."""
        assert self.second is not None, "^C with nothing running in the second terminal"
        children = descendants(self.second.pid)
        self.second.send_signal(signal.SIGINT)
        code = self.second.wait(120)
        self.second = None
        printed = self._second_text()[self.second_seen :]
        assert code == 0, f"the second terminal's command exited {code} on Ctrl-C:\n{printed}"
        assert "Traceback" not in printed, printed
        assert not [pid for pid in children if running(pid)], "Ctrl-C left processes running"
        return printed

    def _second_text(self) -> str:
        return self.second_log.read_text(errors="replace") if self.second_log.exists() else ""

    def _second_tail(self, lines: int = 20) -> str:
        """The second terminal's last lines, for a failure's message (a failed chat is often serve's)."""
        tail = self._second_text().splitlines()[-lines:]
        return "\n--- the second terminal's last lines ---\n" + "\n".join(tail) if tail else ""

    def close(self) -> None:
        """After a failure: stop the second terminal's command and everything it started."""
        if self.second is None:
            return
        children = descendants(self.second.pid)
        self.second.send_signal(signal.SIGINT)
        try:
            self.second.wait(120)
        except subprocess.TimeoutExpired:
            self.second.kill()
        for pid in children:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_tour_covers_the_first_hour() -> None:
    """The doc parses, and holds every command the first hour needs, in an order that can run."""
    steps = read_tour(TOUR)
    commands = [step.command for step in steps]
    for needed in COVERED:
        assert any(needed in command for command in commands), f"docs/tour.md has no `{needed}`"
    shown = [step.expected for step in steps if not step.command.startswith("export ")]
    assert all(shown), "every command shows what it prints (a line, or `...`)"
    assert steps[0].background, "notus serve runs in the second terminal"
    assert "notus serve" in steps[0].command
    assert steps[-1].interrupt, "the tour ends by stopping notus serve"


def test_the_markup_reads_as_the_doc_says(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```console terminal-2\n$ notus serve --tiny\nready\n```\n"
        "```bash\n$ not a tour command\n```\n"
        "```console\n$ notus chat --once 'a # b'  # a comment\n...\n$ export A=1\n```\n"
        "```console terminal-2\n^C\nstopped\n```\n"
    )
    steps = read_tour(page)
    assert [(step.command, step.expected, step.background) for step in steps] == [
        ("notus serve --tiny", ("ready",), True),
        ("notus chat --once 'a # b'", ("...",), False),
        ("export A=1", (), False),
        ("^C", ("stopped",), True),
    ]


def test_an_expected_line_is_literal_but_for_dots_spaces_and_borders() -> None:
    printed = "│ Requests ok / failed           │         4 / 0 │\nWrote 7 files to runs/first\n"
    assert missing(("Requests ok / failed │ 4 / 0", "Wrote ... files to runs/first", "..."), printed) == []
    assert missing(("Wrote 7 files to runs/second", "Requests ok/failed"), printed) == [
        "Wrote 7 files to runs/second",
        "Requests ok/failed",
    ]
    assert missing(("...",), "  \n") == ["..."], "`...` alone still needs some output"


def test_a_placeholder_takes_the_value_an_earlier_table_showed() -> None:
    printed = ["│ API key               │ rpa_ABC123   │", "Warning: no RunPod API key (set RUNPOD_API_KEY)"]
    assert fill("export RUNPOD_API_KEY=<API key>", printed) == "export RUNPOD_API_KEY=rpa_ABC123"
    with pytest.raises(AssertionError, match="Endpoint id"):
        fill("notus chat --endpoint <Endpoint id>", printed)


@pytest.mark.vllm
def test_the_tour_runs_as_written(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    bin_dir = tmp_path / "bin"  # `notus` is this checkout's CLI, as `.venv/bin/notus` is
    bin_dir.mkdir()
    launcher = bin_dir / "notus"
    launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m notus_cli "$@"\n')
    launcher.chmod(0o755)
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "NOTUS_CONFIG": str(project / "notus.toml"),
        "XDG_STATE_HOME": str(Path(os.environ["HOME"]) / ".local" / "state"),  # serve's connection file
        "NOTUS_SERVE__PORT": str(port),
    }
    tour = Tour(project, env, f"127.0.0.1:{port}")
    try:
        for step in read_tour(TOUR):
            tour.run(step)
    finally:
        tour.close()
        timings = "\n".join(f"{seconds:6.1f} s  {command}" for command, seconds in tour.timings)
        print(f"\nthe tour's steps:\n{timings}")
