"""What the worker adds between a client and vLLM, for both endpoint types, side by side in one run.

    .venv/bin/python -m benchmarks.worker_overhead [--pairs 60] [--lengths 8,64,256,512] [--streams 64]

Three paths to the same upstream, in alternating order so all see the same machine:
  direct  a client straight to the upstream (httpx, parsing SSE and JSON as any client must);
  queue   the same requests through `ChatHandler.handle` in this process, as the runpod SDK calls it
          (what RunPod's job queue adds on top is not the worker's and is not measured here);
  lb      the same client through a real `python -m worker` process in LB mode (NOTUS_ENDPOINT_TYPE=lb,
          NOTUS_VLLM_URL pointing at the upstream): one more HTTP hop plus the worker's own work.

The upstream is not vLLM but a stand-in that answers in vLLM's wire format (OpenAI chunks, usage
last, `data: [DONE]`) from a process of its own: vLLM's own jitter (milliseconds per request on a
busy 2-core machine) would hide a cost of microseconds per chunk. Streams of several lengths
separate what a path costs per stream from what it costs per chunk: the paired difference (path
minus direct) is fitted against the stream length by least squares, the slope is the per-chunk
cost and the intercept the per-stream cost. TTFT is to the first chunk that carries text.
Throughput: `--streams` concurrent streams through each path from an upstream that paces its
tokens (`--itl-ms` apart, as a GPU decodes), tokens/s relative to direct.
Goals (issue: LB endpoints): <= 2 ms TTFT p50 and <= 0.2 ms per chunk over direct, >= 95% of
direct's tokens/s at 64 streams. Writes docs/results/worker_overhead.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks.results import add_out_option, write_results
from testbed.common import ROOT
from worker.handler import ChatHandler
from worker.sse import DONE, SSEDecoder

MODEL = "notus-bench"
MESSAGES = [{"role": "user", "content": "What does the Bible say about wisdom?"}]
GOALS = {"ttft_ms": 2.0, "per_chunk_ms": 0.2, "throughput_ratio": 0.95}


# --- the upstream: vLLM's wire format, no model ------------------------------------------------------


def _chunk(delta: dict[str, Any], finish: str | None) -> bytes:
    event = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


async def _send_json(writer: asyncio.StreamWriter, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(data), data)
    )
    await writer.drain()


async def _upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, itl: float) -> None:
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            lines = head.split(b"\r\n")
            method, path = lines[0].split(b" ")[:2]
            length = next((int(x.split(b":")[1]) for x in lines if x.lower().startswith(b"content-length")), 0)
            body = json.loads(await reader.readexactly(length)) if length else {}
            if method == b"GET":
                payload = (
                    {"data": [{"id": MODEL, "object": "model", "max_model_len": 4096}]} if b"models" in path else {}
                )
                await _send_json(writer, payload)
                continue
            tokens = int(body.get("max_tokens", 16))
            usage = {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens}
            if not body.get("stream"):
                answer = {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "created": 1,
                    "model": MODEL,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "word " * tokens},
                            "finish_reason": "length",
                        }
                    ],
                    "usage": usage,
                }
                await _send_json(writer, answer)
                continue
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")

            def send(event: bytes) -> None:
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))

            send(_chunk({"role": "assistant", "content": ""}, None))
            for index in range(tokens):
                if itl:
                    await asyncio.sleep(itl)
                send(_chunk({"content": "word "}, "length" if index == tokens - 1 else None))
                await writer.drain()
            if (body.get("stream_options") or {}).get("include_usage"):
                tail = {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": MODEL,
                    "choices": [],
                    "usage": usage,
                }
                send(b"data: " + json.dumps(tail, separators=(",", ":")).encode() + b"\n\n")
            send(b"data: [DONE]\n\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def serve_upstream(port: int, itl: float) -> None:
    server = await asyncio.start_server(lambda r, w: _upstream(r, w, itl), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


# --- the processes -----------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s")


class Stack:
    """An upstream process and an LB worker process in front of it."""

    def __init__(self, itl: float) -> None:
        self.upstream_port, self.lb_port = free_port(), free_port()
        self.upstream = f"http://127.0.0.1:{self.upstream_port}"
        self.lb = f"http://127.0.0.1:{self.lb_port}"
        self.procs = [
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "benchmarks.worker_overhead"),
                    *("--serve-upstream", str(self.upstream_port), "--itl-ms", str(itl * 1000)),
                ],
                cwd=ROOT,
            ),
        ]
        wait_ready(f"{self.upstream}/health")
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "NOTUS_ENDPOINT_TYPE": "lb",
            "PORT": str(self.lb_port),
            "NOTUS_VLLM_URL": self.upstream,
            "NOTUS_SERVED_MODEL_NAME": MODEL,
            "NOTUS_MAX_NUM_SEQS": "256",
        }
        self.procs.append(subprocess.Popen([sys.executable, "-m", "worker"], env=env, stderr=subprocess.DEVNULL))
        wait_ready(f"{self.lb}/ping")

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)


# --- the three paths: each returns (seconds to first text, seconds in all, chunks with text) ------------

Timing = tuple[float, float, int]


def body_for(tokens: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "max_tokens": tokens, "stream": stream}
    body["chat_template_kwargs"] = {"enable_thinking": False}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


async def over_http(http: httpx.AsyncClient, url: str, tokens: int) -> Timing:
    started = time.perf_counter()
    first, chunks = 0.0, 0
    async with http.stream("POST", url, json=body_for(tokens, True)) as response:
        decoder = SSEDecoder()
        async for data in response.aiter_bytes():
            if found := texts(decoder.feed(data)):
                chunks += found
                first = first or time.perf_counter() - started
    return first, time.perf_counter() - started, chunks


def texts(payloads: list[str]) -> int:
    """What any streaming client does with the events it reads: decode each, count those with text."""
    found = 0
    for payload in payloads:
        if payload != DONE:
            event = json.loads(payload)
            found += bool(event["choices"] and event["choices"][0]["delta"].get("content"))
    return found


async def through_handler(handler: ChatHandler, tokens: int) -> Timing:
    job = {"id": "bench", "input": {"openai_route": "/v1/chat/completions", "openai_input": body_for(tokens, True)}}
    started = time.perf_counter()
    first, chunks = 0.0, 0
    decoder = SSEDecoder()
    async for item in handler.handle(job):  # SSE text, as RunPod's OpenAI route relays it
        if found := texts(decoder.feed(item.encode())):
            chunks += found
            first = first or time.perf_counter() - started
    return first, time.perf_counter() - started, chunks


@asynccontextmanager
async def paths(stack: Stack) -> AsyncIterator[dict[str, Callable[[int], Awaitable[Timing]]]]:
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
    handler = ChatHandler(base_url=stack.upstream, served_model_name=MODEL, max_model_len=4096, max_connections=300)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        yield {
            "direct": lambda n: over_http(http, f"{stack.upstream}/v1/chat/completions", n),
            "queue": lambda n: through_handler(handler, n),
            "lb": lambda n: over_http(http, f"{stack.lb}/v1/chat/completions", n),
        }
    await handler.aclose()


async def per_length(stack: Stack, lengths: list[int], pairs: int) -> dict[str, dict[int, list[Timing]]]:
    results: dict[str, dict[int, list[Timing]]] = {"direct": {}, "queue": {}, "lb": {}}
    async with paths(stack) as send:
        for name in send:  # warm connections and caches
            for _ in range(10):
                await send[name](8)
        for length in lengths:
            for name in send:
                results[name][length] = []
            for round_ in range(pairs):
                order = list(send)
                order = order[round_ % 3 :] + order[: round_ % 3]  # rotate who goes first
                for name in order:
                    results[name][length].append(await send[name](length))
    return results


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def throughput(stack: Stack, streams: int, tokens: int, rounds: int) -> dict[str, float]:
    """Tokens per second with `streams` streams at once, per path (median over rounds), and the LB
    worker process's CPU milliseconds per 1000 tokens it relayed."""
    rates: dict[str, list[float]] = {"direct": [], "queue": [], "lb": []}
    lb_cpu, lb_tokens = 0.0, 0
    own_cpu = {"direct": 0.0, "queue": 0.0}  # this process's CPU: the client, plus the handler on the queue path
    own_tokens = {"direct": 0, "queue": 0}
    async with paths(stack) as send:
        for name in send:
            await asyncio.gather(*(send[name](4) for _ in range(streams)))  # open the connections
        for round_ in range(rounds):
            order = list(send)
            order = order[round_ % 3 :] + order[: round_ % 3]
            for name in order:
                cpu, mine = cpu_seconds(stack.procs[1].pid), time.process_time()
                started = time.perf_counter()
                done = await asyncio.gather(*(send[name](tokens) for _ in range(streams)))
                relayed = sum(chunks for _, _, chunks in done)
                rates[name].append(relayed / (time.perf_counter() - started))
                if name == "lb":
                    lb_cpu += cpu_seconds(stack.procs[1].pid) - cpu
                    lb_tokens += relayed
                else:
                    own_cpu[name] += time.process_time() - mine
                    own_tokens[name] += relayed
    medians = {name: statistics.median(values) for name, values in rates.items()}
    queue_cpu = own_cpu["queue"] / own_tokens["queue"] - own_cpu["direct"] / own_tokens["direct"]
    return {
        **medians,
        "lb_cpu_ms_per_1k_tokens": lb_cpu * 1000 / lb_tokens * 1000,
        "queue_cpu_ms_per_1k_tokens": queue_cpu * 1000 * 1000,
    }


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares: (intercept, slope)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def summarize(results: dict[str, dict[int, list[Timing]]], by_itl: dict[float, dict[str, float]]) -> dict[str, Any]:
    """The goals' throughput is judged at the first ITL given (see --itl-ms)."""
    lengths = sorted(results["direct"])
    rates = next(iter(by_itl.values()))
    out: dict[str, Any] = {}
    for name in ("queue", "lb"):
        added = {
            n: statistics.median(p[1] - d[1] for p, d in zip(results[name][n], results["direct"][n], strict=True))
            * 1000
            for n in lengths
        }
        ttft = (
            statistics.median(
                p[0] - d[0] for p, d in zip(results[name][lengths[0]], results["direct"][lengths[0]], strict=True)
            )
            * 1000
        )
        per_stream, per_chunk = fit([float(n) for n in lengths], [added[n] for n in lengths])
        # Paced tokens each arrive in a read of their own: the path's CPU per token is its per-chunk cost
        # there (delays do not add up across a paced stream, CPU does).
        cpu_per_chunk = rates[f"{name}_cpu_ms_per_1k_tokens"] / 1000
        ratio = rates[name] / rates["direct"]
        out[name] = {
            "added_ms_by_length": {str(n): round(added[n], 3) for n in lengths},
            "per_stream_ms": round(per_stream, 3),
            "per_chunk_ms": round(per_chunk, 4),
            "cpu_per_chunk_ms": round(cpu_per_chunk, 4),
            "ttft_added_p50_ms": round(ttft, 3),
            "tokens_per_s": round(rates[name]),
            "throughput_ratio": round(ratio, 3),
            "goals_met": {
                "ttft": ttft <= GOALS["ttft_ms"],
                "per_chunk": max(per_chunk, cpu_per_chunk) <= GOALS["per_chunk_ms"],
                "throughput": ratio >= GOALS["throughput_ratio"],
            },
        }
    out["throughput_by_itl"] = [
        {
            "itl_ms": itl,
            "direct_tokens_per_s": round(r["direct"]),
            "queue_ratio": round(r["queue"] / r["direct"], 3),
            "lb_ratio": round(r["lb"] / r["direct"], 3),
            "lb_cpu_ms_per_1k_tokens": round(r["lb_cpu_ms_per_1k_tokens"], 1),
            "queue_cpu_ms_per_1k_tokens": round(r["queue_cpu_ms_per_1k_tokens"], 1),
        }
        for itl, r in by_itl.items()
    ]
    out["direct"] = {
        "total_ms_by_length": {
            str(n): round(statistics.median(t[1] for t in results["direct"][n]) * 1000, 3) for n in lengths
        },
        "ttft_p50_ms": round(statistics.median(t[0] for t in results["direct"][lengths[0]]) * 1000, 3),
        "tokens_per_s": round(rates["direct"]),
    }
    return out


