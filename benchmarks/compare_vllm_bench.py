"""`vllm bench serve` and `notus bench` against the same vLLM, same workload, side by side, in one run.

vLLM's CPU build serves the tiny model; both tools read the same prompts from one ShareGPT-style
file (random text of a given token length, made once), ask for the same number of output tokens
and ignore end-of-sequence, so every answer has exactly that length. They run at the same
concurrencies, alternating level by level and repeating, so drift on a shared machine hits both
alike. With two or more CPUs the server gets the first and the load generators the second, so
neither tool slows the server by competing for its core. Goals: request and output throughput
within 5%, median TTFT and TPOT within 10%.

    .venv/bin/python benchmarks/compare_vllm_bench.py [--concurrency 1,4,16] [--prompts 32] [--repeats 5]
        [--workload file|random]   (about 20 minutes on two busy cores with the defaults)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import median, notus_bench, print_table, spread, vllm_bench

from notus_cli.bench.workload import load_tokenizer, random_workload
from notus_cli.model.tiny import write_tiny_model
from tests.support.vllm import SERVED_NAME, start_vllm

# (label, vllm bench serve's key, notus bench's summary path, tolerance or None for "shown only")
METRICS = (
    ("request throughput (req/s)", "request_throughput", ("request_throughput",), 0.05),
    ("output throughput (tok/s)", "output_throughput", ("output_throughput",), 0.05),
    ("median TTFT (ms)", "median_ttft_ms", ("ttft", "median"), 0.10),
    ("median TPOT (ms)", "median_tpot_ms", ("tpot", "median"), 0.10),
    ("median ITL (ms)", "median_itl_ms", ("itl", "median"), None),
    ("p99 TTFT (ms)", "p99_ttft_ms", ("ttft", "p99"), None),
    ("median E2EL (ms)", "median_e2el_ms", ("e2el", "median"), None),
    ("input tokens (server's count)", "total_input_tokens", ("input_tokens",), None),
    ("output tokens", "total_output_tokens", ("output_tokens",), None),
)

WHY = """Why the figures can differ, and by how much they should:
- Same prompts, different order. Both tools read one file, but each shuffles it with its own
  generator; every prompt has the same length, so the order does not change the work. vLLM's tool
  sends each prompt as a list of content parts, notus as a plain string: the server renders both
  to the same text (the input token counts in the table show it).
- TTFT. vllm bench serve stops its TTFT clock at the first chunk with choices, which on the chat
  route is the role-only chunk; notus stops it at the first chunk that carries content. vLLM sends
  both in the same engine step, so the difference is the time to serialise one chunk (microseconds).
- ITL. vllm bench serve counts every chunk with choices after the first, including the gap from the
  role chunk to the first token (near zero) and the final finish chunk; notus counts gaps between
  content chunks only. vLLM's median ITL can come out a hair lower; TPOT, computed from TTFT, E2EL
  and the token count, is defined identically and is the figure to compare.
- Duration. vllm bench serve creates every request task up front and its clock includes that; notus
  starts its workers at the level's start. Both stop at the last answer. On 32+ requests per level
  the difference is well under 1%.
- Warm-up. Both send the same number of unmeasured requests first (vLLM repeats its first prompt;
  notus sends the first prompts of its workload).
