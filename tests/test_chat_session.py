"""`notus chat`'s pieces without a server: trimming, /set validation, save/load, personas, stats, commands."""

from __future__ import annotations

import asyncio
import io
import json
import re
import stat
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from notus_cli.chat import personas
from notus_cli.chat.answer import Answer
from notus_cli.chat.backends import JobTiming, ModelInfo, OpenAIServer, job_chunks, overflow_or
from notus_cli.chat.commands import ChatState, run_command
from notus_cli.chat.render import TerminalView, reasoning_tail, stats_line
from notus_cli.chat.sampling import parse_assignment, parse_setting
from notus_cli.chat.session import Conversation, TokenEstimate, Turn
from notus_cli.chat.turn import Asker
from notus_cli.errors import ConfigError, ContextOverflow, JobFailed
from notus_cli.output import Output


def conversation(turns: int, *, words: int = 50) -> Conversation:
    text = " ".join(["word"] * words)
    return Conversation(system="Be brief.", turns=[Turn(f"q{i} {text}", f"a{i} {text}") for i in range(turns)])


# ---- trimming ------------------------------------------------------------------------------------


def test_fit_drops_the_oldest_turns_and_keeps_the_system_prompt() -> None:
    chat = conversation(10)
    estimate = TokenEstimate()
    full = estimate.count(chat.messages("next"))
    dropped = chat.fit("next", budget=full // 2, count=estimate.count)
    assert dropped > 0
    assert [turn.user.split()[0] for turn in chat.turns] == [f"q{i}" for i in range(dropped, 10)]
    messages = chat.messages("next")
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert estimate.count(messages) <= full // 2


def test_fit_drops_nothing_when_it_fits_and_everything_when_it_must() -> None:
    chat = conversation(3)
    assert chat.fit("next", budget=10_000, count=TokenEstimate().count) == 0
    assert len(chat.turns) == 3
    assert chat.fit("next", budget=1, count=TokenEstimate().count) == 3
    assert chat.turns == []
    assert chat.messages("next")[0]["role"] == "system"


def test_the_estimate_learns_from_the_servers_prompt_tokens_and_stays_conservative() -> None:
    estimate = TokenEstimate()
    messages = conversation(4).messages("next")
    first = estimate.count(messages)
    chars = sum(len(m["content"]) for m in messages)
    estimate.learn(messages, prompt_tokens=chars // 4 + 8 * len(messages))  # the server saw ~4 characters a token
    learned = estimate.count(messages)
    assert learned < first
    assert learned >= chars // 4 + 8 * len(messages), "still counts at least what the server counted"


def test_request_carries_settings_and_the_thinking_switch() -> None:
    chat = Conversation(system="S", params={"temperature": 0.2}, thinking=False)
    body = chat.request("hi")
    assert body["messages"][-1] == {"role": "user", "content": "hi"}
    assert body["temperature"] == 0.2
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert "chat_template_kwargs" not in Conversation().request("hi")


# ---- /set and --set: the worker's bounds -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("temperature", "0.2", 0.2),
        ("top_p", "1", 1),
        ("top_k", "-1", -1),
        ("max_tokens", "64", 64),
        ("presence_penalty", "-2", -2),
        ("frequency-penalty", "1.5", 1.5),
        ("stop", "END", "END"),
        ("stop", '["a", "b"]', ["a", "b"]),
        ("seed", "42", 42),
        ("ignore_eos", "true", True),
        ("temperature", "default", None),
    ],
)
def test_set_accepts_what_the_worker_accepts(name: str, text: str, value: object) -> None:
    assert parse_setting(name, text) == value


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("temperature", "5", "temperature: must be a number from 0 to 2; got 5"),
        ("temperature", "hot", "temperature: must be a number from 0 to 2"),
        ("top_p", "0", "top_p: must be a number above 0 and at most 1"),
        ("top_k", "0", "top_k: must be -1 (no limit) or an integer of at least 1"),
        ("max_tokens", "0", "max_tokens: must be an integer of at least 1"),
        ("max_tokens", "1.5", "max_tokens: must be an integer"),
        ("seed", "-1", "seed: must be an integer from 0 to 2^63-1"),
        ("presence_penalty", "3", "presence_penalty: must be a number from -2 to 2"),
        ("warmth", "1", "unknown parameter 'warmth'; allowed: temperature, top_p"),
        ("temperature", "", "temperature: give a value"),
    ],
)
def test_set_refuses_with_the_parameter_and_its_allowed_values(name: str, text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        parse_setting(name, text)


def test_set_checks_max_tokens_against_the_context() -> None:
    with pytest.raises(ConfigError, match="at most the context length, 256; got 300"):
        parse_setting("max_tokens", "300", max_model_len=256)


def test_set_flag_form() -> None:
    assert parse_assignment("temperature=0") == ("temperature", 0)
    with pytest.raises(ConfigError, match="--set takes PARAM=VALUE; got 'temperature'"):
        parse_assignment("temperature")


# ---- save and load -----------------------------------------------------------------------------------


def test_save_then_load_restores_the_conversation_privately(tmp_path: Path) -> None:
    chat = conversation(3)
    chat.params = {"temperature": 0.3, "stop": ["END"]}
    chat.thinking = False
    chat.persona = "counselor"
    path = chat.save(tmp_path / "sub" / "chat.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["messages"][0]["role"] == "system"
    loaded = Conversation.load(path)
    assert loaded == chat


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("not json", "is not JSON"),
        ('{"turns": []}', "is not a saved conversation"),
        ('{"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}', "must alternate"),
        ('{"messages": [], "params": {"temperature": 9}}', "params.temperature: must be a number from 0 to 2"),
    ],
)
def test_load_refuses_a_file_that_is_not_a_conversation(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=words):
        Conversation.load(path)


