"""`notus chat` from start to end: build the conversation, reach the target, then talk or answer once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from notus_cli.chat.answer import Answer
from notus_cli.chat.backends import Backend, ModelInfo
from notus_cli.chat.commands import ChatState
from notus_cli.chat.personas import load_persona
from notus_cli.chat.render import EMPTY_HINT_ONCE, PlainView, TerminalView, View
from notus_cli.chat.repl import history_file, open_history, repl
from notus_cli.chat.sampling import parse_assignment, parse_setting
from notus_cli.chat.session import Conversation
from notus_cli.chat.turn import Asker
from notus_cli.errors import ConfigError, ContextOverflow, EmptyAnswer
from notus_cli.output import Output


@dataclass(frozen=True)
class ChatOptions:
    persona: str | None = None
    system: str | None = None
    settings: list[str] = field(default_factory=list)  # PARAM=VALUE
    thinking: bool | None = None
    max_context: int | None = None
    history: bool = True


def conversation_for(options: ChatOptions) -> Conversation:
    """The starting conversation: persona, then --system, then --set. Raises ConfigError."""
    conversation = Conversation(thinking=options.thinking)
    if options.persona:
        persona = load_persona(options.persona)
        conversation.system, conversation.persona = persona.system, persona.name
        conversation.params.update(persona.params)
    if options.system:
        conversation.system, conversation.persona = options.system, None
    for item in options.settings:
        name, value = parse_assignment(item)
        conversation.set_param(name, value)
    return conversation


async def start(backend: Backend, conversation: Conversation, options: ChatOptions) -> tuple[Asker, ModelInfo]:
    """Reach the target and learn its model; --set max_tokens is checked against its context here."""
    model = await backend.prepare()
    asker = Asker(backend, conversation, max_model_len=options.max_context or model.max_model_len)
    max_tokens = conversation.params.get("max_tokens")
    if max_tokens is not None and asker.max_model_len is not None:
        parse_setting("max_tokens", str(max_tokens), max_model_len=asker.max_model_len)
    return asker, model


def interactive(backend: Backend, options: ChatOptions, out: Output) -> None:
    """The REPL (history file unless --no-history)."""
    conversation = conversation_for(options)
    history = open_history(history_file() if options.history else None)
    view = TerminalView(out)

    async def main() -> None:
        try:
            with out.status(f"connecting to {backend.label}"):
                asker, model = await start(backend, conversation, options)
            state = ChatState(asker, view, model, backend.label)
            context = f", context {asker.max_model_len} tokens" if asker.max_model_len else ""
            out.note(f"{backend.label} · {model.name or 'model'}{context}", style="bold")
            out.note("/help for commands · Esc Enter for a new line · Ctrl-D leaves", style="dim")
            await repl(state, view, history)
        finally:
            await backend.aclose()

    asyncio.run(main())


def answer_once(backend: Backend, options: ChatOptions, question: str, out: Output) -> None:
    """One question, one answer on stdout: its text (pipes), or the chat.completion with --json."""
    if not question.strip():
        raise ConfigError("no question: pass --once TEXT or pipe the question on stdin")
    conversation = conversation_for(options)
    json_mode = out.json_mode
    at_terminal = out.out.is_terminal and not json_mode
    view: View = TerminalView(out, show_reasoning=False, repl=False) if at_terminal else PlainView(out)

    async def main() -> Answer:
        try:
            asker, _model = await start(backend, conversation, options)
            if json_mode:
                answer = await asker.ask(question.strip(), stream=False, on_notice=view.notice)
                out.json(answer.json())
                return answer
            with view.answering() as update:
                answer = await asker.ask(question.strip(), on_text=update, on_notice=view.notice)
            view.finished(answer)
            return answer
        finally:
            await backend.aclose()

    try:
        answer = asyncio.run(main())
    except ContextOverflow as exc:  # one question, no turns to drop: /reset would not help
        exc.hint = "shorten the question (or the system prompt)"
        raise
    if answer.empty:
        raise EmptyAnswer(answer.why_empty(), hint=EMPTY_HINT_ONCE, status=answer.finish_reason)
