"""What an emulated endpoint knows about each worker (a pod, in RunPod's terms), and its job counts.

The worker's state is what /health counts: `initializing` until its first contact, then `idle` or
`running`, `unhealthy` after a failed fitness check, `exited` or `lost` at the end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from notus_cli.emulator.jobs import Signal
from notus_cli.runpod.protocol.bodies import HEALTH_JOB_KEYS, Health


@dataclass(eq=False)
class WorkerRecord:
    """What the queue knows about one worker (a pod, in RunPod's terms)."""

    pod_id: str
    label: str = ""
    local: bool = False  # started by this emulator, which watches its process
    spawned: float | None = None  # when its process was started (local workers): cold starts count from here
    last_seen: float | None = None  # None: not heard from yet (initializing)
    in_flight: set[str] = field(default_factory=set)
    takes_open: int = 0  # job-take polls of this worker being answered now
    completed: int = 0
    alive: bool = True
    draining: bool = False  # being stopped: its long polls answer at once
    exit_code: int | None = None
    unhealthy: str | None = None  # the reason, when a fitness check failed
    stops: dict[str, tuple[float, float]] = field(default_factory=dict)  # job id -> (first, last) sent; 0: not yet
    unlisted: dict[str, int] = field(default_factory=dict)  # job id in flight -> pings in a row without it
    wake: Signal = field(default_factory=Signal)

    @property
    def state(self) -> str:
        if not self.alive:
            return "exited" if self.exit_code is not None else "lost"
        if self.unhealthy:
            return "unhealthy"
        if self.last_seen is None:
            return "initializing"
        return "running" if self.in_flight else "idle"

    def pinged(self, running: set[str], *, lost_after: int) -> list[str]:
        """A ping listed `running`: forget the stops it has carried out, and return the jobs in flight
        that `lost_after` pings in a row did not list (no longer in flight from now on)."""
        self.stops = {job_id: sent for job_id, sent in self.stops.items() if not sent[0] or job_id in running}
        misses = {job_id: self.unlisted.get(job_id, 0) + 1 for job_id in self.in_flight if job_id not in running}
        lost = sorted(job_id for job_id, n in misses.items() if n >= lost_after)
        self.unlisted = {job_id: n for job_id, n in misses.items() if n < lost_after}
        self.in_flight.difference_update(lost)
        return lost


@dataclass(frozen=True)
class Counts:
    """The jobs half of /health."""

    completed: int
    failed: int
    in_progress: int
    in_queue: int
    retried: int


def health_of(counts: Counts, workers: Iterable[WorkerRecord]) -> Health:
    """/health: the job counts, and the workers by state (RunPod also reports `ready` and `throttled`)."""
    jobs = (counts.completed, counts.failed, counts.in_progress, counts.in_queue, counts.retried)
    states = [worker.state for worker in workers]
    by_state = {state: states.count(state) for state in ("idle", "initializing", "running", "unhealthy")}
    return Health(
        jobs=dict(zip(HEALTH_JOB_KEYS, jobs, strict=True)),
        workers={**by_state, "ready": by_state["idle"], "throttled": 0},
    )
