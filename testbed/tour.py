"""The tour's commands, read from docs/tour.md: what tests/test_tour.py runs, and what each must print.

The doc's markup, which a reader sees as ordinary terminal sessions:

- A fenced ```` ```console ```` block holds commands (lines starting `$ `), each followed by lines of
  its expected output. A command line ends at the first unquoted `#` (a comment for the reader).
- An expected line must occur in what the command printed (stdout and stderr); `...` inside it matches
  anything, runs of spaces and table borders match any run of white space, and a line that is only
  `...` is skipped (a command that shows nothing else must print something).
- A block whose info string is `console terminal-2` is the second terminal: its command keeps running
  (in the background, for the test) while the next blocks run, and a `^C` line in a later terminal-2
  block interrupts it (Ctrl-C); the lines after `^C` are what it prints from then on.
- `<LABEL>` in a command stands for what an earlier output showed next to LABEL in a table (`<API key>`:
  the key `notus serve` printed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(console[^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z0-9 _-]*)>")
INTERRUPT = "^C"


@dataclass(frozen=True)
class Step:
    """One command of the tour (or `^C` to the second terminal) and the lines it must print."""

    command: str
    expected: tuple[str, ...]
    background: bool  # runs in the second terminal

    @property
    def interrupt(self) -> bool:
        return self.command == INTERRUPT


def read_tour(path: Path) -> list[Step]:
    """The tour's steps in the order the doc gives them."""
    steps: list[Step] = []
    for info, body in FENCE.findall(path.read_text()):
        background = "terminal-2" in info.split()
        command: str | None = None
        expected: list[str] = []
        for line in body.splitlines():
            if line.startswith("$ ") or line.strip() == INTERRUPT:
                if command is not None:
                    steps.append(Step(command, tuple(expected), background))
                command, expected = _command(line), []
            elif line.strip():
                if command is None:
                    raise ValueError(f"{path.name}: output before any command in a console block: {line!r}")
                expected.append(line.strip())
        if command is not None:
            steps.append(Step(command, tuple(expected), background))
    return steps


def _command(line: str) -> str:
    """The shell command on a `$ ` line, without the reader's trailing comment (an unquoted ` #`)."""
    if line.strip() == INTERRUPT:
        return INTERRUPT
    text, quote = line[2:], ""
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1].isspace()):
            return text[:index].rstrip()
    return text.rstrip()


BORDERS = str.maketrans("│┃", "  ")  # rich's table borders count as white space


def pattern(expected: str) -> re.Pattern[str]:
    """An expected line as a regex: `...` is anything, white space (and table borders) any white
    space, the rest literal."""
    pieces = expected.translate(BORDERS).split("...")
    return re.compile(".*?".join(r"\s+".join(re.escape(word) for word in piece.split()) for piece in pieces))


def missing(expected: tuple[str, ...], printed: str) -> list[str]:
    """The expected lines not found in what was printed (a line that is only `...`: some output)."""
    text = printed.translate(BORDERS)
    return [line for line in expected if not (text.strip() if line == "..." else pattern(line).search(text))]


def fill(command: str, printed: list[str]) -> str:
    """`command` with each `<LABEL>` replaced by the value next to LABEL in an earlier output's table."""

    def value(match: re.Match[str]) -> str:
        row = re.compile(re.escape(match[1]) + r"\s*[│┃]\s*(\S+)")
        for text in reversed(printed):
            if found := row.search(text):
                return found[1]
        raise AssertionError(f"no earlier output has a table row {match[1]!r} for <{match[1]}> in {command!r}")

    return PLACEHOLDER.sub(value, command)
