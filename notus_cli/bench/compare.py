"""`notus bench compare A.json B.json ...`: runs side by side, level by level.

Levels are matched by their load (the same concurrency or rate); each run's cost uses its own
GPU, so runs made on different GPUs compare in dollars as well as in tokens per second. Runs that
measured different things (another workload, route, model, or a toy beside a real run: see
bench.likeness) are refused, unless `allow_unlike`, and then the comparison carries a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from notus_cli.bench.cost import LevelCost
from notus_cli.bench.likeness import Difference, differences, varied
from notus_cli.bench.load import LevelResult
from notus_cli.bench.report import ms, number, usd
from notus_cli.bench.results import BenchRun
from notus_cli.errors import ConfigError

Value = Callable[[LevelResult, LevelCost | None], float | None]


def _stat(name: str, field: str) -> Value:
    def value(result: LevelResult, _cost: LevelCost | None) -> float | None:
        stats = getattr(result.summary, name)
        return None if stats is None else float(getattr(stats, field))

    return value


def _phase(name: str) -> Value:
    """A RunPod job phase's median (None for targets without phases; such rows are left out)."""

    def value(result: LevelResult, _cost: LevelCost | None) -> float | None:
        stats = result.summary.phases.get(name)
        return None if stats is None else stats.median

    return value


# (name, value, how to show it)
METRICS: tuple[tuple[str, Value, Callable[[float | None], str]], ...] = (
    ("Request throughput (req/s)", lambda r, c: r.summary.request_throughput, number),
    ("Output throughput (tok/s)", lambda r, c: r.summary.output_throughput, lambda v: number(v, 1)),
    ("TTFT median (ms)", _stat("ttft", "median"), ms),
    ("TTFT p99 (ms)", _stat("ttft", "p99"), ms),
    ("TPOT median (ms)", _stat("tpot", "median"), ms),
    ("TPOT p99 (ms)", _stat("tpot", "p99"), ms),
    ("ITL median (ms)", _stat("itl", "median"), ms),
    ("E2EL median (ms)", _stat("e2el", "median"), ms),
    ("Queue median (ms)", _phase("queue"), ms),
    ("Execution median (ms)", _phase("execution"), ms),
    ("Failed requests", lambda r, c: float(r.summary.failed), lambda v: number(v, 0)),
    ("SLO attainment (%)", lambda r, c: _percent(r.summary.slo_attainment), lambda v: number(v, 0)),
    ("$ per 1M output tokens", lambda r, c: c.usd_per_million_output_tokens if c else None, usd),
    ("$ per 1,000 requests", lambda r, c: c.usd_per_thousand_requests if c else None, usd),
)


def _percent(share: float | None) -> float | None:
    return None if share is None else share * 100


@dataclass(frozen=True)
class Comparison:
    names: list[str]
    header: list[str]
    rows: list[list[str]]
    data: dict[str, Any]
    unlike: list[Difference]  # compared anyway (allow_unlike): what the numbers do not share
    notes: list[str]  # for under the table: the unlike, what differs by design (the GPU), runs without prices


def compare(runs: Sequence[tuple[str, BenchRun]], *, allow_unlike: bool = False) -> Comparison:
    """A row per (level, metric), a column per run, and the change from the first run when there are two.

    Raises ConfigError with fewer than two runs, and when the runs measured different things
    (naming each difference) unless `allow_unlike`.
    """
    if len(runs) < 2:
        raise ConfigError("compare needs at least two results", hint="notus bench compare A/bench.json B/bench.json")
    names = [name for name, _ in runs]
    unlike = differences([run for _, run in runs])
    if unlike and not allow_unlike:
        listed = "; ".join(str(difference) for difference in unlike)
        raise ConfigError(
            f"these runs measured different things ({', '.join(names)}): {listed}",
            hint="run them again alike, or pass --allow-unlike to compare them anyway",
        )
    labels: list[str] = []
    for _, run in runs:
        labels += [r.level.label for r in run.levels if r.level.label not in labels]
    header = ["Load", "Metric", *(_column(name, run) for name, run in runs)]
    if len(runs) == 2:
        header.append("Change")
    rows: list[list[str]] = []
    notes = [f"UNLIKE, compared anyway: {difference}" for difference in unlike]
    notes += [f"Differs: {difference}" for difference in varied([run for _, run in runs])]
    notes += [
        f"{name}: no price for {run.gpu.id} ({run.measured_on.why_unpriced})"
        for name, run in runs
        if run.gpu is not None and run.priced_gpu is None
    ]
    data: dict[str, Any] = {
        "runs": names,
        "unlike": {difference.what: difference.values for difference in unlike},
        "notes": notes,
        "levels": {},
    }
    for label in labels:
        found = [_level(run, label) for _, run in runs]
        data["levels"][label] = {}
        for metric, value, show in METRICS:
            values = [None if level is None else value(*level) for level in found]
            if all(v is None for v in values):
                continue
            data["levels"][label][metric] = values
            row = [label, metric, *(show(v) for v in values)]
            if len(runs) == 2:
                row.append(_change(values[0], values[1]))
            rows.append(row)
    return Comparison(names=names, header=header, rows=rows, data=data, unlike=unlike, notes=notes)


def _column(name: str, run: BenchRun) -> str:
    marks = ([run.gpu.id] if run.gpu else []) + (["toy"] if run.measured_on.toy else [])
    return f"{name} ({', '.join(marks)})" if marks else name


def _level(run: BenchRun, label: str) -> tuple[LevelResult, LevelCost | None] | None:
    for result, cost in zip(run.levels, run.costs(), strict=True):
        if result.level.label == label:
            return result, cost
    return None


def _change(before: float | None, after: float | None) -> str:
    if before is None or after is None or before == 0:
        return "—"
    return f"{(after - before) / abs(before):+.1%}"
