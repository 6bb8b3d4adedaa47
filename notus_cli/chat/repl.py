"""The interactive loop: prompt_toolkit input, slash commands, answers that Ctrl-C can stop.

Between answers prompt_toolkit owns the terminal (Ctrl-C clears the line, Ctrl-D leaves). While an
answer streams, SIGINT cancels the task fetching it; the backend then cancels the RunPod job or
closes the HTTP stream, and the prompt comes back.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from notus_cli.chat.commands import ChatState, run_command
from notus_cli.chat.render import TerminalView
from notus_cli.errors import ConfigError, NotusError
from notus_cli.files import user_data_dir

PROMPT = "you> "


def history_file() -> Path:
    """The input history, in the user data dir (mode 0600: it holds what was asked)."""
    return user_data_dir() / "chat_history"


def open_history(path: Path | None) -> History:
    """A history kept in `path` (created private), or one in memory only when `path` is None."""
    if path is None:
        return InMemoryHistory()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        os.chmod(path, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot keep the chat history in {path}: {exc.strerror}", hint="pass --no-history") from None
    return FileHistory(str(path))


def _bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    return bindings


async def repl(state: ChatState, view: TerminalView, history: History) -> None:
    """Read and answer until Ctrl-D or /exit."""
    session: PromptSession[str] = PromptSession(history=history, key_bindings=_bindings())
    while True:
        try:
            line = await session.prompt_async(PROMPT)
        except KeyboardInterrupt:
            continue
        except EOFError:
            return
        question = line.strip()
        if not question:
            continue
        if question.startswith("/"):
            try:
                outcome = run_command(question, state)
            except NotusError as exc:
                view.error(exc)
                continue
            if outcome.exit:
                return
            if outcome.ask is None:
                continue
            question = outcome.ask
        await answer(state, view, question)


async def answer(state: ChatState, view: TerminalView, question: str) -> None:
    """Stream one answer; Ctrl-C stops it and the REPL goes on. Errors are shown, not raised."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(_ask(state, view, question))
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        view.notice("stopped (the request was cancelled)")
    except NotusError as exc:
        view.error(exc)
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _ask(state: ChatState, view: TerminalView, question: str) -> None:
    with view.answering() as update:
        result = await state.asker.ask(question, on_text=update, on_notice=view.notice)
    view.finished(result)
