"""What the worker's handler adds to a request: the same requests straight to vLLM and through it.

    .venv/bin/python benchmarks/worker_overhead.py [--pairs 200] [--replay-pairs 2000]

Starts vLLM's CPU build on the tiny model, then sends pairs of identical seeded requests (same
tokens generated), one straight to vLLM with httpx and one through `ChatHandler.handle`, alternating
so both see the same machine. The direct client does what any client must (parse SSE, decode JSON);
the difference is the handler's own work: validation, reshaping, a second parse. Reported: median and
p99 latency of each path, and the median of the paired differences per request and per streamed chunk.

vLLM's own jitter (milliseconds per request on a busy 2-core machine) can hide a sub-millisecond
difference, so a second run replays vLLM's recorded answers (the same bytes) from a loopback server
that answers instantly: what remains is the handler's cost alone.
Goals on a 2-core machine: <= 2 ms per request (median), <= 0.2 ms per streamed chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notus_cli.model.tiny import write_tiny_model
from tests.support.vllm import MAX_MODEL_LEN, SERVED_NAME, start_vllm
from worker.handler import ChatHandler
from worker.params import parse_job_input
from worker.sse import DONE, SSEDecoder

MESSAGES = [
    {"role": "system", "content": "You are a wise counselor guided by KJV scripture."},
    {"role": "user", "content": "What does the Bible say about wisdom?"},
]


async def direct(http: httpx.AsyncClient, job_input: dict[str, Any]) -> tuple[float, int]:
    """One request straight to vLLM, with the body the handler would send; returns (seconds, chunks)."""
    body = parse_job_input(job_input, model=SERVED_NAME, max_model_len=MAX_MODEL_LEN).body
    started = time.perf_counter()
    if not body.get("stream"):
        response = await http.post("/v1/chat/completions", json=body)
        response.json()
        return time.perf_counter() - started, 1
    chunks = 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        decoder = SSEDecoder()
        async for data in response.aiter_bytes():
            for payload in decoder.feed(data):
                if payload != DONE:
                    json.loads(payload)
                    chunks += 1
    return time.perf_counter() - started, chunks


async def through_handler(handler: ChatHandler, job_input: dict[str, Any]) -> tuple[float, int]:
    started = time.perf_counter()
    items = [item async for item in handler.handle({"id": "bench", "input": job_input})]
    assert "error" not in items[0], items[0]
    return time.perf_counter() - started, len(items)


class ReplayServer:
    """An HTTP/1.1 keep-alive server on loopback that answers every POST with recorded vLLM bytes."""

    def __init__(self, plain: bytes, stream: bytes) -> None:
        self.plain, self.stream = plain, stream
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                body = json.loads(await reader.readexactly(length))
                if body.get("stream"):
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                    )
                    for event in self.stream.split(b"\n\n")[:-1]:
                        event += b"\n\n"
                        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                        await writer.drain()
                    writer.write(b"0\r\n\r\n")
                else:
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                        % len(self.plain)
                    )
                    writer.write(self.plain)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client hung up, or the benchmark is over
        finally:
            writer.close()


async def record(base_url: str, plain_input: dict[str, Any], stream_input: dict[str, Any]) -> tuple[bytes, bytes]:
    """vLLM's exact answers to the two benchmark requests."""
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
        plain = parse_job_input(plain_input, model=SERVED_NAME, max_model_len=MAX_MODEL_LEN).body
        stream = parse_job_input(stream_input, model=SERVED_NAME, max_model_len=MAX_MODEL_LEN).body
        plain_bytes = (await http.post("/v1/chat/completions", json=plain)).content
        async with http.stream("POST", "/v1/chat/completions", json=stream) as response:
            stream_bytes = await response.aread()
    return plain_bytes, stream_bytes


async def replayed(
    plain: bytes, stream: bytes, pairs: int, plain_input: dict[str, Any], stream_input: dict[str, Any]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    async with ReplayServer(plain, stream) as base_url:
        return await measure(base_url, pairs, plain_input), await measure(base_url, pairs, stream_input)


async def measure(base_url: str, pairs: int, job_input: dict[str, Any]) -> dict[str, list[float]]:
    handler = ChatHandler(base_url=base_url, served_model_name=SERVED_NAME, max_model_len=MAX_MODEL_LEN)
    limits = httpx.Limits(max_keepalive_connections=8)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as http:
        for _ in range(5):  # warm both paths: connections, caches
            await direct(http, job_input)
            await through_handler(handler, job_input)
        result: dict[str, list[float]] = {"direct": [], "handler": [], "diff": [], "chunks": []}
        for i in range(pairs):
            order = (direct(http, job_input), through_handler(handler, job_input))
            if i % 2:  # alternate who goes first
                (t_handler, chunks), (t_direct, _) = await order[1], await order[0]
            else:
                (t_direct, _), (t_handler, chunks) = await order[0], await order[1]
            result["direct"].append(t_direct)
            result["handler"].append(t_handler)
            result["diff"].append(t_handler - t_direct)
            result["chunks"].append(chunks)
    await handler.aclose()
    return result


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200, help="request pairs per mode")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per non-streamed request")
    parser.add_argument("--stream-tokens", type=int, default=64, help="tokens per streamed request")
    parser.add_argument("--replay-pairs", type=int, default=2000, help="request pairs per mode against the replay")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 130))
    common = {"messages": MESSAGES, "seed": 7, "ignore_eos": True, "chat_template_kwargs": {"enable_thinking": False}}
    plain_input = {**common, "max_tokens": args.max_tokens}
    stream_input = {**common, "max_tokens": args.stream_tokens, "stream": True}
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_model(Path(tmp) / "tiny").path
        console.print("starting vLLM (CPU build, tiny model) ...")
        server = start_vllm(model, Path(tmp) / "vllm.log", max_num_seqs=8)
        try:
            live = (
                asyncio.run(measure(server.base_url, args.pairs, plain_input)),
                asyncio.run(measure(server.base_url, args.pairs, stream_input)),
            )
            recorded = asyncio.run(record(server.base_url, plain_input, stream_input))
        finally:
            server.stop()
    replay = asyncio.run(replayed(*recorded, args.replay_pairs, plain_input, stream_input))
    report(console, f"against vLLM, {args.pairs} paired requests per mode (ms)", *live)
    report(console, f"against vLLM's recorded answers, {args.replay_pairs} paired requests per mode (ms)", *replay)
    for label, (plain, stream) in (("vLLM", live), ("replay", replay)):
        per_request = statistics.median(plain["diff"]) * 1000
        per_chunk = statistics.median(stream["diff"]) * 1000 / statistics.median(stream["chunks"])
        verdict_request = "met" if per_request <= 2 else "NOT met"
        verdict_chunk = "met" if per_chunk <= 0.2 else "NOT met"
        console.print(
            f"{label}: added per request {per_request:.3f} ms (goal <= 2: {verdict_request}); "
            f"per streamed chunk {per_chunk:.4f} ms (goal <= 0.2: {verdict_chunk})"
        )


def report(console: Console, title: str, plain: dict[str, list[float]], stream: dict[str, list[float]]) -> None:
    table = Table(title=title)
    for column in (
        "mode",
        "direct median",
        "direct p99",
        "handler median",
        "handler p99",
        "added median",
        "added/chunk",
    ):
        table.add_column(column, justify="right")
    for mode, data in (("non-stream", plain), ("stream", stream)):
        added = statistics.median(data["diff"]) * 1000
        chunks = statistics.median(data["chunks"])
        table.add_row(
            f"{mode} ({chunks:.0f} chunks)",
            f"{statistics.median(data['direct']) * 1000:.2f}",
            f"{p99(data['direct']) * 1000:.2f}",
            f"{statistics.median(data['handler']) * 1000:.2f}",
            f"{p99(data['handler']) * 1000:.2f}",
            f"{added:.3f}",
            f"{added / chunks:.4f}" if mode == "stream" else "-",
        )
    console.print(table)


if __name__ == "__main__":
    main()