def test_load_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*missing\.json"):
        Conversation.load(tmp_path / "missing.json")


# ---- personas --------------------------------------------------------------------------------------


def test_the_counselor_persona_ships() -> None:
    persona = personas.load_persona("counselor")
    assert persona.system == "You are a wise counselor guided by KJV scripture."
    assert "counselor" in personas.available()


def test_user_personas_from_the_config_dir_and_files(tmp_path: Path) -> None:
    folder = personas.user_dir()
    folder.mkdir(parents=True)
    (folder / "pirate.txt").write_text("Talk like a pirate.\n")
    (folder / "counselor.toml").write_text('system = "Mine."\n[params]\ntemperature = 0.1\n')
    assert personas.load_persona("pirate").system == "Talk like a pirate."
    mine = personas.load_persona("counselor")
    assert (mine.system, mine.params) == ("Mine.", {"temperature": 0.1}), "the user's own wins"
    other = tmp_path / "poet.toml"
    other.write_text('system = "Rhyme."\n')
    assert personas.load_persona(str(other)).system == "Rhyme."
    (folder / "broken.toml").write_text('system = "x"\n[params]\ntop_p = 7\n')
    with pytest.raises(ConfigError, match=r"params\.top_p: must be a number above 0"):
        personas.load_persona("broken")
    with pytest.raises(ConfigError, match=r"no persona named 'nobody' .*counselor.*pirate"):
        personas.load_persona("nobody")


# ---- the stats line ---------------------------------------------------------------------------------


def test_stats_line_excludes_the_first_token_from_the_decode_speed() -> None:
    answer = Answer(started=100.0, first_token_at=100.5, last_token_at=102.5, chunks=3)
    answer.usage = {"prompt_tokens": 20, "completion_tokens": 41}
    answer.timing = JobTiming(queue_ms=1250, execution_ms=2600)
    assert answer.decode_rate == pytest.approx(20.0)  # 40 tokens after the first, in 2 s
    assert stats_line(answer) == ("first token 0.50 s · 41 tokens · 20.0 tokens/s · queue 1.25 s · execution 2.60 s")


def test_answer_takes_content_and_reasoning_from_chunks() -> None:
    answer = Answer()
    assert not answer.add({"choices": [{"delta": {"role": "assistant"}}]})
    assert answer.add({"choices": [{"delta": {"reasoning": "hmm "}}]})
    assert answer.add({"choices": [{"delta": {"reasoning_content": "ok"}}]})
    assert answer.add({"choices": [{"delta": {"content": "Yes."}, "finish_reason": "stop"}]})
    assert not answer.add({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 9}})
    assert (answer.reasoning, answer.content, answer.tokens, answer.finish_reason) == ("hmm ok", "Yes.", 9, "stop")


# ---- slash commands ------------------------------------------------------------------------------


def state(tmp_path: Path) -> ChatState:
    screen = Console(file=io.StringIO(), width=100)
    view = TerminalView(Output(stdout=screen, stderr=screen))
    return ChatState(Asker(backend=None, conversation=Conversation()), view, ModelInfo("m", 4096), "test")  # type: ignore[arg-type]


