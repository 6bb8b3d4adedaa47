"""`notus bench [run] [NAME]` and `notus bench compare RUN...`: measure latency, throughput and cost; compare runs.

`run` is the group's default command, so `notus bench prod --concurrency 4` is
`notus bench run prod --concurrency 4`, and `compare` is a subcommand with its own help.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from notus_cli.bench import DEFAULT_INPUT_LEN
from notus_cli.errors import ConfigError
from notus_cli.options import JsonOpt
from notus_cli.output import Output, table
from notus_cli.words import plural
from worker.params import InvalidRequest, check_param

if TYPE_CHECKING:
    from notus_cli.bench.coldstart import EndpointScaler
    from notus_cli.bench.live import LiveView
    from notus_cli.bench.run import BenchOptions, BenchRun
    from notus_cli.settings import NotusSettings

EXAMPLES = """Examples:

  notus bench prod --tokenizer MODEL_DIR --concurrency 1,4,16 --cold-start --out runs/prod
  notus bench --base-url http://127.0.0.1:8000 --tokenizer MODEL_DIR --goodput ttft:500,tpot:50 --gpu a100
  notus bench compare runs/a100 runs/h100
"""


class BenchGroup(TyperGroup):
    """A group whose default command is `run`: a first word that names no subcommand (a deployment, an
    option) is run's. Only the name is added; Click parses everything."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # Any: Typer vendors its own click
        if not args or (args[0] not in self.commands and args[0] != "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=BenchGroup,
    help="Measure TTFT, TPOT, ITL, throughput, goodput, cold start and cost; compare runs. "
    "`notus bench [NAME] [OPTIONS]` is `notus bench run`: see `notus bench run --help` for its options.",
    epilog=EXAMPLES,
)

GPU_HELP = (
    "GPU the server runs on (alias or RunPod pool id, e.g. a100): adds $ per 1M output tokens and per 1k requests, "
    "unless the run shows something else served it (a tiny model, a CPU, another pool). "
    "Without a target: the deployment on that GPU."
)


def _numbers(option: str, text: str | None, kind: type[int] | type[float]) -> list[float] | list[int]:
    if not text:
        return []
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        example = "1,4,16,64" if kind is int else "0.5,1,2"
        raise ConfigError(
            f"{option}: '{text}' is not a comma-separated list of numbers", hint=f"e.g. {option} {example}"
        ) from None


