"""The stack `notus serve --tiny` runs (emulator, real `python -m worker` processes, vLLM on the CPU),
driven by the official runpod and openai SDKs, unmodified, and by our own client."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import re
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from notus_cli.emulator import LocalWorkers
from notus_cli.errors import JobFailed
from notus_cli.runpod.serverless import ServerlessClient
from notus_cli.serve.stack import LocalStack
from testbed.common import wait_for

pytestmark = pytest.mark.vllm

SYSTEM = "You are a wise counselor guided by KJV scripture."
QUESTION = "What does the Bible say about wisdom?"
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
SHORT = {"messages": MESSAGES, "max_tokens": 8}
# ignore_eos, min_tokens and a stop string it never writes make the random model write exactly max_tokens tokens.
LONG = {"messages": MESSAGES, "max_tokens": 3500, "min_tokens": 3500, "ignore_eos": True, "stop": "<|never|>"}
LONG |= {"stream": True}


def client(stack: LocalStack, **kwargs: Any) -> ServerlessClient:
    info = stack.info
    return ServerlessClient(info.endpoint_id, info.api_key, base_url=info.api_base, **kwargs)


def vllm_gauge(stack: LocalStack, name: str) -> float:
    text = httpx.get(f"{stack.info.vllm_url}/metrics", timeout=10).text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")]
    return sum(values)


def test_runpod_sdk_endpoint_works_unmodified(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    import runpod

    info = local_stack.info
    monkeypatch.setattr(runpod, "endpoint_url_base", info.api_base)  # what RUNPOD_ENDPOINT_BASE_URL sets on import
    endpoint = runpod.Endpoint(info.endpoint_id, api_key=info.api_key.get_secret_value())

    output = endpoint.run_sync({"input": SHORT}, timeout=300)
    assert output[0]["object"] == "chat.completion"
    assert output[0]["model"] == info.served_model_name

    job = endpoint.run({"input": SHORT})
    assert job.status() in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    assert job.output(timeout=300)[0]["usage"]["completion_tokens"] >= 1

    chunks = list(endpoint.run({"input": {**SHORT, "stream": True}}).stream())
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[-1]["usage"]["completion_tokens"] >= 1

    long_job = endpoint.run({"input": LONG})
    wait_for(lambda: long_job.status() == "IN_PROGRESS", timeout=120, interval=0.2)
    assert long_job.cancel()["status"] == "CANCELLED"
    assert endpoint.run({"input": SHORT}).output(timeout=300)[0]["object"] == "chat.completion"

    health = endpoint.health()
    assert health["workers"]["idle"] + health["workers"]["running"] == 2
    assert health["jobs"]["completed"] >= 4
    assert endpoint.purge_queue() == {"removed": 0, "status": "completed"}


def test_openai_sdk_works_unmodified_through_the_openai_route(local_stack: LocalStack) -> None:
    import openai

    info = local_stack.info
    sdk = openai.OpenAI(base_url=info.openai_base_url, api_key=info.api_key.get_secret_value(), max_retries=0)
    try:
        answer = sdk.chat.completions.create(model=info.served_model_name, messages=MESSAGES, max_tokens=8)  # type: ignore[arg-type]
        assert answer.object == "chat.completion"
        assert answer.usage is not None
        assert answer.usage.completion_tokens >= 1
        stream = sdk.chat.completions.create(
            model=info.served_model_name,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        assert len(chunks) >= 3
        assert chunks[-1].usage is not None
        assert info.served_model_name in [model.id for model in sdk.models.list()]
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.chat.completions.create(model=info.served_model_name, messages=MESSAGES, temperature=-3)  # type: ignore[arg-type]
        assert "temperature" in str(refused.value)
    finally:
        sdk.close()


@pytest.mark.anyio
async def test_a_slow_worker_network_costs_round_trips_not_tokens(local_stack: LocalStack) -> None:
    """At an emulated 60 ms worker-API round trip, per-token items would take 200 x 60 ms = 12 s for
    a 200-token answer; coalesced, the job needs a few dozen job-stream POSTs and a fraction of that,
    and the client still gets every token (the real SDK posts; RunPod's network is what is emulated)."""
    emulator = local_stack.emulator
    normal = emulator.config
    emulator.call(lambda: setattr(emulator, "config", dataclasses.replace(normal, worker_api_rtt_ms=60)))
    request = {**LONG, "max_tokens": 200, "min_tokens": 200, "chat_template_kwargs": {"enable_thinking": False}}
    try:
        async with client(local_stack) as runpod_client:
            started = time.monotonic()
            job = await runpod_client.run(request)
            items = [item async for item in runpod_client.stream(job.id)]
            elapsed = time.monotonic() - started
    finally:
        emulator.call(lambda: setattr(emulator, "config", normal))
    posts = emulator.call(lambda: len(local_stack.endpoint.jobs[job.id].stream))
    assert posts == len(items)
    assert items[-1]["usage"]["completion_tokens"] == 200
    assert all("usage" not in item for item in items[:-1])
    assert posts < 200 / 3
    assert elapsed < 0.5 * 200 * 0.060


def delta_text(chunk: Any) -> str:
    """The text a streamed chat.completion.chunk carries (reasoning or answer)."""
    chunks = chunk if isinstance(chunk, list) else [chunk]
    items = [item for item in chunks if isinstance(item, dict)]
    deltas = [choice.get("delta", {}) for item in items for choice in item.get("choices", [])]
    # vLLM's own SSE (the OpenAI route) says `reasoning`; the worker's native chunks `reasoning_content`
    thought = ("reasoning_content", "reasoning")
    return "".join("".join(delta.get(key) or "" for key in (*thought, "content")) for delta in deltas)


@pytest.mark.anyio
async def test_streamed_chunks_arrive_incrementally(local_stack: LocalStack, record_property: Any) -> None:
    """When the text of a 600-token answer arrives, through /stream and through the OpenAI route's SSE.

    Buffered output would arrive in one burst at the end; incremental output spreads over the
    generation. Measured by text, not by items: when the machine stalls for a moment the worker
    merges what came meanwhile into one item (worker/coalesce.py), and on a loaded two-core machine
    such stalls can hold back much of a 2 s answer. So the test asserts what buffering would break
    (many items, spread over most of the time from request to last item) and records how much text
    had arrived halfway through, without a bound that a stall could cross.
    """
    request = {**LONG, "max_tokens": 600, "min_tokens": 600}
    body = {"model": local_stack.info.served_model_name, "messages": MESSAGES, "max_tokens": 600}
    body |= {"min_tokens": 600, "ignore_eos": True}
    async with client(local_stack) as runpod_client:
        asked = time.monotonic()
        job = await runpod_client.run(request)
        native = [(time.monotonic(), len(delta_text(chunk))) async for chunk in runpod_client.stream(job.id)]
        native_asked, asked = asked, time.monotonic()
        sse = [(time.monotonic(), len(delta_text(chunk))) async for chunk in runpod_client.chat_stream(body)]
    for name, arrivals, start in (("stream", native, native_asked), ("openai", sse, asked)):
        times = [at for at, _size in arrivals]
        spread, elapsed = times[-1] - times[0], times[-1] - start
        midpoint = times[0] + spread / 2
        total = sum(size for _at, size in arrivals)
        by_midpoint = sum(size for at, size in arrivals if at <= midpoint) / total
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        record_property(f"{name}_chunks", len(times))
        record_property(f"{name}_spread_s", round(spread, 2))
        record_property(f"{name}_elapsed_s", round(elapsed, 2))
        record_property(f"{name}_text_by_midpoint", round(by_midpoint, 2))
        record_property(f"{name}_median_gap_ms", round(statistics.median(gaps) * 1000, 1))
        assert len(times) >= 20, name  # fewer items than tokens: the worker merges what came during a POST
        assert spread > 0.5 * elapsed, f"{name}: chunks arrived within {spread:.2f} s of a {elapsed:.2f} s answer"


@pytest.mark.anyio
async def test_cancel_stops_generation_in_the_worker(local_stack: LocalStack) -> None:
    async with client(local_stack) as runpod_client:
        job = await runpod_client.run(LONG)
        async for _chunk in runpod_client.stream(job.id):
            break  # generation has started
        # vLLM's gauges are refreshed by its stat logger, a moment after the first token: wait for it
        await asyncio.to_thread(wait_for, lambda: vllm_gauge(local_stack, "vllm:num_requests_running") >= 1, 10, 0.1)
        assert (await runpod_client.cancel(job.id)).status == "CANCELLED"
        cancelled = time.monotonic()
        await asyncio.to_thread(wait_for, lambda: vllm_gauge(local_stack, "vllm:num_requests_running") == 0, 30, 0.2)
        stopped_after = time.monotonic() - cancelled
        status = await runpod_client.status(job.id)
    assert status.status == "CANCELLED"
    assert stopped_after < 15, "vLLM stopped generating long before the 3500 tokens were done"
    logs = await asyncio.to_thread(_worker_logs, local_stack)
    assert re.search(rf"job {re.escape(job.id)} cancelled", logs), "the worker's handler saw the cancellation"


def _worker_logs(stack: LocalStack) -> str:
    return "".join(path.read_text() for path in Path(stack.config.log_dir).glob("worker-*.log"))


@pytest.mark.anyio
async def test_a_killed_workers_job_fails_and_the_queue_waits_for_a_new_worker(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    emulator = local_stack.emulator
    endpoint = emulator.call(lambda: emulator.create_endpoint(max_workers=1))
    assert local_stack.workers is not None
    pool = LocalWorkers(emulator, endpoint, dataclasses.replace(local_stack.workers.command, log_dir=tmp_path))
    info = local_stack.info
    try:
        pool.start(1)
        async with ServerlessClient(endpoint.id, info.api_key, base_url=info.api_base) as runpod_client:
            await _wait_ready(runpod_client)
            job = await runpod_client.run(LONG)
            async for _chunk in runpod_client.stream(job.id):
                break
            pool.kill(pool.processes[0].pod_id, signal.SIGKILL)
            lost = await runpod_client.wait(job.id, max_wait=15)
            assert lost.status == "FAILED"
            assert lost.error is not None
            assert lost.error.type == "worker_lost"
            queued = await runpod_client.run(SHORT)
            await asyncio.sleep(1)
            assert (await runpod_client.status(queued.id)).status == "IN_QUEUE"
            pool.start(1)
            done = await runpod_client.wait(queued.id, max_wait=180)
            assert done.result["object"] == "chat.completion"
            with pytest.raises(JobFailed) as failure:
                (await runpod_client.status(job.id)).raise_for_failure()
            assert failure.value.hint == f"send it again: POST /retry/{job.id}"
    finally:
        pool.stop()
        emulator.call(lambda: emulator.remove_endpoint(endpoint.id))


async def _wait_ready(runpod_client: ServerlessClient, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while (await runpod_client.health()).ready_workers < 1:
        assert time.monotonic() < deadline, "the worker did not start"
        await asyncio.sleep(0.5)


@pytest.mark.anyio
async def test_200_concurrent_jobs_over_2_workers_none_lost_none_duplicated(local_stack: LocalStack) -> None:
    endpoint, emulator = local_stack.endpoint, local_stack.emulator
    before = emulator.call(lambda: (endpoint.counts().completed, endpoint.deliveries, endpoint.ignored_reports))
    request = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    async with client(local_stack) as runpod_client:
        finished = await asyncio.gather(*(runpod_client.runsync(request, max_wait=600) for _ in range(200)))
    ids = [job.id for job in finished]
    assert len(set(ids)) == 200
    assert {job.status for job in finished} == {"COMPLETED"}
    assert len({job.result["id"] for job in finished}) == 200, "every job got its own completion"
    assert {job.worker_id for job in finished} == set(emulator.call(lambda: list(endpoint.workers)))
    # /runsync results are kept one minute, so count at the endpoint rather than per job
    after = emulator.call(lambda: (endpoint.counts().completed, endpoint.deliveries, endpoint.ignored_reports))
    assert after[0] - before[0] == 200, "200 jobs completed"
    assert after[1] - before[1] == 200, "each handed to a worker once"
    assert after[2] == before[2], "no worker reported on a job it did not own"
    assert emulator.call(lambda: endpoint.parallel_takes) == 0, "a worker never polls job-take twice at once"


def test_bad_requests_get_runpods_codes_and_shapes(local_stack: LocalStack) -> None:
    info = local_stack.info
    auth = {"Authorization": f"Bearer {info.api_key.get_secret_value()}"}
    with httpx.Client(base_url=info.endpoint_url, headers=auth, timeout=120) as http:
        missing = http.post("/run", json={"messages": MESSAGES})
        wrong_key = http.post("/run", json={"input": SHORT}, headers={"Authorization": "Bearer nope"})
        unknown_job = http.get("/status/0b5c6c1e-0000-0000-0000-000000000000-u1")
        unknown_endpoint = http.get(f"{info.api_base}/doesnotexist/health")
        oversize = http.post("/run", content=b'{"input": "' + b"x" * (11 * 1024 * 1024) + b'"}')
        invalid = http.post("/runsync", json={"input": {"messages": "hello"}}).json()
    assert [r.status_code for r in (missing, wrong_key, unknown_job, unknown_endpoint, oversize)] == [
        400,
        401,
        404,
        404,
        413,
    ]
    assert all(set(r.json()) == {"error"} for r in (missing, wrong_key, unknown_job, unknown_endpoint, oversize))
    assert invalid["status"] == "FAILED"
    error = json.loads(invalid["error"])  # RunPod keeps `error` a string; ours is JSON text
    assert (error["type"], error["param"]) == ("invalid_request", "messages")


@pytest.mark.anyio
async def test_our_client_runsync_and_openai_route(local_stack: LocalStack) -> None:
    async with client(local_stack) as runpod_client:
        job = await runpod_client.runsync({**SHORT, "temperature": 0.7, "top_p": 0.9})
        completion = job.result
        chunks = [
            chunk
            async for chunk in runpod_client.chat_stream(
                {"model": local_stack.info.served_model_name, "messages": MESSAGES, "max_tokens": 8}
            )
        ]
        answer = await runpod_client.chat(
            {"model": local_stack.info.served_model_name, "messages": MESSAGES, "max_tokens": 8}
        )
        models = await runpod_client.models()
        with pytest.raises(JobFailed) as failure:
            await runpod_client.runsync({"messages": MESSAGES, "top_p": 5})
    assert completion["object"] == "chat.completion"
    assert completion["id"].startswith("notus-")
    assert job.delay_time_ms is not None
    assert job.execution_time_ms is not None
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert answer["object"] == "chat.completion"
    assert models[0]["id"] == local_stack.info.served_model_name
    assert (failure.value.error_type, failure.value.param) == ("invalid_request", "top_p")
    assert failure.value.hint == "fix the request's top_p"
