"""The one way commands talk to people: results on stdout, everything else on stderr.

`--json` and non-interactive runs (pipes, CI) turn off colour and progress bars, so scripts get
clean output and logs stay readable.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from notus_cli.errors import NotusError


class Output:
    def __init__(self, *, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        no_color = json_mode or "NO_COLOR" in os.environ
        self.out = Console(no_color=no_color, highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, no_color=no_color, highlight=False)

    @property
    def interactive(self) -> bool:
        return not self.json_mode and self.err.is_terminal

    def result(self, renderable: RenderableType) -> None:
        self.out.print(renderable)

    def text(self, text: str) -> None:
        """Plain text on stdout, with no markup interpretation (answers, ids, URLs)."""
        self.out.print(text, markup=False, highlight=False)

    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()

    def info(self, message: str) -> None:
        self.err.print(message)

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]Warning:[/] {message}")

    def next_step(self, command: str) -> None:
        self.err.print(f"Next: [bold]{command}[/]")

    def error(self, exc: NotusError) -> None:
        # soft_wrap: one error is one line, however narrow the terminal or log viewer
        self.err.print(f"[red]Error:[/] {exc.message}", markup=True, highlight=False, soft_wrap=True)
        if exc.hint:
            self.err.print(f"[dim]Hint:[/] {exc.hint}", soft_wrap=True)

    @contextmanager
    def progress(self, *, transfer: bool = False) -> Iterator[Progress]:
        """A rich progress display on stderr; hidden when nobody is watching."""
        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
        columns += (
            [DownloadColumn(), TransferSpeedColumn()] if transfer else [TextColumn("{task.completed}/{task.total}")]
        )
        columns.append(TimeElapsedColumn())
        with Progress(*columns, console=self.err, disable=not self.interactive, transient=False) as progress:
            yield progress

    @contextmanager
    def live(self, renderable: RenderableType) -> Iterator[None]:
        """Keep `renderable` redrawn on stderr while the block runs; nothing when nobody is watching."""
        if not self.interactive:
            yield
            return
        with Live(renderable, console=self.err, refresh_per_second=4, transient=True):
            yield


def table(*columns: str, title: str | None = None) -> Table:
    """A table in the house style."""
    result = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        result.add_column(column)
    return result
