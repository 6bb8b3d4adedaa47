"""Personas: named system prompts (optionally with sampling settings) a conversation can start from.

A persona is a TOML file (`system = "..."`, optional `description` and `[params]`) or a .txt file
holding only the system prompt. `NAME` is looked up in the user's config dir
(`~/.config/notus/personas/`), then among the examples shipped with Notus; a path to a file works too.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from notus_cli.chat.sampling import checked_params
from notus_cli.errors import ConfigError
from notus_cli.files import user_config_dir

SUFFIXES = (".toml", ".txt")


@dataclass(frozen=True)
class Persona:
    name: str
    system: str
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)


def user_dir() -> Path:
    """Where the user's own personas live."""
    return user_config_dir() / "personas"


def available() -> dict[str, str]:
    """Every persona by name, with its description (the user's own win over the shipped ones)."""
    found: dict[str, str] = {}
    for name, text, suffix in [*_shipped(), *_user()]:
        try:
            found[name] = _parse(name, text, suffix, source=name).description
        except ConfigError as exc:  # one broken file should not hide the others
            found[name] = f"(broken: {exc.message})"
    return dict(sorted(found.items()))


def load_persona(name_or_path: str) -> Persona:
    """Raises ConfigError naming the personas there are when `name_or_path` is none of them."""
    path = Path(name_or_path).expanduser()
    if path.suffix in SUFFIXES and path.is_file():
        return _parse(path.stem, _read(path), path.suffix, source=str(path))
    for name, text, suffix in [*_user(), *_shipped()]:
        if name == name_or_path:
            return _parse(name, text, suffix, source=name)
    known = ", ".join(available()) or "none"
    raise ConfigError(
        f"no persona named '{name_or_path}' (known: {known})",
        hint=f'add {user_dir()}/{name_or_path}.toml with system = "...", or pass a file path',
    )


def _user() -> list[tuple[str, str, str]]:
    folder = user_dir()
    if not folder.is_dir():
        return []
    return [(p.stem, _read(p), p.suffix) for p in sorted(folder.iterdir()) if p.suffix in SUFFIXES and p.is_file()]


def _shipped() -> list[tuple[str, str, str]]:
    folder = resources.files("notus_cli.chat.personas")
    return [
        (Path(entry.name).stem, entry.read_text(), Path(entry.name).suffix)
        for entry in folder.iterdir()
        if Path(entry.name).suffix in SUFFIXES
    ]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read persona {path}: {exc.strerror}") from None


def _parse(name: str, text: str, suffix: str, *, source: str) -> Persona:
    if suffix == ".txt":
        if not text.strip():
            raise ConfigError(f"persona {source} is empty", hint="write the system prompt in it")
        return Persona(name, text.strip())
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"persona {source} is not valid TOML: {exc}") from None
    system = data.get("system")
    if not isinstance(system, str) or not system.strip():
        raise ConfigError(f"persona {source}: `system` must be the system prompt, a non-empty string")
    params = checked_params(data.get("params"), source=f"persona {source}")
    return Persona(name, system.strip(), str(data.get("description") or ""), params)
