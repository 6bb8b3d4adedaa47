"""`/set PARAM VALUE` and `--set PARAM=VALUE`: text to a sampling value, checked with the worker's bounds.

The bounds come from `worker.params`, the one table the worker itself enforces, so a value the REPL
accepts is one the worker accepts, and the error names the same allowed values.
"""

from __future__ import annotations

import json
from typing import Any

from notus_cli.errors import ConfigError
from worker.params import SAMPLING_PARAMS, InvalidRequest, check_param

UNSET = ("default", "none", "unset")


def parse_setting(name: str, text: str, *, max_model_len: int | None = None) -> Any:
    """The value `text` means for parameter `name`, or None for `default` (back to the server's default).

    JSON spelling is understood (`0.5`, `true`, `["a", "b"]`); anything else is taken as a string
    (so `/set stop END` works). Raises ConfigError naming the parameter and its allowed values.
    """
    name = name.strip().replace("-", "_")
    if name not in SAMPLING_PARAMS:
        raise ConfigError(f"unknown parameter '{name}'; allowed: {', '.join(SAMPLING_PARAMS)}")
    text = text.strip()
    if not text:
        raise ConfigError(f"{name}: give a value ({SAMPLING_PARAMS[name].allowed}), or 'default'")
    if text.lower() in UNSET:
        return None
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = text
    if name == "stop" and not isinstance(value, str | list):
        value = text  # `/set stop 42` means the string "42"
    try:
        return check_param(name, value, max_model_len=max_model_len)
    except InvalidRequest as exc:
        raise ConfigError(f"{exc.param}: {exc.message}") from None


def parse_assignment(item: str, *, max_model_len: int | None = None) -> tuple[str, Any]:
    """`PARAM=VALUE` (the --set flag). Raises ConfigError."""
    name, sep, text = item.partition("=")
    if not sep:
        raise ConfigError(
            f"--set takes PARAM=VALUE; got '{item}'", hint=f"PARAM is one of {', '.join(SAMPLING_PARAMS)}"
        )
    return name.strip().replace("-", "_"), parse_setting(name, text, max_model_len=max_model_len)


def checked_params(params: Any, *, source: str) -> dict[str, Any]:
    """A table of sampling settings from a file (a persona, a saved conversation), each within bounds.

    Raises ConfigError naming `source` and the parameter.
    """
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: params must be a table of PARAM = VALUE")
    for name, value in params.items():
        try:
            check_param(name, value)
        except InvalidRequest as exc:
            raise ConfigError(f"{source}: params.{exc.param}: {exc.message}") from None
    return dict(params)