def markdown(summary: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "Upstream: a stand-in speaking vLLM's wire format in its own process (not vLLM: its jitter would hide "
        "microseconds). queue = `ChatHandler.handle` in process (RunPod's queue not included); lb = a real "
        "`python -m worker` in LB mode, one more HTTP hop. Per-chunk and per-stream costs are the slope and "
        "intercept of (path − direct) over stream lengths (tokens sent at once); CPU per chunk is the path's "
        "own CPU time per token with paced tokens, one read each; TTFT over direct at the shortest length; "
        f"tokens/s with {args.streams} concurrent streams of {args.tokens} tokens, {args.itl_ms.split(',')[0]} ms "
        "apart (the goal's figure; other token gaps below).",
        "",
        "| path | per chunk ms | CPU per chunk ms | per stream ms | TTFT added p50 ms | tokens/s | of direct "
        "| goals (TTFT ≤2 ms, chunk ≤0.2 ms, ≥95%) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("queue", "lb"):
        row = summary[name]
        met = ", ".join("met" if value else "NOT met" for value in row["goals_met"].values())
        lines.append(
            f"| {name} | {row['per_chunk_ms']} | {row['cpu_per_chunk_ms']} | {row['per_stream_ms']} "
            f"| {row['ttft_added_p50_ms']} "
            f"| {row['tokens_per_s']} | {row['throughput_ratio']:.1%} | {met} |"
        )
    direct = summary["direct"]
    lines.append(f"| direct | - | - | - | {direct['ttft_p50_ms']} (absolute) | {direct['tokens_per_s']} | 100% | |")
    lines += [
        "",
        f"Throughput with {args.streams} streams by the gap between tokens. Upstream, client and worker share this "
        "machine's cores: where direct falls short of streams × 1000 / gap tokens/s the machine is saturated, "
        "and the LB worker's own process takes CPU from the client (its CPU per token is the cost that carries over). "
        "The queue path's CPU is this process's minus direct's: the handler merges what arrives while its consumer "
        "is busy, so the client decodes fewer, larger items and the figure can fall below zero.",
        "",
        "| token gap ms | ideal tokens/s | direct tokens/s | queue of direct | lb of direct "
        "| queue CPU ms per 1000 tokens | lb CPU ms per 1000 tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary["throughput_by_itl"]:
        ideal = args.streams * 1000 / row["itl_ms"]
        lines.append(
            f"| {row['itl_ms']:g} | {ideal:.0f} | {row['direct_tokens_per_s']} | {row['queue_ratio']:.1%} "
            f"| {row['lb_ratio']:.1%} | {row['queue_cpu_ms_per_1k_tokens']} | {row['lb_cpu_ms_per_1k_tokens']} |"
        )
    lines += ["", "Added ms per stream by length (path − direct, median of pairs):", ""]
    lengths = list(summary["queue"]["added_ms_by_length"])
    lines.append("| path | " + " | ".join(f"{n} chunks" for n in lengths) + " |")
    lines.append("|---|" + "---|" * len(lengths))
    for name in ("queue", "lb"):
        lines.append(f"| {name} | " + " | ".join(str(summary[name]["added_ms_by_length"][n]) for n in lengths) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=60, help="requests per path and stream length")
    parser.add_argument("--lengths", default="8,64,256,512", help="stream lengths in chunks, comma-separated")
    parser.add_argument("--streams", type=int, default=64, help="concurrent streams for the throughput run")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per stream in the throughput run")
    parser.add_argument(
        "--itl-ms",
        default="40,20",
        help="ms between tokens in the throughput runs, comma-separated; the first is judged",
    )
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per path")
    add_out_option(parser, "worker_overhead")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        asyncio.run(serve_upstream(args.serve_upstream, float(args.itl_ms) / 1000))
        return
    lengths = [int(n) for n in args.lengths.split(",")]
    instant = Stack(itl=0.0)
    try:
        results = asyncio.run(per_length(instant, lengths, args.pairs))
    finally:
        instant.close()
    by_itl = {}
    for itl in (float(value) for value in args.itl_ms.split(",")):
        paced = Stack(itl=itl / 1000)
        try:
            by_itl[itl] = asyncio.run(throughput(paced, args.streams, args.tokens, args.rounds))
        finally:
            paced.close()
    summary = summarize(results, by_itl)
    text = markdown(summary, args)
    print(text)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "serve_upstream")}
    title = "Worker overhead: queue and LB worker against direct"
    write_results("worker_overhead", title, text, {"args": settings, **summary}, out=args.out)


if __name__ == "__main__":
    main()
