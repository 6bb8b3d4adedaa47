"""`notus deploy`, `status`, `endpoints`, `down`, `gpus` and `login`: the endpoint's life on RunPod."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, NoReturn

import typer

from notus_cli.deploy.apply import apply_deploy, plan_tear_down, tear_down
from notus_cli.deploy.endpoint_type import TRADE_OFFS
from notus_cli.deploy.fits import fit_pools
from notus_cli.deploy.plan import (
    DEFAULT_MAX_MODEL_LEN,
    DeployPlan,
    DeployRequest,
    plan_deploy,
    plan_on,
)
from notus_cli.deploy.request import (
    DEFAULT_NAME,
    DeployFlags,
    api_base_url,
    control_plane,
    deploy_request,
)
from notus_cli.deploy.status import EndpointStatus, endpoint_status, list_endpoints
from notus_cli.deployments import load_deployments
from notus_cli.endpoint_types import lb_template
from notus_cli.errors import AuthError, EndpointUnreachable, ExitCode
from notus_cli.model.fit import Verdict
from notus_cli.model.shape import NEMOTRON_3_NANO
from notus_cli.options import JsonOpt, YesOpt
from notus_cli.output import Latest, Output, table
from notus_cli.runpod.gpus import ALIASES, POOLS
from notus_cli.runpod_key import find_api_key
from notus_cli.settings import NotusSettings, load_settings

app = typer.Typer()
NameArg = Annotated[str | None, typer.Argument(help="Deployment name (default: notus).", show_default=False)]


@app.command("deploy")
def deploy(
    name: NameArg = None,
    endpoint_type: Annotated[
        str | None,
        typer.Option(
            "--type", help="queue (job API, retries) or lb (direct HTTP, no queue); default: as deployed, else queue."
        ),
    ] = None,
    image: Annotated[str | None, typer.Option(help="Image to run (default: the last `notus push` digest).")] = None,
    gpu: Annotated[
        str | None, typer.Option(help="GPU aliases or pools, comma-separated: a100,h100 (default a100).")
    ] = None,
    gpu_count: Annotated[int | None, typer.Option(help="GPUs per worker = tensor parallelism.", min=1, max=8)] = None,
    workers_min: Annotated[int | None, typer.Option(help="Workers always on (0: scale to zero).", min=0)] = None,
    workers_max: Annotated[int | None, typer.Option(help="Most workers at once.", min=1)] = None,
    idle_timeout: Annotated[int | None, typer.Option(help="Seconds an idle worker stays up.", min=1, max=3600)] = None,
    scaler: Annotated[str | None, typer.Option(help="Autoscaler: delay (queue delay) or requests.")] = None,
    scaler_value: Annotated[int | None, typer.Option(help="Seconds of delay, or requests per worker.", min=1)] = None,
    flashboot: Annotated[bool | None, typer.Option("--flashboot/--no-flashboot", help="FlashBoot.")] = None,
    region: Annotated[str | None, typer.Option(help="is (Iceland), eu (Europe) or data-centre ids.")] = None,
    max_model_len: Annotated[int | None, typer.Option(help="Context length (default 32768).", min=256)] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", metavar="K=V", help="Worker env K=V (repeatable; wins).")
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(help="cached (RunPod caches the model at the pinned commit) or baked (default: as built)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    yes: YesOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Create or update the endpoint: prints the plan (diff, fit, cost), asks, then applies only what changed."""
    out = Output(json_mode=json_mode)
    if scaler is not None and scaler not in ("delay", "requests"):
        raise typer.BadParameter(f"'{scaler}': choose delay or requests", param_hint="--scaler")
    settings = load_settings()
    flags = DeployFlags(
        name=name,
        endpoint_type=endpoint_type,
        image=image,
        gpu=gpu,
        gpu_count=gpu_count,
        workers_min=workers_min,
        workers_max=workers_max,
        idle_timeout=idle_timeout,
        scaler=scaler,
        scaler_value=scaler_value,
        flashboot=flashboot,
        region=region,
        max_model_len=max_model_len,
        env=tuple(env or ()),
        weights=weights,
    )
    request = deploy_request(settings, flags)
    if dry_run:
        plan, unchecked = _dry_run_plan(settings, request)
        if json_mode:
            out.json(_plan_json(plan, dry_run=True) | {"unchecked": unchecked})
            return
        _show_plan(out, plan, dry_run=True)
        for line in unchecked:
            out.warn(f"not checked: {line}")
        return
    with control_plane(settings) as control:
        plan = plan_on(control, request)
        if not json_mode:
            _show_plan(out, plan, dry_run=False)
        if plan.changes and not yes and not out.confirm("Apply these changes to RunPod?"):
            _nothing_changed(out)
        result = apply_deploy(plan, control, api_base_url=api_base_url(settings))  # no changes: no mutation
    if json_mode:
        out.json(_plan_json(plan, dry_run=False) | {"deployment": asdict(result.deployment), "done": result.done})
        return
    if not plan.changes:
        return
    for line in result.done:
        out.info(line)
    out.text(result.deployment.endpoint_id)
    out.next_step(f"notus status {request.name}")


