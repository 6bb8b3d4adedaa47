"""`notus bench` end to end against a real vLLM (CPU build) serving the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from notus_cli.bench.measured import TOY_PARAMETERS
from notus_cli.bench.run import BenchOptions, run_benchmark
from testbed.common import notus
from testbed.vllm import SERVED_NAME, VllmServer


@pytest.mark.vllm
def test_bench_measures_vllm_streaming_chat(vllm_server: VllmServer, tiny_model: Path) -> None:
    options = BenchOptions(
        base_url=vllm_server.base_url, tokenizer=tiny_model, input_len=32, output_len=12, concurrency=[1, 4],
        num_prompts=8, warmup=1, temperature=0.0, goodput=["ttft:60000"], gpu="l4",
    )  # fmt: skip
    run = run_benchmark(options)
    assert run.server["model"] == SERVED_NAME  # the first model vLLM lists
    assert [result.level.label for result in run.levels] == ["concurrency 1", "concurrency 4"]
    for result in run.levels:
        s = result.summary
        assert (s.requests, s.completed, s.failed) == (8, 8, 0), s.failures
        assert s.token_sources == {"usage": 8}
        assert s.output_tokens == 8 * 12  # ignore_eos: exactly the length asked for
        assert s.input_tokens > 8 * 32  # vLLM counts the chat template's tokens too
        assert s.ttft is not None
        assert s.tpot is not None
        assert s.itl is not None
        assert s.e2el is not None
        assert 0 < s.ttft.median < s.e2el.median
        assert s.tpot.median > 0
        assert s.slo_attainment == 1.0
        for record in result.records:
            # Random weights can emit pieces of a UTF-8 character that vLLM holds back, so a chunk
            # may carry more than one token: never more gaps than tokens after the first.
            assert 1 <= len(record.itl) <= 11
            assert record.e2el is not None
            assert record.ttft is not None
            assert record.e2el >= record.ttft + sum(record.itl) - 1e-6
    # Asked to price on an L4, but the tiny model on this machine's CPU served it: a toy, no price.
    # vLLM's /v1/models says which weights it loaded (`root`, vllm 0.32 entrypoints/openai/models/serving.py).
    measured = run.measured_on
    assert measured.weights is not None
    assert Path(measured.weights).resolve() == tiny_model.resolve()
    assert measured.parameters is not None
    assert measured.parameters < TOY_PARAMETERS
    assert (measured.toy, measured.priced) == (True, False)
    assert all(cost is None for cost in run.costs())


@pytest.mark.vllm
def test_bench_cli_against_vllm_writes_a_report(vllm_server: VllmServer, tiny_model: Path, tmp_path: Path) -> None:
    done = notus(
        "bench", "--base-url", f"{vllm_server.base_url}/v1",
        "--tokenizer", str(tiny_model), "--input-len", "16", "--output-len", "8", "--concurrency", "2",
        "--num-prompts", "4", "--out", str(tmp_path / "out"), "--json", timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)["levels"][0]["summary"]
    assert summary["completed"] == 4
    assert summary["output_tokens"] == 32
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert data["server"]["models"] == [SERVED_NAME]
    assert len(data["levels"][0]["records"]) == 4
