"""The report's words and numbers, shared by the terminal table, the HTML page and the CSV files.

Rows are plain strings here; `notus_cli.output` and `bench.files` decide how they look.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table

from notus_cli.bench.cost import LevelCost
from notus_cli.bench.load import LevelResult
from notus_cli.bench.metrics import DEFINITIONS, Stats
from notus_cli.bench.results import BenchRun
from notus_cli.endpoint_types import IN_WORDS
from notus_cli.output import table

LATENCIES = (("TTFT", "ttft"), ("TPOT", "tpot"), ("ITL", "itl"), ("E2EL", "e2el"))
PHASE_ORDER = {"queue": 0, "execution": 1}  # a RunPod job waits, then runs

Cell = Callable[[LevelResult, LevelCost | None], str]


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def number(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def usd(value: float | None) -> str:
    if value is None:
        return "—"
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def _spread(stats: Stats | None) -> str:
    return "—" if stats is None else f"{ms(stats.mean)} ± {ms(stats.std)}"


def _one(statistic: str) -> Callable[[Stats | None], str]:
    return lambda stats: "—" if stats is None else ms(getattr(stats, statistic))


def _failures(result: LevelResult, _cost: LevelCost | None) -> str:
    causes = result.summary.failures
    return ", ".join(f"{cause} {count}" for cause, count in causes.items()) if causes else "—"


def row_specs(run: BenchRun) -> list[tuple[str, Cell]]:
    """(row name, cell function) for every row this run has data for, in report order."""
    rows: list[tuple[str, Cell]] = [
        ("Requests ok / failed", lambda r, c: f"{r.summary.completed} / {r.summary.failed}"),
        ("Failures by cause", _failures),
        ("Duration (s)", lambda r, c: number(r.summary.duration)),
        ("Request throughput (req/s)", lambda r, c: number(r.summary.request_throughput)),
        ("Output throughput (tok/s)", lambda r, c: number(r.summary.output_throughput, 1)),
        ("Total token throughput (tok/s)", lambda r, c: number(r.summary.total_token_throughput, 1)),
        ("Input / output tokens", lambda r, c: f"{r.summary.input_tokens:,} / {r.summary.output_tokens:,}"),
    ]
    stats: list[tuple[str, Callable[[LevelResult], Stats | None]]] = [
        (title, _latency(name)) for title, name in LATENCIES
    ]
    # RunPod targets: each job's queue delay and execution time, beside the latencies
    phases = {name for result in run.levels for name in result.summary.phases}
    for phase in sorted(phases, key=lambda name: (PHASE_ORDER.get(name, len(PHASE_ORDER)), name)):
        stats.append((phase.capitalize(), _phase(phase)))
    for title, of in stats:
        rows.append((f"{title} mean ± std (ms)", _cell(of, _spread)))
        for statistic in ("median", "p90", "p99"):
            rows.append((f"{title} {statistic} (ms)", _cell(of, _one(statistic))))
    if run.slos:
        rows.append(("Goodput (req/s)", lambda r, c: number(r.summary.goodput)))
        rows.append(("SLO attainment", _attainment))
    if run.priced_gpu:
        rows.append(("$ per 1M output tokens", lambda r, c: usd(c.usd_per_million_output_tokens if c else None)))
        rows.append(("$ per 1,000 requests", lambda r, c: usd(c.usd_per_thousand_requests if c else None)))
    rows.append(("Output tokens counted by", _sources))
    return rows


def _latency(name: str) -> Callable[[LevelResult], Stats | None]:
    return lambda result: getattr(result.summary, name)


def _phase(name: str) -> Callable[[LevelResult], Stats | None]:
    return lambda result: result.summary.phases.get(name)


def _cell(of: Callable[[LevelResult], Stats | None], show: Callable[[Stats | None], str]) -> Cell:
    return lambda result, _cost: show(of(result))


def _attainment(result: LevelResult, _cost: LevelCost | None) -> str:
    s = result.summary
    if s.slo_attainment is None:
        return "—"
    return f"{s.slo_attainment:.0%} ({s.good}/{s.requests})"


def _sources(result: LevelResult, _cost: LevelCost | None) -> str:
    return ", ".join(f"{source} {count}" for source, count in result.summary.token_sources.items()) or "—"


def summary_rows(run: BenchRun) -> tuple[list[str], list[list[str]]]:
    """The report's main table as strings: a header row, then one row per metric, a column per level."""
    costs = run.costs()
    header = ["Metric", *(result.level.label for result in run.levels)]
    rows = [
        [name, *(cell(result, cost) for result, cost in zip(run.levels, costs, strict=True))]
        for name, cell in row_specs(run)
    ]
    return header, rows


def summary_table(run: BenchRun) -> Table:
    header, rows = summary_rows(run)
    result = table(*header, title=title(run))
    result.columns[0].no_wrap = True
    for column in result.columns[1:]:
        column.justify = "right"
    for row in rows:
        result.add_row(*row)
    return result


def title(run: BenchRun) -> str:
    """The table's title: the model at the target, and TOY RUN first when it was one (see bench.measured)."""
    toy = "TOY RUN, " if run.measured_on.toy else ""
    return f"notus bench: {toy}{run.server.get('model') or '?'} at {run.settings['target']['base_url']}"


def verdicts(run: BenchRun) -> list[str]:
    """Sentences under the table: what served the run, the SLO verdict, why the sweep stopped, what cost assumes."""
    lines = [run.measured_on.sentence()] if run.measured_on.recorded else []
    if run.settings.get("target", {}).get("route"):
        lines.append(route_line(run))
    if run.cold_start is not None:
        lines.append(run.cold_start.sentence())
    if run.slos:
        limits = ", ".join(f"{name.upper()} ≤ {limit:g} ms" for name, limit in run.slos.to_dict().items())
        best = run.highest_load_meeting_slos()
        meeting = f"{best.level.label}" if best else "none of the levels"
        lines.append(f"Highest load meeting the SLOs ({limits}, for ≥{run.attainment:.0%} of requests): {meeting}")
    for result in run.levels:
        if result.saturated:
            lines.append(f"{result.level.label}: {result.saturated}")
    if run.stopped:
        lines.append(f"Sweep {run.stopped}")
    lines += cost_lines(run)
    return lines


def cost_lines(run: BenchRun) -> list[str]:
    """What the dollar figures assume, or why there are none though --gpu named a pool."""
    gpu = run.priced_gpu
    if gpu is not None:
        basis = run.measured_on.price_basis
        return [
            f"Cost: pool {gpu.id} at ${gpu.usd_per_second:g}/s (${gpu.usd_per_hour:.2f}/h), "
            f"one worker billed for each level's whole duration{f' (priced on {basis})' if basis else ''}"
        ]
    if run.gpu is not None:
        return [f"No price for {run.gpu.id}: {run.measured_on.why_unpriced or 'not what served the run'}"]
    return []


def route_line(run: BenchRun) -> str:
    """Which route the run measured (bench.endpoints.ROUTES), so two runs are not compared across routes unawares."""
    target = run.settings["target"]
    means = target.get("route_means")
    kind = IN_WORDS.get(str(target.get("endpoint_type")))
    return f"Route measured: {target['route']}" + (f" ({means})" if means else "") + (f", on {kind}" if kind else "")


def definitions() -> list[tuple[str, str]]:
    return list(DEFINITIONS.items())


def summary_json(run: BenchRun) -> dict[str, Any]:
    """The run without its per-request records, for `--json`."""
    data = run.to_dict()
    for level in data["levels"]:
        level.pop("records")
    return data
