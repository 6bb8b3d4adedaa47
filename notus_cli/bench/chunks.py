"""Timing one streamed chat completion, chunk by chunk, into a RequestRecord.

Every target that streams `chat.completion.chunk` objects (SSE from an OpenAI-compatible server,
items of a RunPod job's /stream) feeds them here, so TTFT, E2EL, ITL and the output-token count
mean the same for each kind of server (see metrics.DEFINITIONS).
"""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer

from notus_cli.bench.metrics import RequestRecord
from notus_cli.bench.workload import count_tokens


class ChunkTally:
    """Adds up the chunks of one request as they arrive (times on time.perf_counter's clock).

    `gap_per_chunk=False` counts one ITL gap per arrival rather than per chunk: a RunPod /stream
    poll hands over several chunks at once, and the zero gaps between them would measure nothing.
    """

    def __init__(self, record: RequestRecord, *, tokenizer: Tokenizer | None = None, gap_per_chunk: bool = True):
        self.record = record
        self.tokenizer = tokenizer
        self.gap_per_chunk = gap_per_chunk
        self.first: float | None = None
        self.last = self.previous = record.sent_at
        self.chunks = 0
        self.texts: list[str] = []
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None

    def add(self, event: dict[str, Any], now: float) -> None:
        """One chat.completion.chunk received at `now`."""
        if event.get("usage"):
            self.usage = event["usage"]
        if self.model is None and isinstance(event.get("model"), str):
            self.model = event["model"]
        choices = event.get("choices")
        if not choices:
            return
        self.last = now
        delta = choices[0].get("delta") or {}
        text = (delta.get("content") or "") + (delta.get("reasoning_content") or delta.get("reasoning") or "")
        if not text and not delta.get("tool_calls"):
            return
        if self.first is None:
            self.first = now
        elif self.gap_per_chunk or now > self.previous:
            self.record.itl.append(now - self.previous)
        self.previous = now
        self.chunks += 1
        if self.tokenizer is not None:
            self.texts.append(text)

    def finish(self) -> None:
        """The stream ended: mark the record ok with its timings, or failed if nothing came."""
        record = self.record
        if self.first is None:
            record.fail("no_content", "the stream ended without a chunk of content")
            return
        record.ok = True
        record.ttft = self.first - record.sent_at
        record.e2el = self.last - record.sent_at
        usage = self.usage
        if usage and isinstance(usage.get("completion_tokens"), int):
            record.output_tokens, record.token_source = usage["completion_tokens"], "usage"
            if isinstance(usage.get("prompt_tokens"), int):
                record.prompt_tokens = usage["prompt_tokens"]
        elif self.tokenizer is not None:
            record.output_tokens, record.token_source = count_tokens(self.tokenizer, "".join(self.texts)), "tokenizer"
        else:
            record.output_tokens, record.token_source = self.chunks, "chunks"
