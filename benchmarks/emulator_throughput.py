"""Jobs per second and added latency through the emulator, side by side with calling the handler directly.

    .venv/bin/python -m benchmarks.emulator_throughput [--jobs 3000] [--latency-jobs 300] [--concurrency 64]

Three rows, one run:
  direct          the trivial handler (testbed/echo_worker.py) called in-process, no HTTP
  lean worker     the emulator with a minimal worker speaking the same protocol (job-take long poll,
                  job-done): what the emulator itself adds
  runpod SDK      the emulator with two unmodified runpod SDK workers running the same handler: what a
                  client of `notus serve` sees (the SDK checks its job queue every 100 ms when idle)
Latency is a /runsync round trip, one job at a time; throughput is `--concurrency` clients sending
/runsync until `--jobs` jobs are done. "emulator CPU ms/job" is the emulator process's CPU time during
the throughput run divided by the jobs: load from other work on a shared machine stretches the
wall-clock figures, not this one. Clients and the lean worker use aiohttp (the runpod SDK's HTTP
client). The emulator and each worker run in their own processes; rate limits are off (RunPod's own
would cap /runsync at 200 requests/s per endpoint).
Goals on the 2-core development machines: >= 300 jobs/s, <= 5 ms median added latency per job.
Writes docs/results/emulator_throughput.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.results import add_out_option, tee, text_block, write_results
from testbed.common import ROOT
from testbed.echo_worker import handler

JOB = {"echo": "x"}


# ---- the emulator and the lean worker, each in its own process ------------------------------------------


def serve_emulator() -> None:
    """Child process: the emulator with a 'lean' endpoint (no workers) and an 'sdk' one (two SDK workers)."""
    from notus_cli.emulator import Emulator, EmulatorConfig, EmulatorServer, LocalWorkers, WorkerCommand, new_key

    key = new_key()
    emulator = Emulator(EmulatorConfig(rate_limits={}), api_keys=[key])
    lean = emulator.create_endpoint("lean")
    sdk = emulator.create_endpoint("sdk", max_workers=2)
    server = EmulatorServer(emulator).start()
    command = WorkerCommand(
        argv=(sys.executable, "-m", "testbed.echo_worker"),
        env={"ECHO_CONCURRENCY": "64", "RUNPOD_LOG_LEVEL": "WARN"},
        log_dir=Path(os.environ.get("BENCH_LOG_DIR", "/tmp/notus-bench")),
        cwd=ROOT,
    )
    workers = LocalWorkers(emulator, sdk, command)
    workers.start(2)
    print(json.dumps({"url": server.url, "key": key, "lean_worker_key": lean.worker_key}), flush=True)
    sys.stdin.read()  # the parent closes stdin to stop us
    workers.stop()
    server.stop()


def lean_worker(url: str, worker_key: str, concurrency: int) -> None:
    """Child process: `concurrency` loops of job-take (long poll) -> handler -> job-done."""
    import aiohttp

    base = f"{url}/v2/lean"
    pod = secrets.token_hex(7)

    async def loop(http: aiohttp.ClientSession) -> None:
        while True:
            try:
                async with http.get(f"{base}/job-take/{pod}?gpu=cpu&job_in_progress=0") as taken:
                    if taken.status != 200:
                        continue
                    job = await taken.json()
                output = [item async for item in handler(job)]
                done = f"{base}/job-done/{pod}/{job['id']}?gpu=cpu&isStream=false"
                async with http.post(done, data=json.dumps({"output": output})) as response:
                    await response.read()
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)

    async def main() -> None:
        headers = {"Authorization": worker_key, "Content-Type": "application/x-www-form-urlencoded"}
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
            await asyncio.gather(*(loop(http) for _ in range(concurrency)))

    asyncio.run(main())


# ---- measurements -----------------------------------------------------------------------------------------


def direct(jobs: int) -> dict[str, float]:
    async def run() -> list[float]:
        times = []
        for n in range(jobs):
            started = time.perf_counter()
            _ = [item async for item in handler({"id": str(n), "input": JOB})]
            times.append(time.perf_counter() - started)
        return times

    started = time.perf_counter()
    times = asyncio.run(run())
    return {"jobs_per_s": jobs / (time.perf_counter() - started), **_percentiles(times)}


async def through(url: str, key: str, endpoint: str, args: argparse.Namespace, emulator_pid: int) -> dict[str, float]:
    """Latency one job at a time, then throughput with `concurrency` clients; and the emulator's CPU per job."""
    import aiohttp

    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=args.concurrency + 8)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:

        async def one() -> float:
            started = time.perf_counter()
            async with http.post(f"{url}/v2/{endpoint}/runsync", json={"input": JOB}) as response:
                body = await response.json()
            assert body["status"] == "COMPLETED", body
            return time.perf_counter() - started

        for _ in range(20):  # warm-up: connections, worker polls
            await one()
        latencies = [await one() for _ in range(args.latency_jobs)]
        remaining = args.jobs

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await one()

        cpu = _cpu_seconds(emulator_pid)
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds(emulator_pid) - cpu
    return {
        "jobs_per_s": args.jobs / elapsed,
        **_percentiles(latencies),
        "emulator_cpu_ms": cpu / args.jobs * 1000,
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"median_ms": statistics.median(ordered) * 1000, "p90_ms": ordered[int(len(ordered) * 0.9)] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=3000, help="jobs for the throughput figure")
    parser.add_argument("--latency-jobs", type=int, default=300, help="one-at-a-time jobs for the latency figure")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent clients (and lean worker loops)")
    parser.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lean-worker", nargs=3, metavar=("URL", "KEY", "N"), help=argparse.SUPPRESS)
    add_out_option(parser, "emulator_throughput")
    args = parser.parse_args()
    if args.serve_emulator:
        return serve_emulator()
    if args.lean_worker:
        return lean_worker(args.lean_worker[0], args.lean_worker[1], int(args.lean_worker[2]))

    script = [sys.executable, "-m", "benchmarks.emulator_throughput"]
    emulator = subprocess.Popen(
        [*script, "--serve-emulator"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert emulator.stdout is not None
    assert emulator.stdin is not None
    info = json.loads(emulator.stdout.readline())
    worker = subprocess.Popen(
        [*script, "--lean-worker", info["url"], info["lean_worker_key"], str(args.concurrency)], cwd=ROOT
    )
    try:
        _wait_for_sdk_workers(info)
        rows = {"direct handler call": direct(args.latency_jobs * 10)}
        for name, endpoint in (("emulator + lean worker", "lean"), ("emulator + runpod SDK", "sdk")):
            rows[name] = asyncio.run(through(info["url"], info["key"], endpoint, args, emulator.pid))
    finally:
        worker.terminate()
        worker.wait()
        emulator.stdin.close()
        emulator.wait(60)
    with tee() as printed:
        _report(rows, args)
    title = "Emulator throughput: the handler called directly vs through the emulator"
    write_results("emulator_throughput", title, text_block(printed.getvalue()), {"rows": rows}, out=args.out)


def _wait_for_sdk_workers(info: dict[str, Any]) -> None:
    deadline = time.monotonic() + 120
    headers = {"Authorization": f"Bearer {info['key']}"}
    while httpx.get(f"{info['url']}/v2/sdk/health", headers=headers).json()["workers"]["idle"] < 2:
        if time.monotonic() > deadline:
            raise SystemExit("the SDK workers did not start")
        time.sleep(0.2)


def _report(rows: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    base = rows["direct handler call"]["median_ms"]
    print(f"\n{args.jobs} jobs at concurrency {args.concurrency}; latency over {args.latency_jobs} jobs one at a time")
    print(f"{'':24}{'jobs/s':>9}{'median ms':>11}{'p90 ms':>9}{'added ms':>10}{'emulator CPU ms/job':>21}")
    for name, row in rows.items():
        added = "" if name.startswith("direct") else f"{row['median_ms'] - base:.2f}"
        cpu = f"{row['emulator_cpu_ms']:.2f}" if "emulator_cpu_ms" in row else ""
        print(f"{name:24}{row['jobs_per_s']:>9.0f}{row['median_ms']:>11.3f}{row['p90_ms']:>9.3f}{added:>10}{cpu:>21}")
    lean = rows["emulator + lean worker"]
    print(
        f"\ngoal >= 300 jobs/s: {'met' if lean['jobs_per_s'] >= 300 else 'NOT met'} ({lean['jobs_per_s']:.0f}); "
        f"goal <= 5 ms added median latency: {'met' if lean['median_ms'] - base <= 5 else 'NOT met'} "
        f"({lean['median_ms'] - base:.2f} ms) [emulator + lean worker]; "
        f"the emulator's own CPU per job bounds it at {1000 / lean['emulator_cpu_ms']:.0f} jobs/s per core"
    )
    print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (figures are wall-clock)")


if __name__ == "__main__":
    main()
