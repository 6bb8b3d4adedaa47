"""The last step of a benchmark run: its results, as `notus bench` reports them and bench.json keeps them.

`BenchRun` is what run_benchmark returns, what the JSON report holds and what `notus bench compare`
reads back; report.py and the result files render it.
"""

from __future__ import annotations

import os
import platform
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from notus_cli import __version__
from notus_cli.bench.coldstart import ColdStart
from notus_cli.bench.cost import LevelCost, level_cost
from notus_cli.bench.load import LevelResult, LoadLevel
from notus_cli.bench.measured import MeasuredOn
from notus_cli.bench.metrics import DEFINITIONS, LevelSummary, RequestRecord, Slos
from notus_cli.errors import BenchError, ConfigError
from notus_cli.runpod.gpus import POOLS_BY_ID, GpuPool

FORMAT = "notus-bench/1"


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
    # What served the run; a run built without one (tests, a sweep still under way) is priced as asked.
    measured_on: MeasuredOn = field(default_factory=lambda: MeasuredOn.unrecorded(priced=True))

    @property
    def priced_gpu(self) -> GpuPool | None:
        """The pool the dollar figures are for: None without --gpu, or when that is not what served the run."""
        return self.gpu if self.gpu is not None and self.measured_on.priced else None

    def costs(self) -> list[LevelCost | None]:
        gpu = self.priced_gpu
        if gpu is None:
            return [None for _ in self.levels]
        return [level_cost(gpu, result.summary, gpu_count=self.gpu_count) for result in self.levels]

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
            "measured_on": self.measured_on.to_dict(),
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
        levels = data["levels"]
        measured = data.get("measured_on")
        return cls(
            settings=data["settings"],
            server=data["server"],
            environment=data["environment"],
            levels=[_level_from_dict(level) for level in levels],
            slos=Slos(**data["slos"]),
            attainment=data["attainment"],
            gpu=None if not gpu else POOLS_BY_ID.get(gpu["pool"]) or GpuPool(gpu["pool"], (), 0, gpu["usd_per_second"]),
            started_at=data["started_at"],
            stopped=data.get("stopped"),
            cold_start=ColdStart.from_dict(data["cold_start"]) if data.get("cold_start") else None,
            gpu_count=int(gpu.get("gpu_count", 1)) if gpu else 1,
            measured_on=MeasuredOn.from_dict(measured)
            if isinstance(measured, dict)
            else MeasuredOn.unrecorded(priced=any(level.get("cost") for level in levels)),
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
