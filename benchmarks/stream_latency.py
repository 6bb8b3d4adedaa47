"""Streaming over a slow network: what a /stream client and the OpenAI route see, against vLLM itself.

    .venv/bin/python -m benchmarks.stream_latency [--rtts 0,10,30,80] [--concurrency 1,16] [--tokens 128]

One vLLM (CPU build, tiny model) serves four paths side by side in one run: (1) vLLM queried
directly over loopback, (2) `notus serve`'s stack (emulator + an unmodified `python -m worker`)
followed through POST /run + GET /stream with ServerlessClient, (3) the same stack's OpenAI route
streamed as SSE, (4) a load-balancing endpoint: the emulator's LB gateway in front of the same
worker in LB mode, streamed from its OpenAI route with the bearer key. Three stacks share that vLLM:
the queue worker as it is by default, the queue worker as it was (NOTUS_STREAM_COALESCE=false: one
item per vLLM event; NOTUS_PROMPT_JOB_START=false: a job waits for the runpod SDK's 0.1 s look at
its queue), so the gain is measured, and the LB endpoint.

The emulated round trip is applied to the worker-facing API (job-take, job-stream, job-done, ping:
the GPU host to RunPod's API) and, on the LB endpoint, to the gateway's hop to the worker; the
public API stays on loopback so the client's side matches the direct path. Each level sends
`concurrency` streams at once, `--waves` times per path (twice that for single streams), the paths
taking turns wave by wave so that a drift of this machine's speed hits them all alike. vLLM runs on
a core of its own and everything else on the other(s), as on a GPU host where the worker's CPU work
does not slow the decoding (see pin_engine_apart). Printed per level: output tokens/s (all
completion tokens / wall time of the level, as vLLM's bench counts it), the median time to first
token (first chunk with text), and job-stream POSTs per job (items the worker yielded, counted by
the emulator). Goals at 30 ms: the queue routes >= 90% of direct tokens/s and TTFT within direct + 2
x RTT for one stream, 3 x RTT for 16; the LB endpoint >= 97% and direct + 1 x RTT + 10 ms. Writes
docs/results/stream_latency.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import print_table
from benchmarks.results import add_out_option, tee, text_block, write_results
from notus_cli.model.tiny import write_tiny_model
from notus_cli.runpod.serverless import ServerlessClient, sse_objects
from notus_cli.serve.stack import LocalStack
from notus_cli.serve.stack_config import StackConfig
from testbed.vllm import MAX_MODEL_LEN, SERVED_NAME, start_vllm
from worker.params import parse_job_input

MESSAGES = [{"role": "user", "content": "What does the Bible say about wisdom?"}]


def job_input(tokens: int) -> dict[str, Any]:
    # An exact length: no stop string, EOS ignored, thinking off (the tiny model's text is random).
    return {
        "messages": MESSAGES,
        "max_tokens": tokens,
        "ignore_eos": True,
        "stop": "<|never|>",
        "seed": 1,
        "chat_template_kwargs": {"enable_thinking": False},
    }


@dataclasses.dataclass
class Sample:
    ttft: float
    tokens: int
    decode: float = 0.0  # seconds from the first text to the last


def sample(started: float, first: float | None, last: float | None, tokens: int) -> Sample:
    now = time.perf_counter()
    first = first or now
    return Sample(ttft=first - started, tokens=tokens, decode=max((last or now) - first, 1e-9))


def has_text(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning"):
            return True
    return False


async def tally(chunks: AsyncIterator[Any], started: float) -> Sample:
    """Time one stream of chat.completion.chunk objects, whichever path brought them."""
    first = last = None
    tokens = 0
    async for chunk in chunks:
        if not isinstance(chunk, dict):
            continue
        if has_text(chunk):
            last = time.perf_counter()
            first = first or last
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
    return sample(started, first, last, tokens)


async def direct(http: httpx.AsyncClient, tokens: int) -> Sample:
    body = parse_job_input({**job_input(tokens), "stream": True}, model=SERVED_NAME, max_model_len=MAX_MODEL_LEN).body
    started = time.perf_counter()
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        return await tally(sse_objects(response), started)


async def via_lb(http: httpx.AsyncClient, stack: LocalStack, tokens: int) -> Sample:
    """The LB endpoint's OpenAI route: the request vLLM gets directly, through the gateway and the worker."""
    body = parse_job_input({**job_input(tokens), "stream": True}, model=SERVED_NAME, max_model_len=MAX_MODEL_LEN).body
    headers = {"Authorization": f"Bearer {stack.api_key.get_secret_value()}"}
    started = time.perf_counter()
    async with http.stream("POST", f"{stack.info.lb_url}/v1/chat/completions", json=body, headers=headers) as answer:
        return await tally(sse_objects(answer), started)


