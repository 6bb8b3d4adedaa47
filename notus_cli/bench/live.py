"""The live view of a running benchmark: finished levels above, the current one with its bar below.

It is a renderable (rich redraws it a few times a second on stderr) fed by the load generator's
progress events; when nobody watches a terminal, each finished level becomes one log line instead.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import numpy as np
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from notus_cli.bench.load import LevelResult, LoadLevel, LoadProgress
from notus_cli.bench.metrics import RequestRecord
from notus_cli.bench.report import ms

RECENT = 200  # latencies kept for the running medians


class LiveView(LoadProgress):
    def __init__(self, log: Callable[[str], None] | None = None) -> None:
        self.log = log
        self.done: list[LevelResult] = []
        self.level: LoadLevel | None = None
        self.planned: int | None = None
        self.duration: float | None = None
        self.started = time.perf_counter()
        self.ok = self.failed = self.in_flight = self.tokens = 0
        self.ttfts: deque[float] = deque(maxlen=RECENT)
        self.tpots: deque[float] = deque(maxlen=RECENT)
        self.note = "connecting"

    def warmup(self, count: int) -> None:
        self.note = f"warming up with {count} request{'s' if count != 1 else ''} (not measured)"

    def cold_start(self, message: str) -> None:
        if self.log and message.split(" (")[0] != self.note.split(" (")[0]:
            self.log(message)  # once per step, not every poll
        self.note = message

    def level_started(self, level: LoadLevel, planned: int | None, duration: float | None) -> None:
        self.level, self.planned, self.duration = level, planned, duration
        self.started = time.perf_counter()
        self.ok = self.failed = self.in_flight = self.tokens = 0
        self.ttfts.clear()
        self.tpots.clear()
        self.note = ""

    def request_sent(self, in_flight: int) -> None:
        self.in_flight = in_flight

    def request_done(self, record: RequestRecord, in_flight: int) -> None:
        self.in_flight = in_flight
        if record.ok:
            self.ok += 1
            self.tokens += record.output_tokens
            if record.ttft is not None:
                self.ttfts.append(record.ttft)
            if (tpot := record.tpot) is not None:
                self.tpots.append(tpot)
        else:
            self.failed += 1

    def level_done(self, result: LevelResult) -> None:
        self.done.append(result)
        self.level = None
        if self.log:
            s = result.summary
            self.log(
                f"{result.level.label}: {s.completed} ok, {s.failed} failed in {s.duration:.1f} s, "
                f"{s.request_throughput:.2f} req/s, {s.output_throughput:.1f} output tok/s, "
                f"TTFT median {ms(s.ttft.median if s.ttft else None)} ms"
            )

    def __rich__(self) -> RenderableType:
        parts: list[RenderableType] = []
        if self.done:
            parts.append(self._done_table())
        if self.level is not None:
            parts.append(self._current())
        elif self.note:
            parts.append(Text(self.note, style="dim"))
        return Group(*parts)

    def _done_table(self) -> Table:
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        for column in ("level", "ok", "failed", "req/s", "out tok/s", "TTFT p50 ms", "TPOT p50 ms"):
            table.add_column(column, justify="left" if column == "level" else "right")
        for result in self.done:
            s = result.summary
            table.add_row(
                result.level.label,
                str(s.completed),
                str(s.failed),
                f"{s.request_throughput:.2f}",
                f"{s.output_throughput:.1f}",
                ms(s.ttft.median if s.ttft else None),
                ms(s.tpot.median if s.tpot else None),
            )
        return table

    def _current(self) -> RenderableType:
        assert self.level is not None
        elapsed = time.perf_counter() - self.started
        finished = self.ok + self.failed
        if self.planned is not None:
            bar = ProgressBar(total=self.planned, completed=finished, width=30)
            amount = f"{finished}/{self.planned}"
        else:
            bar = ProgressBar(total=self.duration or 1.0, completed=min(elapsed, self.duration or 1.0), width=30)
            amount = f"{finished} done"
        ttft = ms(float(np.median(self.ttfts)) * 1000) if self.ttfts else "—"
        tpot = ms(float(np.median(self.tpots)) * 1000) if self.tpots else "—"
        rate = self.ok / elapsed if elapsed else 0.0
        tokens = self.tokens / elapsed if elapsed else 0.0
        line = Table.grid(padding=(0, 1))
        line.add_row(
            Text(self.level.label, style="bold"),
            bar,
            Text(
                f"{amount}  failed {self.failed}  in flight {self.in_flight}  "
                f"{rate:.2f} req/s  {tokens:.0f} tok/s  "
                f"TTFT p50 {ttft} ms  TPOT p50 {tpot} ms  {elapsed:.0f} s"
            ),
        )
        return line
