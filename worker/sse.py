"""Server-sent events, decoded incrementally from a byte stream.

Network reads split events at arbitrary points; this buffers until an event is whole, so what
the handler yields is always one complete event, never a fragment.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable

DONE = "[DONE]"


class SSEDecoder:
    """Feed bytes in, get the `data` payload of each complete event out."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[str]:
        self._buffer += data
        if b"\r" in self._buffer:
            self._buffer = self._buffer.replace(b"\r\n", b"\n")
        *events, self._buffer = self._buffer.split(b"\n\n")
        return [payload for event in events if (payload := _data(event)) is not None]

    def flush(self) -> list[str]:
        """The last event, when the stream ended without its blank line."""
        rest, self._buffer = self._buffer, b""
        payload = _data(rest)
        return [payload] if payload is not None else []


async def payloads(chunks: AsyncIterable[bytes]) -> AsyncGenerator[str]:
    """The `data` payload of each event in a byte stream, as the events complete (and a last one
    the stream ended without its blank line)."""
    decoder = SSEDecoder()
    async for data in chunks:
        for payload in decoder.feed(data):
            yield payload
    for payload in decoder.flush():
        yield payload


def _data(event: bytes) -> str | None:
    if event.startswith(b"data: ") and b"\n" not in event:  # the usual one-line event, without the general path
        return event[6:].decode()
    lines = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines).decode() if lines else None


def encode(payload: str) -> str:
    """One whole SSE event carrying `payload`."""
    return f"data: {payload}\n\n"
