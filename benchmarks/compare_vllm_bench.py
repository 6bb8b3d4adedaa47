"""`vllm bench serve` and `notus bench` against the same vLLM, same workload, side by side, in one run.

vLLM's CPU build serves the tiny model; both tools read the same prompts from one ShareGPT-style
file (random text of a given token length, made once) whose replies set each answer's length
(32 tokens ± 50% by default), and ignore end-of-sequence, so every answer has exactly that length.
Each tool stays up as one process (benchmarks/common.BenchProcess), so the two can take turns many
times: every repeat runs each level with both tools back to back, the order alternating. With two
or more CPUs the server gets the first and the load generators the second, so neither tool slows
the server by competing for its core. Goals: request and output throughput within 5%, median TTFT
and TPOT within 10%, read from the median of the paired runs' ratios; its 95% interval (bootstrap)
says whether a miss is a difference or this machine's noise. Writes docs/results/compare_vllm_bench.md and .json.

    .venv/bin/python -m benchmarks.compare_vllm_bench [--concurrency 1,4,16] [--prompts 32] [--repeats 20]
        [--range-ratio 0.5] [--workload file|random]   (about 10 minutes with the defaults)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.common import BenchProcess, median, print_table, spread
from benchmarks.results import add_out_option, tee, text_block, write_results
from notus_cli.bench.workload import load_tokenizer, random_workload
from notus_cli.model.tiny import write_tiny_model
from testbed.vllm import SERVED_NAME, start_vllm

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
# What the server saw during each run, from its own /metrics (warm-up requests included, the same
# number for both tools): (label, key, Prometheus sum, Prometheus count; None: the count itself).
SERVER_METRICS = (
    ("server's mean TTFT (ms)", "server_ttft_ms", "vllm:time_to_first_token_seconds_sum",
     "vllm:time_to_first_token_seconds_count"),
    ("server's mean ITL (ms)", "server_itl_ms", "vllm:inter_token_latency_seconds_sum",
     "vllm:inter_token_latency_seconds_count"),
    ("server's engine steps", "server_steps", "vllm:iteration_tokens_total_count", None),
)  # fmt: skip
# The load generator's own CPU time per request (benchmarks/common.py times the function that sends a
# level's requests): a generator that costs more per request competes harder with the server for the
# machine, which would show here before it shows in the server's own figures.
CLIENT_METRICS = (("load generator CPU per request (ms)", "client_cpu_ms"),)

WHY = """Why the figures can differ, and by how much they should:
- Same prompts, different order. Both tools read one file, but each shuffles it with its own
  generator. Every prompt has the same length and the answers' lengths are the file's, so the total
  work is the same; the order only changes which answers run side by side. vLLM's tool sends each
  prompt as a list of content parts, notus as a plain string: the server renders both to the same
  text (the input and output token counts in the table show it).
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
- The machine. These CPUs are shared with other work and their speed drifts by 10–15% between
  runs (the variation lines). Both tools stay up as processes and run each level back to back,
  so a pair sees nearly the same machine and the paired ratio cancels most of the drift; what is
  left shows in the 95% interval. "noise" means the median is outside the goal but the interval
  reaches inside it: more --repeats are needed to tell. Only "OFF" is a difference.
- The server's view. The last rows come from vLLM's own /metrics over each tool's runs. A tool
  that measured wrongly would drift away from them; when the server itself ran slower during one
  tool's runs, its figures and the tool's move together.
- The sending pattern. Both tools open one aiohttp session per run with a connection pool capped
  at the concurrency, keep connections alive, create no client per request, and read each stream
  with `iter_any()`, parsing every SSE event once with json.loads; notus timestamps once per network
  read, vLLM once per event. So neither asks more of the server per request. A generator can still
  slow the server by competing for the machine: the "load generator CPU per request" row shows
  each tool's own cost. When a run shows notus's throughput or TPOT off
  and the server's own ITL moved with it, the server was slower during those runs (the machine's
  drift, or other work on it), not measured differently; a longer run (--repeats) tells which.