async def via_stream(client: ServerlessClient, tokens: int) -> Sample:
    started = time.perf_counter()
    job = await client.run({**job_input(tokens), "stream": True})
    return await tally(client.stream(job.id), started)


async def via_openai(client: ServerlessClient, tokens: int) -> Sample:
    body = {"model": SERVED_NAME, **job_input(tokens), "stream_options": {"include_usage": True}}
    return await tally(client.chat_stream(body), time.perf_counter())


@dataclasses.dataclass(frozen=True)
class Figures:
    """What one path gave at one level."""

    level_tps: float  # all completion tokens / wall time of the level
    stream_tps: float  # the median stream's tokens/s after its first token
    ttft: float  # median ms to the first chunk with text
    posts: float | None  # job-stream POSTs per job (None: no stack)
    queued: float | None  # median ms a job waited in the queue for a job-take (None: no stack)


@dataclasses.dataclass
class Route:
    """One way to the same vLLM, and what its waves gave."""

    send: Callable[[], Awaitable[Sample]]
    stack: LocalStack | None = None  # None: vLLM directly
    samples: list[Sample] = dataclasses.field(default_factory=list)
    elapsed: float = 0.0
    posts: list[int] = dataclasses.field(default_factory=list)
    queued: list[float] = dataclasses.field(default_factory=list)  # ms from /run to a job-take taking it

    async def wave(self, concurrency: int) -> None:
        before = job_ids(self.stack) if self.stack else set()
        started = time.perf_counter()
        self.samples += await asyncio.gather(*(self.send() for _ in range(concurrency)))
        self.elapsed += time.perf_counter() - started
        if self.stack is not None:
            for posts, queued in new_jobs(self.stack, before):
                self.posts.append(posts)
                self.queued.append(queued)

    def figures(self) -> Figures:
        return Figures(
            level_tps=sum(s.tokens for s in self.samples) / self.elapsed,
            stream_tps=statistics.median((s.tokens - 1) / s.decode for s in self.samples),
            ttft=statistics.median(s.ttft for s in self.samples) * 1000,
            posts=statistics.mean(self.posts) if self.posts else None,
            queued=statistics.median(self.queued) if self.queued else None,
        )


def waves_at(waves: int, concurrency: int) -> int:
    """Single streams are quick and vary most, so they get twice the waves."""
    return waves * 2 if concurrency < 4 else waves


def job_ids(stack: LocalStack) -> set[str]:
    ids: list[str] = stack.emulator.call(lambda: list(stack.endpoint.jobs))
    return set(ids)


def new_jobs(stack: LocalStack, before: set[str]) -> list[tuple[int, float]]:
    """Each job since `before`: its job-stream POSTs, and ms from its /run to the job-take that took it."""

    def read() -> list[tuple[int, float]]:
        jobs = [job for job_id, job in stack.endpoint.jobs.items() if job_id not in before]
        return [(len(job.stream), ((job.started or job.submitted) - job.submitted) * 1000) for job in jobs]

    seen: list[tuple[int, float]] = stack.emulator.call(read)
    return seen


def set_rtt(stack: LocalStack, rtt_ms: float) -> None:
    emulator = stack.emulator
    emulator.call(lambda: setattr(emulator, "config", dataclasses.replace(emulator.config, worker_api_rtt_ms=rtt_ms)))


