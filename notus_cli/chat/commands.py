"""The slash commands. Each takes the chat's state and the text after its name.

A bad command or value raises ConfigError; the REPL prints it on one line and goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table
from rich.text import Text

from notus_cli.chat import personas
from notus_cli.chat.backends import ModelInfo
from notus_cli.chat.render import TerminalView
from notus_cli.chat.sampling import parse_setting
from notus_cli.chat.session import Conversation
from notus_cli.chat.turn import Asker
from notus_cli.errors import ConfigError
from notus_cli.output import Output
from notus_cli.words import plural
from worker.params import SAMPLING_PARAMS


@dataclass
class ChatState:
    asker: Asker
    view: TerminalView
    model: ModelInfo
    target: str

    @property
    def out(self) -> Output:
        return self.view.out

    @property
    def conversation(self) -> Conversation:
        return self.asker.conversation

    def say(self, message: str) -> None:
        """What a slash command answers: on stdout, taken literally."""
        self.out.result(Text(message))


@dataclass(frozen=True)
class Outcome:
    ask: str | None = None  # a question to send (e.g. /retry)
    exit: bool = False


Handler = Callable[[ChatState, str], Outcome | None]


@dataclass(frozen=True)
class Command:
    usage: str
    help: str
    run: Handler


def run_command(line: str, state: ChatState) -> Outcome:
    """Run one `/command args` line. Raises ConfigError for an unknown command or a bad value."""
    name, _, arg = line.strip().partition(" ")
    command = COMMANDS.get(name.lower())
    if command is None:
        raise ConfigError(f"unknown command '{name}'; commands: {', '.join(COMMANDS)}", hint="/help explains them")
    return command.run(state, arg.strip()) or Outcome()


def _help(state: ChatState, _arg: str) -> None:
    listing = Table.grid(padding=(0, 2))
    for name, command in COMMANDS.items():
        listing.add_row(f"{name} {command.usage}".strip(), command.help)
    state.out.result(listing)
    state.say("Enter sends; Esc then Enter (or Alt-Enter) starts a new line. Ctrl-C stops an answer, Ctrl-D leaves.")


def _system(state: ChatState, arg: str) -> None:
    conversation = state.conversation
    if not arg:
        state.say(f"system prompt: {conversation.system or '(none)'}")
        return
    conversation.system = None if arg.lower() in ("none", "off") else arg
    conversation.persona = None
    state.say("system prompt cleared" if conversation.system is None else "system prompt set")


def _persona(state: ChatState, arg: str) -> None:
    if not arg:
        for name, description in personas.available().items():
            state.say(f"{name}: {description}" if description else name)
        return
    persona = personas.load_persona(arg)
    conversation = state.conversation
    conversation.system, conversation.persona = persona.system, persona.name
    for name, value in persona.params.items():
        conversation.set_param(name, value)
    state.say(f"persona {persona.name}: {persona.system}")


def _set(state: ChatState, arg: str) -> None:
    name, _, text = arg.partition(" ")
    if not name:
        raise ConfigError(f"/set PARAM VALUE; PARAM is one of {', '.join(SAMPLING_PARAMS)}")
    value = parse_setting(name, text, max_model_len=state.model.max_model_len)
    name = name.replace("-", "_")
    state.conversation.set_param(name, value)
    state.say(f"{name} = {json.dumps(value)}" if value is not None else f"{name}: back to the server's default")


def _think(state: ChatState, arg: str) -> None:
    choice = {"on": True, "off": False, "default": None}.get(arg.lower(), "bad")
    if choice == "bad":
        raise ConfigError(f"/think takes on, off or default; got '{arg}'")
    state.conversation.thinking = choice if isinstance(choice, bool) else None
    state.say(f"thinking {arg.lower()} (chat_template_kwargs.enable_thinking)")


def _thoughts(state: ChatState, _arg: str) -> None:
    state.view.thoughts(state.asker.last_answer)


def _show(state: ChatState, _arg: str) -> None:
    conversation = state.conversation
    model = state.model
    rows = [
        ("target", state.target),
        ("model", model.name or "(the endpoint's)"),
        ("context", f"{model.max_model_len} tokens" if model.max_model_len else "unknown"),
        ("persona", conversation.persona or "(none)"),
        ("system prompt", conversation.system or "(none)"),
        ("thinking", {True: "on", False: "off", None: "the model's default"}[conversation.thinking]),
        ("turns kept", str(len(conversation.turns))),
    ]
    rows += [(name, json.dumps(value)) for name, value in sorted(conversation.params.items())]
    table = Table.grid(padding=(0, 2))
    for key, value in rows:
        table.add_row(key, Text(value))
    state.out.result(table)
    if not conversation.params:
        state.say("sampling: the server's defaults (/set PARAM VALUE to change)")


def _reset(state: ChatState, _arg: str) -> None:
    state.conversation.turns.clear()
    state.say("conversation cleared (the system prompt and settings stay)")


def _retry(state: ChatState, _arg: str) -> Outcome:
    question = state.asker.take_back()
    if question is None:
        raise ConfigError("nothing to retry yet")
    return Outcome(ask=question)


def _save(state: ChatState, arg: str) -> None:
    if not arg:
        raise ConfigError("/save FILE")
    path = state.conversation.save(Path(arg))
    state.say(f"saved {plural(len(state.conversation.turns), 'turn')} to {path}")


def _load(state: ChatState, arg: str) -> None:
    """The saved turns, system prompt and persona; its settings too, where the file has them."""
    if not arg:
        raise ConfigError("/load FILE")
    current = state.conversation
    loaded = Conversation.load(Path(arg))
    if not loaded.params:
        loaded.params = current.params
    if loaded.thinking is None:
        loaded.thinking = current.thinking
    state.asker.conversation = loaded
    state.asker.last_question = loaded.turns[-1].user if loaded.turns else None
    state.say(f"loaded {plural(len(loaded.turns), 'turn')} from {arg}")


def _stats(state: ChatState, _arg: str) -> None:
    totals = state.asker.totals
    if not totals.answers:
        state.say("no answers yet")
        return
    parts = [
        plural(totals.answers, "answer"),
        plural(totals.prompt_tokens, "prompt token"),
        plural(totals.completion_tokens, "answer token"),
    ]
    if totals.ttft:
        parts.append(f"first token {sum(totals.ttft) / len(totals.ttft):.2f} s on average")
    if totals.rates:
        parts.append(f"{sum(totals.rates) / len(totals.rates):.1f} tokens/s on average")
    if totals.queue_ms:
        parts.append(f"queue {sum(totals.queue_ms) / len(totals.queue_ms) / 1000:.2f} s on average")
    if totals.dropped:
        parts.append(f"{plural(totals.dropped, 'turn')} dropped")
    state.say(" · ".join(parts))


def _exit(_state: ChatState, _arg: str) -> Outcome:
    return Outcome(exit=True)


COMMANDS: dict[str, Command] = {
    "/help": Command("", "this list", _help),
    "/system": Command("[TEXT]", "show or set the system prompt ('none' clears it)", _system),
    "/persona": Command("[NAME]", "list personas, or start from one", _persona),
    "/set": Command("PARAM VALUE", f"a sampling setting ({', '.join(SAMPLING_PARAMS)}); 'default' unsets", _set),
    "/think": Command("on|off|default", "Nemotron's reasoning before it answers", _think),
    "/thoughts": Command("", "the last answer's reasoning, unfolded", _thoughts),
    "/show": Command("", "the target, model, system prompt and settings", _show),
    "/reset": Command("", "forget the conversation (keeps the system prompt)", _reset),
    "/retry": Command("", "ask the last question again", _retry),
    "/save": Command("FILE", "save the conversation as JSON", _save),
    "/load": Command("FILE", "load a saved conversation", _load),
    "/stats": Command("", "this session's figures", _stats),
    "/exit": Command("", "leave (Ctrl-D too)", _exit),
}
