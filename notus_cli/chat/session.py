"""The conversation: system prompt, turns, sampling settings; trimming to the context; save and load.

A turn is one question and its answer. Trimming drops whole turns, oldest first, and never the
system prompt, so the model never sees an answer without its question.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from notus_cli.chat.sampling import checked_params
from notus_cli.errors import ConfigError
from notus_cli.files import PRIVATE, write_atomic

FORMAT = "notus-chat/1"
Message = dict[str, Any]


@dataclass
class Turn:
    user: str
    assistant: str


@dataclass
class TokenEstimate:
    """Counts a prompt's tokens without the tokenizer: conservatively at first, then from what the server reports.

    `per_message` covers the chat template's role markers.
    """

    chars_per_token: float = 2.0
    per_message: int = 8

    def count(self, messages: list[Message]) -> int:
        chars = sum(len(str(message.get("content") or "")) for message in messages)
        return int(chars / self.chars_per_token) + self.per_message * len(messages) + 1

    def learn(self, messages: list[Message], prompt_tokens: int) -> None:
        """Calibrate from the server's `usage.prompt_tokens` for `messages`, keeping a 10% margin."""
        chars = sum(len(str(message.get("content") or "")) for message in messages)
        text_tokens = prompt_tokens - self.per_message * len(messages)
        if chars >= 200 and text_tokens > 0:  # short prompts are mostly template: nothing to learn from
            self.chars_per_token = max(0.5, chars / text_tokens / 1.1)


@dataclass
class Conversation:
    system: str | None = None
    persona: str | None = None
    turns: list[Turn] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    thinking: bool | None = None  # None: the model's own default (Nemotron thinks)

    def messages(self, question: str | None = None) -> list[Message]:
        """The messages to send: system prompt, every kept turn, then `question` if given."""
        result: list[Message] = [{"role": "system", "content": self.system}] if self.system else []
        for turn in self.turns:
            result += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.assistant}]
        if question is not None:
            result.append({"role": "user", "content": question})
        return result

    def request(self, question: str) -> dict[str, Any]:
        """An OpenAI chat request body (no model, no stream flag) for `question`."""
        body: dict[str, Any] = {"messages": self.messages(question), **self.params}
        if self.thinking is not None:
            body["chat_template_kwargs"] = {"enable_thinking": self.thinking}
        return body

    def fit(self, question: str, *, budget: int, count: Callable[[list[Message]], int]) -> int:
        """Drop the oldest turns until the prompt for `question` is at most `budget` tokens; returns how many.

        It may still not fit when no turn is left: the caller finds out from the server.
        """
        dropped = 0
        while self.turns and count(self.messages(question)) > budget:
            self.turns.pop(0)
            dropped += 1
        return dropped

    def drop_oldest(self) -> bool:
        """Drop one turn; False when none is left."""
        if not self.turns:
            return False
        self.turns.pop(0)
        return True

    def set_param(self, name: str, value: Any) -> None:
        """Set a sampling parameter (None: back to the server's default)."""
        if value is None:
            self.params.pop(name, None)
        else:
            self.params[name] = value

    # ---- files -----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "persona": self.persona,
            "params": self.params,
            "thinking": self.thinking,
            "messages": self.messages(),
        }

    @classmethod
    def from_json(cls, data: Any, *, source: str) -> Conversation:
        """Raises ConfigError naming `source` when `data` is not a saved conversation."""
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise ConfigError(f"{source} is not a saved conversation (no messages list)")
        messages = data["messages"]
        system = None
        if messages and isinstance(messages[0], dict) and messages[0].get("role") == "system":
            system = str(messages[0].get("content") or "")
            messages = messages[1:]
        turns = []
        for i in range(0, len(messages) - 1, 2):
            user, assistant = messages[i], messages[i + 1]
            if not (isinstance(user, dict) and isinstance(assistant, dict)) or (
                user.get("role"),
                assistant.get("role"),
            ) != ("user", "assistant"):
                raise ConfigError(f"{source}: messages must alternate user and assistant after the system prompt")
            turns.append(Turn(str(user.get("content") or ""), str(assistant.get("content") or "")))
        params = checked_params(data.get("params"), source=source)
        thinking = data.get("thinking")
        if thinking is not None and not isinstance(thinking, bool):
            raise ConfigError(f"{source}: thinking must be true, false or null")
        persona = data.get("persona")
        return cls(system, str(persona) if persona else None, turns, params, thinking)

    def save(self, path: Path) -> Path:
        """Write the conversation as JSON, readable by its owner only (it is private text)."""
        path = path.expanduser()
        try:
            write_atomic(path, json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", mode=PRIVATE)
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
        return path

    @classmethod
    def load(cls, path: Path) -> Conversation:
        """Raises ConfigError when the file is missing or not a saved conversation."""
        path = path.expanduser()
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"{path} is not JSON: {exc}") from None
        return cls.from_json(data, source=str(path))
