"""`notus build` and `notus push`: bake the model into an image, ship it to a registry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress as RichProgress
from rich.progress import TaskID

from notus_cli.files import project_state_dir
from notus_cli.image.engine import DockerEngine
from notus_cli.image.events import Event, Log, Phase, Progress, Step, Warn
from notus_cli.image.pipeline import BuildRequest, build_image, default_cache_dir, plan_build, push_image
from notus_cli.image_reference import parse_reference
from notus_cli.options import JsonOpt
from notus_cli.output import Output, table
from notus_cli.settings import NotusSettings, load_settings

app = typer.Typer()


@app.command("build")
def build(
    model_path: Annotated[Path | None, typer.Option(help="Bake this local model directory (no download).")] = None,
    model_id: Annotated[str | None, typer.Option(help="Hugging Face model id to download (and to label).")] = None,
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit; resolved to a commit.")] = None,
    image: Annotated[str | None, typer.Option(help="Image name, e.g. 'notus' or 'team/notus'.")] = None,
    tag: Annotated[str | None, typer.Option(help="Image tag (default: latest).")] = None,
    registry: Annotated[
        str | None, typer.Option(help="Registry to tag for: host, port, namespace (ghcr.io/acme).")
    ] = None,
    base_image: Annotated[
        str | None, typer.Option(help="Base image with vLLM (default: vllm/vllm-openai:v0.32.0).")
    ] = None,
    served_model_name: Annotated[
        str | None, typer.Option(help="Model name clients see (default: the model id).")
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            help="cached (no weights in the image; RunPod caches the Hub model) or baked (default: by source)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and Dockerfiles; touch no daemon.")
    ] = False,
    push: Annotated[bool, typer.Option("--push", help="Push the image after a successful build.")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Bake the model into an image: dependencies, then the weights as their own layer, then the worker code."""
    out = Output(json_mode=json_mode)
    flags = dict(model_path=model_path, model_id=model_id, revision=revision, image=image, tag=tag)
    flags |= dict(registry=registry, base_image=base_image, served_model_name=served_model_name, weights=weights)
    settings = load_settings(build={k: v for k, v in flags.items() if v is not None})
    request = BuildRequest(settings.build, default_cache_dir(settings.build), hf_token=settings.hf_token)
    if dry_run:
        _show_plan(out, plan_build(request, _View(out)))
        return
    with _view(out) as view:
        built = build_image(request, DockerEngine(report=view), view)
    if json_mode and not push:
        out.json(asdict(built))
        return
    if not json_mode:
        layers = table("layer", "size", title=f"{built.reference} ({built.image_id[7:19]})")
        for layer in built.layers:
            layers.add_row(layer.instruction[:90], _size(layer.size))
        out.result(layers)
        size = _size(built.size_bytes) if built.size_bytes else "size unknown"
        out.info(f"{built.platform}, CUDA {built.cuda_version or 'unknown'}, {size}")
        out.text(built.reference)
    if push:
        _push(out, settings, built.reference, built=asdict(built))
    else:
        out.next_step(f"notus push {built.reference}")


@app.command("push")
def push(
    image: Annotated[str | None, typer.Argument(help="Image to push (default: the one notus build tags).")] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Push an image with per-layer progress; prints the pushed digest and records it for deploy."""
    out = Output(json_mode=json_mode)
    _push(out, load_settings(), image)


def _push(out: Output, settings: NotusSettings, image: str | None, built: dict[str, Any] | None = None) -> None:
    if image:
        ref = parse_reference(image)
        ref = ref if ref.tag or ref.digest else type(ref)(ref.repository, "latest")
    else:
        ref = BuildRequest(settings.build, Path()).image
    with _view(out) as view:
        pushed = push_image(
            ref, DockerEngine(report=view), settings=settings, state_dir=project_state_dir(), report=view
        )
    if out.json_mode:
        out.json(
            {"build": built, "push": asdict(pushed) | {"reference": pushed.reference}} if built else asdict(pushed)
        )
        return
    out.text(pushed.reference)
    out.info(f"digest {pushed.digest} recorded in {project_state_dir() / 'images.json'} for deploy")


def _show_plan(out: Output, plan: Any) -> None:
    if out.json_mode:
        out.json(asdict(plan))
        return
    layers = table("layer", "expected size", "content", title=f"Plan for {plan.reference}")
    for layer in plan.layers:
        size = "unknown" if layer.size is None and layer.name == "weights" else None
        size = size or ("from the base" if layer.size is None else _size(layer.size))
        layers.add_row(layer.name, size, layer.content)
    out.result(layers)
    labels = table("label", "value", title="Labels")
    for key, value in plan.labels.items():
        labels.add_row(key, value)
    out.result(labels)
    for name, text in plan.dockerfiles.items():
        out.text(f"# --- {name} ---\n{text}")
    for line in plan.unchecked:
        out.warn(f"not checked: {line}")
    out.info("Dry run: no daemon was contacted and nothing was built.")


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


@contextmanager
def _view(out: Output) -> Iterator[_View]:
    with out.progress(transfer=True) as progress:
        yield _View(out, progress)


class _View:
    """Renders build and push events: phases, steps and log lines as text, byte counts as progress bars."""

    FINAL = ("Pushed", "Layer already exists", "Pull complete", "Already exists", "Mounted from")

    def __init__(self, out: Output, progress: RichProgress | None = None) -> None:
        self.out = out
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.shown: dict[str, str] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, Warn):  # on stderr, so shown in --json mode too
            self.out.warn(event.text)
            return
        if self.out.json_mode:
            return
        if isinstance(event, Phase):
            self.out.info(f"[bold]==>[/] {event.text}")
        elif isinstance(event, Step):
            self._line(f"Step {event.number}/{event.total}: {_clip(event.instruction)}")
        elif isinstance(event, Log):
            self._line(f"  {event.text}", style="dim")
        elif isinstance(event, Progress):
            self._bar(event.task, event.task, event.done, event.total)
        elif event.total and self.out.interactive:  # a layer with a byte count: its own bar
            self._bar(event.layer_id, f"{event.layer_id} {event.status}", event.done or 0, event.total)
        elif event.status.startswith(self.FINAL) and self.shown.get(event.layer_id) != event.status:
            self.shown[event.layer_id] = event.status
            self._line(f"  {event.layer_id}: {event.status}")

    def _line(self, text: str, style: str | None = None) -> None:
        self.out.err.print(text, markup=False, highlight=False, style=style)

    def _bar(self, key: str, description: str, done: int, total: int | None) -> None:
        if self.progress is None:
            return
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(description, total=total)
        self.progress.update(self.tasks[key], completed=done, total=total, description=description)


def _clip(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
