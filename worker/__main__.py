"""`python -m worker`: the container's entrypoint.

Order matters: settings are checked before anything starts, vLLM must be healthy before the first
job is taken, and a dead vLLM ends the worker (exit 1) so RunPod replaces it. With
NOTUS_ENDPOINT_TYPE=lb the same image serves a load-balancing endpoint instead (worker/lb.py): its
HTTP server starts first, so the health route can answer 204 while vLLM loads.

`python -m worker --test_input '{"input": {...}}'` runs one job through the handler, prints what it
yields and the timings, and exits (the runpod SDK's own --test_input cannot run async generators).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

from worker.engine import Engine, EngineFailed, EngineInfo
from worker.handler import ChatHandler
from worker.model_cache import CachedModelMissing
from worker.params import ReasoningPolicy
from worker.settings import SettingsError, WorkerSettings, load_worker_settings, resolve_weights

log = logging.getLogger("notus.worker")


def main(argv: list[str]) -> int:
    try:
        settings = load_worker_settings()
        test_input = _test_input(argv)
    except (SettingsError, ValueError) as exc:
        print(f"notus worker: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings)
    try:
        settings = resolve_weights(settings)
    except CachedModelMissing as exc:
        log.error("%s; the worker exits (RunPod downloads a cached model before a worker starts)", exc)
        return 1
    engine = Engine(settings)

    def make_handler(info: EngineInfo) -> ChatHandler:
        return ChatHandler(
            base_url=engine.base_url,
            served_model_name=info.served_model_name,
            max_model_len=info.max_model_len,
            log_content=settings.log_content,
            request_timeout=settings.request_timeout,
            max_connections=settings.job_concurrency + 8,
            startup=engine.phases.as_dict() if engine.process is not None else None,
            coalesce=settings.stream_coalesce,
            reasoning=ReasoningPolicy(budget=settings.reasoning_budget, answer_tokens=settings.answer_tokens),
        )

    if settings.endpoint_type == "lb" and test_input is None:
        from worker import lb  # aiohttp's server, only in LB mode

        return lb.serve(settings, engine, make_handler, _exit_now)
    owner = os.getpid()

    def stop_during_startup(signum: int, _frame: FrameType | None) -> None:
        # The SDK forks its heartbeat process with this handler inherited; vLLM is not its to stop.
        if os.getpid() != owner:
            os._exit(128 + signum)
        engine.stop()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop_during_startup)
    signal.signal(signal.SIGINT, stop_during_startup)
    try:
        engine.start()
        info = engine.wait_until_ready(settings.startup_timeout)
    except (EngineFailed, OSError) as exc:
        log.error("%s", exc)
        engine.stop()
        return 1
    log.info(
        "vLLM ready in %.1f s: serving %s, context %d tokens",
        info.startup_seconds,
        info.served_model_name,
        info.max_model_len,
    )
    if engine.process is not None:
        log.info("vLLM start-up: %s", engine.phases.sentence())
    engine.supervise(_exit_now)
    handler = make_handler(info)
    try:
        if test_input is not None:
            return asyncio.run(_run_once(handler, test_input, info))
        _serve(handler, settings)
        return 0
    finally:
        engine.stop()


def _serve(handler: ChatHandler, settings: WorkerSettings) -> None:
    import runpod  # imported late: it reads RUNPOD_* variables and sets its log level on import

    from worker import job_loop, lost_reports

    lost_reports.install()  # a streamed item or a result the SDK could not post is named in the log
    if settings.prompt_job_start:
        job_loop.install()  # jobs start when taken, not on the SDK's 0.1 s poll
    sys.argv = sys.argv[:1]  # the SDK parses argv too
    runpod.serverless.start(
        {
            "handler": handler.handle,
            "concurrency_modifier": lambda _current: settings.job_concurrency,
            "return_aggregate_stream": True,
        }
    )


async def _run_once(handler: ChatHandler, job: dict[str, Any], info: EngineInfo) -> int:
    started = time.perf_counter()
    first: float | None = None
    failed = False
    async for item in handler.handle({"id": job.get("id", "test"), "input": job.get("input")}):
        first = first or time.perf_counter()
        failed = failed or (isinstance(item, dict) and "error" in item)
        print(json.dumps(item, indent=2, ensure_ascii=False))
    await handler.aclose()
    total = time.perf_counter() - started
    to_first = (first - started) if first else total
    print(
        f"timings: vLLM start-up {info.startup_seconds:.1f} s, "
        f"first output {to_first * 1000:.0f} ms, job {total * 1000:.0f} ms",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _test_input(argv: list[str]) -> dict[str, Any] | None:
    if "--test_input" not in argv:
        return None
    index = argv.index("--test_input")
    if index + 1 >= len(argv):
        raise ValueError('--test_input needs a JSON job, e.g. \'{"input": {"messages": [...]}}\'')
    try:
        job = json.loads(argv[index + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"--test_input is not JSON: {exc}") from None
    if not isinstance(job, dict):
        raise ValueError("--test_input must be a JSON object with an input key")
    return job


def _configure_logging(settings: WorkerSettings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per loopback request is noise
    # The runpod SDK logs every job input and output at DEBUG, its default level.
    level = os.environ.get("RUNPOD_LOG_LEVEL", os.environ.get("RUNPOD_DEBUG_LEVEL", "DEBUG")).upper()
    if not settings.log_content and level in ("DEBUG", "TRACE"):
        os.environ["RUNPOD_LOG_LEVEL"] = "INFO"
        os.environ.pop("RUNPOD_DEBUG_LEVEL", None)


def _exit_now(reason: str) -> None:
    log.error("%s; the worker exits so RunPod can replace it", reason)
    logging.shutdown()
    os._exit(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
