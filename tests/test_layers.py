"""The import graph keeps DESIGN.md's layering: each layer imports only from the layers below it.

Read with `ast` from the source (every import, including those inside functions and under
TYPE_CHECKING: a type-only arrow still ties two modules together). The worker ships alone in the
image, so it never imports notus_cli; the CLI reaches the worker only through the modules that form
the worker's contract, plus what `notus serve` needs to run it and what `notus build` copies.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from testbed.common import ROOT

# Top to bottom. A unit is a sub-package of notus_cli/ or a top-level module of it.
LAYERS: list[set[str]] = [
    {"notus_cli.__main__"},
    {"notus_cli.app"},
    {"notus_cli.commands"},
    {"notus_cli.bench", "notus_cli.chat"},
    {"notus_cli.targets"},
    {"notus_cli.deploy", "notus_cli.serve"},
    {"notus_cli.image", "notus_cli.emulator"},
    {"notus_cli.registry_credentials", "notus_cli.runpod_key", "notus_cli.deployments", "notus_cli.openai_url"},
    {"notus_cli.endpoint_types"},
    {"notus_cli.settings"},
    {"notus_cli.runpod", "notus_cli.image_reference", "notus_cli.model"},
    {"notus_cli.http_errors", "notus_cli.output", "notus_cli.guard", "notus_cli.help", "notus_cli.options"},
    {"notus_cli.files", "notus_cli.words"},
    {"notus_cli.errors", "notus_cli"},  # notus_cli: the package's face (its version)
    {"worker"},
]
# The worker's contract (input parameters, job errors, SSE, the startup log and the model's cache
# layout) may be read by any CLI layer; the rest of the worker only by what runs or copies it.
WORKER_CONTRACT = {"worker.params", "worker.job_errors", "worker.sse", "worker.startup", "worker.model_cache"}
WORKER_USERS = {
    "worker.settings": {"notus_cli.serve"},  # notus serve starts workers with the worker's own settings
    "worker.engine": {"notus_cli.serve"},  # and vLLM with the worker's command line
    "worker": {"notus_cli.image"},  # notus build copies the package into the image
}


def modules() -> Iterator[tuple[str, Path]]:
    for top in ("notus_cli", "worker"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def imports(path: Path) -> set[str]:
    """Every notus_cli/worker module `path` imports (`from a import b` is a.b when that is a module, else a)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            named = [f"{node.module}.{alias.name}" for alias in node.names]
            found.update(name for name in named if _is_module(name))
            if not all(_is_module(name) for name in named):  # a name defined in the module itself
                found.add(node.module)
    return {name for name in found if name.split(".")[0] in ("notus_cli", "worker")}


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def unit(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "worker":
        return "worker"
    if len(parts) > 1 and (ROOT / "notus_cli" / parts[1]).is_dir():
        return ".".join(parts[:2])
    if len(parts) > 1 and parts[1] == "__version__":
        return "notus_cli"
    return ".".join(parts[:2])


def layer(module: str) -> int:
    for index, units in enumerate(LAYERS):
        if unit(module) in units:
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py: place it there")


def test_every_import_points_down() -> None:
    upward = [
        f"{module} -> {target}"
        for module, path in modules()
        for target in imports(path)
        if unit(target) != unit(module) and layer(target) <= layer(module)
    ]
    assert upward == [], "imports that run against the layering (DESIGN.md):\n" + "\n".join(upward)


def test_the_worker_never_imports_the_cli() -> None:
    leaks = [
        f"{module} -> {target}"
        for module, path in modules()
        if unit(module) == "worker"
        for target in imports(path)
        if target.startswith("notus_cli")
    ]
    assert leaks == []


def test_the_cli_reaches_the_worker_only_through_its_contract() -> None:
    wrong = []
    for module, path in modules():
        if not module.startswith("notus_cli"):
            continue
        for target in imports(path):
            if (
                target.startswith("worker")
                and target not in WORKER_CONTRACT
                and unit(module) not in WORKER_USERS.get(target, set())
            ):
                wrong.append(f"{module} -> {target}")
    assert wrong == [], "CLI modules reaching into the worker's internals:\n" + "\n".join(wrong)


def test_no_two_modules_import_each_other_round_a_circle() -> None:
    graph = {module: {t for t in imports(path) if t != module and _is_module(t)} for module, path in modules()}
    circles = [c for c in _strongly_connected(graph) if len(c) > 1]
    assert circles == [], f"import circles: {circles}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, set()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups
