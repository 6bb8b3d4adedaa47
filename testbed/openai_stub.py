"""A fast OpenAI-compatible streaming server for load-generator tests and benchmarks.

It answers `POST /v1/chat/completions` the way vLLM does (a role chunk, one chunk per token, a
finish chunk, a usage chunk when asked, `[DONE]`), with configurable delays and failures, and
nothing else: no model, no JSON schema checks. Written on asyncio.Protocol so that it stays far
cheaper per request than the clients it measures; it runs in its own process.

    python -m testbed.openai_stub --port 0 --ttft 0.05 --itl 0.01 --fail-every 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx

from testbed.common import ROOT

MODEL = "stub-model"
FAIL_MODES = ("status", "disconnect", "error-event")


@dataclass(frozen=True)
class StubConfig:
    """What every answer looks like; `fail_every=N` makes every N-th chat request fail (1-based)."""

    tokens: int = 16  # used when the request sets no max_tokens
    ttft: float = 0.0  # seconds before the first token
    itl: float = 0.0  # seconds between tokens
    usage: bool = True  # honour stream_options.include_usage
    fail_every: int = 0
    fail_mode: str = "status"
    api_key: str | None = None  # when set, every request needs `Authorization: Bearer <key>` (else 401)
    separate_writes: bool = False  # without delays, write each event on its own (else one write per answer)
    answer: str | None = None  # the answer's text, one word (with the space or newlines after it) per token
    reasoning_only: bool = False  # the model ends inside its reasoning: reasoning_content, content null


class _Connection(asyncio.Protocol):
    def __init__(self, server: _Stub) -> None:
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def _next_request(self) -> None:
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = self.buffer[:head_end].decode("latin-1")
        request_line, *header_lines = head.split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(self.buffer) < head_end + 4 + length:
            return
        body = self.buffer[head_end + 4 : head_end + 4 + length]
        self.buffer = self.buffer[head_end + 4 + length :]
        method, path, _ = request_line.split(" ", 2)
        self.busy = True
        authorized = self.server.authorized(headers.get("authorization"), path)
        asyncio.get_running_loop().create_task(self._answer(method, path, body, authorized))

    async def _answer(self, method: str, path: str, body: bytes, authorized: bool) -> None:
        try:
            if not authorized:
                self._send_whole(401, b'{"error": {"message": "stub: missing or wrong API key"}}')
            elif method == "GET" and path in ("/health", "/v1/models"):
                payload = {"object": "list", "data": [{"id": MODEL, "object": "model"}]} if path != "/health" else {}
                self._send_whole(200, json.dumps(payload).encode())
            elif method == "POST" and path == "/v1/chat/completions":
                await self.server.chat(self, json.loads(body))
            else:
                self._send_whole(404, b'{"error": {"message": "not found"}}')
        finally:
            self.busy = False
        if self.transport is not None and self.buffer:
            self._next_request()

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _send_whole(self, status: int, body: bytes) -> None:
        reason = {200: "OK", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error"}.get(status, "Error")
        head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        self.write(head.encode() + body)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _Stub:
    def __init__(self, config: StubConfig) -> None:
        self.config = config
        self.count = 0

    def authorized(self, header: str | None, path: str) -> bool:
        return self.config.api_key is None or path == "/health" or header == f"Bearer {self.config.api_key}"

    async def chat(self, conn: _Connection, request: dict[str, object]) -> None:
        config = self.config
        self.count += 1
        failing = config.fail_every > 0 and self.count % config.fail_every == 0
        if failing and config.fail_mode == "status":
            conn._send_whole(500, b'{"error": {"message": "stub: planned failure", "type": "InternalServerError"}}')
            return
        limit = request.get("max_completion_tokens") or request.get("max_tokens") or config.tokens
        tokens = int(limit) if isinstance(limit, int) else config.tokens
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))  # type: ignore[attr-defined]
        options = request.get("stream_options")
        usage = config.usage and isinstance(options, dict) and bool(options.get("include_usage"))
        if not request.get("stream"):
            await asyncio.sleep(config.ttft + config.itl * max(tokens - 1, 0))
            answer = {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": MODEL,
                "choices": [{"index": 0, "message": self.message(tokens), "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens},
            }
            conn._send_whole(200, json.dumps(answer).encode())
            return
        words = self.words()
        if words is not None:
            tokens = len(words)
        tail = _event(_chunk({}, finish="length" if tokens == limit and words is None else "stop"))
        if usage:
            counts = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens}
            counts["total_tokens"] = prompt_tokens + tokens
            tail += _event(json.dumps({"id": "chatcmpl-stub", "object": "chat.completion.chunk", "choices": [],
                                       "model": MODEL, "usage": counts}))  # fmt: skip
        tail += _event("[DONE]") + b"0\r\n\r\n"
        if words is not None:
            key = "reasoning_content" if config.reasoning_only else "content"
            events = [_event(_chunk({key: word})) for word in words]
        else:
            events = [TOKEN_EVENT] * tokens
        if not (config.ttft or config.itl or failing or config.separate_writes):  # one write per answer: fastest
            conn.write(STREAM_HEAD + b"".join(events) + tail)
            return
        conn.write(STREAM_HEAD)
        if config.ttft:
            await asyncio.sleep(config.ttft)
        for i in range(tokens):
            if i and config.itl:
                await asyncio.sleep(config.itl)
            if failing and i == tokens // 2:
                if config.fail_mode == "disconnect":
                    conn.abort()
                    return
                conn.write(_event(json.dumps({"error": {"message": "stub: planned failure", "code": 500}})))
                conn.write(_event("[DONE]") + b"0\r\n\r\n")
                return
            conn.write(events[i])
        conn.write(tail)

    def words(self) -> list[str] | None:
        """The configured answer as tokens (each word with the whitespace after it); None: "tok " repeated."""
        if self.config.answer is None:
            return None
        return re.findall(r"\S+\s*", self.config.answer)

    def message(self, tokens: int) -> dict[str, object]:
        """The non-streamed message: as vLLM's, `content` null when the model ended inside its reasoning."""
        words = self.words()
        text = "tok " * tokens if words is None else "".join(words)
        if self.config.reasoning_only:
            return {"role": "assistant", "content": None, "reasoning_content": text}
        return {"role": "assistant", "content": text}


def _chunk(delta: dict[str, str], finish: str | None = None) -> str:
    return json.dumps(
        {
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def _event(payload: str) -> bytes:
    data = f"data: {payload}\n\n".encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" + _event(
    _chunk({"role": "assistant", "content": ""})
)
TOKEN_EVENT = _event(_chunk({"content": "tok "}))


async def serve(config: StubConfig, port: int) -> None:
    stub = _Stub(config)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(stub), "127.0.0.1", port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


@contextlib.contextmanager
def running_stub(
    config: StubConfig = StubConfig(), *, python: str = sys.executable, cpus: Sequence[int] | None = None
) -> Iterator[str]:
    """Start the stub in its own process (pinned to `cpus` if given); yield its base URL; stop it."""
    command = [python, "-m", "testbed.openai_stub", "--port", "0", "--tokens", str(config.tokens)]
    command += ["--ttft", str(config.ttft), "--itl", str(config.itl), "--fail-every", str(config.fail_every)]
    command += ["--fail-mode", config.fail_mode] + ([] if config.usage else ["--no-usage"])
    command += ["--api-key", config.api_key] if config.api_key else []
    command += ["--separate-writes"] if config.separate_writes else []
    command += ["--answer", config.answer] if config.answer is not None else []
    command += ["--reasoning-only"] if config.reasoning_only else []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    pin = (lambda: os.sched_setaffinity(0, set(cpus))) if cpus else None
    process = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=ROOT, env=env, preexec_fn=pin)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        base_url = f"http://127.0.0.1:{port}"
        httpx.get(f"{base_url}/health", timeout=10).raise_for_status()
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=StubConfig.tokens)
    parser.add_argument("--ttft", type=float, default=0.0)
    parser.add_argument("--itl", type=float, default=0.0)
    parser.add_argument("--no-usage", action="store_true")
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--fail-mode", choices=FAIL_MODES, default="status")
    parser.add_argument("--api-key")
    parser.add_argument("--separate-writes", action="store_true")
    parser.add_argument("--answer", help="the answer's text (default: 'tok ' repeated)")
    parser.add_argument("--reasoning-only", action="store_true", help="stream it as reasoning, with no content")
    args = parser.parse_args()
    config = StubConfig(
        tokens=args.tokens,
        ttft=args.ttft,
        itl=args.itl,
        usage=not args.no_usage,
        fail_every=args.fail_every,
        fail_mode=args.fail_mode,
        api_key=args.api_key,
        separate_writes=args.separate_writes,
        answer=args.answer,
        reasoning_only=args.reasoning_only,
    )
    try:
        import uvloop  # optional: a faster loop keeps the stub further from being the bottleneck
    except ImportError:
        asyncio.run(serve(config, args.port))
    else:
        uvloop.run(serve(config, args.port))


if __name__ == "__main__":
    main()
