"""Dollars per million output tokens and per thousand requests, from a GPU pool's per-second price.

A worker is billed per second while it is awake, whether it is busy or not, for each of its GPUs
(the pool's price is per GPU), so a level costs price × GPUs per worker × its duration × the workers
serving it; failed requests cost money too and count in the
price of each successful one. That is the price at the measured load: a lightly loaded worker
makes every token dear, which is the point of reading it next to the sweep.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from notus_cli.bench.metrics import LevelSummary
from notus_cli.runpod.gpus import GpuPool


@dataclass(frozen=True)
class LevelCost:
    gpu: str
    usd_per_second: float  # per GPU
    workers: int
    usd: float  # what the level's duration cost
    usd_per_million_output_tokens: float | None
    usd_per_thousand_requests: float | None
    gpu_count: int = 1  # GPUs per worker

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def level_cost(pool: GpuPool, summary: LevelSummary, *, workers: int = 1, gpu_count: int = 1) -> LevelCost:
    """The cost of one level on `workers` workers of `gpu_count` GPUs of `pool`, billed for its duration."""
    usd = pool.usd_per_second * gpu_count * summary.duration * workers
    return LevelCost(
        gpu=pool.id,
        usd_per_second=pool.usd_per_second,
        workers=workers,
        usd=usd,
        usd_per_million_output_tokens=usd / summary.output_tokens * 1_000_000 if summary.output_tokens else None,
        usd_per_thousand_requests=usd / summary.completed * 1000 if summary.completed else None,
        gpu_count=gpu_count,
    )
