"""vLLM's start-up split into model load and engine warm-up: read from its log, answered by the worker, shown by bench.

The log lines are vLLM 0.32's own format strings (the pinned .venv-vllm's model_loader/default_loader.py,
v1/worker/gpu_model_runner.py, compilation/monitor.py, v1/engine/core.py), filled in as vLLM fills them.
A GPU cannot exist here, so the CUDA-graph and GPU model-load lines are fed to the parser as text;
the CPU build's real lines are read in test_cached_models.py.
"""

from __future__ import annotations

import logging

import pytest

from notus_cli.bench.coldstart import ColdStart
from worker.handler import ChatHandler
from worker.startup import STARTUP_QUERY, StartupPhases


def logged(fmt: str, *args: object) -> str:
    """A line as vLLM's logger writes it: its format string with the arguments filled in by logging."""
    return "INFO 12-02 10:00:01 [vllm] " + logging.LogRecord("vllm", logging.INFO, "", 0, fmt, args, None).getMessage()


GPU_LOG = [
    logged("Loading weights took %.2f seconds", 41.2),
    logged("Model loading took %s GiB memory and %.6f seconds", "58.9", 44.731),
    logged("%storch.compile took %.2f s in total", "", 28.44),
    logged("Graph capturing finished in %.0f secs, took %.2f GiB", 19, 1.2),
    logged("init engine (profile, create kv cache, warmup model) took %.2f s (compilation: %.2f s)", 61.05, 28.44),
]


def test_a_gpu_start_up_splits_into_load_and_warm_up() -> None:
    phases = StartupPhases()
    for line in GPU_LOG:
        phases.read(line)
    assert phases.load == pytest.approx(44.731)  # the GPU runner's whole figure wins over the weights alone
    assert phases.warmup == pytest.approx(61.05)
    assert phases.compile == pytest.approx(28.44)
    assert phases.cuda_graphs == pytest.approx(19)
    assert phases.sentence() == "model load 44.7 s, engine warm-up 61.0 s (torch.compile 28.4 s, CUDA graphs 19.0 s)"


def test_a_phase_vllm_did_not_log_is_unknown_not_zero() -> None:
    phases = StartupPhases()
    phases.read(GPU_LOG[0])
    assert phases.as_dict() == {"load": 41.2, "warmup": None, "compile": None, "cuda_graphs": None}
    assert "engine warm-up ?" in phases.sentence()


@pytest.mark.anyio
async def test_the_worker_answers_the_startup_query_with_its_figures_and_no_completion() -> None:
    handler = ChatHandler(
        base_url="http://127.0.0.1:9", served_model_name="m", max_model_len=64, startup={"load": 1.5, "warmup": 2.5}
    )
    items = [item async for item in handler.handle({"id": "j", "input": dict(STARTUP_QUERY)})]
    assert items == [{"startup": {"load": 1.5, "warmup": 2.5}}]  # vLLM (nothing listens there) was not asked
    await handler.aclose()


def test_the_cold_start_sentence_shows_the_split_when_the_worker_gave_it() -> None:
    cold = ColdStart(
        waited_for_zero=0.0, ok=True, ttft=150.0, e2el=151.0, delay=148.0, execution=3.0, worker_start=140.0,
        queue=8.0, first_token=2.0, job_id="j", worker_load=44.7, worker_warmup=61.0,
    )  # fmt: skip
    assert cold.sentence().endswith("in the worker start, vLLM: model load 44.70 s, engine warm-up 61.00 s")
    assert ColdStart.from_dict(cold.to_dict()) == cold
