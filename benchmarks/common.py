"""What the benchmark scripts share: running `vllm bench serve` and `notus bench`, pinning CPUs, tables.

`vllm bench serve` runs from vLLM's CPU build in .venv-vllm, through its module (its console
script does not start from that venv). Both tools run as separate, long-lived
processes, each optionally pinned to the same CPUs, so neither gets an advantage from where it runs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from testbed.common import ROOT
from testbed.vllm import cpu_env, vllm_python

# Both tools run unmodified inside a small loop: each reads one JSON line of command-line arguments
# on stdin, runs that benchmark, and answers with one JSON line of results on the original stdout
# (everything the tool prints itself goes to stderr). Starting either tool costs seconds of imports,
# more than a short level lasts, so a long-lived process lets a comparison alternate the tools many
# times. The function timing the requests is wrapped to also record the CPU time the process spent
# in it: CPU per request is the generator's own cost, which a busy machine blurs far less than a rate.
_LOOP = """
import contextlib, json, os, sys, time
protocol = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr
def timed(measured, seconds):
    async def wrapper(*args, **kwargs):
        started = time.process_time()
        result = await measured(*args, **kwargs)
        seconds.append(time.process_time() - started)
        return result
    return wrapper
{setup}
for line in sys.stdin:
    seconds = []
    try:
        result = run(json.loads(line), seconds)
    except BaseException as exc:  # the parent shows it and stops; SystemExit from either CLI included
        result = {{"loop_error": f"{{type(exc).__name__}}: {{exc}}"}}
    protocol.write(json.dumps(result) + "\\n")
    protocol.flush()
"""
VLLM_BENCH = _LOOP.format(
    setup="""
import vllm.benchmarks.serve as serve
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = FlexibleArgumentParser()
serve.add_cli_args(parser)
measured = serve.benchmark
def run(argv, seconds):
    serve.benchmark = timed(measured, seconds)
    result = serve.main(parser.parse_args(argv))
    result["client_cpu_seconds"] = sum(seconds)
    return result
"""
)
NOTUS_BENCH = _LOOP.format(
    setup="""
import io
import notus_cli.bench.sweep as bench_sweep
from notus_cli.app import app
measured = bench_sweep.run_level
def run(argv, seconds):
    bench_sweep.run_level = timed(measured, seconds)
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        app(["bench", *argv, "--json"], standalone_mode=False)
    result = json.loads(captured.getvalue())
    for level, cpu in zip(result["levels"], seconds):
        level["client_cpu_seconds"] = cpu
    return result
"""
)
PYTHON = str(ROOT / ".venv" / "bin" / "python")


def pinned(cpus: Sequence[int] | None) -> Any:
    """A preexec_fn that pins the child to `cpus` (None: wherever the OS likes)."""
    if not cpus:
        return None
    chosen = set(cpus)
    return lambda: os.sched_setaffinity(0, chosen)


class BenchProcess:
    """One long-lived `vllm bench serve` or `notus bench` (see _LOOP); `run(args)` is one benchmark."""

    def __init__(self, tool: str, *, cpus: Sequence[int] | None = None, log: Path | None = None) -> None:
        self.tool = tool
        if tool == "vllm":
            command, env = [vllm_python(), "-c", VLLM_BENCH], cpu_env()
        else:
            command = [PYTHON, "-c", NOTUS_BENCH]
            env = {key: value for key, value in os.environ.items() if not key.startswith("NOTUS_")}
        self._log = (log or Path(os.devnull)).open("ab")
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=ROOT,
            text=True,
            preexec_fn=pinned(cpus),
        )

    def run(self, args: list[str]) -> dict[str, Any]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        if self.tool == "vllm":
            args = [*args, "--disable-tqdm"]
        self._process.stdin.write(json.dumps(args) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.tool} bench exited with {self._process.wait()} (see its log)")
        result: dict[str, Any] = json.loads(line)
        if "loop_error" in result:
            raise RuntimeError(f"{self.tool} bench failed: {result['loop_error']}")
        return result

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()

    def __enter__(self) -> BenchProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def vllm_bench(args: list[str], *, cpus: Sequence[int] | None = None, log: Path | None = None) -> dict[str, Any]:
    """Run `vllm bench serve ARGS` once; return its result JSON (with client_cpu_seconds)."""
    with BenchProcess("vllm", cpus=cpus, log=log) as tool:
        return tool.run(args)


def notus_bench(args: list[str], *, cpus: Sequence[int] | None = None, out: Path | None = None) -> dict[str, Any]:
    """Run `notus bench ARGS --json` once; return its summary JSON, with each level's client CPU seconds."""
    with BenchProcess("notus", cpus=cpus) as tool:
        return tool.run([*args, *(["--out", str(out)] if out else [])])


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """`median (min–max)` of repeated measurements."""
    if not values:
        return "—"

    def show(value: float) -> str:
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"

    return f"{show(median(values))} ({show(min(values))}–{show(max(values))})"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for n, row in enumerate([header, *rows]):
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [str(cell).ljust(w) if i == 0 else str(cell).rjust(w) for i, (cell, w) in pairs]
        print("  ".join(cells))
        if n == 0:
            print("  ".join("-" * width for width in widths))
