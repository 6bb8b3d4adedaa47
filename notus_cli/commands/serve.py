"""`notus serve`: a local RunPod endpoint on loopback (emulator, worker processes, one vLLM)."""

from __future__ import annotations

import contextlib
import shlex
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.table import Table

from notus_cli.errors import EngineError
from notus_cli.options import JsonOpt
from notus_cli.output import Output, table
from notus_cli.settings import load_settings

if TYPE_CHECKING:  # the stack (uvicorn, starlette, the emulator) loads only when `serve` runs
    from notus_cli.serve.stack import LocalStack, StackInfo, StackSnapshot

EXAMPLE_INPUT = (
    '{"input": {"messages": [{"role": "system", "content": "You are a wise counselor guided by KJV scripture."}, '
    '{"role": "user", "content": "What does the Bible say about wisdom?"}], '
    '"temperature": 0.7, "max_tokens": 2048, "top_p": 0.9}}'
)


def serve(
    tiny: Annotated[
        bool, typer.Option("--tiny", help="Serve a tiny random-weight model (CPU-friendly, offline).")
    ] = False,
    model: Annotated[
        Path | None, typer.Option("--model", help="Serve this model directory.", file_okay=False, exists=True)
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).", min=1, max=64)] = None,
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 (default 8300; 0: any free port).", min=0, max=65535)
    ] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Serve the model behind a local RunPod endpoint (vLLM, N workers, the emulator); Ctrl-C stops it all."""
    from notus_cli.serve.stack import LocalStack, StackConfig

    out = Output(json_mode=json_mode)
    config = StackConfig.from_settings(load_settings(), tiny=tiny, model=model, workers=workers, port=port)
    stack = LocalStack(config, on_progress=out.info)
    with _signals_interrupt():
        try:
            stack.start()
        except KeyboardInterrupt:
            out.info("interrupted; everything started was stopped")
            raise typer.Exit(130) from None
        try:
            _show(out, stack.info, generated_key=config.api_key is None, tiny=tiny)
            _watch(out, stack)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            out.info("stopping the workers, vLLM and the emulator")
            stack.stop()
    out.info("stopped")


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so `kill` also stops every child cleanly."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt), signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def _show(out: Output, info: StackInfo, *, generated_key: bool, tiny: bool) -> None:
    from notus_cli.model.tiny import RANDOM_TEXT_NOTICE
    from notus_cli.serve.stack import connection_file

    key = info.api_key.get_secret_value() if generated_key else None
    if out.json_mode:
        out.json(
            {
                "url": info.url,
                "api_base": info.api_base,
                "endpoint_id": info.endpoint_id,
                "endpoint_url": info.endpoint_url,
                "api_key": key,
                "openai_base_url": info.openai_base_url,
                "served_model_name": info.served_model_name,
                "model": info.model,
                "workers": info.workers,
                "log_dir": str(info.log_dir),
                "connection_file": str(connection_file()),
            }
        )
        return
    shown_key = key or "(the serve.api_key you configured)"
    header = table("Local RunPod endpoint", "")
    for name, value in (
        ("Endpoint URL", info.endpoint_url),
        ("Endpoint id", info.endpoint_id),
        ("API key", shown_key),
        ("OpenAI base URL", info.openai_base_url),
        ("Model", f"{info.served_model_name} ({info.model})"),
        ("Workers", f"{info.workers} (logs in {info.log_dir})"),
    ):
        header.add_row(name, value)
    out.result(header)
    auth = shlex.quote(f"Authorization: Bearer {key}") if key else '"Authorization: Bearer $KEY"'
    out.text(
        f"\ncurl -s {info.endpoint_url}/runsync -H {auth} -H 'Content-Type: application/json' \\\n"
        f"  -d {shlex.quote(EXAMPLE_INPUT)}\n"
    )
    out.text(
        f"runpod SDK: RUNPOD_ENDPOINT_BASE_URL={info.api_base}, runpod.Endpoint({info.endpoint_id!r}, api_key=KEY)"
    )
    out.text(f"OpenAI SDK: OpenAI(base_url={info.openai_base_url!r}, api_key=KEY), model {info.served_model_name!r}")
    out.text(f"notus deploy: NOTUS_RUNPOD_GRAPHQL_URL={info.url}/graphql NOTUS_RUNPOD_API_URL={info.api_base}")
    if tiny:
        out.info(f"Note: {RANDOM_TEXT_NOTICE}.")
    out.info("Ctrl-C stops everything.")


def _watch(out: Output, stack: LocalStack) -> None:
    """Show the workers' state until Ctrl-C; raises EngineError if vLLM dies."""
    seen: dict[str, str] = {}
    live = Live(console=out.err, auto_refresh=False) if out.interactive else None
    with live or contextlib.nullcontext():
        while True:
            time.sleep(1.0)
            snapshot = stack.snapshot()
            if not snapshot.vllm_alive:
                log = stack.vllm.log_path if stack.vllm else "its log"
                raise EngineError("vLLM exited; the workers cannot serve without it", hint=f"see {log}")
            if live is not None:
                live.update(_status_table(snapshot), refresh=True)
                continue
            for worker in snapshot.workers:
                state = worker.state if worker.exit_code is None else f"exited ({worker.exit_code})"
                if seen.get(worker.pod_id) != state:
                    seen[worker.pod_id] = state
                    out.info(f"{worker.label} ({worker.pod_id}): {state}")


def _status_table(snapshot: StackSnapshot) -> Table:
    jobs = snapshot.health["jobs"]
    result = table(
        "worker",
        "pod",
        "state",
        "running",
        "done",
        title=f"queue {jobs['inQueue']}  running {jobs['inProgress']}  "
        f"completed {jobs['completed']}  failed {jobs['failed']}",
    )
    for worker in snapshot.workers:
        state = worker.state if worker.exit_code is None else f"exited ({worker.exit_code})"
        result.add_row(worker.label, worker.pod_id, state, str(worker.running), str(worker.done))
    return result
