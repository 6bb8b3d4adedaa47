"""`notus bench` against RunPod endpoints: native jobs, queue delay and execution time, cold starts, cost.

RunPod itself cannot be reached here, so the emulator (notus_cli.emulator) stands in for it, over
HTTP on loopback, with real runpod SDK worker processes running the echo handler
(testbed/echo_worker.py): its chat answers have known timings (ECHO_FIRST_TOKEN_DELAY before
the first chunk, ECHO_TOKEN_DELAY between chunks), so the measured phases can be checked against
them. The run against `notus serve --tiny` (real vLLM) is in test_bench_vllm.py.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from notus_cli.bench import report, result_files
from notus_cli.bench.coldstart import ColdStart
from notus_cli.bench.compare import compare
from notus_cli.bench.endpoints import TargetSpec, resolve_target
from notus_cli.bench.load import LoadProgress
from notus_cli.bench.metrics import RequestRecord
from notus_cli.bench.run import BenchOptions, BenchRun, run_benchmark
from notus_cli.bench.runpod_target import RunPodTarget
from notus_cli.bench.workload import Prompt
from notus_cli.deployments import Deployment, save_deployment
from notus_cli.emulator import EmulatorConfig, Endpoint, LocalWorkers
from notus_cli.errors import BenchError, ConfigError, EndpointUnreachable
from notus_cli.serve.connection import connection_file
from notus_cli.serve.stack import LocalStack
from notus_cli.settings import load_settings
from testbed.common import notus, wait_for
from testbed.emulator import Harness, echo_command
from tests.fake_nvidia import nvidia_smi_env

FIRST, GAP = 0.05, 0.01  # the echo worker's chat timings
OUTPUT_LEN = 10
EXECUTION = FIRST + (OUTPUT_LEN - 1) * GAP  # the least time a job can take on the worker


def chat_workers(harness: Harness, workers: int, *, concurrency: int = 1) -> tuple[Endpoint, LocalWorkers]:
    command = echo_command(harness.log_dir / f"chat-{time.monotonic_ns()}", concurrency=concurrency)
    env = {**command.env, "ECHO_FIRST_TOKEN_DELAY": str(FIRST), "ECHO_TOKEN_DELAY": str(GAP)}
    return harness.endpoint(workers, command=dataclasses.replace(command, env=env))


@pytest.fixture(scope="module")
def one_slot(emulator: Harness) -> Endpoint:
    """One worker that runs one job at a time: a second job in flight must queue."""
    return chat_workers(emulator, 1)[0]


def spec(harness: Harness, endpoint: Endpoint, gpu: str | None = None) -> TargetSpec:
    return TargetSpec("runpod", f"{harness.url}/v2", "test", endpoint.id, SecretStr(harness.key), gpu=gpu)


def options(target: TargetSpec, tokenizer: Path | None, **overrides: object) -> BenchOptions:
    values: dict[str, object] = {
        "target": target, "tokenizer": tokenizer, "input_len": 8, "output_len": OUTPUT_LEN, "concurrency": [1],
        "num_prompts": 4, "warmup": 0,
    }  # fmt: skip
    values.update(overrides)
    return BenchOptions(**values)  # type: ignore[arg-type]


def send_one(target: RunPodTarget, content: str, max_tokens: int = OUTPUT_LEN) -> RequestRecord:
    async def go() -> RequestRecord:
        record = RequestRecord(index=0)
        async with target:
            await target.prepare()
            await target.send(Prompt([{"role": "user", "content": content}], 2, max_tokens), record)
        return record

    return asyncio.run(go())


def test_queue_delay_and_execution_time_come_from_runpod(emulator: Harness, one_slot: Endpoint) -> None:
    """A job sent behind one that sleeps 0.8 s on the only slot waits at least the rest of that time."""
    target = RunPodTarget(one_slot.id, api_key=SecretStr(emulator.key), api_base=f"{emulator.url}/v2")
    with emulator.http(one_slot.id) as http:
        blocker_sent = time.perf_counter()
        assert http.post("/run", json={"input": {"sleep": 0.8}}).status_code == 200
        wait_for(lambda: one_slot.counts().in_progress == 1, 10.0, 0.01)
        record = send_one(target, "hello there")
    assert record.ok, record.error
    queue, execution = record.phases["queue"], record.phases["execution"]
    injected = 0.8 - (record.sent_at - blocker_sent)
    assert queue >= injected - 0.02  # RunPod's delayTime is whole milliseconds
    assert execution >= EXECUTION - 0.002
    assert record.ttft is not None
    assert record.e2el is not None
    assert record.ttft >= queue + FIRST - 0.002
    assert record.e2el >= queue + execution - 0.01
    assert (record.output_tokens, record.token_source) == (OUTPUT_LEN, "usage")
    assert record.job_id in one_slot.jobs


def test_a_failing_job_is_counted_with_its_cause(emulator: Harness, one_slot: Endpoint, tmp_path: Path) -> None:
    dataset = tmp_path / "chats.json"
    turns = ["FAIL on purpose", "a fine question", "FAIL again", "another fine one"]
    dataset.write_text(
        json.dumps([{"conversations": [{"from": "human", "value": t}, {"from": "gpt", "value": "ok"}]} for t in turns])
    )
    run = run_benchmark(options(spec(emulator, one_slot), None, dataset=dataset, num_prompts=4))
    s = run.levels[0].summary
    assert (s.requests, s.completed, s.failed) == (4, 2, 2)
    assert s.failures == {"job_invalid_request": 2}
    failed = [r for r in run.levels[0].records if not r.ok]
    errors = sorted(str(r.error) for r in failed)
    assert errors == ["messages: refused: FAIL again", "messages: refused: FAIL on purpose"]
    assert all(r.job_id for r in failed)


def test_bench_by_deployment_name_reports_phases_and_cost(
    emulator: Harness, one_slot: Endpoint, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`notus bench NAME`: the deployment's endpoint and GPU pool (its price); report files carry the phases.

    The emulator is on this machine, so the price holds only if this machine has a card of the pool: a
    stand-in nvidia-smi says it has an A100 (none exists here)."""
    monkeypatch.setenv("NOTUS_CONFIG", str(tmp_path / "notus.toml"))
    for name, value in nvidia_smi_env(tmp_path / "bin", "NVIDIA A100 80GB PCIe").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RUNPOD_API_KEY", emulator.key)
    deployment = Deployment("bench-a100", one_slot.id, "tpl", "img", "AMPERE_80", api_base_url=f"{emulator.url}/v2")
    save_deployment(deployment)
    out = tmp_path / "out"
    done = notus(
        "bench", "bench-a100", "--tokenizer", str(tiny_model), "--input-len", "8", "--output-len", str(OUTPUT_LEN),
        "--concurrency", "2", "--num-prompts", "6", "--warmup", "0", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for phase in ("Queue", "Execution"):
        for statistic in ("mean ± std", "median", "p90", "p99"):
            assert f"{phase} {statistic} (ms)" in done.stdout
    assert emulator.key not in done.stdout + done.stderr
    written = sorted(path.name for path in out.iterdir() if path.suffix != ".png")
    plots = len(list(out.glob("*.png")))
    said = f"Wrote {len(written) + plots} files to {out}: {', '.join(written)}, {plots} plots (.png)"
    assert said in " ".join(done.stderr.split())  # every file the run wrote, by name
    data = json.loads((out / "bench.json").read_text())
    assert data["settings"]["target"]["source"] == "deployment bench-a100"
    # By default bench sends what `notus chat` sends: jobs whose input is an OpenAI chat request.
    assert data["settings"]["target"]["route"] == "openai-job"
    assert "Route measured: openai-job (jobs (/run, /stream) with an OpenAI chat request" in done.stdout
    inputs = emulator.emulator.call(lambda: [job.input for job in one_slot.jobs.values()])
    assert any(isinstance(job, dict) and job.get("openai_route") == "/v1/chat/completions" for job in inputs)
    assert data["server"]["model"] == "echo"
    level = data["levels"][0]
    summary = level["summary"]
    assert summary["completed"] == 6
    assert summary["phases"]["execution"]["median"] >= EXECUTION * 1000 - 2
    # Two in flight on one slot: every job but the first waits for another to finish.
    queued = sorted(record["phases"]["queue"] for record in level["records"])
    assert queued[-1] >= EXECUTION - 0.002
    cost = level["cost"]
    assert cost["gpu"] == "AMPERE_80"
    assert cost["usd"] == pytest.approx(0.00076 * summary["duration"])
    assert cost["usd_per_million_output_tokens"] == pytest.approx(cost["usd"] / summary["output_tokens"] * 1e6)
    assert cost["usd_per_thousand_requests"] == pytest.approx(cost["usd"] / 6 * 1000)
    side_by_side = compare([("a", result_files.load_run(out)), ("b", result_files.load_run(out))])
    assert {"Queue median (ms)", "Execution median (ms)"} <= {row[1] for row in side_by_side.rows}
    with (out / "requests.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert all(float(row["queue_ms"]) >= 0 and float(row["execution_ms"]) >= EXECUTION * 1000 - 2 for row in rows)


def test_cold_start_split_reflects_when_the_worker_started(emulator: Harness, tiny_model: Path) -> None:
    """No worker when the request is sent; one is started 1.5 s after the job is queued.

    The queue part must hold those 1.5 s, the worker start the worker's own boot (the SDK polling).
    """
    endpoint, pool = chat_workers(emulator, 0)
    later = 1.5
    started: list[float] = []

    def start_a_worker_later() -> None:
        wait_for(lambda: endpoint.counts().in_queue >= 1, 60.0, 0.01)
        time.sleep(later)
        started.append(time.perf_counter())
        pool.start(1)

    helper = threading.Thread(target=start_a_worker_later, daemon=True)
    helper.start()
    run = run_benchmark(options(spec(emulator, endpoint), tiny_model, cold_start=True, cold_within=5.0, num_prompts=2))
    helper.join(5)
    cold = run.cold_start
    assert isinstance(cold, ColdStart)
    assert cold.ok, cold.error
    assert cold.waited_for_zero < 1.0
    assert cold.delay is not None
    assert cold.worker_start is not None
    assert cold.queue is not None
    assert cold.ttft is not None
    assert cold.first_token is not None
    assert later - 0.15 <= cold.queue <= later + 1.0
    assert 0 < cold.worker_start < 30
    assert cold.first_token >= FIRST - 0.01
    assert cold.queue + cold.worker_start + cold.first_token == pytest.approx(cold.ttft)
    assert cold.delay >= later + cold.worker_start - 0.15
    assert run.levels[0].summary.completed == 2  # the sweep ran after the cold request
    assert BenchRun.from_dict(run.to_dict()).cold_start == cold  # kept in bench.json, read back by compare
    assert cold.sentence() in report.verdicts(run)
    assert cold.sentence().startswith(f"Cold start: first token after {cold.ttft:.2f} s = queue {cold.queue:.2f} s")


class Notes(LoadProgress):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def cold_start(self, message: str) -> None:
        self.notes.append(message)


def test_cold_start_gives_up_when_workers_stay_up(emulator: Harness, one_slot: Endpoint, tiny_model: Path) -> None:
    """The wait for zero workers says what it waits for, and ends with an error naming the way out."""
    progress = Notes()
    with pytest.raises(BenchError, match=r"still has 1 workers after 0 s") as raised:
        run_benchmark(
            options(spec(emulator, one_slot), tiny_model, cold_start=True, cold_within=0.2), progress=progress
        )
    assert raised.value.hint is not None
    assert "--force-cold" in raised.value.hint
    assert progress.notes[0].startswith("cold start: waiting for the endpoint to scale to zero (1 workers up")


def test_local_benches_the_running_notus_serve(emulator: Harness, one_slot: Endpoint, tiny_model: Path) -> None:
    """--local reads the connection file a running `notus serve` writes (here: pointing at the emulator)."""
    connection = connection_file()
    connection.parent.mkdir(parents=True)
    body = {"api_base": f"{emulator.url}/v2", "endpoint_id": one_slot.id, "api_key": emulator.key, "pid": os.getpid()}
    connection.write_text(json.dumps(body))
    local = resolve_target(load_settings(), local=True)
    assert (local.kind, local.endpoint_id, local.source) == ("runpod", one_slot.id, "notus serve")
    run = run_benchmark(options(local, tiny_model, num_prompts=2))
    assert run.levels[0].summary.completed == 2
    assert set(run.levels[0].summary.phases) == {"queue", "execution"}


def test_local_gpu_a100_against_the_tiny_stack_is_a_toy_without_a_price(
    emulator: Harness, one_slot: Endpoint, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`notus bench --local --gpu a100` against `notus serve --tiny`, which serves the tiny model under the
    real model's name: the connection file names the weights, and their size makes the run a toy even on a
    machine with an A100 (a stand-in nvidia-smi; the emulator's echo worker stands in for vLLM)."""
    for name, value in nvidia_smi_env(tmp_path / "bin", "NVIDIA A100-SXM4-80GB").items():
        monkeypatch.setenv(name, value)
    connection = connection_file()
    connection.parent.mkdir(parents=True)
    body = {
        "api_base": f"{emulator.url}/v2", "endpoint_id": one_slot.id, "api_key": emulator.key, "pid": os.getpid(),
        "model": str(tiny_model), "served_model_name": "echo",
    }  # fmt: skip
    connection.write_text(json.dumps(body))
    out = tmp_path / "out"
    done = notus(
        "bench", "--local", "--gpu", "a100", "--tokenizer", str(tiny_model), "--input-len", "8", "--output-len", "4",
        "--concurrency", "1", "--num-prompts", "2", "--warmup", "0", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = " ".join(done.stdout.split())
    assert "notus bench: TOY RUN, echo at " in shown
    assert f"Measured on: echo (weights {tiny_model}, 0.7 M parameters), this machine (NVIDIA A100-SXM4-80GB)" in shown
    assert "A toy run: the model has 0.7 M parameters (a test model: under 100 M)" in shown
    assert "No price for AMPERE_80: the model has 0.7 M parameters" in shown
    assert "$" not in done.stdout
    data = json.loads((out / "bench.json").read_text())
    assert data["gpu"]["pool"] == "AMPERE_80"  # what was asked, kept
    assert data["measured_on"]["served_model"] == "echo"
    assert data["measured_on"]["weights"] == str(tiny_model)
    assert (data["measured_on"]["toy"], data["measured_on"]["priced"]) == (True, False)
    assert data["levels"][0]["cost"] is None


def test_cold_start_needs_a_runpod_target(tiny_model: Path) -> None:
    openai = TargetSpec("openai", "http://127.0.0.1:9/v1", "--base-url")
    with pytest.raises(ConfigError, match="--cold-start needs a RunPod endpoint"):
        run_benchmark(options(openai, tiny_model, cold_start=True))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory of its own (its .notus/deployments.json) and a RunPod key."""
    monkeypatch.setenv("NOTUS_CONFIG", str(tmp_path / "notus.toml"))
    monkeypatch.setenv("RUNPOD_API_KEY", "rp_test_key")
    return tmp_path / ".notus"


def test_gpu_picks_the_deployment_on_that_gpu(project: Path) -> None:
    save_deployment(Deployment("prod", "ep80", "t", "i", "AMPERE_80"))
    save_deployment(Deployment("big", "ep141", "t", "i", "HOPPER_141"))
    found = resolve_target(load_settings(), gpu="a100")
    assert (found.kind, found.endpoint_id, found.gpu) == ("runpod", "ep80", "AMPERE_80")
    assert found.url == "https://api.runpod.ai/v2"
    assert found.source == "deployment prod"
    routed = resolve_target(load_settings(), name="prod", route="openai")
    assert (routed.kind, routed.url) == ("openai", "https://api.runpod.ai/v2/ep80/openai/v1")


def test_gpu_without_a_deployment_says_how_to_deploy_one(project: Path) -> None:
    done = notus("bench", "--gpu", "a100")
    assert done.returncode == 2
    assert "Error: no deployment runs on GPU 'a100' (AMPERE_80)" in done.stderr
    assert "notus deploy NAME --gpu a100" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "prod", "--concurrency", "2"],
        ["bench", "--concurrency", "2", "prod"],
        ["bench", "--json", "--out=runs/x", "prod"],
        ["bench", "run", "--concurrency", "2", "prod"],
    ],
)
def test_a_deployment_name_may_stand_anywhere_among_the_options(project: Path, args: list[str]) -> None:
    """`notus bench NAME` is `notus bench run NAME`, the group's default command; options may come first."""
    done = notus(*args)
    assert done.returncode == 2
    assert "Error: no deployment named 'prod' (known: none yet)" in done.stderr


def test_bench_compare_is_a_subcommand_with_its_own_help(project: Path) -> None:
    group = notus("bench", "--help")
    assert group.returncode == 0
    assert set(re.findall(r"^│ ([a-z]+) ", group.stdout, flags=re.MULTILINE)) == {"run", "compare"}
    compare = notus("bench", "compare", "--help")
    assert re.search(r"Usage: .* bench compare \[OPTIONS\] \{?RUN", compare.stdout)
    assert "--concurrency" not in compare.stdout
    run = notus("bench", "run", "--help")
    assert "bench run [OPTIONS] [NAME]" in run.stdout
    assert "--concurrency" in run.stdout
    none = notus("bench", "compare")
    assert none.returncode == 2
    assert "Error: missing argument 'RUN'" in none.stderr
    extra = notus("bench", "prod", "compare")
    assert extra.returncode == 2
    assert "unexpected extra argument(s) (compare)" in extra.stderr


def test_target_options_are_exclusive_and_local_needs_notus_serve(project: Path) -> None:
    with pytest.raises(ConfigError, match="give one target, not NAME and --endpoint"):
        resolve_target(load_settings(), name="prod", endpoint="ep1")
    with pytest.raises(ConfigError, match="--route must be one of openai-job, native, openai"):
        resolve_target(load_settings(), endpoint="ep1", route="grpc")
    with pytest.raises(EndpointUnreachable, match="no `notus serve` is running"):
        resolve_target(load_settings(), local=True)


@pytest.mark.vllm
def test_bench_notus_serve_tiny_through_jobs_and_the_openai_route(
    local_stack: LocalStack, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real stack (`notus serve --tiny`: emulator, two `python -m worker`, vLLM): jobs carry their phases.

    A stand-in nvidia-smi that finds no GPU makes "this machine has no NVIDIA GPU" hold on any machine."""
    for name, value in nvidia_smi_env(tmp_path / "bin").items():
        monkeypatch.setenv(name, value)
    info = local_stack.info
    native = TargetSpec("runpod", info.api_base, "notus serve", info.endpoint_id, info.api_key, gpu="AMPERE_24")
    run = run_benchmark(options(native, tiny_model, concurrency=[2], num_prompts=6, output_len=8, warmup=1))
    s = run.levels[0].summary
    assert (s.completed, s.failed) == (6, 0), s.failures
    assert s.output_tokens == 6 * 8  # ignore_eos reaches vLLM through the worker
    assert s.token_sources == {"usage": 6}
    assert run.server["model"] == info.served_model_name
    for record in run.levels[0].records:
        assert record.ttft is not None
        assert record.e2el is not None
        assert 0 <= record.phases["queue"] <= record.ttft
        # The job ends (job-done) just after its last chunk, which E2EL ends at.
        assert 0 < record.phases["execution"] < record.e2el + 0.5
    # --gpu-priced as AMPERE_24, but the tiny model on this machine's CPU served it: no price, and a toy.
    assert run.costs()[0] is None
    assert run.measured_on.toy
    assert not run.measured_on.priced
    routed = TargetSpec("openai", info.openai_base_url, "notus serve", api_key=info.api_key, route="openai")
    through_openai = run_benchmark(options(routed, tiny_model, num_prompts=2, output_len=8))
    assert through_openai.levels[0].summary.completed == 2
    too_long = send_one(RunPodTarget(info.endpoint_id, api_key=info.api_key, api_base=info.api_base), "hi", 100_000)
    assert too_long.error_cause == "job_invalid_request"
    assert too_long.error is not None
    assert too_long.error.startswith("max_tokens: ")


def test_rate_limited_jobs_wait_and_are_sent_again(tmp_path: Path, tiny_model: Path) -> None:
    """An endpoint taking two /run a second (HTTP 429 with Retry-After beyond): nothing is lost or failed."""
    harness = Harness.start(tmp_path, EmulatorConfig(sweep_interval=0.1, rate_limits={"run": (2, 1.0)}))
    try:
        endpoint = chat_workers(harness, 1, concurrency=4)[0]
        started = time.perf_counter()
        run = run_benchmark(options(spec(harness, endpoint), tiny_model, concurrency=[4], num_prompts=4))
        took = time.perf_counter() - started
    finally:
        harness.close()
    s = run.levels[0].summary
    assert (s.completed, s.failed) == (4, 0), s.failures
    assert run.server["rate_limited_retries"] >= 2
    assert took >= 1.0  # two of the four waited for the next second
