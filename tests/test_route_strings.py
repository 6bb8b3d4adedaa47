"""RunPod's route strings live in one place: notus_cli.runpod.protocol (and the emulator's router, which
serves that table). Anywhere else a route written out by hand could drift from what the clients and
the emulator agree on, which is how code works against the emulator and breaks on RunPod.

The scan reads every string literal of notus_cli/ with `ast` (f-string parts included) except
docstrings, and flags a route spelled as a path (see ROUTE): prose may name a route, code may not build one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from testbed.common import ROOT

# A route as a path: at the start of a literal or glued to what comes before (a URL, a `{base}`).
# After a space or a bracket it is running text ("jobs (/run, /stream)"), which may name a route.
ROUTE = re.compile(
    r"(?:^|(?<=[^\s(\[,`]))/(?:"
    r"(?:run|runsync|health|purge-queue)(?![\w/.-])"
    r"|(?:stream|status|cancel|retry|ping)/"
    r"|job-(?:take|take-batch|done|stream|stop)\b"
    r"|openai/v1)"
)
PROTOCOL = ROOT / "notus_cli" / "runpod" / "protocol"
ROUTERS = {ROOT / "notus_cli" / "emulator" / name for name in ("app.py", "server.py")}  # the router, by either name


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def route_strings(path: Path) -> list[str]:
    """`file:line: text` for each string literal in `path` that spells a RunPod route."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        literal = isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
        if literal and ROUTE.search(node.value):
            hits.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:80]!r}")
    return hits


def test_the_scan_finds_a_route_written_by_hand(tmp_path: Path) -> None:
    sample = ROOT / "notus_cli" / "_route_scan_sample.py"  # inside the tree: relative_to(ROOT) must work
    sample.write_text(
        '"""Prose may say /run and job-take."""\n'
        'URL = f"{base}/stream/{job}"\nHELP = "jobs (/run, /stream)"\nOTHER = "/runpod"\nPATH = "/job-take/$ID"\n'
    )
    try:
        hits = route_strings(sample)
    finally:
        sample.unlink()
    assert sorted(hit.split(": ", 1)[1] for hit in hits) == ["'/job-take/$ID'", "'/stream/'"]


def test_no_route_string_outside_the_protocol_and_the_router() -> None:
    hits = []
    for path in sorted((ROOT / "notus_cli").rglob("*.py")):
        if PROTOCOL in path.parents or path in ROUTERS:
            continue
        hits.extend(route_strings(path))
    assert not hits, "build these from notus_cli.runpod.protocol.routes:\n" + "\n".join(hits)
