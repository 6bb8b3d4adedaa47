"""Where every benchmark's figures go: `docs/results/<name>.md` and `<name>.json`, one writer for all.

The docs link (or include) these files instead of figures typed by hand, and tests/test_docs.py fails
when a documented figure has no results file behind it. Each file says the exact command that wrote it,
when, and how loaded the machine was, since on shared cores the wall-clock figures stretch with load.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from testbed.common import ROOT

RESULTS = ROOT / "docs" / "results"


def add_out_option(parser: argparse.ArgumentParser, name: str) -> None:
    """`--out DIR`: where `name`.md and `name`.json go (default docs/results, what the docs link)."""
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"directory for {name}.json and .md (docs/results)")


def command(name: str, argv: Sequence[str] | None = None) -> str:
    """The command line that reproduces this run, as the docs spell it."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", f"benchmarks.{name}", *args])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table of `rows` under `header` (cells as str())."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def text_block(text: str) -> str:
    """A report printed for the terminal, kept verbatim as a fenced block."""
    return "```text\n" + text.strip("\n") + "\n```\n"


@contextlib.contextmanager
def tee() -> Iterator[io.StringIO]:
    """Print as usual and also keep what was printed, for a benchmark whose report is its printout."""
    kept = io.StringIO()
    terminal = sys.stdout

    class Both(io.TextIOBase):
        def write(self, text: str) -> int:
            terminal.write(text)
            return kept.write(text)

        def flush(self) -> None:
            terminal.flush()

    with contextlib.redirect_stdout(Both()):
        yield kept


def write_results(
    name: str,
    title: str,
    body: str,
    data: dict[str, Any],
    *,
    out: Path = RESULTS,
    module: str | None = None,
    argv: Sequence[str] | None = None,
) -> Path:
    """Write `out/name.md` (title, the command, when, the machine's load, then `body`) and `out/name.json`
    (the same header fields plus `data`); return the Markdown file's path. `module` is the benchmark's
    module when one writes several results files (default: `name`)."""
    ran = command(module or name, argv)
    written = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = [round(value, 1) for value in os.getloadavg()]
    header = (
        f"# {title}\n\nWritten by `{ran}` on {written}; load average {load[0]} on {os.cpu_count()} CPUs "
        "(the figures are this machine's, and stretch with its load).\n\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    meta = {"benchmark": name, "command": ran, "written": written, "load_average": load, "cpus": os.cpu_count()}
    (out / f"{name}.json").write_text(json.dumps({**meta, **data}, indent=2, default=str) + "\n")
    markdown = out / f"{name}.md"
    markdown.write_text(header + body.rstrip("\n") + "\n")
    print(f"\nwrote {markdown} and {name}.json", file=sys.stderr)
    return markdown
