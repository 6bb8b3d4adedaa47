"""The `notus` entry point: help, version, and how errors reach the user."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from notus_cli import __version__
from notus_cli.app import app
from notus_cli.errors import ConfigError
from notus_cli.settings import load_settings
from testbed.common import notus


def test_version() -> None:
    result = notus("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"notus {__version__}"


EXPECTED_COMMANDS = {
    "serve", "chat", "model", "build", "push", "deploy", "status", "endpoints", "down", "gpus", "login", "bench",
}  # fmt: skip


def test_help_lists_only_working_commands() -> None:
    """Every command --help lists is one the app has, the list is the whole set, and each one runs (--help)."""
    result = notus("--help")
    assert result.returncode == 0
    listed = set(re.findall(r"^│ ([a-z]+) ", result.stdout, flags=re.MULTILINE))
    assert listed == EXPECTED_COMMANDS
    registered = {c.name for c in app.registered_commands} | {g.name or "" for g in app.registered_groups}
    registered |= {c.name for g in app.registered_groups for c in g.typer_instance.registered_commands if not g.name}
    assert listed == registered - {""}
    for command in sorted(listed):
        shown = notus(command, "--help")
        assert shown.returncode == 0, (command, shown.stderr)
        assert "Usage:" in shown.stdout, command


def test_unknown_command_is_a_usage_error() -> None:
    result = notus("frobnicate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_model_tiny_json_output(tmp_path: Path) -> None:
    result = notus("model", "tiny", str(tmp_path / "m"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["path"] == str(tmp_path / "m")
    assert report["pattern"] == "M*M-M*"
    assert report["parameters"] > 0
    assert (tmp_path / "m" / "config.json").exists()


def test_settings_errors_name_the_file_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notus.toml").write_text('vllm_pyhton = "/usr/bin/python3"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "notus.toml: key 'vllm_pyhton'" in caught.value.message
    assert "unknown setting" in caught.value.message
    assert "vllm_python" in caught.value.message


def test_flags_win_over_environment_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notus.toml").write_text('vllm_python = "from-file"\n')
    assert load_settings().vllm_python == "from-file"
    monkeypatch.setenv("NOTUS_VLLM_PYTHON", "from-env")
    assert load_settings().vllm_python == "from-env"
    assert load_settings(vllm_python="from-flag").vllm_python == "from-flag"


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_not_a_real_key_123")
    settings = load_settings()
    assert settings.runpod_api_key is not None
    assert settings.runpod_api_key.get_secret_value() == "rpa_not_a_real_key_123"
    assert "rpa_not_a_real_key_123" not in repr(settings)
