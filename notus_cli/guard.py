"""`python -m notus_cli.guard -- COMMAND...`: run COMMAND, and stop it if the process that started us dies.

The children of `notus serve` (vLLM, the workers) run in process groups of their own, so that a
terminal's Ctrl-C reaches `notus serve` first and it can stop them in order. The price: if `notus
serve` itself dies without cleaning up (SIGKILL, a crash), nothing stops them, and a worker whose
queue vanished spins on its retries. The guard closes that gap. It runs COMMAND in its own (the
group's) process, passes COMMAND's exit status on (a death by signal included), and once its
parent is gone it stops the group: SIGTERM, then SIGKILL after GRACE seconds. It ignores SIGTERM
and SIGINT sent to the group, which are for COMMAND.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

GRACE = 10.0
CHECK_EVERY = 1.0


def guarded(command: Sequence[str]) -> list[str]:
    """COMMAND, wrapped so it ends when the current process does."""
    return [sys.executable, "-m", "notus_cli.guard", "--", *command]


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """A handler, not SIG_IGN: ignored signals would stay ignored in COMMAND across exec."""


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") + 1 >= len(argv):
        print("usage: python -m notus_cli.guard -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1 :]
    parent = os.getppid()
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
    child = subprocess.Popen(command)
    while True:
        try:
            code = child.wait(CHECK_EVERY)
            break
        except subprocess.TimeoutExpired:
            if os.getppid() != parent:  # re-parented: whoever started us is gone
                code = _stop_group(child)
                break
    if code < 0:  # pass a death by signal on as one
        with contextlib.suppress(OSError, ValueError):  # SIGKILL's handler cannot be set, nor needs to be
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def _stop_group(child: subprocess.Popen[bytes]) -> int:
    group = os.getpgrp() if os.getpgrp() == os.getpid() else None  # only a group this guard leads
    with contextlib.suppress(ProcessLookupError):
        if group is not None:
            os.killpg(group, signal.SIGTERM)
        else:
            child.terminate()
    deadline = time.monotonic() + GRACE
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if child.poll() is None:
        child.kill()
    code = child.wait()
    if group is not None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)  # what is left of the group, this guard included
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
