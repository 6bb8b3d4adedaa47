"""`notus serve`'s life: start the stack, watch it until Ctrl-C or SIGTERM, always stop it cleanly.

SIGTERM behaves like Ctrl-C, so `kill` also stops every child; once stopping has begun both are
ignored, so a second Ctrl-C cannot leave vLLM or a worker behind. A vLLM that dies ends the watch
with EngineError: the workers cannot serve without it.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from types import FrameType

from notus_cli.errors import EngineError
from notus_cli.serve.stack import LocalStack, StackInfo, StackSnapshot


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM and SIGINT raise KeyboardInterrupt; the previous handlers come back after."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt), signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def serve_until_stopped(
    stack: LocalStack,
    *,
    on_ready: Callable[[StackInfo], None],
    on_snapshot: Callable[[StackSnapshot], None],
    say: Callable[[str], None],
    watching: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    interval: float = 1.0,
) -> bool:
    """Start `stack`, call `on_ready`, then `on_snapshot` every `interval` s until Ctrl-C or SIGTERM
    (inside `watching`, e.g. a live view).

    Returns False when the interrupt came while starting (what had started is stopped), True after a
    clean stop. Raises what LocalStack.start raises, and EngineError when vLLM dies (after stopping).
    """
    with signals_interrupt():
        try:
            stack.start()
        except KeyboardInterrupt:
            return False
        try:
            on_ready(stack.info)
            with watching():
                watch(stack, on_snapshot, interval)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            say("stopping the workers, vLLM and the emulator")
            stack.stop()
    return True


def watch(stack: LocalStack, on_snapshot: Callable[[StackSnapshot], None], interval: float = 1.0) -> None:
    """Hand a snapshot to `on_snapshot` every `interval` s, forever; raises EngineError if vLLM dies."""
    while True:
        time.sleep(interval)
        snapshot = stack.snapshot()
        if not snapshot.vllm_alive:
            log = stack.vllm.log_path if stack.vllm else "its log"
            raise EngineError("vLLM exited; the workers cannot serve without it", hint=f"see {log}")
        on_snapshot(snapshot)


def worker_state(exit_code: int | None, state: str) -> str:
    """A worker's state as people read it: its own state while it runs, `exited (N)` after."""
    return state if exit_code is None else f"exited ({exit_code})"


def changed_workers(seen: dict[str, str], snapshot: StackSnapshot) -> list[str]:
    """One line per worker whose state changed since `seen` (which it updates), for logs without a live view."""
    lines = []
    for worker in snapshot.workers:
        state = worker_state(worker.exit_code, worker.state)
        if seen.get(worker.pod_id) != state:
            seen[worker.pod_id] = state
            lines.append(f"{worker.label} ({worker.pod_id}): {state}")
    return lines
