"""Step 4 of a benchmark run: the sweep. Warm the server up, then run each load level in turn.

The sweep stops after a level that shows the server saturated, when the plan says so.
"""

from __future__ import annotations

import asyncio

from notus_cli.bench.load import LoadPlan, LoadProgress, run_level, sweep_saturation
from notus_cli.bench.metrics import RequestRecord
from notus_cli.bench.results import BenchRun
from notus_cli.bench.senders import Target
from notus_cli.bench.workload import Workload
from notus_cli.errors import BenchError


async def sweep(target: Target, workload: Workload, plan: LoadPlan, run: BenchRun, progress: LoadProgress) -> None:
    """Warm up, then run each level in turn; stop after one that shows the server saturated."""
    if plan.warmup:
        progress.warmup(plan.warmup)
        first = plan.levels[0]
        await warm_up(target, workload, plan.warmup, first.concurrency or plan.warmup)
    for i, level in enumerate(plan.levels):
        result = await run_level(target, workload.prompts, level, plan, slos=run.slos, progress=progress)
        run.levels.append(result)
        result.saturated = sweep_saturation(run.levels)
        if result.saturated and plan.stop_when_saturated and i + 1 < len(plan.levels):
            run.stopped = f"stopped after {level.label}: {result.saturated}"
            break


async def warm_up(target: Target, workload: Workload, count: int, concurrency: int) -> None:
    """Unmeasured requests that wake the server; if every one fails, the run would only measure failures.

    Raises BenchError with the first failure's cause.
    """
    records = [RequestRecord(index=i) for i in range(count)]
    queue = iter(records)

    async def worker() -> None:
        for record in queue:
            await target.send(workload.prompts[record.index % len(workload.prompts)], record)

    await asyncio.gather(*(worker() for _ in range(max(1, min(count, concurrency)))))
    if not any(record.ok for record in records):
        first = records[0]
        raise BenchError(
            f"every warm-up request failed ({first.error_cause}: {first.error})",
            hint="check --model and that the server answers streaming chat completions",
        )
