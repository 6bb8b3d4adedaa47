"""Names that say what they are: no two modules of notus_cli/ share a base name (except one role in
parallel packages, such as each command's module), no two classes share a name, and no module grows
past the size where its parts stop reading as one job."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from testbed.common import ROOT

CLI = ROOT / "notus_cli"
# `commands/bench.py` is the flag parser of the `bench/` package: the same role, named by its package.
PARALLEL = {CLI / "commands"}
MAX_LINES = 400


def _sources(*tops: Path) -> list[Path]:
    return [path for top in tops for path in sorted(top.rglob("*.py"))]


def test_no_two_modules_share_a_base_name() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in _sources(CLI):
        if path.name != "__init__.py" and path.parent not in PARALLEL:
            seen[path.stem].append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}


def test_no_two_classes_share_a_name() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in _sources(CLI, ROOT / "worker"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                seen[node.name].append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}


def test_no_module_is_over_the_size_of_one_job() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _sources(CLI, ROOT / "worker")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these where the split shows the design: {long}"
