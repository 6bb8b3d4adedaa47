"""The report's PNG plots, drawn with matplotlib's Agg canvas (no display, no pyplot global state).

Three pictures: latency against throughput across the sweep (where the knee is), and the TTFT
and ITL distributions of each level as cumulative curves (what the tail looks like).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from notus_cli.bench.load import LevelResult
from notus_cli.bench.results import BenchRun

MAX_POINTS = 2000  # a CDF drawn from more points looks the same and bloats the PNG


def short_label(result: LevelResult) -> str:
    level = result.level
    return f"c={level.concurrency}" if level.rate is None else f"{level.rate:g}/s"


def latency_throughput(run: BenchRun) -> bytes:
    """TTFT and TPOT (median and p99) against output throughput, one point per level."""
    figure = Figure(figsize=(9, 4), dpi=100, layout="constrained")
    levels = [r for r in run.levels if r.summary.completed]
    x = [r.summary.output_throughput for r in levels]
    for axes, (title, name) in zip(figure.subplots(1, 2), (("TTFT", "ttft"), ("TPOT", "tpot")), strict=True):
        for statistic, style in (("median", "o-"), ("p99", "s--")):
            y = [getattr(getattr(r.summary, name), statistic) if getattr(r.summary, name) else np.nan for r in levels]
            axes.plot(x, y, style, label=statistic)
        for r, xi in zip(levels, x, strict=True):
            stats = getattr(r.summary, name)
            if stats is not None:
                axes.annotate(short_label(r), (xi, stats.median), textcoords="offset points", xytext=(4, 4), fontsize=8)
        axes.set_title(f"{title} vs output throughput")
        axes.set_xlabel("output throughput (tokens/s)")
        axes.set_ylabel(f"{title} (ms)")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    return _png(figure)


def distribution(run: BenchRun, name: str, title: str) -> bytes:
    """The cumulative distribution of one latency (`ttft` or `itl`), a curve per level."""
    figure = Figure(figsize=(9, 4), dpi=100, layout="constrained")
    axes = figure.subplots()
    for result in run.levels:
        values = _values(result, name)
        if not values:
            continue
        data = np.sort(np.asarray(values)) * 1000.0
        if len(data) > MAX_POINTS:
            data = data[np.linspace(0, len(data) - 1, MAX_POINTS).astype(int)]
        axes.step(data, np.linspace(0, 1, len(data)), where="post", label=result.level.label)
    axes.set_title(f"{title} distribution")
    axes.set_xlabel(f"{title} (ms)")
    axes.set_ylabel("share of requests" if name != "itl" else "share of gaps")
    axes.grid(True, alpha=0.3)
    if axes.lines:
        axes.legend(fontsize=8)
    return _png(figure)


def all_plots(run: BenchRun) -> dict[str, bytes]:
    """File name → PNG bytes."""
    return {
        "latency_throughput.png": latency_throughput(run),
        "ttft.png": distribution(run, "ttft", "TTFT"),
        "itl.png": distribution(run, "itl", "ITL"),
    }


def _values(result: LevelResult, name: str) -> Sequence[float]:
    ok = [record for record in result.records if record.ok]
    if name == "itl":
        return [gap for record in ok for gap in record.itl]
    return [value for record in ok if (value := getattr(record, name)) is not None]


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
