"""How `--help` names what a flag or argument takes: a metavar a person reads, never a Python type.

Typer shows each value's Python type (`<str>`, `<list[Path]>`) and `<bool>` on every flag. Here a
flag shows nothing, a value its declared metavar (`--set PARAM=VALUE`, `--endpoint ID`) or, when
none is declared, Click's word for its type (TEXT, INTEGER, PATH, one of a choice's values).
"""

from __future__ import annotations

from typing import get_args

from typer import Context
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

TYPE_WORDS: dict[object, str] = {int: "INTEGER", float: "NUMBER"}


class _Argument(TyperArgument):
    """An argument whose help names it (NAME) and shows no type beside it."""

    def display_type_rich(self, ctx: object) -> str | None:
        return None


def tidy_help(group: TyperGroup) -> None:
    """Give every option and argument of `group` and its subcommands a readable metavar (in place)."""
    _tidy_params(group)
    for command in group.commands.values():
        if isinstance(command, TyperGroup):
            tidy_help(command)
        elif isinstance(command, TyperCommand):
            _tidy_params(command)


def _tidy_params(command: TyperCommand | TyperGroup) -> None:
    help_option = command.get_help_option(Context(command))  # made once per command, then kept
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if isinstance(param, TyperOption):
            if param.is_flag:
                param.metavar = ""
            elif param.metavar is None:
                param.metavar = metavar_for(param)
        elif isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = (param.name or "value").upper()
            param.__class__ = _Argument  # the same object; only its help changes


def metavar_for(param: TyperOption) -> str:
    """Click's word for what the option takes: a choice's values, PATH, INTEGER, NUMBER or TEXT."""
    described = param.type_descriptor
    if described.choices is not None:
        return "|".join(str(getattr(choice, "value", choice)) for choice in described.choices)
    if described.is_path:
        return "PATH"
    annotation = described.annotation
    if described.is_list:
        (annotation,) = get_args(annotation)
    return TYPE_WORDS.get(annotation, "TEXT")
