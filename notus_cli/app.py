"""The `notus` command: wires the command groups and reports errors in one place."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
import typer.main
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer's own Click, not a dependency
from typer.core import TyperGroup

from notus_cli import __version__
from notus_cli.commands import bench, build, chat, deploy, login, model, serve
from notus_cli.errors import ConfigError, ExitCode, NotusError
from notus_cli.help import tidy_help
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
app.add_typer(deploy.app)  # `notus deploy`, `status`, `endpoints`, `down`, `gpus`
app.add_typer(login.app)  # `notus login`
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
    """The `notus` entry point."""
    sys.exit(run(sys.argv[1:]))


def run(args: list[str]) -> int:
    """Run `notus ARGS`; returns the exit code (notus_cli.errors.ExitCode).

    Every failure reaches the user here, in one form: `Error: …` and `Hint: …` on stderr. That holds
    for our own errors (NotusError) and for what the command line parser refuses (an unknown flag,
    a bad value: exit 2), which Typer would otherwise draw in a box of its own. NOTUS_DEBUG=1 lets
    our errors through as tracebacks.
    """
    command = cli()
    try:
        result = command.main(args, prog_name="notus", standalone_mode=False)
    except NotusError as exc:
        if os.environ.get("NOTUS_DEBUG"):
            raise
        Output().error(exc)
        return int(exc.exit_code)
    except NoArgsIsHelpError:
        return ExitCode.USAGE  # the help is already on the screen
    except ClickException as exc:
        context = getattr(exc, "ctx", None)
        hint = f"see `{context.command_path} --help`" if context is not None else "see `notus --help`"
        Output().error(ConfigError(_sentence(exc.format_message()), hint=hint))
        return exc.exit_code
    except typer.Abort:  # end of input at a prompt (Ctrl-D)
        return ExitCode.INTERRUPTED
    return result if isinstance(result, int) else ExitCode.OK


def _sentence(message: str) -> str:
    """The parser's message in our style: no capital after `Error:`, no full stop at the end."""
    message = message.strip().rstrip(".")
    return message[:1].lower() + message[1:] if message[:2] != message[:2].upper() else message


def cli() -> TyperGroup:
    """The Click command behind `app`, its help cleaned up: a value's metavar says what to give
    (NAME, URL, PARAM=VALUE), never a Python type, and a flag shows none."""
    command = typer.main.get_command(app)
    assert isinstance(command, TyperGroup)
    tidy_help(command)
    return command