def test_commands_change_the_conversation(tmp_path: Path) -> None:
    chat = state(tmp_path)
    run_command("/set temperature 0.25", chat)
    run_command("/think off", chat)
    run_command("/persona counselor", chat)
    assert chat.conversation.params == {"temperature": 0.25}
    assert chat.conversation.thinking is False
    assert chat.conversation.system == "You are a wise counselor guided by KJV scripture."
    run_command("/system Be terse.", chat)
    assert (chat.conversation.system, chat.conversation.persona) == ("Be terse.", None)
    chat.conversation.turns.append(Turn("q", "a"))
    chat.asker.last_question = "q"
    assert run_command("/retry", chat).ask == "q"
    assert chat.conversation.turns == [], "/retry takes the last answer back"
    assert run_command("/exit", chat).exit


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("/frobnicate", "unknown command '/frobnicate'; commands: /help"),
        ("/set temperature 3", "temperature: must be a number from 0 to 2; got 3"),
        ("/set max_tokens 5000", "at most the context length, 4096"),
        ("/think maybe", "/think takes on, off or default"),
        ("/retry", "nothing to retry yet"),
        ("/load", "/load FILE"),
    ],
)
def test_bad_commands_raise_one_clear_error(tmp_path: Path, line: str, words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        run_command(line, state(tmp_path))


# ---- what backends read -----------------------------------------------------------------------------


def test_job_items_become_chunks_and_errors_become_typed_failures() -> None:
    chunk = {"choices": [{"delta": {"content": "Hi"}}]}
    assert job_chunks(chunk) == [chunk], "the native shape streams chunk objects"
    assert job_chunks(f"data: {json.dumps(chunk)}\n\n") == [chunk], "the OpenAI route streams SSE text"
    assert job_chunks("data: [DONE]\n\n") == []
    too_long = {"error": {"message": "This model's maximum context length is 4096 tokens. However, ..."}}
    with pytest.raises(ContextOverflow):
        job_chunks(f"data: {json.dumps(too_long)}\n\n")
    with pytest.raises(JobFailed, match="the answer failed: boom") as failed:
        job_chunks('data: {"error": {"message": "boom"}}\n\n')
    assert not isinstance(failed.value, ContextOverflow)


def test_only_a_too_long_prompt_is_an_overflow() -> None:
    refused = JobFailed("job j failed: This model's maximum context length is 4096 tokens.", job_id="j")
    overflow = overflow_or(refused)
    assert isinstance(overflow, ContextOverflow)
    assert (overflow.exit_code, overflow.job_id) == (4, "j")
    other = JobFailed("job j failed: min_tokens must be less than or equal to max_tokens")
    assert overflow_or(other) is other


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (400, b'{"error": {"message": "temperature must be at most 2"}}', "(HTTP 400): temperature must be at most 2"),
        (400, b'{"error": "plain words"}', "(HTTP 400): plain words"),
        (500, b"upstream exploded", "(HTTP 500): upstream exploded"),
        (502, b"", "(HTTP 502): Bad Gateway"),  # no body: the reason phrase, not "(empty body)"
    ],
)
def test_an_openai_servers_refusal_reads_its_own_words(status: int, body: bytes, words: str) -> None:
    """How an error body becomes the message (a transport that answers in memory: the wording is what is
    tested; tests/test_chat_cli.py reaches real servers)."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body)

    async def ask() -> None:
        server = OpenAIServer(
            "http://server.test/v1", api_key=None, http=httpx.AsyncClient(transport=httpx.MockTransport(answer))
        )
        try:
            await server.complete({"messages": []})
        finally:
            await server.aclose()

    with pytest.raises(JobFailed) as refused:
        asyncio.run(ask())
    assert str(refused.value).endswith(words)


def test_reasoning_streams_as_a_short_tail_then_folds(tmp_path: Path) -> None:
    thought = "\n".join(f"step {i}" for i in range(40))
    assert reasoning_tail(thought).splitlines() == ["…step 34", *[f"step {i}" for i in range(35, 40)]]
    assert reasoning_tail("short") == "short"
    console = Console(file=io.StringIO(), width=100)
    view = TerminalView(Output(stdout=console, stderr=console))
    answer = Answer(reasoning=thought, chunks=40)
    console.print(view._frame(answer, streaming=True))
    answer.content = "**Yes.**"
    console.print(view._frame(answer, streaming=False))
    screen = console.file.getvalue()  # type: ignore[attr-defined]
    assert "step 39" in screen
    assert "step 3\n" not in screen, "only the tail while thinking"
    assert "▸ thought for 80 words (/thoughts shows them)" in screen
    assert "Yes." in screen


def test_the_chat_writes_through_output_answers_on_stdout_the_rest_on_stderr() -> None:
    """A slash command's answer is a result (stdout); errors, notices and the stats line go to stderr."""
    stdout, stderr = Console(file=io.StringIO(), width=100), Console(file=io.StringIO(), width=100)
    view = TerminalView(Output(stdout=stdout, stderr=stderr))
    chat = ChatState(Asker(backend=None, conversation=Conversation()), view, ModelInfo("m", 4096), "test")  # type: ignore[arg-type]
    run_command("/set temperature 0.25", chat)
    view.error(ConfigError("no [bold]such[/bold] thing", hint="try another"))
    view.notice("trimmed 2 turns")
    view.finished(Answer(content="Yes.", chunks=3))
    said, rest = stdout.file.getvalue(), stderr.file.getvalue()  # type: ignore[attr-defined]
    assert said == "temperature = 0.25\n"
    assert "Error: no [bold]such[/bold] thing\nHint: try another\n" in rest, "taken literally, not as markup"
    assert "trimmed 2 turns" in rest
    assert "3 tokens" in rest
