"""Shared fixtures: a hermetic environment for every test, and real servers started once per session."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from notus_cli.model.tiny import write_tiny_model
from notus_cli.serve.stack import LocalStack
from notus_cli.serve.stack_config import StackConfig
from testbed.control import control_harness
from testbed.emulator import Harness
from testbed.vllm import VllmServer, start_vllm

# Fuzz tests: the same examples on every run (a CI failure reproduces), no example database in the
# tree, no per-example deadline on these shared cores; NOTUS_FUZZ_EXAMPLES runs a longer search.
settings.register_profile(
    "notus",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=int(os.environ.get("NOTUS_FUZZ_EXAMPLES", "200")),
)
settings.load_profile("notus")

ISOLATED_PREFIXES = ("NOTUS_", "RUNPOD_", "HF_", "HUGGING_FACE", "OPENAI_")
# What makes a test an integration test (marker `integration`, left out of `scripts/test --fast`): a
# fixture that starts processes (SDK workers, vLLM, dockerd, the OpenAI stub) or a call that does
# (the CLI in a process of its own, pexpect, subprocess).
PROCESS_FIXTURES = {"emulator", "harness", "control_emulator", "local_stack", "vllm_server", "dockerd", "cli"}
PROCESS_FIXTURES |= {"timed_stub", "fast_stub", "keyed_stub"}
PROCESS_CALLS = {"notus", "notus_command", "notus_serve", "running_stub", "subprocess", "pexpect", "Repl", "run_worker"}


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C works in the tests as in a terminal. A CI runner may start us as a background job of a
    non-interactive shell, which ignores SIGINT, and every child would inherit that: `notus` started by
    a test would then never see the Ctrl-C the test sends."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that start processes `integration`, so the fast tier can leave them out."""
    for item in items:
        function = getattr(item, "function", None)
        names = set(function.__code__.co_names) if function is not None else set()
        fixtures = set(getattr(item, "fixturenames", ()))
        if names & PROCESS_CALLS or fixtures & PROCESS_FIXTURES:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's config, keys, project or terminal: own HOME and XDG dirs, a fresh
    working directory whose notus.toml is the config file (NOTUS_CONFIG), no colour, fixed width."""
    keep = {"NOTUS_VLLM_PYTHON"}
    for name in list(os.environ):
        if name.startswith(ISOLATED_PREFIXES) and name not in keep:
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))  # serve's connection files
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOTUS_CONFIG", str(tmp_path / "notus.toml"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Nemotron-H, written once per session."""
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny").path


@pytest.fixture(scope="session")
def vllm_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A real vLLM (CPU build) serving the tiny model, shared by the whole session."""
    server = start_vllm(tiny_model, tmp_path_factory.mktemp("logs") / "vllm.log")
    yield server
    server.stop()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """An emulator of this test's own: the faults, limits and rules a test changes end with it."""
    running = Harness.start(tmp_path)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """An emulator on loopback; tests add endpoints with real SDK worker processes (echo handler by default)."""
    harness = Harness.start(tmp_path_factory.mktemp("emulator-logs"))
    yield harness
    harness.close()


@pytest.fixture(scope="session")
def control_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """An emulator whose control plane (POST /graphql) starts echo workers for the endpoints it creates."""
    harness = control_harness(tmp_path_factory.mktemp("control-logs"))
    yield harness
    harness.close()


@pytest.fixture(scope="session")
def local_stack(
    vllm_server: VllmServer, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """The stack `notus serve --tiny --workers 2` runs: emulator, two `python -m worker` processes.

    It shares the session's vLLM (`vllm_server`) instead of starting a second one; `stack.info` has the
    URL, endpoint id and key, `stack.emulator` the emulator itself.
    """
    config = StackConfig(
        model=tiny_model,
        workers=2,
        port=0,
        vllm_url=vllm_server.base_url,
        log_dir=tmp_path_factory.mktemp("stack-logs"),
        write_connection=False,
    )
    stack = LocalStack(config)
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """A directory kept after the run for what a person may want to look at (screenshots, reports).

    `artifacts/<test id>/` in the repository (ignored by git); CI can keep the whole folder.
    """
    root = Path(__file__).resolve().parents[1] / "artifacts"
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.nodeid)
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    return directory
