"""`notus serve`: a local RunPod endpoint on loopback (emulator, worker processes, one vLLM)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from notus_cli.options import JsonOpt
from notus_cli.output import Latest, Output, table
from notus_cli.runpod.protocol import routes
from notus_cli.settings import load_settings

if TYPE_CHECKING:  # the stack (uvicorn, starlette, the emulator) loads only when `serve` runs
    from notus_cli.serve.stack import StackInfo, StackSnapshot

EXAMPLE_INPUT = (
    '{"input": {"messages": [{"role": "system", "content": "You are a wise counselor guided by KJV scripture."}, '
    '{"role": "user", "content": "What does the Bible say about wisdom?"}], '
    '"temperature": 0.7, "max_tokens": 2048, "top_p": 0.9}}'
)

ENDPOINT_TYPE_WORDS = {"queue": "queue (jobs: /run, /stream)", "lb": "load balancing (no queue)"}


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
    faults: Annotated[
        str,
        typer.Option(
            "--faults",
            metavar="SPEC",
            help="Inject RunPod's bad days: FAULT:ROUTE[@ENDPOINT]:RATE,..., kill:INTERVAL, "
            "e.g. 502:stream:1%,lost:job-done:2x,kill:60s (docs/faults.md).",
        ),
    ] = "",
    endpoint_type: Annotated[
        str,
        typer.Option(
            "--type",
            metavar="queue|lb",
            help="queue: RunPod's job API (/run, /stream); lb: a load-balancing endpoint, "
            "straight to the workers' HTTP (docs/load-balancing.md).",
        ),
    ] = "queue",
    json_mode: JsonOpt = False,
) -> None:
    """Serve the model behind a local RunPod endpoint (vLLM, N workers, the emulator); Ctrl-C stops it all."""
    from notus_cli.serve.stack import LocalStack
    from notus_cli.serve.stack_config import StackConfig
    from notus_cli.serve.supervise import changed_workers, serve_until_stopped

    out = Output(json_mode=json_mode)
    config = StackConfig.from_settings(
        load_settings(), tiny=tiny, model=model, workers=workers, port=port, faults=faults, endpoint_type=endpoint_type
    )
    config.fault_plan()  # a bad spec fails now, not after vLLM's start-up
    shown, seen = Latest(), dict[str, str]()

    def on_snapshot(snapshot: StackSnapshot) -> None:
        if out.interactive:  # a live table; in logs, a line per change
            shown.update(_status_table(snapshot, lb_endpoint=config.endpoint_type == "lb"))
            return
        for line in changed_workers(seen, snapshot):
            out.info(line)

    stopped = serve_until_stopped(
        LocalStack(config, on_progress=out.info),
        on_ready=lambda info: _show(out, info, generated_key=config.api_key is None, tiny=tiny),
        on_snapshot=on_snapshot,
        say=out.info,
        watching=lambda: out.live(shown),
    )
    if not stopped:
        out.info("interrupted; everything started was stopped")
        raise typer.Exit(130)
    out.info("stopped")


def _show(out: Output, info: StackInfo, *, generated_key: bool, tiny: bool) -> None:
    from notus_cli.model.tiny import RANDOM_TEXT_NOTICE
    from notus_cli.serve.connection import connection_file, other_stacks

    key = info.api_key.get_secret_value() if generated_key else None
    if out.json_mode:
        # What the connection file holds, but the key only when serve made it (not the user's own setting).
        out.json({**info.connection(), "api_key": key, "connection_file": str(connection_file())})
        _say_other_stacks(out, other_stacks())
        return
    shown_key = key or "(the serve.api_key you configured)"
    lb_endpoint = info.endpoint_type == "lb"
    header = table("Local RunPod endpoint", "")
    for name, value in (
        ("LB URL" if lb_endpoint else "Endpoint URL", info.endpoint_url),
        ("Type", ENDPOINT_TYPE_WORDS[info.endpoint_type]),
        ("Endpoint id", info.endpoint_id),
        ("API key", shown_key),
        ("OpenAI base URL", info.openai_base_url),
        ("Model", f"{info.served_model_name} ({info.model})"),
        ("Workers", f"{info.workers} (logs in {info.log_dir})"),
    ):
        header.add_row(name, value)
    out.result(header)
    auth = shlex.quote(f"Authorization: Bearer {key}") if key else '"Authorization: Bearer $KEY"'
    route = "/chat" if lb_endpoint else routes.RUNSYNC.path  # an LB worker's native route (docs/worker.md)
    out.text(
        f"\ncurl -s {info.endpoint_url}{route} -H {auth} -H 'Content-Type: application/json' \\\n"
        f"  -d {shlex.quote(EXAMPLE_INPUT)}\n"
    )
    if not lb_endpoint:  # the runpod SDK speaks the job API only
        out.text(
            f"runpod SDK: RUNPOD_ENDPOINT_BASE_URL={info.api_base}, runpod.Endpoint({info.endpoint_id!r}, api_key=KEY)"
        )
    out.text(f"OpenAI SDK: OpenAI(base_url={info.openai_base_url!r}, api_key=KEY), model {info.served_model_name!r}")
    out.text(
        f"notus deploy: NOTUS_RUNPOD_GRAPHQL_URL={info.url}/graphql NOTUS_RUNPOD_API_URL={info.api_base}"
        + (f" NOTUS_RUNPOD_LB_URL={info.lb_url_template}" if lb_endpoint else "")
    )
    if tiny:
        out.info(f"Note: {RANDOM_TEXT_NOTICE}.")
    if info.faults:
        out.warn(f"faults injected: {info.faults}")
    _say_other_stacks(out, other_stacks())
    out.info("Ctrl-C stops everything.")


def _say_other_stacks(out: Output, others: list[dict[str, Any]]) -> None:
    """Another project's stack runs too: each `--local` finds its own project's, so say which is which."""
    for stack in others:
        out.warn(
            f"another notus serve runs for {stack.get('project')} at {stack.get('url')}; --local here means this one"
        )


def _status_table(snapshot: StackSnapshot, *, lb_endpoint: bool = False) -> Table:
    from notus_cli.serve.supervise import worker_state

    jobs = snapshot.health["jobs"]
    title = (
        f"load balancing: {sum(worker.running for worker in snapshot.workers)} requests in flight"
        if lb_endpoint  # no queue, no jobs: each worker's count is its requests
        else f"queue {jobs['inQueue']}  running {jobs['inProgress']}  "
        f"completed {jobs['completed']}  failed {jobs['failed']}"
    )
    result = table("worker", "pod", "state", "running", "done", title=title)
    for worker in snapshot.workers:
        state = worker_state(worker.exit_code, worker.state)
        result.add_row(worker.label, worker.pod_id, state, str(worker.running), str(worker.done))
    return result
