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

VLLM_BENCH = (
    "import sys\n"
    "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
    "from vllm.benchmarks.serve import add_cli_args, main\n"
    "parser = FlexibleArgumentParser()\n"
    "add_cli_args(parser)\n"
    "main(parser.parse_args(sys.argv[1:]))\n"
)
NOTUS = str(ROOT / ".venv" / "bin" / "notus")


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
    """Run `notus bench ARGS --json`; return its summary JSON."""
    command = [NOTUS, "bench", *args, "--json"] + (["--out", str(out)] if out else [])
    env = {key: value for key, value in os.environ.items() if not key.startswith("NOTUS_")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, preexec_fn=pinned(cpus), cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"notus bench exited with {done.returncode}:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
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