def _dry_run_plan(settings: NotusSettings, request: DeployRequest) -> tuple[DeployPlan, list[str]]:
    """The plan, and what it could not check. Only read queries are sent, and only with a key: without
    one, or when RunPod cannot be reached, the plan is made as for a new endpoint and says so."""
    try:
        key = find_api_key(settings).value
    except AuthError:
        reason = "no RunPod API key (set RUNPOD_API_KEY or run `notus login` to compare with what RunPod runs)"
    else:
        try:
            with control_plane(settings, key) as control:
                return plan_on(control, request), []
        except EndpointUnreachable as exc:
            reason = exc.message
    plan = plan_deploy(request, endpoints=[], templates=[])
    unchecked = [f"what RunPod already runs, so this is planned as a new endpoint: {reason}"]
    if plan.endpoint_type == "lb":
        unchecked.append("whether RunPod's schema declares `type`, without which no LB endpoint can be made")
    return plan, unchecked


@app.command("status")
def status(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Deployment or endpoint name (default: the one saved deployment, else notus).", show_default=False
        ),
    ] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Show an endpoint's settings and health: workers, queue, jobs."""
    out = Output(json_mode=json_mode)
    settings = load_settings()
    key = find_api_key(settings).value
    saved = list(load_deployments())
    with control_plane(settings, key) as control:
        report = endpoint_status(
            control,
            name or (saved[0] if len(saved) == 1 else DEFAULT_NAME),
            api_key=key,
            api_base_url=settings.runpod_api_url,
            lb_url_template=lb_template(settings.runpod_api_url, settings),
        )
    _show_status(out, report)


@app.command("endpoints")
def endpoints(json_mode: JsonOpt = False) -> None:
    """List the account's serverless endpoints (and which local deployment each one is)."""
    out = Output(json_mode=json_mode)
    with control_plane(load_settings()) as control:
        listed = list_endpoints(control)
    if json_mode:
        out.json(
            [
                {**item.endpoint.model_dump(), "endpoint_type": item.endpoint.kind, "deployment": item.local_name}
                for item in listed
            ]
        )
        return
    if not listed:
        out.info("This account has no serverless endpoints.")
        out.next_step("notus deploy")
        return
    rows = table("name", "id", "type", "gpus", "workers", "deployment", title="Serverless endpoints", whole=("id",))
    for item in listed:
        e = item.endpoint
        rows.add_row(e.name, e.id, e.kind, e.gpu_ids, f"{e.workers_min}-{e.workers_max}", item.local_name or "-")
    out.result(rows)


