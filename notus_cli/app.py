"""The `notus` command: wires the command groups and reports errors in one place."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from notus_cli import __version__
from notus_cli.commands import bench, build, chat, deploy, model, serve
from notus_cli.errors import NotusError
from notus_cli.output import Output

app = typer.Typer(
    name="notus",
    help="Run NVIDIA Nemotron-3 Nano as a private chat service on RunPod Serverless: build, deploy, chat, measure.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
app.add_typer(model.app, name="model")
app.command("serve")(serve.serve)
app.add_typer(build.app)  # `notus build`, `notus push`
app.add_typer(deploy.app)  # `notus deploy`, `status`, `endpoints`, `down`, `gpus`, `login`
app.command("chat")(chat.chat)
app.add_typer(bench.app, name="bench")  # `notus bench [run] [NAME]`, `notus bench compare RUN...`


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"notus {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Notus: your own Nemotron, as a service you control."""


def main() -> None:
    """Entry point: a NotusError becomes `Error:`/`Hint:` on stderr and its exit code (NOTUS_DEBUG=1: traceback)."""
    try:
        app()
    except NotusError as exc:
        if os.environ.get("NOTUS_DEBUG"):
            raise
        Output().error(exc)
        sys.exit(exc.exit_code)
