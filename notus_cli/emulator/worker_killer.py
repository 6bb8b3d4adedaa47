"""Workers killed mid-job on a schedule: a spot reclaim, an OOM, RunPod's refresh_worker.

The `kill:<interval>` part of a fault spec (faults.py) says how often; this carries it out.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from collections.abc import Callable, Iterable

from notus_cli.emulator.workers import LocalWorkers


class WorkerKiller:
    """SIGKILLs one worker process that is running a job, every `interval` seconds, on a thread.

    `busy(pod_id)` says whether the emulator has a job in flight on that worker; a kill waits (checking
    every 50 ms) until some worker is busy, so every kill lands mid-job.
    """

    def __init__(
        self, pools: Iterable[LocalWorkers], interval: float, busy: Callable[[str], bool], seed: int | None = None
    ) -> None:
        self.pools = list(pools)
        self.interval = interval
        self.busy = busy
        self.kills: list[str] = []
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notus-worker-killer", daemon=True)

    def start(self) -> WorkerKiller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(RuntimeError):
            self._thread.join(5.0)

    def kill_one(self) -> str | None:
        """Kill one busy worker now; its pod id, or None when none is busy."""
        candidates = [(pool, w.pod_id) for pool in self.pools for w in pool.alive() if self.busy(w.pod_id)]
        if not candidates:
            return None
        pool, pod_id = self._random.choice(candidates)
        pool.kill(pod_id, signal.SIGKILL)
        self.kills.append(pod_id)
        return pod_id

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            while not self._stop.is_set() and self.kill_one() is None:
                self._stop.wait(0.05)
