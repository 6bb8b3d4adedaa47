"""`notus chat`: talk to a deployment, a RunPod endpoint, the local `notus serve`, or any OpenAI server."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from notus_cli.errors import ConfigError, ExitCode
from notus_cli.options import JsonOpt
from notus_cli.output import Output
from notus_cli.settings import load_settings


def chat(
    name: Annotated[str | None, typer.Argument(help="A deployment's name (from `notus deploy`).")] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", metavar="ID", help="A RunPod endpoint id (key: RUNPOD_API_KEY).")
    ] = None,
    local: Annotated[
        bool, typer.Option("--local", help="The running `notus serve` (the default if none given).")
    ] = False,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            metavar="URL",
            help="An OpenAI-compatible server, e.g. http://127.0.0.1:8000 (key: OPENAI_API_KEY).",
        ),
    ] = None,
    once: Annotated[
        str | None, typer.Option("--once", metavar="QUESTION", help="Ask this one question, print the answer, exit.")
    ] = None,
    persona: Annotated[
        str | None,
        typer.Option("--persona", metavar="NAME|FILE", help="A persona name (e.g. counselor) or a .toml/.txt file."),
    ] = None,
    system: Annotated[
        str | None, typer.Option("--system", metavar="PROMPT", help="The system prompt (wins over --persona's).")
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            metavar="PARAM=VALUE",
            help="A sampling setting PARAM=VALUE, e.g. -s temperature=0.2 (repeatable).",
        ),
    ] = None,
    think: Annotated[
        bool | None,
        typer.Option("--think/--no-think", help="Turn Nemotron's reasoning on or off (default: the model's)."),
    ] = None,
    max_context: Annotated[
        int | None,
        typer.Option(
            "--max-context",
            min=16,
            metavar="TOKENS",
            help="The model's context in tokens (default: what the server reports).",
        ),
    ] = None,
    history: Annotated[
        bool, typer.Option("--history/--no-history", help="Keep the input history in the user data dir (0600).")
    ] = True,
    json_mode: JsonOpt = False,
) -> None:
    """Chat with the model: a REPL with streamed Markdown answers, or one answer for scripts.

    Examples:

      notus chat my-endpoint                  # a deployment made by `notus deploy`
      notus chat --local --persona counselor  # the running `notus serve`
      notus chat --base-url http://127.0.0.1:8000
      echo "Hi" | notus chat --local          # prints the answer only
      notus chat --local --once "Hi" --json   # the chat.completion object

    In the REPL, /help lists the commands (/set, /system, /persona, /think, /save, /load, /retry ...).

    --json prints the server's chat.completion: its own id (chatcmpl-... from vLLM, which answers
    Notus's OpenAI route; notus-... from a worker that only takes the native input), the reasoning
    as message.reasoning_content whatever the server called it, and content always a string.
    With no answer text (the model ended inside its reasoning), piped and --once chat say so on
    stderr and exit 4.
    """
    from notus_cli.chat.modes import ChatOptions, answer_once, interactive
    from notus_cli.chat.target_backend import resolve_backend
    from notus_cli.targets import TargetFlags

    piped = not sys.stdin.isatty()
    if json_mode and once is None and not piped:
        raise ConfigError("--json needs a question: --once TEXT or one piped on stdin")
    options = ChatOptions(
        persona=persona,
        system=system,
        settings=list(settings or []),
        thinking=think,
        max_context=max_context,
        history=history,
    )
    out = Output(json_mode=json_mode)
    target = TargetFlags(name=name, endpoint=endpoint, local=local, base_url=base_url)
    backend = resolve_backend(load_settings(), target)
    try:
        if once is not None or piped:
            answer_once(backend, options, once if once is not None else sys.stdin.read(), out)
        else:
            interactive(backend, options, out)
    except KeyboardInterrupt:
        raise typer.Exit(ExitCode.INTERRUPTED) from None
