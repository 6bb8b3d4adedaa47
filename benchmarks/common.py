"""What the benchmark scripts share: running `vllm bench serve` and `notus bench`, pinning CPUs, tables.

`vllm bench serve` runs from vLLM's CPU build in .venv-vllm, through its module (its console
script does not start there; see the environment notes). Both tools run as separate processes,
each optionally pinned to the same CPUs, so neither gets an advantage from where it runs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.vllm import cpu_env, vllm_python  # noqa: E402

# Both tools run unmodified, except that the function timing the requests is wrapped to also
# record the CPU time the process spent in it: CPU per request is the generator's own cost, which
# a busy machine blurs far less than a request rate does.
VLLM_BENCH = """
import sys, time
import vllm.benchmarks.serve as serve
from vllm.utils.argparse_utils import FlexibleArgumentParser
measured = serve.benchmark
async def timed(*args, **kwargs):
    started = time.process_time()
    result = await measured(*args, **kwargs)
    result["client_cpu_seconds"] = time.process_time() - started
    return result
serve.benchmark = timed
parser = FlexibleArgumentParser()
serve.add_cli_args(parser)
serve.main(parser.parse_args(sys.argv[1:]))
"""
NOTUS_BENCH = """
import json, os, sys, time
import notus_cli.bench.run as run
from notus_cli.app import main
measured, seconds = run.run_level, []
async def timed(*args, **kwargs):
    started = time.process_time()
    result = await measured(*args, **kwargs)
    seconds.append(time.process_time() - started)
    return result
run.run_level = timed
sys.argv = ["notus", *sys.argv[1:]]
try:
    main()
finally:
    with open(os.environ["BENCH_CPU_REPORT"], "w") as report:
        json.dump(seconds, report)
"""
PYTHON = str(ROOT / ".venv" / "bin" / "python")


def pinned(cpus: Sequence[int] | None) -> Any:
    """A preexec_fn that pins the child to `cpus` (None: wherever the OS likes)."""
    if not cpus:
        return None
    chosen = set(cpus)
    return lambda: os.sched_setaffinity(0, chosen)


def vllm_bench(args: list[str], *, cpus: Sequence[int] | None = None, log: Path | None = None) -> dict[str, Any]:
    """Run `vllm bench serve ARGS --save-result`; return its result JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [vllm_python(), "-c", VLLM_BENCH, *args]
        command += ["--save-result", "--result-dir", tmp, "--result-filename", "vllm.json", "--disable-tqdm"]
        with (log or Path(os.devnull)).open("ab") as sink:
            subprocess.run(
                command, check=True, stdout=sink, stderr=subprocess.STDOUT, env=cpu_env(), preexec_fn=pinned(cpus)
            )
        result: dict[str, Any] = json.loads((Path(tmp) / "vllm.json").read_text())
        return result


def notus_bench(args: list[str], *, cpus: Sequence[int] | None = None, out: Path | None = None) -> dict[str, Any]:
    """Run `notus bench ARGS --json`; return its summary JSON, with each level's client CPU seconds."""
    command = [PYTHON, "-c", NOTUS_BENCH, "bench", *args, "--json"] + (["--out", str(out)] if out else [])
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "cpu.json"
        env = {key: value for key, value in os.environ.items() if not key.startswith("NOTUS_")}
        env["BENCH_CPU_REPORT"] = str(report)
        done = subprocess.run(command, capture_output=True, text=True, env=env, preexec_fn=pinned(cpus), cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"notus bench exited with {done.returncode}:\n{done.stderr}")
        result: dict[str, Any] = json.loads(done.stdout)
        for level, seconds in zip(result["levels"], json.loads(report.read_text()), strict=True):
            level["client_cpu_seconds"] = seconds
    return result


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