- Lockstep. With all answers the same length (--range-ratio 0), a closed loop's requests start
  and finish in waves, and each run's batching depends on how a wave splits across engine steps;
  that adds run-to-run spread at high concurrency. The default varies answer lengths (±50%)."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--prompts", type=int, default=32, help="requests per level")
    # The tiny model's prompt plus chat template must stay under its Mamba chunk (128 tokens):
    # longer prefills crash vLLM's CPU build (IndexError in mamba_mixer2 with prefix caching).
    parser.add_argument("--input-len", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument(
        "--range-ratio",
        type=float,
        default=0.5,
        help="answer lengths vary uniformly by ± this share (0: all equal, which makes closed-loop levels "
        "move in lockstep waves and their figures noisier)",
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--workload",
        choices=("file", "random"),
        default="file",
        help="file: both read the same prompts (the comparison); random: each tool makes its own random prompts",
    )
    parser.add_argument("--repeats", type=int, default=20, help="back-to-back pairs of runs per level")
    add_out_option(parser, "compare_vllm_bench")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus, client_cpus = ({cpus[0]}, [cpus[1]]) if len(cpus) >= 2 else (None, None)
    results: dict[tuple[str, int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_model(Path(tmp) / "tiny").path
        args.dataset = write_prompts(model, Path(tmp) / "prompts.json", args)
        workload = "one file of" if args.workload == "file" else "each tool's own"
        if server_cpus:
            os.sched_setaffinity(0, server_cpus)  # vLLM inherits it; the tools are pinned elsewhere below
        started = time.monotonic()
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        server = start_vllm(model, Path(tmp) / "vllm.log", max_num_seqs=max(32, max(levels)))
        os.sched_setaffinity(0, set(cpus))
        print(f"vLLM (CPU build, tiny model) ready in {time.monotonic() - started:.0f} s at {server.base_url}; "
              f"server on CPU {sorted(server_cpus or cpus)}, load generators on CPU {client_cpus or cpus}")  # fmt: skip
        print(f"workload: {workload} {args.prompts} random prompts of {args.input_len} tokens, answers of "
              f"{args.output_len} tokens ± {args.range_ratio:.0%}, ignore EOS, temperature 0, "
              f"{args.prompts} requests per level, {args.warmup} warm-up requests, "
              f"{args.repeats} pairs of runs per level\n")  # fmt: skip
        tool_log = Path(tmp) / "tools.log"
        try:
            with (
                BenchProcess("vllm", cpus=client_cpus, log=tool_log) as vllm,
                BenchProcess("notus", cpus=client_cpus, log=tool_log) as notus,
            ):
                tools = {"vllm": vllm, "notus": notus}
                for repeat in range(args.repeats):
                    for concurrency in levels:
                        order = ("vllm", "notus") if (repeat + concurrency) % 2 == 0 else ("notus", "vllm")
                        for tool in order:
                            figures = run_tool(tools[tool], server.base_url, model, concurrency, repeat, args)
                            for key, value in figures.items():
                                results.setdefault((tool, concurrency, key), []).append(value)
                    shown = ", ".join(
                        f"c={c} vllm {results['vllm', c, 'output_throughput'][-1]:.0f} "
                        f"notus {results['notus', c, 'output_throughput'][-1]:.0f}"
                        for c in levels
                    )
                    print(f"  repeat {repeat + 1}: output tok/s {shown}")
        finally:
            server.stop()
    with tee() as printed:
        code = report(results, levels)
    data = {"runs": {f"{tool} c={c} {key}": values for (tool, c, key), values in results.items()}}
    title = "vllm bench serve and notus bench against the same vLLM"
    write_results("compare_vllm_bench", title, text_block(printed.getvalue()), data, out=args.out)
    return code


def write_prompts(model: Path, path: Path, args: argparse.Namespace) -> Path:
    """`args.prompts` random prompts of `args.input_len` tokens as a ShareGPT file both tools read;
    each reply is random text as long as that request's answer should be."""
    tokenizer = load_tokenizer(model)
    questions = random_workload(tokenizer, count=args.prompts, input_len=args.input_len, output_len=1, seed=1)
    replies = random_workload(
        tokenizer, count=args.prompts, input_len=args.output_len, output_len=1, range_ratio=args.range_ratio, seed=2
    )
    conversations = [
        {"id": str(i), "conversations": [{"from": "human", "value": q.messages[0]["content"]},
                                         {"from": "gpt", "value": r.messages[0]["content"]}]}
        for i, (q, r) in enumerate(zip(questions.prompts, replies.prompts, strict=True))
    ]  # fmt: skip
    path.write_text(json.dumps(conversations))
    return path


def vllm_workload(args: argparse.Namespace) -> list[str]:
    if args.workload == "random":
        return ["--dataset-name", "random", "--random-input-len", str(args.input_len),
                "--random-output-len", str(args.output_len), "--random-range-ratio", str(args.range_ratio)]  # fmt: skip
    return ["--dataset-name", "sharegpt", "--dataset-path", str(args.dataset), "--ignore-eos"]


def notus_workload(args: argparse.Namespace) -> list[str]:
    if args.workload == "random":
        return ["--input-len", str(args.input_len), "--output-len", str(args.output_len),
                "--range-ratio", str(args.range_ratio)]  # fmt: skip
    return ["--dataset", str(args.dataset), "--ignore-eos"]


def run_tool(
    tool: BenchProcess, base_url: str, model: Path, concurrency: int, repeat: int, args: argparse.Namespace
) -> dict[str, float]:
    """One level with one tool: its figures under vLLM's key names, and the server's (SERVER_METRICS)."""
    before = server_counters(base_url)
    figures = tool_figures(tool, base_url, model, concurrency, repeat, args)
    after = server_counters(base_url)
    for _, key, total, count in SERVER_METRICS:
        added = after.get(total, 0.0) - before.get(total, 0.0)
        if count is None:
            figures[key] = added
        elif (runs := after.get(count, 0.0) - before.get(count, 0.0)) > 0:
            figures[key] = 1000 * added / runs
    return figures


def server_counters(base_url: str) -> dict[str, float]:
    """vLLM's Prometheus counters, summed over their label sets."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=30) as response:
        text = response.read().decode()
    counters: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            key = name.split("{")[0]
            counters[key] = counters.get(key, 0.0) + float(value)
    return counters


def tool_figures(
    tool: BenchProcess, base_url: str, model: Path, concurrency: int, repeat: int, args: argparse.Namespace
) -> dict[str, float]:
    if tool.tool == "vllm":
        result = tool.run(
            [
                "--backend", "openai-chat", "--base-url", base_url, "--endpoint", "/v1/chat/completions",
                "--model", SERVED_NAME, "--tokenizer", str(model), *vllm_workload(args),
                "--num-prompts", str(args.prompts), "--max-concurrency", str(concurrency),
                "--num-warmups", str(args.warmup), "--temperature", "0", "--seed", str(repeat),
                "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
            ],
        )  # fmt: skip
        assert result["failed"] == 0, "vllm bench serve had failed requests"
        figures = {key: float(result[key]) for _, key, _, _ in METRICS}
        figures["client_cpu_ms"] = 1000 * float(result["client_cpu_seconds"]) / args.prompts
        return figures
    level = tool.run(
        [
            "--base-url", base_url, "--tokenizer", str(model), *notus_workload(args),
            "--num-prompts", str(args.prompts), "--concurrency", str(concurrency), "--warmup", str(args.warmup),
            "--temperature", "0", "--seed", str(repeat),
        ],
    )["levels"][0]  # fmt: skip
    summary = level["summary"]
    assert summary["failed"] == 0, summary["failures"]
    figures = {"client_cpu_ms": 1000 * float(level["client_cpu_seconds"]) / args.prompts}
    for _, key, path, _ in METRICS:
        value = summary
        for part in path:
            value = value[part]
        figures[key] = float(value)
    return figures


def median_interval(ratios: list[float], *, resamples: int = 4000) -> tuple[float, float]:
    """A 95% bootstrap interval for the median of the paired ratios."""
    rng = np.random.default_rng(0)
    samples = rng.choice(np.asarray(ratios), size=(resamples, len(ratios)), replace=True)
    low, high = np.percentile(np.median(samples, axis=1), [2.5, 97.5])
    return float(low), float(high)


def verdict(diff: float, interval: tuple[float, float], tolerance: float) -> str:
    """ok: the median is within the goal. OFF: even the interval's near end is outside it, so the
    tools differ. noise: the median is outside but the interval reaches into the goal."""
    if abs(diff) <= tolerance:
        return "ok"
    low, high = interval
    return "OFF" if low > tolerance or high < -tolerance else "noise"


def report(results: dict[tuple[str, int, str], list[float]], levels: list[int]) -> int:
    """Each repeat's two runs of a level are back to back, so their ratio is what drift affects least:
    the verdict reads the median of those paired ratios and its 95% interval."""
    rows, verdicts = [], []
    shown = [(label, key, tolerance) for label, key, _, tolerance in METRICS]
    shown += [(label, key, None) for label, key, _, _ in SERVER_METRICS]
    shown += [(label, key, None) for label, key in CLIENT_METRICS]
    for concurrency in levels:
        for label, key, tolerance in shown:
            v, n = results.get(("vllm", concurrency, key), []), results.get(("notus", concurrency, key), [])
            ratios = [b / a - 1 for a, b in zip(v, n, strict=True) if a]
            diff = median(ratios)
            interval = median_interval(ratios) if ratios else (diff, diff)
            verdicts.append(outcome := "—" if tolerance is None else verdict(diff, interval, tolerance))
            goal = "" if tolerance is None else f"±{tolerance:.0%}"
            paired = f"{diff:+.1%} [{interval[0]:+.1%}, {interval[1]:+.1%}]" if ratios else "—"
            rows.append([f"c={concurrency} {label}", spread(v), spread(n), paired, goal, outcome])
    print("\nvllm bench serve vs notus bench, same vLLM, same workload: median of the runs (min–max);")
    print("notus/vllm − 1 is the median of the paired (back-to-back) runs' ratios [95% interval]")
    print_table(["metric", "vllm bench serve", "notus bench", "notus/vllm − 1", "goal", "verdict"], rows)
    print("\nrun-to-run variation of each tool alone (coefficient of variation of output throughput):")
    for concurrency in levels:
        variation = {tool: cv(results[tool, concurrency, "output_throughput"]) for tool in ("vllm", "notus")}
        print(f"  c={concurrency}: vllm bench serve {variation['vllm']:.1%}, notus bench {variation['notus']:.1%}")
    off, noisy = verdicts.count("OFF"), verdicts.count("noise")
    if not off and not noisy:
        print("\nAll compared figures are within their goals.")
    else:
        print(f"\n{off} figures miss their goal; {noisy} miss it by less than this run's noise "
              "(re-run with more --repeats to tell).")  # fmt: skip
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (on {os.cpu_count()} CPUs)")
    print("\n" + WHY)
    return 1 if off else 0


def cv(values: list[float]) -> float:
    return float(np.std(values, ddof=1) / np.mean(values)) if len(values) > 1 else 0.0


if __name__ == "__main__":
    sys.exit(main())
