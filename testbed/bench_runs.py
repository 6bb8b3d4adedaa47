"""Bench runs built in memory with the settings a real `notus bench` records, for tests of compare,
the report and the toy marks that need no server."""

from __future__ import annotations

from typing import Any

from notus_cli.bench.load import LevelResult, LoadLevel
from notus_cli.bench.measured import MeasuredOn
from notus_cli.bench.metrics import RequestRecord, Slos, summarize
from notus_cli.bench.results import BenchRun
from notus_cli.runpod.gpus import resolve_pool

REAL = MeasuredOn(
    served_model="nvidia/model", weights=None, parameters=None, hardware="RunPod pool AMPERE_80 (deployment prod)",
    toy=False, toy_reason=None, priced=True, price_basis="deployment prod runs on AMPERE_80", why_unpriced=None,
)  # fmt: skip


def records(tokens: int) -> list[RequestRecord]:
    return [
        RequestRecord(index=i, ok=True, ttft=0.1, e2el=0.5, output_tokens=tokens, itl=[0.1] * (tokens - 1),
                      prompt_tokens=10, token_source="usage")
        for i in range(4)
    ]  # fmt: skip


def bench_run(
    *,
    route: str = "native",
    input_len: int = 64,
    output_len: int = 32,
    num_prompts: int | None = 8,
    concurrency: tuple[int, ...] = (1, 4),
    gpu: str | None = "a100",
    measured_on: MeasuredOn = REAL,
    model: str = "nvidia/model",
) -> BenchRun:
    """A run with the settings `notus bench` records (planning.BenchPlan.settings, workload.describe)."""
    levels = [
        LevelResult(LoadLevel(concurrency=c), records(output_len), 2.0, summarize(records(output_len), 2.0, Slos()))
        for c in concurrency
    ]
    settings: dict[str, Any] = {
        "target": {"kind": "runpod", "base_url": "https://api.runpod.ai/v2/abc", "source": "deployment prod",
                   "route": route},
        "workload": {"kind": "random", "prompts": 16, "ignore_eos": True, "input_len": input_len,
                     "output_len": output_len, "range_ratio": 0.0, "seed": 0},
        "load": {"levels": [level.level.to_dict() for level in levels], "num_prompts": num_prompts, "duration": None,
                 "warmup": 2, "burstiness": 1.0, "seed": 0, "stop_when_saturated": True},
        "sampling": {"temperature": None, "max_tokens": "per prompt"},
    }  # fmt: skip
    return BenchRun(
        settings=settings, server={"model": model}, environment={}, levels=levels, slos=Slos(), attainment=0.9,
        gpu=resolve_pool(gpu) if gpu else None, started_at="2026-12-07T00:00:00+00:00", measured_on=measured_on,
    )  # fmt: skip
