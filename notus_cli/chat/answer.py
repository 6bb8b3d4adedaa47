"""One answer as it streams in: its text, its reasoning, and the timings the stats line shows.

Timings follow `notus bench` (vLLM's definitions): time to first token from sending the request to
the first chunk that carries text or reasoning; decode speed over the tokens after the first, so
it measures generation alone, not queueing or prefill.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from notus_cli.chat.backends import JobTiming

# finish_reason of an answer that has no text, as Notus's worker marks it: max_tokens spent on the
# reasoning, or the model ended (inside its reasoning or not) with nothing to say.
REASONING_LENGTH = "reasoning_length"
NO_ANSWER = "no_answer"


@dataclass
class Answer:
    started: float = field(default_factory=time.perf_counter)
    content: str = ""
    reasoning: str = ""
    first_token_at: float | None = None
    last_token_at: float | None = None
    chunks: int = 0  # chunks that carried text: the token count when the server sends no usage
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    timing: JobTiming | None = None
    completion: dict[str, Any] | None = None  # the whole chat.completion, when not streamed
    dropped: int = 0  # turns dropped to make the question fit

    def add(self, chunk: dict[str, Any]) -> bool:
        """Take one chat.completion.chunk; True when it added text or reasoning."""
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices") or []
        if not choices:
            return False
        choice = choices[0]
        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        thought = delta.get("reasoning_content") or delta.get("reasoning") or ""
        if not (text or thought):
            return False
        now = time.perf_counter()
        self.first_token_at = self.first_token_at or now
        self.last_token_at = now
        self.chunks += 1
        self.content += text
        self.reasoning += thought
        return True

    def take(self, completion: dict[str, Any]) -> None:
        """Fill in from a whole (non-streamed) chat.completion."""
        now = time.perf_counter()
        self.completion = completion
        self.usage = completion.get("usage") if isinstance(completion.get("usage"), dict) else None
        choices = completion.get("choices") or [{}]
        message = choices[0].get("message") or {}
        self.content = message.get("content") or ""
        self.reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
        self.finish_reason = choices[0].get("finish_reason")
        self.first_token_at = self.last_token_at = now

    @property
    def empty(self) -> bool:
        """No answer text: content null or "" (the model ended inside its reasoning), or only whitespace."""
        return not self.content.strip()

    def why_empty(self) -> str:
        """One line on why there is no answer, for a person."""
        if self.finish_reason in ("length", REASONING_LENGTH):
            return "no answer: max_tokens was spent before the model wrote one"
        if self.reasoning:
            words = len(self.reasoning.split())
            return f"no answer: the model ended inside its reasoning ({words} words of it, no answer text)"
        return "no answer: the model ended without writing any text"

    def json(self) -> dict[str, Any]:
        """The chat.completion as `notus chat --json` prints it: the server's, with the reasoning under
        `reasoning_content` (vLLM's newer servers call it `reasoning`) and `content` always a string."""
        completion = dict(self.completion or {})
        choices = []
        for choice in completion.get("choices") or []:
            message = dict(choice.get("message") or {})
            reasoning = message.pop("reasoning", None)
            message["reasoning_content"] = message.get("reasoning_content") or reasoning
            message["content"] = message.get("content") or ""
            choices.append({**choice, "message": message})
        completion["choices"] = choices
        return completion

    @property
    def tokens(self) -> int:
        if self.usage and isinstance(self.usage.get("completion_tokens"), int):
            return int(self.usage["completion_tokens"])
        return self.chunks

    @property
    def prompt_tokens(self) -> int | None:
        value = (self.usage or {}).get("prompt_tokens")
        return value if isinstance(value, int) else None

    @property
    def ttft(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started

    @property
    def decode_rate(self) -> float | None:
        """Tokens per second after the first token; None with fewer than two tokens."""
        if self.first_token_at is None or self.last_token_at is None or self.tokens < 2:
            return None
        span = self.last_token_at - self.first_token_at
        return (self.tokens - 1) / span if span > 0 else None
