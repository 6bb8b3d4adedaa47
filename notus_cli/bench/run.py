"""One benchmark run, step by step: plan, target, cold start, sweep, results.

    plan      planning.plan_benchmark: options checked, target, levels, SLOs, tokenizer decided
    target    BenchPlan.target(): the request sender (bench.senders, bench.runpod_target)
    prompts   BenchPlan.workload(), once the server has answered (it may name the model)
    cold      coldstart.measure_cold_start, when asked (RunPod targets only)
    sweep     sweep.sweep: warm-up, then each load level
    served    measured.judge: what served the run (toy or not), so prices only where they hold
    results   results.BenchRun, which report.py and the result files render

`run_benchmark` is what `notus bench` calls.
"""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime

from notus_cli.bench.coldstart import measure_cold_start
from notus_cli.bench.load import LoadProgress
from notus_cli.bench.measured import gather, judge
from notus_cli.bench.planning import BenchOptions, BenchPlan, plan_benchmark, plan_for
from notus_cli.bench.results import BenchRun, environment, raise_if_unusable
from notus_cli.bench.runpod_target import RunPodTarget
from notus_cli.bench.senders import Target
from notus_cli.bench.sweep import sweep

__all__ = ["BenchOptions", "BenchRun", "plan_for", "raise_if_unusable", "run_benchmark"]


def run_benchmark(options: BenchOptions, *, progress: LoadProgress | None = None) -> BenchRun:
    """Plan, then measure; returns every measurement.

    Raises ConfigError for bad options, EndpointUnreachable when nothing answers, BenchError when
    the server refuses the requests outright.
    """
    plan = plan_benchmark(options)
    run = BenchRun(
        settings=plan.settings(),
        server={},
        environment=environment(),
        levels=[],
        slos=plan.slos,
        attainment=options.attainment,
        gpu=plan.gpu,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        gpu_count=plan.spec.gpu_count,
    )
    asyncio.run(measure(plan, plan.target(), run, progress or LoadProgress()))
    run.measured_on = judge(gather(run.settings["target"], run.server, deployment_pool=plan.spec.gpu), plan.gpu)
    return run


async def measure(plan: BenchPlan, target: Target, run: BenchRun, progress: LoadProgress) -> None:
    """Check the server answers, make the prompts, measure a cold start if asked, then sweep."""
    async with target:
        run.server = await target.prepare()
        workload = plan.workload()
        run.settings["workload"] = workload.describe()
        if plan.cold is not None and isinstance(target, RunPodTarget):
            run.cold_start = await measure_cold_start(
                target,
                workload.prompts[0],
                zero_within=plan.cold.zero_within,
                progress=progress,
                scaler=plan.cold.scaler,
            )
        # As vllm bench serve does: what lives for the whole run is set aside from the garbage
        # collector, so its pauses stay short while requests are being timed.
        gc.collect()
        gc.freeze()
        try:
            await sweep(target, workload, plan.load, run, progress)
        finally:
            gc.unfreeze()
