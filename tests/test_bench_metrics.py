"""Bench arithmetic from known synthetic timings: every figure is checked exactly, by hand.

No server here: these are the definitions themselves (metrics, goodput, cost, arrival schedules,
saturation rules). The stub and vLLM tests check that real timings flow into them.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from notus_cli.bench.cost import level_cost
from notus_cli.bench.load import BacklogTrend, LevelResult, LoadLevel, arrival_times, make_plan, sweep_saturation
from notus_cli.bench.metrics import LevelSummary, RequestRecord, Slos, Stats, parse_slos, summarize
from notus_cli.bench.run import BenchRun
from notus_cli.errors import ConfigError
from notus_cli.runpod.gpus import resolve_pool


def ok(index: int, ttft: float, e2el: float, tokens: int, itl: list[float], prompt: int = 10) -> RequestRecord:
    return RequestRecord(
        index=index, ok=True, ttft=ttft, e2el=e2el, output_tokens=tokens, itl=itl, prompt_tokens=prompt,
        token_source="usage",
    )  # fmt: skip


def failed(index: int, cause: str) -> RequestRecord:
    record = RequestRecord(index=index)
    record.fail(cause, "it broke")
    return record


RECORDS = [
    ok(0, ttft=0.100, e2el=0.500, tokens=5, itl=[0.1, 0.1, 0.1, 0.1]),  # TPOT 0.1
    ok(1, ttft=0.200, e2el=0.800, tokens=4, itl=[0.2, 0.2, 0.2]),  # TPOT 0.2
    ok(2, ttft=0.300, e2el=0.300, tokens=1, itl=[]),  # one token: no TPOT
    failed(3, "http_500"),
    failed(4, "disconnected"),
    failed(5, "http_500"),
]


def test_summary_of_known_timings_is_exact() -> None:
    s = summarize(RECORDS, duration=2.0)
    assert (s.requests, s.completed, s.failed) == (6, 3, 3)
    assert s.failures == {"disconnected": 1, "http_500": 2}  # failed requests are counted, never dropped
    assert (s.input_tokens, s.output_tokens) == (30, 10)
    assert s.request_throughput == pytest.approx(1.5)
    assert s.output_throughput == pytest.approx(5.0)
    assert s.total_token_throughput == pytest.approx(20.0)
    assert s.ttft == Stats(mean=200.0, median=200.0, p90=280.0, p99=298.0, std=pytest.approx(81.6496581), count=3)
    # TPOT only for requests with more than one token: (0.5-0.1)/4 and (0.8-0.2)/3
    assert s.tpot is not None
    assert (s.tpot.mean, s.tpot.median, s.tpot.count) == (pytest.approx(150.0), pytest.approx(150.0), 2)
    assert s.tpot.p90 == pytest.approx(190.0)
    assert s.tpot.std == pytest.approx(50.0)
    # ITL pools every gap: four of 100 ms, three of 200 ms
    assert s.itl is not None
    assert s.itl.count == 7
    assert s.itl.mean == pytest.approx(1000 * (0.4 + 0.6) / 7)
    assert s.itl.median == pytest.approx(100.0)
    assert s.itl.p90 == pytest.approx(200.0)
    assert s.e2el is not None
    assert s.e2el.median == pytest.approx(500.0)
    assert s.token_sources == {"usage": 3}
    assert s.goodput is None
    assert s.slo_attainment is None


def test_percentiles_match_numpy_linear_interpolation() -> None:
    values = [0.013, 0.002, 0.021, 0.005, 0.008, 0.034, 0.001]
    stats = Stats.of(values)
    assert stats is not None
    expected = np.percentile(np.array(values) * 1000, [50, 90, 99])
    assert [stats.median, stats.p90, stats.p99] == pytest.approx(list(expected))
    assert stats.std == pytest.approx(float(np.std(np.array(values) * 1000)))


def test_goodput_counts_requests_meeting_every_slo_and_failures_count_against_attainment() -> None:
    # TTFT ≤ 250 ms keeps requests 0 and 1; TPOT ≤ 150 ms then keeps only 0.
    s = summarize(RECORDS, duration=2.0, slos=Slos(ttft=250, tpot=150))
    assert (s.good, s.goodput, s.slo_attainment) == (1, pytest.approx(0.5), pytest.approx(1 / 6))
    # A one-token request has TPOT 0 for goodput, as in vLLM: request 2 passes a tight TPOT limit.
    s = summarize(RECORDS, duration=2.0, slos=Slos(tpot=1))
    assert s.good == 1
    s = summarize(RECORDS, duration=2.0, slos=Slos(e2el=800))
    assert s.good == 3


def test_parse_slos_accepts_spaces_commas_and_repeats() -> None:
    assert parse_slos(["ttft:500 tpot:50", "e2el:20000"]) == Slos(ttft=500, tpot=50, e2el=20000)
    assert parse_slos(["TTFT:1.5,tpot:2"]) == Slos(ttft=1.5, tpot=2)
    assert not parse_slos([])


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("latency:5", "METRIC:MILLISECONDS"),
        ("ttft", "METRIC:MILLISECONDS"),
        ("ttft:-1", "positive"),
        ("tpot:x", "positive"),
    ],
)
def test_bad_slos_name_the_option(value: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_slos([value])
    assert "--goodput" in caught.value.message
    assert says in caught.value.message
    assert caught.value.hint


def test_cost_per_million_output_tokens_and_per_thousand_requests() -> None:
    a100 = resolve_pool("a100")  # $0.00076 per second
    summary = summarize(RECORDS, duration=2.0)
    cost = level_cost(a100, summary)
    assert cost.usd == pytest.approx(0.00152)
    assert cost.usd_per_million_output_tokens == pytest.approx(0.00152 / 10 * 1_000_000)  # $152
    assert cost.usd_per_thousand_requests == pytest.approx(0.00152 / 3 * 1000)  # failures are paid for too
    two = level_cost(resolve_pool("h100"), summary, workers=2)
    assert two.usd == pytest.approx(0.00116 * 2.0 * 2)
    nothing = level_cost(a100, summarize([failed(0, "timeout")], duration=1.0))
    assert nothing.usd_per_million_output_tokens is None
    assert nothing.usd_per_thousand_requests is None


def test_poisson_arrivals_end_exactly_at_count_over_rate() -> None:
    times = list(arrival_times(4.0, 1.0, 200, np.random.default_rng(1)))
    assert len(times) == 200
    assert times[-1] == pytest.approx(50.0)
    assert all(b >= a for a, b in itertools.pairwise(times))
    gaps = np.diff(times)
    assert 0.5 < gaps.std() / gaps.mean() < 1.5  # exponential gaps: coefficient of variation near 1


def test_burstiness_shapes_the_gaps() -> None:
    even = list(arrival_times(2.0, float("inf"), 5, np.random.default_rng(0)))
    assert even == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5])
    bursty = np.diff(list(arrival_times(2.0, 0.25, 2000, np.random.default_rng(0))))
    smooth = np.diff(list(arrival_times(2.0, 8.0, 2000, np.random.default_rng(0))))
    assert bursty.std() / bursty.mean() > 1.5 > 0.5 > smooth.std() / smooth.mean()
    unbounded = arrival_times(10.0, 1.0, None, np.random.default_rng(0))
    assert len([next(unbounded) for _ in range(1000)]) == 1000


def test_backlog_trend_ignores_the_start_ramp_and_flags_a_growing_backlog() -> None:
    keeping_up = BacklogTrend(rate=10)
    for step in range(60):  # backlog ramps to 10 in the first second, then holds
        assert keeping_up.add(step * 0.5, min(step * 5, 10) + step % 2, typical_latency=1.0) is None
    falling_behind = BacklogTrend(rate=10)
    verdicts = [falling_behind.add(step * 0.5, step * 3, typical_latency=1.0) for step in range(40)]
    assert all(v is None for v in verdicts[:22])  # nothing before a window plus a latency has passed
    assert verdicts[-1] is not None
    assert "over-saturated" in verdicts[-1]


def _result(level: LoadLevel, output_throughput: float, completed: int = 10, failed: int = 0) -> LevelResult:
    summary = LevelSummary(
        requests=completed + failed, completed=completed, failed=failed, failures={}, duration=10.0,
        input_tokens=0, output_tokens=int(output_throughput * 10), request_throughput=completed / 10,
        output_throughput=output_throughput, total_token_throughput=output_throughput, ttft=None, tpot=None,
        itl=None, e2el=Stats(1000, 1000, 1000, 1000, 0, completed),
    )  # fmt: skip
    return LevelResult(level, [], 10.0, summary)


def test_sweep_stops_when_more_concurrency_adds_under_ten_percent() -> None:
    c1, c4, c16 = LoadLevel(concurrency=1), LoadLevel(concurrency=4), LoadLevel(concurrency=16)
    assert sweep_saturation([_result(c1, 100)]) is None
    assert sweep_saturation([_result(c1, 100), _result(c4, 300)]) is None
    verdict = sweep_saturation([_result(c1, 100), _result(c4, 300), _result(c16, 320)])
    assert verdict is not None
    assert "concurrency 16" in verdict
    assert sweep_saturation([_result(c1, 100, completed=4, failed=6)]) is not None


def test_open_loop_level_is_saturated_below_ninety_percent_of_the_offered_rate() -> None:
    # 10 answered in a 10 s level whose median latency is 1 s: 10/9 ≈ 1.11 req/s answered.
    assert sweep_saturation([_result(LoadLevel(rate=1.2), 50)]) is None
    verdict = sweep_saturation([_result(LoadLevel(rate=2.0), 50)])
    assert verdict is not None
    assert "of 2/s offered" in verdict


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"concurrency": [0], "rates": []}, "--concurrency"),
        ({"concurrency": [], "rates": [0.0]}, "--rate"),
        ({"concurrency": [1, 4], "rates": [1.0]}, "--concurrency"),
        ({"concurrency": [], "rates": [], "burstiness": 0.0}, "--burstiness"),
        ({"concurrency": [], "rates": [], "num_prompts": 0}, "--num-prompts"),
        ({"concurrency": [], "rates": [], "duration": -1.0}, "--duration"),
    ],
)
def test_bad_load_options_name_the_option(kwargs: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_plan(**kwargs)  # type: ignore[arg-type]
    assert option in caught.value.message


def test_plan_defaults_and_request_counts() -> None:
    plan = make_plan(concurrency=[], rates=[])
    assert [level.concurrency for level in plan.levels] == [1, 4, 16, 64]
    assert [plan.requests_for(level) for level in plan.levels] == [32, 32, 64, 256]
    capped = make_plan(concurrency=[8], rates=[0.5, 4])
    assert [level.label for level in capped.levels] == ["rate 0.5/s, ≤8 in flight", "rate 4/s, ≤8 in flight"]
    assert [capped.requests_for(level) for level in capped.levels] == [32, 120]
    assert make_plan(concurrency=[2], rates=[], duration=5).requests_for(LoadLevel(concurrency=2)) is None


def test_run_round_trips_through_json() -> None:
    result = LevelResult(LoadLevel(concurrency=2), list(RECORDS), 2.0, summarize(RECORDS, 2.0, Slos(ttft=250)))
    run = BenchRun(
        settings={"target": {"base_url": "http://x/v1"}}, server={"model": "m"}, environment={}, levels=[result],
        slos=Slos(ttft=250), attainment=0.5, gpu=resolve_pool("a100"), started_at="2025-01-01T00:00:00+00:00",
    )  # fmt: skip
    again = BenchRun.from_dict(run.to_dict())
    assert again.levels[0].summary == result.summary
    assert [r.to_dict() for r in again.levels[0].records] == [r.to_dict() for r in RECORDS]
    assert again.gpu == run.gpu
    assert again.slos == run.slos
    assert run.to_dict()["levels"][0]["cost"]["usd"] == pytest.approx(0.00152)
    assert run.highest_load_meeting_slos() is None  # 2 of 6 met the TTFT limit: under half
    assert BenchRun.from_dict({**run.to_dict(), "attainment": 0.3}).highest_load_meeting_slos() is not None


def test_a_run_on_workers_of_two_gpus_costs_twice_and_keeps_its_gpu_count() -> None:
    """A deployment's gpu_count reaches the report: each worker bills every GPU it holds."""
    result = LevelResult(LoadLevel(concurrency=2), list(RECORDS), 2.0, summarize(RECORDS, 2.0, Slos()))

    def run(gpu_count: int) -> BenchRun:
        return BenchRun(
            settings={}, server={}, environment={}, levels=[result], slos=Slos(), attainment=0.9,
            gpu=resolve_pool("a100"), started_at="2025-01-01T00:00:00+00:00", gpu_count=gpu_count,
        )  # fmt: skip

    one, two = run(1), run(2)
    assert two.to_dict()["levels"][0]["cost"]["usd"] == pytest.approx(2 * one.to_dict()["levels"][0]["cost"]["usd"])
    again = BenchRun.from_dict(two.to_dict())
    assert again.gpu_count == 2
    assert again.costs() == two.costs()
