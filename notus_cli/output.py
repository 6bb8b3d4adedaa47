"""The one way commands talk to people: results on stdout, everything else on stderr.

`--json` and non-interactive runs (pipes, CI) turn off colour and progress bars, so scripts get
clean output and logs stay readable.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

import typer
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
from rich.text import Text

from notus_cli.errors import ConfigError, NotusError


class Output:
    """`stdout`/`stderr` replace the two consoles (tests hand in ones that write to a buffer)."""

    def __init__(
        self, *, json_mode: bool = False, stdout: Console | None = None, stderr: Console | None = None
    ) -> None:
        self.json_mode = json_mode
        no_color = json_mode or "NO_COLOR" in os.environ
        self.out = stdout or Console(no_color=no_color, highlight=False, soft_wrap=True)
        self.err = stderr or Console(stderr=True, no_color=no_color, highlight=False)

    @property
    def interactive(self) -> bool:
        return not self.json_mode and self.err.is_terminal

    def result(self, renderable: RenderableType) -> None:
        self.out.print(renderable)

    def text(self, text: str) -> None:
        """Plain text on stdout, with no markup interpretation (answers, ids, URLs)."""
        self.out.print(text, markup=False, highlight=False)

    def stream(self, text: str) -> None:
        """Text on stdout as it arrives (an answer streamed to a pipe): no newline, no markup, flushed."""
        self.out.file.write(text)
        self.out.file.flush()

    def json(self, data: Any) -> None:
        self.stream(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")

    def info(self, message: str) -> None:
        self.err.print(message)

    def note(self, message: str, *, style: str | None = "yellow") -> None:
        """One line on stderr in `style`, taken literally (no markup): notices, stats, banners."""
        self.err.print(Text(message, style=style or ""), soft_wrap=True)

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]Warning:[/] {message}")

    def next_step(self, command: str) -> None:
        self.err.print(f"Next: [bold]{command}[/]")

    def error(self, exc: NotusError) -> None:
        # soft_wrap: one error is one line, however narrow the terminal or log viewer; the message is
        # taken literally (a server's error text may hold brackets rich would read as markup)
        self.err.print(Text.assemble(("Error: ", "red"), exc.message), highlight=False, soft_wrap=True)
        if exc.hint:
            self.err.print(Text.assemble(("Hint: ", "dim"), exc.hint), soft_wrap=True)

    def confirm(self, question: str, *, default: bool = False) -> bool:
        """Ask `question` on the terminal. Raises ConfigError (pass --yes) when stdin is not a terminal:
        a pipe or /dev/null cannot answer, and an answer read from it would be a guess."""
        _need_terminal(question, "pass --yes to go ahead without asking")
        return typer.confirm(question, default=default, err=True)

    def ask(self, question: str, *, hidden: bool = False, otherwise: str) -> str:
        """Ask `question` on the terminal (`hidden`: not echoed). Raises ConfigError whose hint is
        `otherwise` (how to give the answer instead) when stdin is not a terminal."""
        _need_terminal(question, otherwise)
        return str(typer.prompt(question, hide_input=hidden, err=True))

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

    @contextmanager
    def live_result(self, renderable: RenderableType) -> Iterator[None]:
        """A result drawn on stdout as it grows (a streamed answer at a terminal); it stays when done.

        The stdout console soft-wraps (an id or URL printed to a pipe stays one line), but a live
        display must wrap its text itself: rich crops each soft-wrapped line at the screen's width.
        """
        soft_wrap, self.out.soft_wrap = self.out.soft_wrap, False
        try:
            with Live(renderable, console=self.out, refresh_per_second=8, transient=False):
                yield
        finally:
            self.out.soft_wrap = soft_wrap

    @contextmanager
    def status(self, message: str) -> Iterator[None]:
        """A spinner with `message` on stderr while the block runs; nothing when nobody is watching."""
        if not self.interactive:
            yield
            return
        with self.err.status(Text(message)):
            yield


def _need_terminal(question: str, hint: str) -> None:
    if not sys.stdin.isatty():
        raise ConfigError(f"'{question}' needs an answer, and stdin is not a terminal", hint=hint)


class Latest:
    """A renderable that shows whatever was put in it last: hand it to Output.live, then update it."""

    def __init__(self, renderable: RenderableType = "") -> None:
        self.renderable = renderable

    def update(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich__(self) -> RenderableType:
        return self.renderable


def table(*columns: str, title: str | None = None, whole: Collection[str] = ()) -> Table:
    """A table in the house style. Columns named in `whole` (ids, names a person types) are never
    wrapped or cut; the others wrap at spaces to fit the terminal. No header is cut: a column is
    at least as wide as the longest word of its header."""
    result = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        widest = max((len(word) for word in column.split()), default=0)
        result.add_column(column, no_wrap=column in whole, min_width=widest)
    return result
