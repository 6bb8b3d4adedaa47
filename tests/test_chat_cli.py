"""`notus chat` as a person and a script use it: a real pseudo-terminal (pexpect) and real pipes.

The REPL tests run against the stack `notus serve --tiny` runs (emulator, real worker processes,
vLLM on the CPU with the tiny random model), reached with --local through a connection file like
the one `notus serve` writes. The model's words are random, so the tests check the shape and
timing of what appears, and compare piped output with the same request's chat.completion.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from functools import partial
from pathlib import Path

import pexpect
import pytest

from notus_cli.deployments import Deployment, save_deployment
from notus_cli.serve.connection import write_connection
from notus_cli.serve.stack import LocalStack
from testbed.common import ROOT, notus_command, wait_for
from testbed.common import notus as run_notus
from testbed.emulator import Harness

TERMINAL = {"PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}
PROMPT = "you>"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r")
# Short, repeatable answers from the random model.
SHORT = ("-s", "temperature=0", "-s", "max_tokens=12", "--no-think")


def env(**extra: str) -> dict[str, str]:
    """The test's hermetic environment (conftest), with this worktree's code first."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **TERMINAL, **extra}


notus = partial(run_notus, env=TERMINAL, timeout=180)


def plain(text: str) -> str:
    return ANSI.sub("", text)


class Repl:
    """`notus chat` in a pseudo-terminal of 50 x 120."""

    def __init__(self, *args: str, cwd: Path) -> None:
        program, *arguments = notus_command("chat", *args)
        self.child = pexpect.spawn(
            program,
            arguments,
            cwd=str(cwd),
            env=env(),
            encoding="utf-8",
            timeout=120,
            dimensions=(50, 120),
        )
        self.child.expect(PROMPT)

    def command(self, line: str, expected: str) -> str:
        """Send a line, wait for `expected` (a regex) and the next prompt; returns what came between."""
        self.child.sendline(line)
        self.child.expect(expected)
        seen = plain(self.child.before + self.child.after)
        self.child.expect(PROMPT)
        return seen

    def leave(self) -> int:
        self.child.sendeof()
        self.child.expect(pexpect.EOF)
        self.child.close()
        return int(self.child.exitstatus or 0)


