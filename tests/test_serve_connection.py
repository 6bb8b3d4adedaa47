"""Two checkouts, two stacks: each project's `--local` finds its own `notus serve`, and a project with
none is told where the others run. The stacks here are connection files written the way a running
`notus serve` writes them (its pid is this process: alive while the test runs); tests/test_serve_cli.py
checks that a real `notus serve` writes its own."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from notus_cli.errors import EndpointUnreachable, ExitCode
from notus_cli.serve.connection import connection_file, other_stacks, read_connection, write_connection
from notus_cli.targets import local_endpoint, require_local
from testbed.common import notus


def _enter(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work in `project`, as a person does after `cd` (its notus.toml is the config file)."""
    project.mkdir(exist_ok=True)
    monkeypatch.chdir(project)
    monkeypatch.setenv("NOTUS_CONFIG", str(project / "notus.toml"))


def _serve_in(project: Path, endpoint_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _enter(project, monkeypatch)
    body = {"url": "http://127.0.0.1:9", "api_base": "http://127.0.0.1:9/v2", "endpoint_id": endpoint_id}
    write_connection({**body, "api_key": f"rpa_{endpoint_id}"})


def test_each_project_finds_its_own_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_in(tmp_path / "one", "stack-one", monkeypatch)
    _serve_in(tmp_path / "two", "stack-two", monkeypatch)
    for project, endpoint_id in (("one", "stack-one"), ("two", "stack-two")):
        _enter(tmp_path / project, monkeypatch)
        found = local_endpoint()
        assert found is not None
        assert found.endpoint_id == endpoint_id
        assert [stack["endpoint_id"] for stack in other_stacks()] == ["stack-two" if project == "one" else "stack-one"]
        assert stat.S_IMODE(connection_file().stat().st_mode) == 0o600, "the file holds the key"
    assert connection_file(tmp_path / "one") != connection_file(tmp_path / "two")


def test_a_project_without_a_stack_is_told_where_the_others_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve_in(tmp_path / "one", "stack-one", monkeypatch)
    _enter(tmp_path / "three", monkeypatch)
    with pytest.raises(EndpointUnreachable) as raised:
        require_local()
    assert str(tmp_path / "three") in str(raised.value)
    assert str(tmp_path / "one") in str(raised.value.hint)
    result = notus(
        "chat", "--local", "--once", "hi", cwd=tmp_path / "three", NOTUS_CONFIG=str(tmp_path / "three" / "notus.toml")
    )
    assert result.returncode == ExitCode.UNREACHABLE, result.stderr
    assert "no `notus serve` is running for this project" in result.stderr
    assert str(tmp_path / "one") in result.stderr
    assert "Traceback" not in result.stderr


def test_a_stack_whose_process_exited_is_not_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_in(tmp_path / "one", "stack-one", monkeypatch)
    body = json.loads(connection_file().read_text())
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # a pid that was alive and is gone
    connection_file().write_text(json.dumps({**body, "pid": pid}))
    assert read_connection() is None
    assert local_endpoint() is None
