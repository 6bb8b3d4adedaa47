"""SSE decoding: events are whole no matter where the network splits the bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from worker.sse import SSEDecoder, encode, payloads

STREAM = (
    b'data: {"a": 1}\n\ndata: {"text": "caf\xc3\xa9 \xe2\x80\x94 done"}\r\n\r\n: a comment line\n\ndata: [DONE]\n\n'
)
EXPECTED = ['{"a": 1}', '{"text": "café — done"}', "[DONE]"]


def test_every_split_point_gives_the_same_events() -> None:
    for cut in range(len(STREAM) + 1):
        decoder = SSEDecoder()
        events = decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:]) + decoder.flush()
        assert events == EXPECTED, cut


def test_byte_by_byte() -> None:
    decoder = SSEDecoder()
    events = [event for byte in STREAM for event in decoder.feed(bytes([byte]))]
    assert events == EXPECTED


def test_multiline_data_and_unterminated_tail() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: one\ndata: two\n\ndata: tail") == ["one\ntwo"]
    assert decoder.flush() == ["tail"]


def test_encode_round_trips() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(encode('{"x": 2}').encode()) == ['{"x": 2}']


def test_payloads_of_a_byte_stream_include_its_unterminated_tail() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for cut in (STREAM[:7], STREAM[7:], b"data: tail"):
            yield cut

    async def collect() -> list[str]:
        return [payload async for payload in payloads(chunks())]

    assert asyncio.run(collect()) == [*EXPECTED, "tail"]
