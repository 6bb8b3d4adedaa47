"""What a person at a terminal sees of an answer: every word, at any width, however long the answer.

`notus chat` runs in a real pseudo-terminal (pexpect) against the OpenAI stub (a stand-in for
vLLM's server: it streams a fixed multi-paragraph answer word by word), in the REPL and with
`--once`. The answer is longer than the screen and each paragraph longer than a line, so a display
that crops lines at the screen's width, or drops what scrolled away, loses words.
"""

from __future__ import annotations

import json
import os
import re

import pexpect
import pytest

from notus_cli.errors import ExitCode
from testbed.common import ROOT, notus, notus_command
from testbed.openai_stub import StubConfig, running_stub

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r")
ROWS = 20
PARAGRAPHS = [" ".join(f"p{p}w{w}" for w in range(45)) for p in range(8)]
ANSWER = "\n\n".join(PARAGRAPHS)
WORDS = ANSWER.split()


def spawn(*args: str, columns: int) -> pexpect.spawn:
    """`notus chat ARGS` in a ROWS x `columns` terminal, sized by the terminal alone (no COLUMNS)."""
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    env |= {"PYTHONPATH": str(ROOT), "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}
    program, *arguments = notus_command("chat", *args)
    return pexpect.spawn(program, arguments, env=env, encoding="utf-8", timeout=60, dimensions=(ROWS, columns))


def final_render(seen: str) -> str:
    """The answer as the display left it: after its last redraw while streaming."""
    return ANSI.sub("", seen).rsplit("(Ctrl-C stops)", 1)[-1]


def assert_every_word(seen: str, columns: int) -> None:
    shown = final_render(seen).split()
    missing = [word for word in WORDS if word not in shown]
    assert not missing, f"at {columns} columns, {len(missing)} of {len(WORDS)} words never reached the screen"
    positions = [shown.index(word) for word in WORDS]
    assert positions == sorted(positions), "the words are on screen out of order"


@pytest.fixture(scope="module")
def stub_url() -> str:  # type: ignore[misc]
    with running_stub(StubConfig(answer=ANSWER)) as url:
        yield url


@pytest.mark.parametrize("columns", [80, 200])
def test_repl_shows_every_line_of_a_long_answer(stub_url: str, columns: int) -> None:
    child = spawn("--base-url", stub_url, "--no-history", columns=columns)
    child.expect("you>")
    child.sendline("Tell me everything.")
    child.expect(r"\d+ tokens")  # the stats line, after the answer
    seen = child.before
    child.expect("you>")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert_every_word(seen, columns)


@pytest.mark.parametrize("columns", [80, 200])
def test_once_at_a_terminal_shows_every_line(stub_url: str, columns: int) -> None:
    child = spawn("--base-url", stub_url, "--once", "Tell me everything.", columns=columns)
    child.expect(pexpect.EOF)
    seen = child.before
    child.close()
    assert child.exitstatus == 0, ANSI.sub("", seen)[-2000:]
    assert_every_word(seen, columns)


@pytest.fixture(scope="module")
def thinking_stub() -> str:  # type: ignore[misc]
    """A model that ends inside its reasoning: reasoning_content only, `content` null (as vLLM sends it)."""
    with running_stub(StubConfig(answer="Let me think about that. Hmm.", reasoning_only=True)) as url:
        yield url


@pytest.fixture(scope="module")
def silent_stub() -> str:  # type: ignore[misc]
    """An answer whose `content` is the empty string (Notus's worker never sends null)."""
    with running_stub(StubConfig(answer="")) as url:
        yield url


def test_the_repl_says_when_there_is_no_answer(thinking_stub: str) -> None:
    child = spawn("--base-url", thinking_stub, "--no-history", columns=200)
    child.expect("you>")
    child.sendline("Why?")
    child.expect(r"no answer: the model ended inside its reasoning \(6 words of it, no answer text\)")
    child.expect("/thoughts shows the reasoning")
    child.expect("you>")
    child.sendline("/show")
    child.expect(r"turns kept\s+0")  # the empty answer is not kept as a turn
    child.expect("you>")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.mark.parametrize("stub", ["thinking_stub", "silent_stub"])
def test_a_piped_chat_with_no_answer_says_so_and_fails(stub: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(stub)
    piped = notus("chat", "--base-url", url, stdin="Why?")
    assert piped.returncode == ExitCode.JOB_FAILED, piped.stderr
    assert piped.stdout == "", "no blank line that looks like an answer"
    assert "Error: no answer: " in piped.stderr
    assert "Hint: raise max_tokens" in piped.stderr
    assert "/reset" not in piped.stderr, "no REPL commands outside the REPL"
    assert "/thoughts" not in piped.stderr
    once = notus("chat", "--base-url", url, "--once", "Why?", "--json")
    assert once.returncode == ExitCode.JOB_FAILED, once.stderr
    message = json.loads(once.stdout)["choices"][0]["message"]
    assert message["content"] == "", "content is a string, never null"
    assert ("reasoning" in message) is False
    assert message["reasoning_content"] == ("Let me think about that. Hmm." if stub == "thinking_stub" else None)
