"""`notus serve` as a user runs it: a real process tree, a real request, Ctrl-C, nothing left behind."""

from __future__ import annotations

import json
import socket
import stat
from functools import partial
from pathlib import Path

import httpx
import pytest

from notus_cli.serve.connection import connection_file
from testbed.common import notus as run_notus
from testbed.procs import descendants, running
from testbed.serving import README_EXAMPLE, notus_serve

notus = partial(run_notus, timeout=120)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {}, "say which model to serve"),
        (("--tiny", "--model", "."), {}, "--tiny and --model exclude each other"),
        (("--tiny", "--workers", "0"), {}, "--workers"),
        (("--tiny", "--port", "70000"), {}, "--port"),
        (("--tiny",), {"NOTUS_VLLM_PYTHON": "/nonexistent/python"}, "vllm_python '/nonexistent/python'"),
        (("--tiny",), {"NOTUS_SERVE__WORKERS": "many"}, "NOTUS_SERVE__WORKERS"),
        (("--tiny", "--faults", "404:run:1%"), {}, "--faults: '404:run:1%': fault '404' is not one of"),
        (("--tiny", "--faults", "502:strem:1%"), {}, "route 'strem' is not one of *, run, runsync"),
    ],
)
def test_bad_input_gets_a_clear_error_and_no_traceback(
    args: tuple[str, ...], env: dict[str, str], expected: str, tmp_path: Path
) -> None:
    result = notus("serve", *args, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_fails_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = notus("serve", "--tiny", "--port", str(taken.getsockname()[1]), cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot listen on 127.0.0.1" in result.stderr
    assert "Hint:" in result.stderr
    assert not (tmp_path / ".notus" / "serve" / "vllm.log").exists(), "vLLM was never started"


@pytest.mark.vllm
def test_serve_tiny_answers_the_readme_request_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    with notus_serve("--tiny", "--workers", "2", "--faults", "429:cancel:1x", cwd=tmp_path) as served:
        info = served.info
        children = descendants(served.process.pid)
        connection = connection_file()
        assert stat.S_IMODE(connection.stat().st_mode) == 0o600
        assert json.loads(connection.read_text())["api_key"] == info["api_key"]
        headers = {"Authorization": f"Bearer {info['api_key']}"}
        with httpx.Client(base_url=info["endpoint_url"], headers=headers, timeout=600) as client:
            answer = client.post("/runsync?wait=300000", json=README_EXAMPLE).json()
            while answer["status"] in ("IN_QUEUE", "IN_PROGRESS"):  # a slow, busy machine
                answer = client.get(f"/status/{answer['id']}").json()
            health = client.get("/health").json()
            refused = client.post("/cancel/no-such-job")  # the one injected fault
            after = client.post("/cancel/no-such-job")
    assert answer["status"] == "COMPLETED"
    completion = answer["output"][0]
    assert completion["object"] == "chat.completion"
    assert completion["model"] == info["served_model_name"]
    assert completion["usage"]["completion_tokens"] >= 1
    assert health["workers"]["idle"] == 2
    assert info["faults"] == "429:cancel:1x"
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "1")
    assert after.status_code == 404
    assert len(children) >= 3, "vLLM and two workers ran under notus serve"
    assert served.code == 0
    assert not [pid for pid in children if running(pid)], "every child process ended"
    assert not connection.exists()
    assert "stopped" in served.stderr.read_text()