@app.command("down")
def down(
    name: Annotated[str, typer.Argument(help="Deployment to remove.")],
    yes: YesOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Scale the endpoint to zero, delete it and its templates, and forget it."""
    out = Output(json_mode=json_mode)
    with control_plane(load_settings()) as control:
        plan = plan_tear_down(control, name)
        if plan.endpoint is not None:
            out.info(f"delete endpoint {plan.endpoint.name} ({plan.endpoint.id}), scaling it to zero first")
        for template in plan.templates:
            out.info(f"delete template {template.name}")
        if not yes and not out.confirm(f"Remove deployment '{name}' from RunPod?"):
            _nothing_changed(out)
        waiting = Latest()
        with out.live(waiting):
            done = tear_down(plan, control, say=_one_progress_line(out, waiting))
    if json_mode:
        out.json({"name": name, "done": done})
        return
    for line in done:
        out.info(line)
    out.info(f"'{name}' is gone")


def _cuda_floor(version: str | None) -> str:
    """The driver floor the endpoint gets, or why it gets none (the image's CUDA was not recorded)."""
    if version:
        return f"CUDA >= {version}"
    return "any CUDA driver (the image's CUDA is unknown: `notus build` records it)"


def _one_progress_line(out: Output, line: Latest) -> Callable[[str], None]:
    """Repeated news (a template still held, with the seconds left) as one line redrawn at a terminal,
    and said once per subject, not at every retry, to a log."""
    told: set[str] = set()

    def say(message: str) -> None:
        line.update(message)
        subject = message.split(";", 1)[0]
        if not out.interactive and subject not in told:
            told.add(subject)
            out.info(message)

    return say


@app.command("gpus")
def gpus(
    max_model_len: Annotated[int, typer.Option(help="Context length to size for.", min=256)] = DEFAULT_MAX_MODEL_LEN,
    gpu_count: Annotated[int, typer.Option(help="GPUs per worker.", min=1, max=8)] = 1,
    json_mode: JsonOpt = False,
) -> None:
    """RunPod's serverless GPU pools: memory, price, and whether Nemotron fits and at what concurrency."""
    out = Output(json_mode=json_mode)
    fits = fit_pools(POOLS, shape=NEMOTRON_3_NANO, gpu_count=gpu_count, max_model_len=max_model_len)
    aliases = {pool.id: [a for a, p in ALIASES.items() if p == pool.id] for pool in POOLS}
    if json_mode:
        out.json(
            [
                {"pool": p.id, "aliases": aliases[p.id], "gpus": p.gpus, "vram_gb": p.vram_gb, "vram_gib": p.vram_gib}
                | {"usd_per_second": p.usd_per_second * gpu_count, "usd_per_hour": p.usd_per_hour * gpu_count}
                | {"verdict": str(f.verdict), "max_sequences": f.max_sequences, "reason": f.reason}
                for p, f in fits
            ]
        )
        return
    title = f"Nemotron-3 Nano at {max_model_len} tokens, {gpu_count} GPU(s) per worker"
    rows = table("pool", "aliases", "VRAM", "$/s", "$/h", "fits", "sequences", title=title, whole=("pool",))
    for pool, fit in fits:
        sequences = str(fit.max_sequences) if fit.verdict is not Verdict.TOO_SMALL else "-"
        rows.add_row(
            pool.id,
            ", ".join(aliases[pool.id]),  # wraps between aliases, never inside one
            f"{pool.vram_gb} GB ({pool.vram_gib:g} GiB)",
            f"{pool.usd_per_second * gpu_count:.5f}",
            f"{pool.usd_per_hour * gpu_count:.2f}",
            str(fit.verdict),
            sequences,
        )
    out.result(rows)


def _nothing_changed(out: Output) -> NoReturn:
    """The person answered no."""
    out.info("Nothing changed.")
    raise typer.Exit(ExitCode.FAILED)


def _show_plan(out: Output, plan: DeployPlan, *, dry_run: bool) -> None:
    low, high = plan.usd_per_hour
    fits = table("pool", "VRAM", "fits", "sequences", "reason", title=f"Fit at {plan.max_model_len} tokens")
    for pool, fit in plan.fits:
        fits.add_row(pool.id, f"{pool.vram_gib:g} GiB", str(fit.verdict), str(fit.max_sequences), fit.reason)
    out.result(fits)
    for note in plan.notes:
        out.warn(note)
    price = f"${low:.2f}" if low == high else f"${low:.2f}-{high:.2f}"
    out.text(f"type {TRADE_OFFS[plan.endpoint_type]}")
    out.text(
        f"{plan.request.name}: {plan.endpoint.gpu_ids} x{plan.request.gpu_count}, workers "
        f"{plan.request.workers_min}-{plan.request.workers_max}, max_model_len {plan.max_model_len}, "
        f"max_num_seqs {plan.max_num_seqs}, disk {plan.template.container_disk_in_gb} GB, "
        f"{_cuda_floor(plan.endpoint.min_cuda_version)}, regions {plan.endpoint.locations or 'any'}"
    )
    out.text(
        f"cost: {price}/hour per running worker (flex rate); at most ${plan.max_usd_per_hour:.2f}/hour at workers-max"
    )
    if plan.request.workers_min:
        always = low * plan.request.workers_min
        out.text(
            f"{plan.request.workers_min} active worker(s) run 24/7: up to ${always:.2f}/hour "
            "(RunPod discounts active workers through its sales team; the flex rate is the ceiling)"
        )
    if not plan.changes:
        out.text("No changes: RunPod already runs this deployment.")
        return
    changes = table("action", "detail", title="Plan" + (" (dry run: nothing is sent)" if dry_run else ""))
    for change in plan.changes:
        changes.add_row(change.action, change.detail)
    out.result(changes)


def _plan_json(plan: DeployPlan, *, dry_run: bool) -> dict[str, Any]:
    return {
        "name": plan.request.name,
        "endpoint_type": plan.endpoint_type,
        "dry_run": dry_run,
        "changes": [asdict(change) for change in plan.changes],
        "template": plan.template.model_dump(),
        "endpoint": plan.endpoint.model_dump(),
        "fits": [{"pool": pool.id, **asdict(fit)} for pool, fit in plan.fits],
        "usd_per_hour": plan.usd_per_hour,
        "max_usd_per_hour": plan.max_usd_per_hour,
    }


def _show_status(out: Output, report: EndpointStatus) -> None:
    e = report.endpoint
    if out.json_mode:
        out.json(
            {
                "endpoint": e.model_dump(),
                "endpoint_type": e.kind,
                "url": report.url,
                "template": report.template.model_dump() if report.template else None,
                "health": asdict(report.health) if report.health else None,
                "health_error": report.health_error,
                "downloading": report.downloading,
                "problems": list(report.problems),
            }
        )
        return
    rows = table("setting", "value", title=f"{e.name} ({e.id})")
    image = report.template.image_name if report.template else e.template_id
    for key, value in (
        ("type", f"{e.kind}: {report.url}"),
        ("image", image),
        ("gpus", f"{e.gpu_ids} x{e.gpu_count}"),
        ("workers", f"min {e.workers_min}, max {e.workers_max}, standby {e.workers_standby} (as RunPod reports it)"),
        ("scaler", f"{e.scaler_type} {e.scaler_value}, idle timeout {e.idle_timeout} s"),
        ("locations", e.locations or "any"),
        ("flashboot", e.flash_boot_type),
        ("weights", report.weights),
    ):
        rows.add_row(key, value)
    if report.health is not None:
        jobs, workers = report.health.jobs, report.health.workers
        rows.add_row("jobs", ", ".join(f"{k} {v}" for k, v in jobs.items()))
        rows.add_row("workers now", ", ".join(f"{k} {v}" for k, v in workers.items() if v) or "none (scaled to zero)")
        if report.downloading:
            rows.add_row("cached model", report.downloading)
    else:
        rows.add_row("health", f"unavailable: {report.health_error}")
    out.result(rows)
    for problem in report.problems:
        out.warn(problem)
