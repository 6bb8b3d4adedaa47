"""One benchmark run from options to results: workload, target, warm-up, the sweep, the verdicts.

`run_benchmark` is what `notus bench` calls; `BenchRun` is what it returns and what the JSON
report holds (and `notus bench compare` reads back).
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from tokenizers import Tokenizer

from notus_cli import __version__
from notus_cli.bench import DEFAULT_INPUT_LEN, DEFAULT_OUTPUT_LEN
from notus_cli.bench.coldstart import ColdStart, EndpointScaler, measure_cold_start
from notus_cli.bench.cost import LevelCost, level_cost
from notus_cli.bench.endpoints import TargetSpec, make_target
from notus_cli.bench.load import LevelResult, LoadLevel, LoadPlan, Progress, make_plan, run_level, sweep_saturation
from notus_cli.bench.metrics import DEFINITIONS, LevelSummary, RequestRecord, Slos, parse_slos
from notus_cli.bench.runpod_target import RunPodTarget
from notus_cli.bench.senders import Target
from notus_cli.bench.workload import Workload, load_tokenizer, random_workload, sharegpt_workload
from notus_cli.errors import BenchError, ConfigError
from notus_cli.runpod.gpus import POOLS_BY_ID, GpuPool, resolve_pool

FORMAT = "notus-bench/1"
UNBOUNDED_PROMPTS = 1024  # prompts made for a level bounded only by --duration (they are reused in turn)


@dataclass
class BenchOptions:
    """Everything `notus bench` was asked, flags and settings merged."""

    base_url: str | None = None  # an OpenAI-compatible server, when `target` is not given
    target: TargetSpec | None = None
    model: str | None = None
    api_key: SecretStr | None = None
    tokenizer: Path | None = None
    dataset: Path | None = None
    input_len: int = DEFAULT_INPUT_LEN
    output_len: int | None = None
    range_ratio: float = 0.0
    num_prompts: int | None = None
    duration: float | None = None
    warmup: int = 2
    concurrency: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    burstiness: float = 1.0
    goodput: list[str] = field(default_factory=list)
    attainment: float = 0.9
    temperature: float | None = None
    ignore_eos: bool | None = None
    stop_when_saturated: bool = True
    gpu: str | None = None
    seed: int = 0
    timeout: float = 600.0
    cold_start: bool = False
    cold_within: float = 900.0  # seconds to wait for the endpoint to scale to zero
    scaler: EndpointScaler | None = None  # --force-cold


@dataclass
class BenchRun:
    settings: dict[str, Any]
    server: dict[str, Any]
    environment: dict[str, Any]
    levels: list[LevelResult]
    slos: Slos
    attainment: float
    gpu: GpuPool | None
    started_at: str
    stopped: str | None = None
    cold_start: ColdStart | None = None
    gpu_count: int = 1  # GPUs per worker

    def costs(self) -> list[LevelCost | None]:
        if self.gpu is None:
            return [None for _ in self.levels]
        return [level_cost(self.gpu, result.summary, gpu_count=self.gpu_count) for result in self.levels]

    def highest_load_meeting_slos(self) -> LevelResult | None:
        """The last level of the sweep whose SLO attainment reached the target (None without SLOs)."""
        if not self.slos:
            return None
        meeting = [r for r in self.levels if (r.summary.slo_attainment or 0.0) >= self.attainment]
        return meeting[-1] if meeting else None

    @property
    def all_failed(self) -> bool:
        return all(result.summary.completed == 0 for result in self.levels)

    def to_dict(self) -> dict[str, Any]:
        best = self.highest_load_meeting_slos()
        return {
            "format": FORMAT,
            "started_at": self.started_at,
            "settings": self.settings,
            "server": self.server,
            "environment": self.environment,
            "slos": self.slos.to_dict(),
            "attainment": self.attainment,
            "gpu": None
            if self.gpu is None
            else {"pool": self.gpu.id, "usd_per_second": self.gpu.usd_per_second, "gpu_count": self.gpu_count},
            "stopped": self.stopped,
            "highest_load_meeting_slos": None if best is None else best.level.label,
            "cold_start": None if self.cold_start is None else self.cold_start.to_dict(),
            "levels": [
                {**result.to_dict(), "cost": None if cost is None else cost.to_dict()}
                for result, cost in zip(self.levels, self.costs(), strict=True)
            ],
            "definitions": DEFINITIONS,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchRun:
        """Read back a run written by `to_dict`. Raises ConfigError for another format."""
        if data.get("format") != FORMAT:
            raise ConfigError(f"not a notus bench result (format {data.get('format')!r}, expected {FORMAT!r})")
        gpu = data.get("gpu")
        return cls(
            settings=data["settings"],
            server=data["server"],
            environment=data["environment"],
            levels=[_level_from_dict(level) for level in data["levels"]],
            slos=Slos(**data["slos"]),
            attainment=data["attainment"],
            gpu=None if not gpu else POOLS_BY_ID.get(gpu["pool"]) or GpuPool(gpu["pool"], (), 0, gpu["usd_per_second"]),
            started_at=data["started_at"],
            stopped=data.get("stopped"),
            cold_start=ColdStart.from_dict(data["cold_start"]) if data.get("cold_start") else None,
            gpu_count=int(gpu.get("gpu_count", 1)) if gpu else 1,
        )


def _level_from_dict(data: dict[str, Any]) -> LevelResult:
    level = LoadLevel(concurrency=data["level"]["concurrency"], rate=data["level"]["rate"])
    return LevelResult(
        level=level,
        records=[RequestRecord.from_dict(record) for record in data["records"]],
        duration=data["duration"],
        summary=LevelSummary.from_dict(data["summary"]),
        requests_planned=data.get("requests_planned"),
        saturated=data.get("saturated"),
    )


def run_benchmark(options: BenchOptions, *, progress: Progress | None = None) -> BenchRun:
    """Build the workload and target from `options`, run the sweep, return every measurement.

    Raises ConfigError for bad options, EndpointUnreachable when nothing answers, BenchError when
    the server refuses the requests outright.
    """
    slos = parse_slos(options.goodput)
    if not 0 < options.attainment <= 1:
        raise ConfigError(f"--attainment must be above 0 and at most 1; got {options.attainment}")
    spec = options.target or _openai_spec(options)
    if options.cold_start and spec.kind != "runpod":
        raise ConfigError(
            "--cold-start needs a RunPod endpoint reached through its job API",
            hint="name a deployment, or pass --endpoint ID or --local (not --base-url or --route openai)",
        )
    gpu_name = options.gpu or spec.gpu
    gpu = resolve_pool(gpu_name) if gpu_name else None
    plan = plan_for(options)
    tokenizer = load_tokenizer(options.tokenizer) if options.tokenizer else None
    if options.dataset is None and tokenizer is None:
        raise _no_tokenizer()
    # Random prompts ask for exactly their length (as vLLM's random dataset does); conversations end naturally.
    ignore_eos = options.dataset is None if options.ignore_eos is None else options.ignore_eos
    target = make_target(
        spec,
        model=options.model,
        sampling={} if options.temperature is None else {"temperature": options.temperature},
        ignore_eos=ignore_eos,
        tokenizer=tokenizer,
        timeout=options.timeout,
        max_connections=_connections(plan),
    )
    settings = {
        "target": spec.describe(),
        "workload": {},  # filled in once the server has answered and the prompts are made
        "load": plan.to_dict(),
        "tokenizer": str(options.tokenizer) if options.tokenizer else None,
        "sampling": {"temperature": options.temperature, "max_tokens": "per prompt"},
        "timeout": options.timeout,
        "cold_start": options.cold_start,
    }
    run = BenchRun(
        settings=settings,
        server={},
        environment=environment(),
        levels=[],
        slos=slos,
        attainment=options.attainment,
        gpu=gpu,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        gpu_count=spec.gpu_count,
    )
    cold = ColdPlan(options.cold_within, options.scaler) if options.cold_start else None
    workload = partial(build_workload, options, plan, tokenizer, ignore_eos)
    asyncio.run(run_sweep(target, workload, plan, run, progress or Progress(), cold))
    return run


def plan_for(options: BenchOptions) -> LoadPlan:
    """The load plan the options ask for. Raises ConfigError for bad load options."""
    return make_plan(
        concurrency=options.concurrency,
        rates=options.rates,
        num_prompts=options.num_prompts,
        duration=options.duration,
        warmup=options.warmup,
        burstiness=options.burstiness,
        seed=options.seed,
        stop_when_saturated=options.stop_when_saturated,
    )


def _openai_spec(options: BenchOptions) -> TargetSpec:
    if not options.base_url:
        raise ConfigError("no server to benchmark", hint="pass --base-url URL of an OpenAI-compatible server")
    return TargetSpec(kind="openai", url=options.base_url, source="--base-url", api_key=options.api_key)


@dataclass(frozen=True)
class ColdPlan:
    zero_within: float
    scaler: EndpointScaler | None = None


def _connections(plan: LoadPlan) -> int:
    """Enough connections for the busiest level; 0 (no limit) for an uncapped request rate."""
    caps = [level.concurrency for level in plan.levels]
    return 0 if None in caps else max(cap or 0 for cap in caps)


def build_workload(options: BenchOptions, plan: LoadPlan, tokenizer: Tokenizer | None, ignore_eos: bool) -> Workload:
    """As many prompts as the largest level sends (they are reused in turn when a level runs long)."""
    counts = [plan.requests_for(level) for level in plan.levels]
    count = max(UNBOUNDED_PROMPTS if n is None else n for n in counts)
    if options.dataset is not None:
        return sharegpt_workload(
            options.dataset,
            count=count,
            tokenizer=tokenizer,
            output_len=options.output_len,
            seed=options.seed,
            ignore_eos=ignore_eos,
        )
    if tokenizer is None:
        raise _no_tokenizer()
    return random_workload(
        tokenizer,
        count=count,
        input_len=options.input_len,
        output_len=options.output_len or DEFAULT_OUTPUT_LEN,
        range_ratio=options.range_ratio,
        seed=options.seed,
        ignore_eos=ignore_eos,
    )


def _no_tokenizer() -> ConfigError:
    return ConfigError(
        "random prompts need the model's tokenizer, to make prompts of --input-len tokens",
        hint="pass --tokenizer MODEL_DIR (the directory with tokenizer.json), or --dataset FILE.json",
    )


async def run_sweep(
    target: Target,
    make_workload: Callable[[], Workload],
    plan: LoadPlan,
    run: BenchRun,
    progress: Progress,
    cold: ColdPlan | None = None,
) -> None:
    """Check the server answers, make the prompts, measure a cold start if asked, warm up, run each level.

    The sweep stops after a level that shows the server saturated (if the plan says so).
    """
    async with target:
        run.server = await target.prepare()
        workload = make_workload()
        run.settings["workload"] = workload.describe()
        if cold is not None and isinstance(target, RunPodTarget):
            run.cold_start = await measure_cold_start(
                target, workload.prompts[0], zero_within=cold.zero_within, progress=progress, scaler=cold.scaler
            )
        # As vllm bench serve does: what lives for the whole run is set aside from the garbage
        # collector, so its pauses stay short while requests are being timed.
        gc.collect()
        gc.freeze()
        try:
            await _sweep(target, workload, plan, run, progress)
        finally:
            gc.unfreeze()


async def _sweep(target: Target, workload: Workload, plan: LoadPlan, run: BenchRun, progress: Progress) -> None:
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


def raise_if_unusable(run: BenchRun) -> None:
    """Raises BenchError when not one request of the run succeeded (the report shows why)."""
    if run.levels and run.all_failed:
        causes: Counter[str] = Counter()
        for result in run.levels:
            causes.update(result.summary.failures)
        listed = ", ".join(f"{cause} ×{count}" for cause, count in causes.most_common())
        raise BenchError(
            f"every request failed ({listed})", hint="check --model, the server's log and the failures in the report"
        )


def environment() -> dict[str, Any]:
    """Where the load came from: enough to tell two runs' clients apart."""

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "notus": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": {name: installed(name) for name in ("aiohttp", "tokenizers", "numpy")},
    }
