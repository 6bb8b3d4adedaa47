"""What every command promises alike: one exit code per failure, hints that name real commands, and a
reference (docs/cli.md) written from the commands themselves.

The exit-code test runs the same failure through every command that can meet it, each in a process of
its own as a person runs it. RunPod cannot be reached from here: a closed loopback port stands in for
an unreachable service, and no key is set for the missing-key case.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import re
from pathlib import Path
from types import ModuleType

import pytest
from rich.console import Console
from typer.core import TyperGroup

from notus_cli.app import cli
from notus_cli.errors import ExitCode
from notus_cli.output import table
from notus_cli.runpod.gpus import ALIASES, POOLS
from testbed.common import ROOT, notus
from testbed.control import control_harness, notus_env
from testbed.emulator import Harness

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens there
SOURCES = sorted((ROOT / "notus_cli").rglob("*.py"))
MENTION = re.compile(r"notus((?: [^\s`'\"(),;]+)+)")


def reference_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_is_current_and_clean() -> None:
    """docs/cli.md is what scripts/cli-docs writes now (scripts/check runs the same generator)."""
    written = (ROOT / "docs" / "cli.md").read_text()
    assert written == reference_module().reference(), "docs/cli.md is stale: run scripts/cli-docs"
    assert not re.search(r"&(quot|#x27|lt|gt|amp);", written), "HTML entities in Markdown"
    assert not re.search(r"\w\.\.\.$", written, flags=re.MULTILINE), "a summary cut with ..."
    assert "```console\nnotus chat my-endpoint" in written, "chat's examples are a code block"
    assert "| 5 | no API key found" in written, "the exit-code table, from notus_cli/errors.py"


def test_help_names_values_not_python_types() -> None:
    reference = reference_module()
    for path, command in reference.walk(cli(), "notus"):
        for param in command.params:
            metavar = getattr(param, "metavar", None) or ""
            assert not re.search(r"<|list\[|bool|Path", metavar), f"{path}: {param.name} shows {metavar!r}"


def _text(node: ast.AST) -> str:
    """A string literal's text; an f-string's placeholders become X (an argument, not a command word)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(part) if isinstance(part, ast.Constant) else "X" for part in node.values)
    return ""


def mentions() -> list[tuple[str, str]]:
    """Every `notus ...` in back-quotes anywhere in notus_cli, and every `notus ...` in a hint or a
    next-step line, as (where, the words after `notus`)."""
    found = []
    for source in SOURCES:
        tree = ast.parse(source.read_text())
        where = str(source.relative_to(ROOT))
        for node in ast.walk(tree):
            texts = []
            if isinstance(node, ast.keyword) and node.arg == "hint":
                texts = [_text(part) for part in ast.walk(node.value)]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "next_step":
                texts = [_text(part) for arg in node.args for part in ast.walk(arg)]
            elif isinstance(node, ast.Constant | ast.JoinedStr):
                texts = re.findall(r"`(notus [^`]*)`", _text(node))
            for text in texts:
                found += [(f"{where}:{getattr(node, 'lineno', '?')}", m.group(1)) for m in MENTION.finditer(text)]
    return found


def check_mention(words: str) -> str | None:
    """What is wrong with `notus WORDS` (None: it is a real command with real options)."""
    command = cli()
    tokens = words.split()
    used = 0
    while isinstance(command, TyperGroup) and used < len(tokens) and tokens[used] in command.commands:
        command = command.commands[tokens[used]]
        used += 1
    if isinstance(command, TyperGroup) and "run" in command.commands:  # `notus bench ...` is `notus bench run ...`
        command = command.commands["run"]
    if used == 0 and tokens[0] not in ("--help", "--version") and not tokens[0].isupper():  # `notus ARGS`
        return f"there is no command `notus {tokens[0]}`"
    options = {name for param in command.params for name in (*param.opts, *getattr(param, "secondary_opts", []))}
    for token in tokens[used:]:
        flag = token.split("=", 1)[0]
        if flag.startswith("--") and flag not in options | {"--help"}:
            return f"`notus {' '.join(tokens[:used])}` has no option {flag}"
    return None


def test_hints_and_messages_name_commands_that_exist() -> None:
    found = mentions()
    assert len(found) > 20, "the scan finds the hints"
    assert any(words.startswith(" endpoints") for _where, words in found)
    wrong = [f"{where}: notus{words}: {problem}" for where, words in found if (problem := check_mention(words))]
    assert not wrong, "\n".join(wrong)


def test_a_wrong_command_name_in_a_hint_is_caught() -> None:
    assert check_mention(" deploy --dry-run") is None
    assert check_mention(" bench compare runs/a") is None
    assert check_mention(" lists yours") == "there is no command `notus lists`"
    assert check_mention(" deploy --frobnicate") == "`notus deploy` has no option --frobnicate"