@pytest.fixture
def serve_running(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> LocalStack:
    """The session's stack announced as a running `notus serve` (its connection file, in this test's HOME)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    write_connection(local_stack.info.connection())
    return local_stack


def worker_logs(stack: LocalStack) -> str:
    return "".join(path.read_text() for path in Path(stack.config.log_dir).glob("worker-*.log"))


def history_path() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "notus" / "chat_history"


@pytest.mark.vllm
def test_repl_streams_stops_on_ctrl_c_goes_on_and_saves(serve_running: LocalStack, tmp_path: Path) -> None:
    repl = Repl("--local", cwd=tmp_path)
    repl.command("/think off", "thinking off")
    repl.command("/set temperature 9", r"Error: temperature: must be a number from 0 to 2; got 9")
    repl.command("/set top_k 0", r"Error: top_k: must be -1 \(no limit\) or an integer of at least 1; got 0")
    repl.command("/warp 9", r"Error: unknown command '/warp'")
    for setting in ("max_tokens 3000", "min_tokens 3000", "ignore_eos true"):
        repl.command(f"/set {setting}", setting.split()[0])

    # A long answer: text appears while it is still being written, and Ctrl-C stops it.
    repl.child.sendline("Tell me a long story.")
    started = time.monotonic()
    count = 0
    while count < 20:
        repl.child.expect(r"… (\d+) tokens \(Ctrl-C stops\)")
        count = int(repl.child.match.group(1))
        streamed = plain(repl.child.before)
    answer_so_far = streamed.split("Tell me a long story.", 1)[-1]
    assert re.search(r"\w", answer_so_far), "the answer's text is on screen before it ends"
    repl.child.sendintr()
    repl.child.expect(r"stopped \(the request was cancelled\)")
    repl.child.expect(PROMPT)
    assert time.monotonic() - started < 60, "3000 tokens were not waited for"
    try:
        wait_for(lambda: "cancelled: openai /v1/chat/completions" in worker_logs(serve_running), 30, 0.2)
    except AssertionError:
        raise AssertionError(
            "no worker logged the cancel; their logs end:\n" + worker_logs(serve_running)[-3000:]
        ) from None

    # The next question works, with the stats line.
    for setting in ("max_tokens 8", "min_tokens default", "ignore_eos default"):
        repl.command(f"/set {setting}", setting.split()[0])
    stats = repl.command("And a short one?", r"first token [\d.]+ s · \d+ tokens .*queue [\d.]+ s · execution [\d.]+ s")
    assert "cut at max_tokens" in stats or "tokens/s" in stats

    saved = tmp_path / "chat.json"
    repl.command(f"/save {saved}", "saved 1 turn to")
    repl.command("/reset", "conversation cleared")
    repl.command("/show", r"turns kept\s+0")
    repl.command(f"/load {saved}", "loaded 1 turn from")
    repl.command("/show", r"turns kept\s+1\s+max_tokens\s+8")
    repl.command("/load /nonexistent/chat.json", r"Error: cannot read /nonexistent/chat.json")
    assert repl.leave() == 0

    messages = json.loads(saved.read_text())["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["And a short one?"], (
        "a stopped answer is not kept"
    )
    history = history_path()
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    assert "/think off" in history.read_text()


@pytest.mark.vllm
def test_no_history_writes_none_and_ctrl_c_at_the_prompt_stays(serve_running: LocalStack, tmp_path: Path) -> None:
    repl = Repl("--local", "--no-history", "--persona", "counselor", cwd=tmp_path)
    repl.command("/show", "You are a wise counselor guided by KJV scripture.")
    repl.child.sendintr()  # clears the line, like a shell
    repl.command("/help", r"/set PARAM VALUE")
    repl.child.send("/system Be kind.\x1b\r")  # Esc Enter: a new line, not sent yet
    repl.command("And brief.", "system prompt set")
    repl.command("/show", r"system prompt\s+Be kind\.\s+And brief\.")
    assert repl.leave() == 0
    assert not history_path().exists()


def long_conversation(path: Path, turns: int = 12, words: int = 400) -> Path:
    text = " ".join(["wisdom is the principal thing"] * (words // 5))
    messages = [{"role": "system", "content": "Be brief."}]
    for i in range(turns):
        messages += [{"role": "user", "content": f"question {i}: {text}"}, {"role": "assistant", "content": text}]
    path.write_text(json.dumps({"messages": messages}))
    return path


@pytest.mark.vllm
def test_a_long_conversation_is_trimmed_with_a_notice(serve_running: LocalStack, tmp_path: Path) -> None:
    saved = long_conversation(tmp_path / "long.json")
    # Known context (vLLM's max_model_len, 4096): the oldest turns go before sending.
    repl = Repl("--local", "--no-history", *SHORT, cwd=tmp_path)
    repl.command(f"/load {saved}", "loaded 12 turns")
    repl.command("One more?", r"dropped (\d+) oldest turns to fit the model's context.*\n.*first token")
    kept = int(re.search(r"turns kept\s+(\d+)", repl.command("/show", r"turns kept\s+\d+")).group(1))  # type: ignore[union-attr]
    assert 1 < kept < 13
    assert repl.leave() == 0

    # A context set too large: vLLM refuses the prompt, and turns go until it fits.
    repl = Repl("--local", "--no-history", "--max-context", "100000", *SHORT, cwd=tmp_path)
    repl.command(f"/load {saved}", "loaded 12 turns")
    seen = repl.command("One more?", r"first token")
    assert "dropped 1 oldest turn to fit the model's context (the server said the conversation was too long)" in seen
    assert repl.leave() == 0


@pytest.mark.vllm
def test_piped_and_once_print_only_the_answer(serve_running: LocalStack, tmp_path: Path) -> None:
    info = serve_running.info
    completion = notus("chat", "--local", "--once", "What is wisdom?", "--json", *SHORT, cwd=tmp_path)
    assert completion.returncode == 0, completion.stderr
    body = json.loads(completion.stdout)
    assert body["object"] == "chat.completion"
    content = body["choices"][0]["message"]["content"]
    assert content.strip()

    # By deployment name (the state file `notus deploy` writes), the question piped in.
    save_deployment(
        Deployment("tiny", info.endpoint_id, "tpl", "notus:test", "cpu", api_base_url=info.api_base),
        tmp_path / ".notus",
    )
    piped = notus(
        "chat", "tiny", *SHORT, cwd=tmp_path, stdin="What is wisdom?\n", RUNPOD_API_KEY=info.api_key.get_secret_value()
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == content + "\n", "only the answer, the same one greedy decoding gave"
    assert "\x1b[" not in piped.stdout

    # Straight to the OpenAI-compatible server (the stack's vLLM), streamed over SSE.
    direct = notus("chat", "--base-url", info.vllm_url, "--once", "What is wisdom?", *SHORT, cwd=tmp_path)
    assert direct.returncode == 0, direct.stderr
    assert direct.stdout == content + "\n"

    too_long = notus("chat", "--local", "--once", "Hi", "-s", "max_tokens=100000", cwd=tmp_path)
    assert too_long.returncode == 2, too_long.stderr
    assert "max_tokens: must be at most the context length, 4096; got 100000" in too_long.stderr

    # A request within our bounds that vLLM still refuses: the job fails.
    failed = notus("chat", "--local", "--once", "Hi", "-s", "max_tokens=4", "-s", "min_tokens=8", cwd=tmp_path)
    assert failed.returncode == 4, failed.stderr
    assert re.search(r"Error: job \S+ failed: .*min_tokens", failed.stderr)
    assert "Traceback" not in failed.stderr


def test_a_wrong_key_is_a_clear_error(emulator: Harness, tmp_path: Path) -> None:
    """The emulator stands in for RunPod's API (no workers needed: the key is checked first)."""
    endpoint, _pool = emulator.endpoint(0)
    result = notus(
        "chat", "--endpoint", endpoint.id, "--once", "hi", cwd=tmp_path,
        RUNPOD_ENDPOINT_BASE_URL=f"{emulator.url}/v2", RUNPOD_API_KEY="rpa_wrong",
    )  # fmt: skip
    assert result.returncode == 5
    assert "Error: the endpoint rejected the API key (HTTP 401)" in result.stderr
    assert "rpa_wrong" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("--base-url", "http://127.0.0.1:9", "--once", "hi"), 3, "http://127.0.0.1:9/v1 is unreachable"),
        (("--base-url", "ftp://x", "--once", "hi"), 2, "--base-url must start with http:// or https://"),
        (("--local", "--endpoint", "abc", "--once", "hi"), 2, "give one target, not --endpoint and --local"),
        (("--local", "--once", "hi"), 3, "no `notus serve` is running"),
        (("--once", "hi"), 2, "say which endpoint to use"),
        (("nobody", "--once", "hi"), 2, "no deployment named 'nobody'"),
        (("--endpoint", "abc", "--once", "hi"), 5, "a RunPod API key is needed"),
        (("--base-url", "http://127.0.0.1:9", "-s", "temperature=3", "--once", "hi"), 2, "temperature: must be a"),
        (("--base-url", "http://127.0.0.1:9", "--persona", "nobody", "--once", "hi"), 2, "no persona named 'nobody'"),
        (("--base-url", "http://127.0.0.1:9", "--json"), 2, "no question"),
    ],
)
def test_bad_usage_and_unreachable_targets(args: tuple[str, ...], code: int, words: str, tmp_path: Path) -> None:
    result = notus("chat", *args, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr
