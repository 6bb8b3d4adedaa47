"""Ask one question: make the conversation fit the context, stream the answer, keep the turn.

When the model's context is known (vLLM's `max_model_len`, or --max-context), the oldest turns are
dropped before sending so that the prompt plus room for the answer fits. The count is an estimate
(calibrated from the server's `usage.prompt_tokens`), so when the server still refuses the prompt
as too long, one more turn is dropped and the question sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from notus_cli.chat.answer import Answer
from notus_cli.chat.backends import Backend
from notus_cli.chat.session import Conversation, TokenEstimate, Turn
from notus_cli.errors import ContextOverflow
from notus_cli.words import plural

DEFAULT_RESERVE = 512  # tokens kept free for the answer when max_tokens is not set


@dataclass
class Totals:
    """The session's figures for /stats."""

    answers: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    queue_ms: list[int] = field(default_factory=list)
    dropped: int = 0

    def add(self, answer: Answer) -> None:
        self.answers += 1
        self.prompt_tokens += answer.prompt_tokens or 0
        self.completion_tokens += answer.tokens
        self.dropped += answer.dropped
        if answer.ttft is not None:
            self.ttft.append(answer.ttft)
        if answer.decode_rate is not None:
            self.rates.append(answer.decode_rate)
        if answer.timing and answer.timing.queue_ms is not None:
            self.queue_ms.append(answer.timing.queue_ms)


@dataclass
class Asker:
    backend: Backend
    conversation: Conversation
    max_model_len: int | None = None
    estimate: TokenEstimate = field(default_factory=TokenEstimate)
    totals: Totals = field(default_factory=Totals)
    last_question: str | None = None
    last_answer: Answer | None = None

    def budget(self) -> int | None:
        """Prompt tokens the context leaves after room for the answer; None when the context is unknown."""
        if self.max_model_len is None:
            return None
        reserve = self.conversation.params.get("max_tokens") or min(DEFAULT_RESERVE, self.max_model_len // 4)
        return max(1, self.max_model_len - int(reserve))

    async def ask(
        self,
        question: str,
        *,
        stream: bool = True,
        on_text: Callable[[Answer], None] = lambda _answer: None,
        on_notice: Callable[[str], None] = lambda _message: None,
    ) -> Answer:
        """Answer `question` and keep the turn. Raises ContextOverflow when even the question alone is too long,
        JobFailed, EndpointUnreachable, ...; a cancelled answer (Ctrl-C) keeps nothing."""
        self.last_question = question
        budget = self.budget()
        dropped = 0
        if budget is not None:
            dropped = self.conversation.fit(question, budget=budget, count=self.estimate.count)
            if dropped:
                on_notice(_dropped(dropped))
        while True:
            answer = Answer(dropped=dropped)
            body = self.conversation.request(question)
            try:
                if stream:
                    async for chunk in self.backend.stream(body):
                        if answer.add(chunk):
                            on_text(answer)
                else:
                    answer.take(await self.backend.complete(body))
            except ContextOverflow:
                if answer.chunks or not self.conversation.drop_oldest():
                    raise
                dropped += 1
                on_notice(_dropped(1) + " (the server said the conversation was too long)")
                continue
            break
        answer.timing = self.backend.timing
        if answer.prompt_tokens is not None:
            self.estimate.learn(body["messages"], answer.prompt_tokens)
        if not answer.empty:  # an empty answer is no turn: the next question goes without it
            self.conversation.turns.append(Turn(question, answer.content))
        self.totals.add(answer)
        self.last_answer = answer
        return answer

    def take_back(self) -> str | None:
        """For /retry: forget the last answer; returns the question to ask again (None if there is none)."""
        turns = self.conversation.turns
        if turns and turns[-1].user == self.last_question:
            turns.pop()
        return self.last_question


def _dropped(count: int) -> str:
    return f"dropped {plural(count, 'oldest turn')} to fit the model's context"
