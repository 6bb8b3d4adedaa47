"""Is the load generator the bottleneck? `notus bench` and `vllm bench serve` against a fast stub.

The stub (testbed/openai_stub.py) answers instantly, writing each streamed answer in one
go, so whatever request rate a tool sustains against it is that tool's own ceiling (with
--separate-writes it writes event by event, like a real server, and then it tends to be the
limit for both tools). The stub gets one CPU and each tool in turn the
other, so both generators have the same core; runs alternate and repeat, and medians are shown.
Goal: notus sustains at least the rate vLLM's tool sustains. Each client's CPU time per request is
measured as well (the two tools' timing functions are wrapped, see common.py): on a busy machine
it is the steadier figure, and the verdict reads it. Writes docs/results/loadgen_ceiling.md and .json.

    .venv/bin/python -m benchmarks.loadgen_ceiling [--requests 2000] [--concurrency 1,16,64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.common import median, notus_bench, print_table, spread, vllm_bench
from benchmarks.results import add_out_option, tee, text_block, write_results
from notus_cli.model.tiny import write_tiny_model
from testbed.openai_stub import MODEL, StubConfig, running_stub

INPUT_LEN, OUTPUT_LEN = 32, 16


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000, help="requests per run")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--separate-writes",
        action="store_true",
        help="the stub writes each event on its own, like a real server (it then tends to be the bottleneck)",
    )
    add_out_option(parser, "loadgen_ceiling")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    cpus = sorted(os.sched_getaffinity(0))
    stub_cpus, client_cpus = (cpus[:1], cpus[1:2]) if len(cpus) >= 2 else (None, None)
    print(f"stub on CPU {stub_cpus}, each load generator on CPU {client_cpus}; {args.requests} requests per run, "
          f"{INPUT_LEN} input / {OUTPUT_LEN} output tokens, {args.repeats} repeats (median, min–max)\n")  # fmt: skip
    rates: dict[tuple[str, int], list[float]] = {}
    cpu_ms: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_model(Path(tmp) / "tiny").path  # only its tokenizer is used
        log = Path(tmp) / "vllm-bench.log"
        config = StubConfig(tokens=OUTPUT_LEN, separate_writes=args.separate_writes)
        with running_stub(config, cpus=stub_cpus) as base_url:
            for repeat in range(args.repeats):
                for concurrency in levels:
                    common = ["--num-prompts", str(args.requests)]
                    vllm = vllm_bench(
                        [
                            "--backend", "openai-chat", "--base-url", base_url, "--endpoint", "/v1/chat/completions",
                            "--model", MODEL, "--tokenizer", str(model), "--dataset-name", "random",
                            "--random-input-len", str(INPUT_LEN), "--random-output-len", str(OUTPUT_LEN),
                            "--max-concurrency", str(concurrency), "--seed", str(repeat), *common,
                        ],
                        cpus=client_cpus,
                        log=log,
                    )  # fmt: skip
                    notus = notus_bench(
                        [
                            "--base-url", base_url, "--model", MODEL, "--tokenizer", str(model),
                            "--input-len", str(INPUT_LEN), "--output-len", str(OUTPUT_LEN),
                            "--concurrency", str(concurrency), "--warmup", "0", "--seed", str(repeat), *common,
                        ],
                        cpus=client_cpus,
                    )  # fmt: skip
                    level = notus["levels"][0]["summary"]
                    assert vllm["completed"] == args.requests, vllm.get("errors", "vllm bench had failures")
                    assert level["completed"] == args.requests, level["failures"]
                    measured = {
                        "vllm": (vllm["request_throughput"], vllm["client_cpu_seconds"] / args.requests),
                        "notus": (
                            level["request_throughput"],
                            notus["levels"][0]["client_cpu_seconds"] / args.requests,
                        ),
                    }
                    for tool, (rate, cpu) in measured.items():
                        rates.setdefault((tool, concurrency), []).append(rate)
                        cpu_ms.setdefault((tool, concurrency), []).append(cpu * 1000)
                    print(f"  repeat {repeat + 1} concurrency {concurrency}: "
                          + ", ".join(f"{tool} {rate:.0f} req/s, {cpu * 1000:.2f} ms CPU/request"
                                      for tool, (rate, cpu) in measured.items()), flush=True)  # fmt: skip
    with tee() as printed:
        code = report(levels, rates, cpu_ms)
    data = {
        "requests_per_s": {f"{tool} c={c}": values for (tool, c), values in rates.items()},
        "cpu_ms_per_request": {f"{tool} c={c}": values for (tool, c), values in cpu_ms.items()},
    }
    title = "Load generator ceiling: notus bench vs vllm bench serve against an instant stub"
    write_results("loadgen_ceiling", title, text_block(printed.getvalue()), data, out=args.out)
    return code


def report(
    levels: list[int], rates: dict[tuple[str, int], list[float]], cpu_ms: dict[tuple[str, int], list[float]]
) -> int:
    """The verdict reads CPU per request (what one core can sustain); rates are shown as measured."""
    rows, ok = [], True
    for concurrency in levels:
        vllm, notus = rates["vllm", concurrency], rates["notus", concurrency]
        ratios = [b / a for a, b in zip(vllm, notus, strict=True)]  # back-to-back runs: drift cancels
        v_cpu, n_cpu = median(cpu_ms["vllm", concurrency]), median(cpu_ms["notus", concurrency])
        ok &= n_cpu <= v_cpu
        rows.append(
            [
                f"concurrency {concurrency}", spread(vllm), spread(notus),
                f"{median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})",
                f"{v_cpu:.3f}", f"{n_cpu:.3f}", f"{1000 / v_cpu:,.0f}", f"{1000 / n_cpu:,.0f}",
                "yes" if n_cpu <= v_cpu else "NO",
            ]
        )  # fmt: skip
    print("\nAgainst the stub: sustained requests/s, median (min–max) of the repeats, and notus/vllm as the")
    print("median of the paired runs' ratios; then each client's CPU time per request (median) and the")
    print("request rate one core could sustain at that cost (1000 / CPU ms)")
    header = ["load", "vllm req/s", "notus req/s", "notus/vllm", "vllm CPU ms", "notus CPU ms",
              "vllm max/core", "notus max/core", "notus ≥ vllm"]  # fmt: skip
    print_table(header, rows)
    print(f"\nverdict: notus bench {'is not' if ok else 'IS'} the bottleneck before vllm bench serve would be")
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (on {os.cpu_count()} CPUs)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