async def measure(
    args: argparse.Namespace, vllm_url: str, stacks: dict[str, LocalStack], lb_stack: LocalStack
) -> list[list[str]]:
    rows: list[list[str]] = []
    ttft_at_0: dict[int, dict[str, float]] = {}  # concurrency -> path -> TTFT at RTT 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    timeout = httpx.Timeout(600.0, connect=10.0)
    async with (
        httpx.AsyncClient(base_url=vllm_url, timeout=timeout, limits=limits) as vllm_http,
        httpx.AsyncClient(timeout=timeout, limits=limits) as http,
    ):
        clients = {
            mode: ServerlessClient(stack.info.endpoint_id, stack.api_key, base_url=stack.info.api_base, http=http)
            for mode, stack in stacks.items()
        }
        await direct(vllm_http, 8)  # warm-up, every path once
        await via_lb(http, lb_stack, 8)
        for client in clients.values():
            await via_stream(client, 8)
            await via_openai(client, 8)
        for rtt in args.rtts:
            for stack in [*stacks.values(), lb_stack]:
                set_rtt(stack, rtt)
            for concurrency in args.concurrency:
                paths = {
                    "direct": Route(lambda: direct(vllm_http, args.tokens)),
                    "lb": Route(functools.partial(via_lb, http, lb_stack, args.tokens)),
                }
                for mode, stack in stacks.items():
                    client = clients[mode]
                    paths[f"stream {mode}"] = Route(functools.partial(via_stream, client, args.tokens), stack)
                    paths[f"openai {mode}"] = Route(functools.partial(via_openai, client, args.tokens), stack)
                waves = waves_at(args.waves, concurrency)
                for _ in range(waves):  # the paths take turns, so a drift of this machine hits all alike
                    for path in paths.values():
                        await path.wave(concurrency)
                cells = {name: path.figures() for name, path in paths.items()}
                if rtt == 0:
                    ttft_at_0[concurrency] = {name: cell.ttft for name, cell in cells.items()}
                rows += table_rows(rtt, concurrency, cells, ttft_at_0.get(concurrency, {}))
                print(f"  done: rtt {rtt:g} ms, concurrency {concurrency}", file=sys.stderr, flush=True)
    return rows


def table_rows(
    rtt: float,
    concurrency: int,
    cells: dict[str, Figures],
    unloaded: dict[str, float],
) -> list[list[str]]:
    """`unloaded`: each path's TTFT at RTT 0, so what the round trip itself added can be shown."""
    base = cells["direct"]
    rows = []
    for name, cell in cells.items():
        goal = ""
        if rtt > 0 and (name.endswith("now") or name == "lb"):  # at 0 ms a goal allows nothing over direct
            share, allowed = (0.97, rtt + 10) if name == "lb" else (0.9, (2 if concurrency == 1 else 3) * rtt)
            met = cell.stream_tps >= share * base.stream_tps and cell.ttft <= base.ttft + allowed
            goal = "yes" if met else "no"
        rows.append(
            [
                f"{rtt:g}",
                str(concurrency),
                name,
                f"{cell.level_tps:,.0f}",
                f"{100 * cell.level_tps / base.level_tps:.0f}%",
                f"{cell.stream_tps:,.0f}",
                f"{100 * cell.stream_tps / base.stream_tps:.0f}%",
                f"{cell.ttft:.0f}",
                f"{cell.ttft - base.ttft:+.0f}",
                f"{cell.ttft - unloaded[name]:+.0f}" if name in unloaded else "",
                "" if cell.queued is None else f"{cell.queued:.0f}",
                "" if cell.posts is None else f"{cell.posts:.1f}",
                goal,
            ]
        )
    return rows


