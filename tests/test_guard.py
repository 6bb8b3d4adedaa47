"""Children of `notus serve` never outlive it, even when it is killed without a chance to clean up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from notus_cli.guard import guarded
from testbed.common import ROOT, wait_for
from testbed.procs import running


def test_the_guard_passes_the_exit_status_on() -> None:
    exits = subprocess.run(guarded([sys.executable, "-c", "raise SystemExit(3)"]), timeout=60)
    killed = subprocess.run(guarded([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"]), timeout=60)
    assert (exits.returncode, killed.returncode) == (3, -9)


def test_a_guarded_command_ends_when_its_starter_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import subprocess, sys, time
                from notus_cli.guard import guarded
                child = subprocess.Popen(guarded(["sleep", "300"]), start_new_session=True)
                open({str(pid_file)!r}, "w").write(str(child.pid))
                time.sleep(300)
            """),
        ],
        cwd=ROOT,
    )
    guard = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=60))
    sleeper = wait_for(lambda: _children(guard), timeout=30)[0]
    starter.kill()
    starter.wait()
    wait_for(lambda: not running(sleeper) and not running(guard), timeout=30, interval=0.2)


def test_workers_end_when_the_emulator_process_is_killed(tmp_path: Path) -> None:
    """The case that matters: an emulator (here, the test harness in a child process) killed with
    SIGKILL, whose runpod SDK workers would otherwise spin forever on a queue that is gone."""
    pid_file = tmp_path / "pids"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from testbed.emulator import Harness
        harness = Harness.start(Path({str(tmp_path)!r}))
        endpoint, pool = harness.endpoint(workers=2)
        Path({str(pid_file)!r}).write_text(" ".join(str(p.pid) for p in pool.processes))
        time.sleep(300)
    """)
    emulator = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    guards = [int(pid) for pid in wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=120).split()]
    workers = [child for guard in guards for child in _children(guard)]
    assert len(workers) == 2
    started = time.monotonic()
    os.kill(emulator.pid, signal.SIGKILL)
    emulator.wait()
    wait_for(lambda: not any(running(pid) for pid in workers + guards), timeout=30, interval=0.2)
    assert time.monotonic() - started < 15


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found
