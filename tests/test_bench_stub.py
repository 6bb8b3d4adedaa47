"""`notus bench` against a real streaming server on loopback: testbed/openai_stub.py.

The stub stands in for a model server because its timings and failures are known in advance
(a vLLM on a shared CPU is too noisy to check latencies against); it is a real HTTP server in
its own process, reached over TCP like any other. The real vLLM run is in test_bench_vllm.py.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from rich.console import Console

from notus_cli.bench.live import LiveView
from notus_cli.bench.run import BenchOptions, run_benchmark
from notus_cli.bench.workload import count_tokens, load_tokenizer
from notus_cli.settings import load_settings
from notus_cli.targets import openai_server
from testbed.common import notus
from testbed.openai_stub import StubConfig, running_stub
from tests.fake_nvidia import nvidia_smi_env


@pytest.fixture(scope="module")
def timed_stub() -> Iterator[str]:
    """50 ms to the first token, then 10 ms per token."""
    with running_stub(StubConfig(ttft=0.05, itl=0.01)) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def fast_stub() -> Iterator[str]:
    with running_stub(StubConfig()) as base_url:
        yield base_url


def options(base_url: str, tokenizer: Path | None, **overrides: object) -> BenchOptions:
    values: dict[str, object] = {
        "base_url": base_url, "tokenizer": tokenizer, "input_len": 16, "output_len": 10, "concurrency": [1],
        "num_prompts": 8, "warmup": 0,
    }  # fmt: skip
    values.update(overrides)
    return BenchOptions(**values)  # type: ignore[arg-type]


def test_measured_latencies_follow_the_server_timing(timed_stub: str, tiny_model: Path) -> None:
    run = run_benchmark(options(timed_stub, tiny_model, concurrency=[1, 4], num_prompts=8, goodput=["ttft:1000"]))
    assert [r.level.label for r in run.levels] == ["concurrency 1", "concurrency 4"]
    for result in run.levels:
        s = result.summary
        assert (s.requests, s.completed, s.failed) == (8, 8, 0)
        assert s.ttft is not None
        assert s.tpot is not None
        assert s.itl is not None
        assert s.e2el is not None
        assert 50 <= s.ttft.median < 150  # never below the server's own delay
        assert 10 <= s.tpot.median < 25
        assert 10 <= s.itl.median < 25
        assert 140 <= s.e2el.median < 400  # 50 ms + 9 gaps of 10 ms
        assert s.output_tokens == 80
        assert s.token_sources == {"usage": 8}
        assert s.goodput == pytest.approx(8 / s.duration)
        for record in result.records:
            assert record.ok
            assert len(record.itl) == 9  # ten content chunks, nine gaps (the role chunk carries no content)
            # E2EL ends at the last chunk with choices: the finish chunk, just after the last content chunk
            assert record.ttft is not None
            assert record.e2el is not None
            assert 0 <= record.e2el - (record.ttft + sum(record.itl)) < 0.05
            assert record.prompt_tokens is not None
    assert run.levels[1].summary.request_throughput > 2 * run.levels[0].summary.request_throughput


@pytest.mark.parametrize(
    ("mode", "cause"), [("status", "http_500"), ("disconnect", "disconnected"), ("error-event", "stream_error")]
)
def test_failed_requests_are_counted_by_cause_not_dropped(tiny_model: Path, mode: str, cause: str) -> None:
    with running_stub(StubConfig(fail_every=4, fail_mode=mode)) as base_url:
        run = run_benchmark(options(base_url, tiny_model, num_prompts=12))
    result = run.levels[0]
    s = result.summary
    assert (s.requests, s.completed, s.failed) == (12, 9, 3)  # requests 4, 8 and 12 fail
    assert s.failures == {cause: 3}
    assert s.output_tokens == 90
    assert s.request_throughput == pytest.approx(9 / s.duration)
    failed = [record for record in result.records if not record.ok]
    assert sorted(record.index for record in failed) == [3, 7, 11]
    assert all(record.error for record in failed)
    assert s.slo_attainment is None


def test_tokens_are_counted_by_the_tokenizer_when_the_server_reports_no_usage(tiny_model: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "chats.json"
    dataset.write_text(
        json.dumps([{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "a"}]}])
    )
    with running_stub(StubConfig(usage=False)) as base_url:
        counted = run_benchmark(options(base_url, tiny_model, num_prompts=3))
        chunks = run_benchmark(options(base_url, None, dataset=dataset, num_prompts=3))
    tokenizer = load_tokenizer(tiny_model)
    assert counted.levels[0].summary.token_sources == {"tokenizer": 3}
    assert [r.output_tokens for r in counted.levels[0].records] == [count_tokens(tokenizer, "tok " * 10)] * 3
    assert chunks.levels[0].summary.token_sources == {"chunks": 3}
    assert [r.output_tokens for r in chunks.levels[0].records] == [10] * 3


def test_open_loop_sends_on_schedule(fast_stub: str, tiny_model: Path) -> None:
    run = run_benchmark(options(fast_stub, tiny_model, concurrency=[], rates=[10.0], num_prompts=20))
    result = run.levels[0]
    assert result.summary.completed == 20
    sent = sorted(record.sent_at for record in result.records)
    assert sent[-1] == pytest.approx(2.0, abs=0.25)  # 20 requests at 10/s end at 2 s, by construction
    assert result.saturated is None


def test_over_saturated_open_loop_stops_early_and_counts_what_it_abandoned(tiny_model: Path) -> None:
    """One request takes a second and four fit at once, so 50/s offered is far beyond what the server finishes."""
    with running_stub(StubConfig(itl=0.1)) as base_url:
        run = run_benchmark(
            options(base_url, tiny_model, concurrency=[4], rates=[50.0, 100.0], num_prompts=None, duration=60)
        )
    assert len(run.levels) == 1  # the sweep stopped: 100/s would only queue more
    result = run.levels[0]
    assert result.saturated is not None
    assert "over-saturated" in result.saturated
    assert run.stopped is not None
    assert result.duration < 30  # stopped well before --duration
    s = result.summary
    assert s.failures.get("abandoned", 0) > 100
    assert s.requests == s.completed + s.failed == len(result.records)


def test_live_view_shows_the_running_level(fast_stub: str, tiny_model: Path) -> None:
    view = LiveView()
    run = run_benchmark(options(fast_stub, tiny_model, concurrency=[2], num_prompts=4), progress=view)
    console = Console(width=150, record=True, file=io.StringIO())
    console.print(view)
    shown = console.export_text()
    assert "concurrency 2" in shown
    assert str(run.levels[0].summary.completed) in shown
    assert view.done == run.levels


def test_cli_writes_every_report_file_and_compares_runs(timed_stub: str, tiny_model: Path, tmp_path: Path) -> None:
    """The stub is on loopback, so bench asks this machine's nvidia-smi what served it: a fake one says
    an A100 (no such card here), so the A100 run is priced and the H100 run is not."""
    a100 = nvidia_smi_env(tmp_path / "bin", "NVIDIA A100-SXM4-80GB")
    runs = []
    for name, levels in (("a", "1,2"), ("b", "2")):
        out = tmp_path / name
        done = notus(
            "bench", "--base-url", timed_stub, "--tokenizer", str(tiny_model), "--input-len", "16",
            "--output-len", "6", "--concurrency", levels, "--num-prompts", "4", "--warmup", "1",
            "--goodput", "ttft:1000,tpot:100", "--gpu", "a100" if name == "a" else "h100", "--out", str(out),
            env=a100,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "Definitions" in done.stdout
        assert "Highest load meeting the SLOs" in done.stdout
        assert "Measured on: stub-model, this machine (NVIDIA A100-SXM4-80GB)" in done.stdout
        assert "TOY RUN" not in done.stdout
        if name == "a":
            assert "$ per 1M output tokens" in done.stdout
            assert "priced on this machine's NVIDIA A100-SXM4-80GB, a card of AMPERE_80" in done.stdout
        else:
            assert "$ per 1M output tokens" not in done.stdout
            assert "No price for ADA_80_PRO: the server runs on this machine, whose NVIDIA A100" in done.stdout
        names = {path.name for path in out.iterdir()}
        assert names == {
            "bench.json", "requests.csv", "levels.csv", "report.html", "latency_throughput.png", "ttft.png", "itl.png",
        }  # fmt: skip
        data = json.loads((out / "bench.json").read_text())
        assert data["settings"]["workload"]["input_len"] == 16
        assert data["environment"]["packages"]["aiohttp"]
        assert sum(len(level["records"]) for level in data["levels"]) == 4 * len(levels.split(","))
        assert (out / "latency_throughput.png").read_bytes().startswith(b"\x89PNG")
        assert len((out / "requests.csv").read_text().splitlines()) == 1 + 4 * len(levels.split(","))
        runs.append(out)
    compared = notus("bench", "compare", str(runs[0] / "bench.json"), str(runs[1]))
    assert compared.returncode == 0, compared.stderr
    assert "a (AMPERE_80)" in compared.stdout
    assert "b (ADA_80_PRO)" in compared.stdout
    assert "Change" in compared.stdout
    assert "Differs: GPU: AMPERE_80 vs ADA_80_PRO" in compared.stdout
    assert "b: no price for ADA_80_PRO" in compared.stdout
    as_json = json.loads(notus("bench", "compare", str(runs[0]), str(runs[1]), "--json").stdout)
    assert as_json["runs"] == ["a", "b"]
    both = as_json["levels"]["concurrency 2"]["Output throughput (tok/s)"]
    assert all(value > 0 for value in both)
    assert as_json["levels"]["concurrency 1"]["Output throughput (tok/s)"][1] is None


def test_json_mode_prints_the_summary(fast_stub: str, tiny_model: Path) -> None:
    done = notus(
        "bench", "--base-url", fast_stub, "--tokenizer", str(tiny_model), "--input-len", "8", "--output-len", "4",
        "--concurrency", "3", "--num-prompts", "6", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["levels"][0]["summary"]["completed"] == 6
    assert "records" not in data["levels"][0]
    assert data["server"]["model"] == "stub-model"


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        ([], 2, "--base-url"),
        (["--base-url", "http://127.0.0.1:9"], 3, "nothing answers at http://127.0.0.1:9/v1"),
        (["--base-url", "ftp://x"], 2, "--base-url must start with http"),
        (["--base-url", "http://127.0.0.1:9", "--goodput", "fast:5"], 2, "--goodput"),
        (["--base-url", "http://127.0.0.1:9", "--concurrency", "1,x"], 2, "--concurrency"),
        (["--base-url", "http://127.0.0.1:9", "--gpu", "v100"], 2, "unknown GPU 'v100'"),
        (["--base-url", "http://127.0.0.1:9", "--attainment", "2"], 2, "--attainment"),
    ],
)
def test_bad_input_gets_a_message_and_an_exit_code_not_a_traceback(
    args: list[str], code: int, says: str, tiny_model: Path
) -> None:
    done = notus("bench", "--tokenizer", str(tiny_model), *args)
    assert done.returncode == code, done.stderr
    assert says in done.stderr
    assert "Error:" in done.stderr
    assert "Hint:" in done.stderr or code == 2
    assert "Traceback" not in done.stderr


def test_random_prompts_without_a_tokenizer_say_what_to_pass(fast_stub: str) -> None:
    done = notus("bench", "--base-url", fast_stub)
    assert done.returncode == 2
    assert "--tokenizer" in done.stderr


def test_a_server_that_fails_everything_is_reported_as_such(tiny_model: Path) -> None:
    with running_stub(StubConfig(fail_every=1)) as base_url:
        measured = notus(
            "bench", "--base-url", base_url, "--tokenizer", str(tiny_model), "--input-len", "8", "--output-len", "4",
            "--concurrency", "1", "--num-prompts", "3", "--warmup", "0",
        )  # fmt: skip
        warmed = notus("bench", "--base-url", base_url, "--tokenizer", str(tiny_model), "--warmup", "2")
    assert measured.returncode == 1
    assert "every request failed (http_500 ×3)" in measured.stderr
    assert "http_500 3" in measured.stdout  # the report still shows the failures by cause
    assert warmed.returncode == 1
    assert "every warm-up request failed (http_500: stub: planned failure)" in warmed.stderr


def test_api_key_is_sent_and_never_shown(tiny_model: Path, tmp_path: Path) -> None:
    secret = "sk-stub-0123456789"
    args = ["bench", "--tokenizer", str(tiny_model), "--input-len", "8", "--output-len", "4", "--concurrency", "1"]
    args += ["--num-prompts", "2", "--out", str(tmp_path / "out")]
    with running_stub(StubConfig(api_key=secret)) as base_url:
        refused = notus(*args, "--base-url", base_url)
        accepted = notus(*args, "--base-url", base_url, env={"NOTUS_BENCH__API_KEY": secret})
    assert refused.returncode == 5
    assert "Error: the server rejected the API key (HTTP 401)" in refused.stderr
    assert "NOTUS_BENCH__API_KEY" in refused.stderr
    assert accepted.returncode == 0, accepted.stderr
    written = "".join(path.read_text(errors="replace") for path in (tmp_path / "out").iterdir())
    assert '"api_key": true' in written
    assert secret not in accepted.stdout + accepted.stderr + written


def test_the_runpod_key_only_goes_to_runpod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", "rp-key")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    own = SecretStr("own-key")

    def key(url: str, given: SecretStr | None = None) -> str | None:
        found = openai_server(url, load_settings(), given).key  # OPENAI_API_KEY is read through the settings
        return found.get_secret_value() if found else None

    assert key("https://api.runpod.ai/v2/abc/openai/v1") == "rp-key"
    assert key("http://127.0.0.1:8000") is None
    assert key("https://api.runpod.ai.evil.example/v1") is None
    assert key("http://127.0.0.1:8000", own) == "own-key"
    monkeypatch.setenv("OPENAI_API_KEY", "openai-key")
    assert key("http://127.0.0.1:8000") == "openai-key"
