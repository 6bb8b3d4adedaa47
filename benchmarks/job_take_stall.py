"""How long a queued job waits after a worker's slot frees before it is taken: the SDK's loop and ours.

    .venv/bin/python -m benchmarks.job_take_stall [--concurrency 4] [--rtts 0,30,80] [--rounds 5]

A burst of twice the worker's concurrency arrives at once: the first half start, the rest wait on
RunPod's queue until a slot frees. What is measured, per waiting job: from the end of the job whose
slot it takes to (a) the job-take request that takes it leaving the worker and (b) the job reaching
the worker (one round trip later at best). Goal for (b): at most 1 RTT + 10 ms.

Both loops are the real code: runpod-python's `JobScaler` (get_jobs sleeps 1 s while the worker is
full) and `worker.job_loop.PromptJobScaler`, each running its own `get_jobs` and `run_jobs`. What
stands in for RunPod is the job-take call (`jobs_fetcher`): a long poll on an in-process queue,
delayed by half the RTT each way, one request at a time as the SDK makes them; and each job's
handler is a fixed 150 ms of work. Writes docs/results/job_take_stall.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from runpod.serverless.modules import rp_scale

from benchmarks.results import add_out_option, write_results
from worker.job_loop import PromptJobScaler

WORK_S = 0.15
GOAL_SLACK_MS = 10.0


@dataclass
class FakeQueue:
    """RunPod's side of job-take, in process: waiting jobs, a long poll, a round trip of latency."""

    rtt: float
    waiting: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    requested: dict[str, float] = field(default_factory=dict)  # job id -> when its job-take left the worker
    received: dict[str, float] = field(default_factory=dict)  # job id -> when it reached the worker
    ended: dict[str, float] = field(default_factory=dict)
    all_ended: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0
    in_flight: int = 0
    most_in_flight: int = 0

    async def take(self, _session: Any, wanted: int) -> list[dict[str, Any]] | None:
        sent = time.perf_counter()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.rtt / 2)
            while not self.waiting:  # the long poll holds the request until a job is there
                self.arrived.clear()
                await self.arrived.wait()
            jobs, self.waiting = self.waiting[:wanted], self.waiting[wanted:]
            await asyncio.sleep(self.rtt / 2)
        finally:
            self.in_flight -= 1
        now = time.perf_counter()
        for job in jobs:
            self.requested[job["id"]], self.received[job["id"]] = sent, now
        return jobs

    async def work(self, _session: Any, _config: Any, job: dict[str, Any]) -> None:
        await asyncio.sleep(WORK_S)
        self.ended[job["id"]] = time.perf_counter()
        if len(self.ended) >= self.expected:
            self.all_ended.set()


async def one_burst(
    cls: type[rp_scale.JobScaler], concurrency: int, rtt: float
) -> tuple[list[float], list[float], int]:
    """(slot free -> job-take sent, slot free -> job received) in ms for each waiting job, and the most
    job-take requests ever in flight at once."""
    queue = FakeQueue(rtt)
    scaler = cls({"handler": None, "concurrency_modifier": lambda _current: concurrency})
    scaler.job_progress.clear()  # a process-wide singleton in the SDK
    scaler.jobs_fetcher = queue.take
    scaler.jobs_handler = queue.work
    loops = [asyncio.create_task(scaler.get_jobs(None)), asyncio.create_task(scaler.run_jobs(None))]
    await asyncio.sleep(0.3)  # the first job-take is open, as on an idle worker
    ids = [f"job-{i}" for i in range(2 * concurrency)]
    queue.expected = len(ids)
    queue.waiting = [{"id": job_id, "input": {}} for job_id in ids]
    queue.arrived.set()
    await queue.all_ended.wait()
    scaler.kill_worker()
    queue.arrived.set()
    for loop in loops:
        loop.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    first, later = ids[:concurrency], ids[concurrency:]
    frees = sorted(queue.ended[job_id] for job_id in first)
    takes = sorted(later, key=lambda job_id: queue.received[job_id])
    sent = [max(0.0, queue.requested[job_id] - free) * 1000 for job_id, free in zip(takes, frees, strict=True)]
    received = [(queue.received[job_id] - free) * 1000 for job_id, free in zip(takes, frees, strict=True)]
    return sent, received, queue.most_in_flight


async def measure(concurrency: int, rtts: list[float], rounds: int) -> list[dict[str, Any]]:
    rows = []
    for rtt_ms in rtts:
        for name, cls in (("runpod SDK JobScaler", rp_scale.JobScaler), ("notus PromptJobScaler", PromptJobScaler)):
            sent: list[float] = []
            received: list[float] = []
            in_flight = 0
            for _ in range(rounds):
                s, r, most = await one_burst(cls, concurrency, rtt_ms / 1000)
                sent += s
                received += r
                in_flight = max(in_flight, most)
            goal = rtt_ms + GOAL_SLACK_MS
            rows.append(
                {
                    "loop": name,
                    "rtt_ms": rtt_ms,
                    "waiting_jobs": len(received),
                    "to_take_sent_p50_ms": round(statistics.median(sent), 1),
                    "to_received_p50_ms": round(statistics.median(received), 1),
                    "to_received_max_ms": round(max(received), 1),
                    "goal_ms": goal,
                    "goal_met": max(received) <= goal,
                    "most_job_takes_in_flight": in_flight,
                }
            )
    return rows


def markdown(rows: list[dict[str, Any]], concurrency: int) -> str:
    lines = [
        f"A burst of {2 * concurrency} jobs on a worker of concurrency "
        f"{concurrency}, each job {WORK_S * 1000:.0f} ms of work; RunPod's job-take is an in-process long poll "
        "delayed by half the RTT each way. Times are from a slot freeing to the job-take that fills it "
        f"leaving the worker, and to the job reaching it (goal: at most 1 RTT + {GOAL_SLACK_MS:.0f} ms).",
        "",
        "| loop | RTT ms | waiting jobs | to take sent p50 ms | to received p50 ms | to received max ms "
        "| goal ms | met | job-takes in flight |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['loop']} | {row['rtt_ms']:g} | {row['waiting_jobs']} | {row['to_take_sent_p50_ms']} "
            f"| {row['to_received_p50_ms']} | {row['to_received_max_ms']} | {row['goal_ms']:g} "
            f"| {'yes' if row['goal_met'] else 'no'} | {row['most_job_takes_in_flight']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=4, help="the worker's concurrency")
    parser.add_argument("--rtts", default="0,30,80", help="round trips to RunPod in ms, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="bursts per loop and RTT")
    add_out_option(parser, "job_take_stall")
    args = parser.parse_args()
    rtts = [float(value) for value in args.rtts.split(",")]
    rows = asyncio.run(measure(args.concurrency, rtts, args.rounds))
    result = {"concurrency": args.concurrency, "work_ms": WORK_S * 1000, "rows": rows}
    text = markdown(rows, args.concurrency)
    print(text)
    write_results("job_take_stall", "Job-take stall: slot free to next job taken", text, result, out=args.out)


if __name__ == "__main__":
    main()