def pin_engine_apart() -> set[int] | None:
    """On a GPU host vLLM decodes on the GPU, whatever the worker's CPU does; here vLLM decodes on the
    CPU, so every cycle the worker, the emulator and this client spend would be taken from it, and
    direct vLLM (no worker) would win for a reason that does not exist on RunPod. So vLLM gets a
    core of its own: this process is pinned to it now, for vLLM to inherit when it starts; the other
    cores are returned, to move back to afterwards. None (nothing pinned) on a machine with one core."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    half = len(allowed) // 2
    os.sched_setaffinity(0, set(allowed[half:]))
    return set(allowed[:half])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtts", default="0,10,30,80", help="emulated worker-API round trips, ms")
    parser.add_argument("--concurrency", default="1,16", help="streams at once")
    parser.add_argument("--tokens", type=int, default=256, help="output tokens per stream")
    parser.add_argument("--waves", type=int, default=4, help="rounds of `concurrency` streams per level (x2 below 4)")
    add_out_option(parser, "stream_latency")
    args = parser.parse_args()
    args.rtts = [float(v) for v in args.rtts.split(",")]
    args.concurrency = [int(v) for v in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory(prefix="notus-stream-latency-") as tmp:
        root = Path(tmp)
        model = write_tiny_model(root / "tiny").path
        print("starting vLLM (CPU build, tiny model)...", file=sys.stderr, flush=True)
        others = pin_engine_apart()
        vllm = start_vllm(model, root / "vllm.log", max_num_seqs=32)
        if others:
            os.sched_setaffinity(0, others)  # the stack and this client: what the GPU host's CPU runs
        stacks: dict[str, LocalStack] = {}
        lb_stack: LocalStack | None = None
        try:
            for mode, new in (("now", "true"), ("old", "false")):
                config = StackConfig(
                    model=model,
                    port=0,
                    vllm_url=vllm.base_url,
                    max_num_seqs=32,
                    log_dir=root / mode,
                    worker_env={"NOTUS_STREAM_COALESCE": new, "NOTUS_PROMPT_JOB_START": new},
                    write_connection=False,
                    restart_workers=False,
                )
                stacks[mode] = LocalStack(config)
                stacks[mode].start()
            lb_config = dataclasses.replace(config, log_dir=root / "lb", worker_env={}, endpoint_type="lb")
            lb_stack = LocalStack(lb_config)
            lb_stack.start()
            rows = asyncio.run(measure(args, vllm.base_url, stacks, lb_stack))
        finally:
            for stack in [*stacks.values(), *([lb_stack] if lb_stack else [])]:
                stack.stop()
            vllm.stop()
    with tee() as printed:
        report(args, rows)
    title = "Streaming latency: /stream, the OpenAI route and an LB endpoint through notus serve vs vLLM directly"
    write_results("stream_latency", title, text_block(printed.getvalue()), {"rows": rows}, out=args.out)


def report(args: argparse.Namespace, rows: list[list[str]]) -> None:
    print(
        f"\n{args.tokens} output tokens per stream, {args.waves} waves per level ({waves_at(args.waves, 1)} for "
        "single streams); "
        "RTT applies to the worker-facing API (job-take/stream/done/ping)"
    )
    header = [
        "rtt ms", "streams", "path", "level tok/s", "vs direct", "stream tok/s", "vs direct",
        "TTFT ms", "vs direct", "vs rtt 0", "queued ms", "POSTs/job", "goal",
    ]  # fmt: skip
    print_table(header, rows)
    print(
        "\nlevel tok/s: completion tokens of the level / its wall time (TTFT included). stream tok/s: the median "
        "stream's tokens after its first / time from first to last text. TTFT: first chunk with text (median); "
        "vs rtt 0: the same path's TTFT at RTT 0, i.e. what the round trip added. queued: median ms from /run "
        "to the job-take that took the job (one poll per worker is open at a time, see docs/worker.md). "
        "POSTs/job: job-stream items the worker sent. lb: the LB gateway and the worker in LB mode (no queue, no "
        "job-stream). goal: queue routes ('now') stream tok/s >= 90% of direct and TTFT <= direct + 2 x RTT (1 "
        "stream) or 3 x RTT (16); lb >= 97% and TTFT <= direct + RTT + 10 ms."
    )


if __name__ == "__main__":
    main()
