"""A runpod SDK worker with a trivial handler: the emulator's tests and its throughput benchmark use it.

It is a real worker process (the unmodified SDK polling the emulator); only the handler is trivial,
so the tests exercise the queue protocol in seconds, without vLLM. Job input (all optional):

    {"echo": value, "items": n, "delay": s, "sleep": s, "fail": "message", "env": "NAME"}

yields n items `{"index": i, "echo": value}` `delay` seconds apart after sleeping `sleep` seconds;
`fail` makes the job fail with that message; `env` yields `{"env": value of that variable}` (how
deploy tests see what a template's env became inside the worker). ECHO_CONCURRENCY sets the jobs it
runs at once.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any


async def handler(job: dict[str, Any]) -> AsyncIterator[Any]:
    data = job.get("input")
    if not isinstance(data, dict):
        yield {"index": 0, "echo": data}
        return
    if data.get("sleep"):
        await asyncio.sleep(float(data["sleep"]))
    if data.get("env"):
        yield {"env": os.environ.get(str(data["env"]))}
        return
    if data.get("fail"):
        yield {"error": str(data["fail"])}
        return
    for index in range(int(data.get("items", 1))):
        if index and data.get("delay"):
            await asyncio.sleep(float(data["delay"]))
        yield {"index": index, "echo": data.get("echo")}


def main() -> None:
    import runpod  # late: it reads RUNPOD_* variables on import

    concurrency = int(os.environ.get("ECHO_CONCURRENCY", "8"))
    sys.argv = sys.argv[:1]
    runpod.serverless.start(
        {"handler": handler, "concurrency_modifier": lambda _current: concurrency, "return_aggregate_stream": True}
    )


if __name__ == "__main__":
    main()