- The machine. These CPUs are shared with other work. The table shows each tool's median and range
  over the repeats, and the paired ratio of back-to-back runs; when the ranges are wider than the
  goals (a load average above the CPU count does that), a miss is noise, not a bias: re-run on a
  quiet machine, or with more --repeats."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--prompts", type=int, default=32, help="requests per level")
    # The tiny model's prompt plus chat template must stay under its Mamba chunk (128 tokens):
    # longer prefills crash vLLM's CPU build (IndexError in mamba_mixer2 with prefix caching).
    parser.add_argument("--input-len", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--workload",
        choices=("file", "random"),
        default="file",
        help="file: both read the same prompts (the comparison); random: each tool makes its own random prompts",
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus, client_cpus = ({cpus[0]}, [cpus[1]]) if len(cpus) >= 2 else (None, None)
    results: dict[tuple[str, int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_model(Path(tmp) / "tiny").path
        args.dataset = write_prompts(model, Path(tmp) / "prompts.json", args.prompts, args.input_len)
        workload = "one file of" if args.workload == "file" else "each tool's own"
        if server_cpus:
            os.sched_setaffinity(0, server_cpus)  # vLLM inherits it; the tools are pinned elsewhere below
        started = time.monotonic()
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        server = start_vllm(model, Path(tmp) / "vllm.log", max_num_seqs=max(32, max(levels)))
        os.sched_setaffinity(0, set(cpus))
        print(f"vLLM (CPU build, tiny model) ready in {time.monotonic() - started:.0f} s at {server.base_url}; "
              f"server on CPU {sorted(server_cpus or cpus)}, load generators on CPU {client_cpus or cpus}")  # fmt: skip
        print(f"workload: {workload} {args.prompts} random prompts of {args.input_len} tokens, "
              f"{args.output_len} output tokens, ignore EOS, temperature 0, {args.prompts} requests per level, "
              f"{args.warmup} warm-up requests, "
              f"{args.repeats} repeats\n")  # fmt: skip
        try:
            for repeat in range(args.repeats):
                for concurrency in levels:
                    order = ("vllm", "notus") if (repeat + concurrency) % 2 == 0 else ("notus", "vllm")
                    for tool in order:
                        figures = run_tool(tool, server.base_url, model, concurrency, repeat, args, client_cpus)
                        for key, value in figures.items():
                            results.setdefault((tool, concurrency, key), []).append(value)
                    v, n = (results[tool, concurrency, "output_throughput"][-1] for tool in ("vllm", "notus"))
                    print(f"  repeat {repeat + 1}, concurrency {concurrency}: output tok/s vllm {v:.1f}, notus {n:.1f}")
        finally:
            server.stop()
    return report(results, levels)


def write_prompts(model: Path, path: Path, count: int, input_len: int) -> Path:
    """`count` random prompts of `input_len` tokens as a ShareGPT file both tools read."""
    workload = random_workload(load_tokenizer(model), count=count, input_len=input_len, output_len=1)
    conversations = [
        {"id": str(i), "conversations": [{"from": "human", "value": p.messages[0]["content"]},
                                         {"from": "gpt", "value": "(answer length is fixed by the tools)"}]}
        for i, p in enumerate(workload.prompts)
    ]  # fmt: skip
    path.write_text(json.dumps(conversations))
    return path


def vllm_workload(args: argparse.Namespace) -> list[str]:
    if args.workload == "random":
        return ["--dataset-name", "random", "--random-input-len", str(args.input_len),
                "--random-output-len", str(args.output_len)]  # fmt: skip
    return ["--dataset-name", "sharegpt", "--dataset-path", str(args.dataset),
            "--sharegpt-output-len", str(args.output_len), "--ignore-eos"]  # fmt: skip


def notus_workload(args: argparse.Namespace) -> list[str]:
    if args.workload == "random":
        return ["--input-len", str(args.input_len), "--output-len", str(args.output_len)]
    return ["--dataset", str(args.dataset), "--output-len", str(args.output_len), "--ignore-eos"]


def run_tool(
    tool: str,
    base_url: str,
    model: Path,
    concurrency: int,
    repeat: int,
    args: argparse.Namespace,
    cpus: list[int] | None,
) -> dict[str, float]:
    """One level with one tool; the figures under vLLM's key names."""
    if tool == "vllm":
        result = vllm_bench(
            [
                "--backend", "openai-chat", "--base-url", base_url, "--endpoint", "/v1/chat/completions",
                "--model", SERVED_NAME, "--tokenizer", str(model), *vllm_workload(args),
                "--num-prompts", str(args.prompts), "--max-concurrency", str(concurrency),
                "--num-warmups", str(args.warmup), "--temperature", "0", "--seed", str(repeat),
                "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
            ],
            cpus=cpus,
        )  # fmt: skip
        assert result["failed"] == 0, "vllm bench serve had failed requests"
        return {key: float(result[key]) for _, key, _, _ in METRICS}
    summary = notus_bench(
        [
            "--base-url", base_url, "--tokenizer", str(model), *notus_workload(args),
            "--num-prompts", str(args.prompts), "--concurrency", str(concurrency), "--warmup", str(args.warmup),
            "--temperature", "0", "--seed", str(repeat),
        ],
        cpus=cpus,
    )["levels"][0]["summary"]  # fmt: skip
    assert summary["failed"] == 0, summary["failures"]
    figures = {}
    for _, key, path, _ in METRICS:
        value = summary
        for part in path:
            value = value[part]
        figures[key] = float(value)
    return figures


def report(results: dict[tuple[str, int, str], list[float]], levels: list[int]) -> int:
    """Each repeat's two runs of a level are back to back, so their ratio is what drift affects least:
    the verdict reads the median of those paired ratios."""
    rows, failures = [], 0
    for concurrency in levels:
        for label, key, _, tolerance in METRICS:
            v, n = results["vllm", concurrency, key], results["notus", concurrency, key]
            ratios = [b / a - 1 for a, b in zip(v, n, strict=True) if a]
            diff = median(ratios)
            verdict = "—" if tolerance is None else ("ok" if abs(diff) <= tolerance else "OFF")
            failures += verdict == "OFF"
            goal = "" if tolerance is None else f"±{tolerance:.0%}"
            paired = f"{diff:+.1%} ({min(ratios):+.0%}…{max(ratios):+.0%})" if ratios else "—"
            rows.append([f"c={concurrency} {label}", spread(v), spread(n), paired, goal, verdict])
    print("\nvllm bench serve vs notus bench, same vLLM, same workload: median of repeats (min–max);")
    print("notus/vllm − 1 is the median of the paired (back-to-back) runs' ratios, with their range")
    print_table(["metric", "vllm bench serve", "notus bench", "notus/vllm − 1", "goal", "verdict"], rows)
    print(
        "\nAll compared figures are within their goals." if not failures else f"\n{failures} figures miss their goal."
    )
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (on {os.cpu_count()} CPUs)")
    print("\n" + WHY)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