# The same failure through every command that can meet it: the same exit code everywhere.
KEYLESS = {"NOTUS_RUNPOD_GRAPHQL_URL": f"{CLOSED}/graphql"}  # never reached: the key is missing first
UNREACHABLE = {"RUNPOD_API_KEY": "rpa_test", "NOTUS_RUNPOD_GRAPHQL_URL": f"{CLOSED}/graphql"}
RUNPOD_COMMANDS = [
    ("deploy", "--image", "registry.test/notus:v1", "--yes"),
    ("status", "prod"),
    ("endpoints",),
    ("down", "prod", "--yes"),
]
FAILURES = [
    *[(args, KEYLESS, ExitCode.CREDENTIALS, "no RunPod API key") for args in RUNPOD_COMMANDS],
    (("chat", "--endpoint", "ep1", "--once", "hi"), KEYLESS, ExitCode.CREDENTIALS, "a RunPod API key is needed"),
    (("bench", "--endpoint", "ep1"), KEYLESS, ExitCode.CREDENTIALS, "a RunPod API key is needed"),
    *[(args, UNREACHABLE, ExitCode.UNREACHABLE, "did not answer") for args in RUNPOD_COMMANDS],
    (("chat", "--base-url", CLOSED, "--once", "hi"), {}, ExitCode.UNREACHABLE, "is unreachable"),
    (("bench", "--base-url", CLOSED, "--tokenizer", "TINY"), {}, ExitCode.UNREACHABLE, "nothing answers"),
    (("chat", "--once", "hi"), {}, ExitCode.USAGE, "say which endpoint to use"),
    (("bench",), {}, ExitCode.USAGE, "say which endpoint to use"),
    (("chat", "--bogus"), {}, ExitCode.USAGE, "no such option: --bogus"),
    (("deploy", "--bogus"), {}, ExitCode.USAGE, "no such option: --bogus"),
    (("bench", "run", "--concurrency", "x", "--base-url", CLOSED), {}, ExitCode.USAGE, "--concurrency"),
]


@pytest.mark.parametrize(("args", "env", "code", "says"), FAILURES, ids=lambda value: str(value)[:40])
def test_one_failure_one_exit_code_in_every_command(
    args: tuple[str, ...], env: dict[str, str], code: ExitCode, says: str, tmp_path: Path, tiny_model: Path
) -> None:
    args = tuple(str(tiny_model) if arg == "TINY" else arg for arg in args)
    done = notus(*args, env={**env, "XDG_STATE_HOME": str(tmp_path / "state")})
    assert done.returncode == code, done.stderr
    assert says in done.stderr
    assert done.stderr.startswith("Error: "), "one form for every error"
    assert "╭" not in done.stderr, "no boxes"
    assert "Traceback" not in done.stderr


def test_an_unknown_endpoint_is_named_as_such(emulator: Harness) -> None:
    """The emulator stands in for RunPod's API: a 404 on /health means the endpoint id is unknown."""
    env = {"RUNPOD_ENDPOINT_BASE_URL": f"{emulator.url}/v2", "RUNPOD_API_KEY": emulator.key}
    done = notus("chat", "--endpoint", "nosuchendpoint", "--once", "hi", env=env)
    assert done.returncode == ExitCode.REJECTED, done.stderr
    assert "Error: there is no endpoint nosuchendpoint (HTTP 404)" in done.stderr
    assert "retention" not in done.stderr
    assert "kept 30 min" not in done.stderr
    assert "not found (HTTP 404): not found" not in done.stderr
    assert "Hint: `notus endpoints` lists your endpoints' ids" in done.stderr


def test_tables_keep_what_people_type_whole_at_80_columns() -> None:
    shown = notus("gpus", env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    assert "…" not in shown.stdout, "no header, pool id or alias is cut"
    words = set(re.findall(r"[\w.-]+", shown.stdout))
    assert set(ALIASES) | {pool.id for pool in POOLS} <= words


def test_a_header_is_never_cut() -> None:
    """Bench's summary at the levels of its own example (1,4,16): the headers wrap, they are not cut."""
    levels = [f"concurrency {n}" for n in (1, 4, 16)]
    wide = table("metric", *levels)
    for name in ("output throughput (tokens/s)", "median TTFT (ms)"):
        wide.add_row(name, *["12345.6"] * len(levels))
    console = Console(file=io.StringIO(), width=80)
    console.print(wide)
    assert "…" not in console.file.getvalue()  # type: ignore[attr-defined]


def test_no_endpoints_is_said_not_drawn(tmp_path: Path) -> None:
    """A fresh emulator (its control plane stands in for RunPod's GraphQL API) has no endpoints."""
    harness = control_harness(tmp_path / "logs")
    try:
        done = notus("endpoints", env=notus_env(harness.url, harness.key))
    finally:
        harness.close()
    assert done.returncode == 0, done.stderr
    assert "This account has no serverless endpoints." in done.stderr
    assert "┏" not in done.stdout