@app.command("run", epilog=EXAMPLES)
def run(
    name: Annotated[
        str | None,
        typer.Argument(metavar="NAME", help="A deployment's name (from `notus deploy`).", show_default=False),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(metavar="URL", help="An OpenAI-compatible server, e.g. http://127.0.0.1:8000 (vllm serve)."),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(metavar="ID", help="A RunPod endpoint id (key: RUNPOD_API_KEY). NAME instead: a deployment."),
    ] = None,
    local: Annotated[
        bool, typer.Option("--local", help="The running `notus serve` (its RunPod API, or its LB URL with --type lb).")
    ] = False,
    route: Annotated[
        str | None,
        typer.Option(
            help="RunPod targets: openai-job (default: jobs whose input is an OpenAI chat request, what `notus chat` "
            "sends, so bench measures what chat users get), native (jobs in the worker's own input shape) or openai "
            "(RunPod's /openai/v1 route, what an OpenAI SDK uses). Jobs report queue delay and execution time. "
            "A load-balancing endpoint has no jobs: openai (default: its workers' /v1) or native (their /chat).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name to ask for (default: the first the server lists).")
    ] = None,
    tokenizer: Annotated[
        Path | None,
        typer.Option(help="Model directory with tokenizer.json: sizes random prompts, counts tokens without usage."),
    ] = None,
    dataset: Annotated[
        Path | None, typer.Option(help="ShareGPT-style JSON file of conversations (default: random prompts).")
    ] = None,
    input_len: Annotated[int, typer.Option(help="Random prompts: input tokens each.")] = DEFAULT_INPUT_LEN,
    output_len: Annotated[
        int | None,
        typer.Option(help="Output tokens to ask for (default: 128; with --dataset, the file's reply length)."),
    ] = None,
    range_ratio: Annotated[float, typer.Option(help="Random prompts: lengths vary uniformly by ± this share.")] = 0.0,
    concurrency: Annotated[
        str | None,
        typer.Option(
            metavar="N[,N...]",
            help="Requests in flight; a comma list sweeps (default: 1,4,16,64). With --rate: the cap.",
        ),
    ] = None,
    rate: Annotated[
        str | None, typer.Option(help="Requests per second arriving (open loop); a comma list sweeps.")
    ] = None,
    burstiness: Annotated[
        float, typer.Option(help="With --rate: 1 is Poisson, below 1 burstier, above 1 more even (gamma).")
    ] = 1.0,
    num_prompts: Annotated[
        int | None, typer.Option(help="Requests per level (default: max(32, 4 × concurrency) or 30 s of --rate).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Seconds per level to keep sending (with --num-prompts: whichever ends first).")
    ] = None,
    warmup: Annotated[int, typer.Option(help="Unmeasured requests before the first level.")] = 2,
    goodput: Annotated[
        list[str] | None, typer.Option(help="SLOs in ms for goodput, e.g. 'ttft:500,tpot:50,e2el:20000' (repeatable).")
    ] = None,
    attainment: Annotated[
        float, typer.Option(help="Share of requests that must meet the SLOs for a level to count as meeting them.")
    ] = 0.9,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (default: the server's).")] = None,
    ignore_eos: Annotated[
        bool | None,
        typer.Option(
            "--ignore-eos/--no-ignore-eos", help="Generate exactly the asked length (default: on for random prompts)."
        ),
    ] = None,
    stop_when_saturated: Annotated[
        bool,
        typer.Option("--stop-when-saturated/--full-sweep", help="Stop the sweep once more load only adds queueing."),
    ] = True,
    gpu: Annotated[str | None, typer.Option(help=GPU_HELP)] = None,
    cold_start: Annotated[
        bool,
        typer.Option(
            "--cold-start",
            help="RunPod targets: wait for zero workers, then split one request into queue, worker start, first token.",
        ),
    ] = False,
    cold_timeout: Annotated[
        float, typer.Option(help="--cold-start: seconds to wait for the endpoint to scale to zero.")
    ] = 900.0,
    force_cold: Annotated[
        bool, typer.Option("--force-cold", help="--cold-start: ask the endpoint to scale to zero instead of waiting.")
    ] = False,
    deploy: Annotated[
        bool,
        typer.Option("--deploy", help="With --gpu: bench a temporary endpoint on it (asks first, deletes it after)."),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="--deploy: do not ask before spending money.")] = False,
    image: Annotated[
        str | None, typer.Option(help="--deploy: the image to run (default: as notus deploy, the last push).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for prompts and arrival times.")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds one request may take before it counts as failed.")] = 600.0,
    out: Annotated[
        Path | None, typer.Option(help="Write bench.json (every request), CSV, PNG plots and report.html here.")
    ] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Measure a deployment (NAME), a RunPod endpoint or any OpenAI server; the default: `notus bench NAME`.

    TTFT, TPOT, ITL, throughput, goodput, cold start and cost, level by level."""
    from notus_cli.bench import result_files  # imported here: the bench modules pull in aiohttp, numpy, matplotlib
    from notus_cli.bench.endpoints import resolve_target
    from notus_cli.bench.live import LiveView
    from notus_cli.bench.run import BenchOptions, raise_if_unusable, run_benchmark
    from notus_cli.settings import load_settings

    out_ = Output(json_mode=json_mode)
    check_sampling(temperature=temperature, max_tokens=output_len)  # before any request, as chat does
    all_settings = load_settings()
    settings = all_settings.bench
    if force_cold and not cold_start:
        raise ConfigError("--force-cold goes with --cold-start")
    if deploy and (name or endpoint or local or base_url):
        raise ConfigError("--deploy benches the endpoint it creates: drop NAME, --endpoint, --local and --base-url")
    target = None
    if not deploy:
        target = resolve_target(
            all_settings, name=name, endpoint=endpoint, local=local, base_url=base_url, gpu=gpu, route=route
        )
    options = BenchOptions(
        target=target,
        model=model or settings.model,
        tokenizer=tokenizer or (Path(settings.tokenizer) if settings.tokenizer else None),
        dataset=dataset,
        input_len=input_len,
        output_len=output_len,
        range_ratio=range_ratio,
        num_prompts=num_prompts,
        duration=duration,
        warmup=warmup,
        concurrency=[int(c) for c in _numbers("--concurrency", concurrency, int)],
        rates=[float(r) for r in _numbers("--rate", rate, float)],
        burstiness=burstiness,
        goodput=goodput or [],
        attainment=attainment,
        temperature=temperature,
        ignore_eos=ignore_eos,
        stop_when_saturated=stop_when_saturated,
        # a deployment's own pool beats the [bench] default
        gpu=gpu if target is None or target.gpu else gpu or settings.gpu,
        seed=seed,
        timeout=timeout,
        cold_start=cold_start,
        cold_within=cold_timeout,
        scaler=_scaler(all_settings) if force_cold else None,
    )
    view = LiveView(log=None if out_.interactive or json_mode else out_.info)
    if deploy:
        run = _bench_temporary(out_, view, options, all_settings, gpu, yes, image=image, route=route or "openai-job")
    else:
        with out_.live(view):
            run = run_benchmark(options, progress=view)
    written = result_files.write_report(run, out) if out else []
    _show(out_, run, written, out)
    raise_if_unusable(run)


def check_sampling(**params: Any) -> None:
    """Each sampling parameter bench sends (None: not given), checked with the worker's own bounds
    (worker.params), so a value the worker would refuse fails here, before the warm-up.

    Raises ConfigError (exit 2) naming the flag and the values it takes."""
    flags = {"max_tokens": "--output-len"}
    for name, value in params.items():
        if value is None:
            continue
        try:
            check_param(name, value)
        except InvalidRequest as exc:
            raise ConfigError(f"{flags.get(name, '--' + name.replace('_', '-'))}: {exc.message}") from None


def _scaler(settings: NotusSettings) -> EndpointScaler:
    from notus_cli.bench.deploy_hooks import endpoint_scaler

    return endpoint_scaler(settings)


def _bench_temporary(
    out: Output,
    view: LiveView,
    options: BenchOptions,
    settings: NotusSettings,
    gpu: str | None,
    yes: bool,
    *,
    image: str | None,
    route: str,
) -> BenchRun:
    """--deploy: the library shows the estimate through `out`, asks through `confirm`, and cleans up."""
    from notus_cli.bench.temporary_endpoint import Temporary, bench_temporary

    def confirm(_estimate: object) -> bool:
        if yes:
            return True
        if not out.interactive:
            raise ConfigError("--deploy spends money: confirm with --yes when not at a terminal")
        return typer.confirm("Deploy it and run the benchmark?", default=False, err=True)

    temporary = Temporary(gpu=gpu, say=out.info, warn=out.warn, confirm=confirm, image=image, route=route)
    try:
        run = bench_temporary(options, settings, temporary, progress=view, watching=lambda: out.live(view))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if run is None:
        raise typer.Exit(1)
    return run


@app.command("compare")
def compare(
    runs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN",
            help="Two or more bench.json files (or the --out directories holding them).",
            show_default=False,
        ),
    ],
    allow_unlike: Annotated[
        bool,
        typer.Option(
            "--allow-unlike",
            help="Compare runs that measured different things (workload, route, model, toy or not); "
            "the table then says what differs.",
        ),
    ] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Two or more runs side by side, level by level, each priced on its own GPU.

    Runs must have measured the same thing (workload, route, sampling, model, toy or not); only the GPU
    and what served them may differ. Anything else is refused (exit 2) naming what differs."""
    from notus_cli.bench import result_files
    from notus_cli.bench.compare import compare as compare_runs

    out = Output(json_mode=json_mode)
    loaded = [(_name(path), result_files.load_run(path)) for path in runs]
    comparison = compare_runs(loaded, allow_unlike=allow_unlike)
    if json_mode:
        out.json(comparison.data)
        return
    if comparison.unlike:
        out.warn("these runs measured different things, compared anyway (--allow-unlike): see below the table")
    title = "notus bench compare" + (": UNLIKE RUNS, see the warnings" if comparison.unlike else "")
    shown = table(*comparison.header, title=title)
    for column in shown.columns[2:]:
        column.justify = "right"
    previous = None
    for row in comparison.rows:
        shown.add_row(row[0] if row[0] != previous else "", *row[1:])
        previous = row[0]
    out.result(shown)
    for line in comparison.notes:
        out.text(line)


def _show(out: Output, run: BenchRun, written: list[Path], directory: Path | None) -> None:
    from notus_cli.bench import report

    if out.json_mode:
        out.json({**report.summary_json(run), "files": [str(path) for path in written]})
        return
    out.result(report.summary_table(run))
    for line in report.verdicts(run):
        out.text(line)
    out.text("\nDefinitions (those of vllm bench serve):")
    for term, text in report.definitions():
        out.text(f"  {term}: {text}")
    if written:
        out.info(f"Wrote {plural(len(written), 'file')} to {directory}: {_file_names(written)}")
        out.next_step(f"notus bench compare {directory}/bench.json OTHER/bench.json")


def _file_names(written: list[Path]) -> str:
    """Every file by name, the plots counted: `bench.json, levels.csv, report.html, 3 plots (.png)`."""
    plots = [path for path in written if path.suffix == ".png"]
    names = sorted(path.name for path in written if path.suffix != ".png")
    return ", ".join([*names, f"{plural(len(plots), 'plot')} (.png)"] if plots else names)


def _name(path: Path) -> str:
    return path.name if path.is_dir() else (path.parent.name if path.name == "bench.json" else path.stem)
