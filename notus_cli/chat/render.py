"""What the person sees: answers as live Markdown with the reasoning apart, a stats line after each.

`TerminalView` is for a person at a terminal; `PlainView` is for pipes and scripts: the answer's
text and nothing else on stdout. Both write through the command's Output: the answer (and what a
slash command asked for) on stdout, notices, stats and errors on stderr.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.text import Text

from notus_cli.chat.answer import REASONING_LENGTH, Answer
from notus_cli.errors import NotusError
from notus_cli.output import Output
from notus_cli.words import plural

TAIL_LINES, TAIL_WIDTH = 6, 400
EMPTY_HINT_REPL = "/thoughts shows the reasoning; /retry, /set max_tokens N or /think off may get one"
EMPTY_HINT_ONCE = "raise max_tokens (-s max_tokens=N) or ask without reasoning (--no-think)"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # a terminal would obey them; text needs only \t and \n


class View(Protocol):
    def answering(self) -> AbstractContextManager[Callable[[Answer], None]]:
        """A context that shows the answer while it streams; yields the function to call on each update."""
        ...

    def finished(self, answer: Answer) -> None: ...

    def notice(self, message: str) -> None: ...


def stats_line(answer: Answer) -> str:
    """Time to first token, tokens, decode speed and, for RunPod, its queue delay and execution time."""
    parts = []
    if answer.ttft is not None:
        parts.append(f"first token {answer.ttft:.2f} s")
    parts.append(plural(answer.tokens, "token"))
    if answer.decode_rate is not None:
        parts.append(f"{answer.decode_rate:.1f} tokens/s")
    if answer.timing is not None:
        if answer.timing.queue_ms is not None:
            parts.append(f"queue {answer.timing.queue_ms / 1000:.2f} s")
        if answer.timing.execution_ms is not None:
            parts.append(f"execution {answer.timing.execution_ms / 1000:.2f} s")
    if answer.finish_reason == "length":
        parts.append("cut at max_tokens")
    elif answer.finish_reason == REASONING_LENGTH:
        parts.append("max_tokens spent on reasoning: no answer")
    return " · ".join(parts)


def reasoning_tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last few lines of the reasoning so far: enough to see it move, not to push the answer away."""
    kept = CONTROL.sub("", text).strip().splitlines()[-lines:]
    tail = "\n".join(line[-TAIL_WIDTH:] for line in kept)
    return ("…" + tail) if len(kept) == lines or len(text) > len(tail) else tail


class TerminalView:
    """`repl`: in the REPL, where slash commands can follow; else one answer (--once at a terminal)."""

    def __init__(self, out: Output, *, show_reasoning: bool = True, repl: bool = True) -> None:
        self.out = out
        self.show_reasoning = show_reasoning
        self.repl = repl

    def _frame(self, answer: Answer | None, streaming: bool) -> RenderableType:
        """While the model thinks, the tail of its reasoning; once it answers, the reasoning folds to one line."""
        parts: list[RenderableType] = []
        if answer is not None and answer.reasoning and self.show_reasoning:
            if streaming and not answer.content:
                parts.append(Text("thinking", style="dim bold"))
                parts.append(Text(reasoning_tail(answer.reasoning), style="dim italic"))
            else:
                words = len(answer.reasoning.split())
                parts.append(Text(f"▸ thought for {words} words (/thoughts shows them)", style="dim"))
        if answer is not None and answer.content:
            parts.append(Markdown(CONTROL.sub("", answer.content), code_theme="ansi_dark"))
        if streaming:
            count = answer.chunks if answer else 0
            parts.append(Text(f"… {count} tokens (Ctrl-C stops)" if count else "… waiting (Ctrl-C stops)", "dim"))
        return Group(*parts)

    def thoughts(self, answer: Answer | None) -> None:
        """The last answer's whole reasoning (for /thoughts)."""
        if answer is None or not answer.reasoning:
            self.out.note("no reasoning in the last answer", style="dim")
            return
        self.out.result(Text(CONTROL.sub("", answer.reasoning.strip()), style="dim italic"))

    @contextmanager
    def answering(self) -> Iterator[Callable[[Answer], None]]:
        current: list[Answer] = []
        streaming = [True]

        def update(answer: Answer) -> None:
            current[:] = [answer]

        frame = Frame(lambda: self._frame(current[0] if current else None, streaming[0]))
        with self.out.live_result(frame):
            try:
                yield update
            finally:
                streaming[0] = False

    def finished(self, answer: Answer) -> None:
        if answer.completion is not None:  # not streamed: show it whole
            self.out.result(self._frame(answer, False))
        self.out.note(stats_line(answer), style="dim")
        if answer.empty:
            self.out.warn(f"{answer.why_empty()}. {EMPTY_HINT_REPL if self.repl else ''}".rstrip())

    def notice(self, message: str) -> None:
        self.out.note(message)

    def error(self, exc: NotusError) -> None:
        self.out.error(exc)


class Frame:
    """A renderable drawn by calling `draw` each time (the live answer redraws what has arrived)."""

    def __init__(self, draw: Callable[[], RenderableType]) -> None:
        self.draw = draw

    def __rich__(self) -> RenderableType:
        return self.draw()


class PlainView:
    """The answer's text on stdout as it arrives; notices and errors on stderr."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self._written = 0

    @contextmanager
    def answering(self) -> Iterator[Callable[[Answer], None]]:
        self._written = 0

        def update(answer: Answer) -> None:
            self.out.stream(answer.content[self._written :])
            self._written = len(answer.content)

        yield update

    def finished(self, answer: Answer) -> None:
        if not answer.empty:  # no blank line for no answer: the caller says so on stderr
            self.out.stream(answer.content[self._written :] + "\n")

    def notice(self, message: str) -> None:
        self.out.note(message, style=None)
