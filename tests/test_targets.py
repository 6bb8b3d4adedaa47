"""The target flags mean the same in `notus chat` and `notus bench`: the same failure gives the same error
and exit code in both (notus_cli.targets reads the flags for both commands).

RunPod's API cannot be reached from here: the emulator on loopback stands in for it (no workers needed,
the key is checked first); an OpenAI-compatible server is the stub in testbed/openai_stub.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from notus_cli.bench.endpoints import resolve_target
from notus_cli.chat.target_backend import resolve_backend
from notus_cli.deployments import Deployment, save_deployment
from notus_cli.errors import AuthError, ConfigError, EndpointUnreachable, NotusError
from notus_cli.settings import load_settings
from notus_cli.targets import TargetFlags
from testbed.common import notus
from testbed.emulator import Harness
from testbed.openai_stub import StubConfig, running_stub

ONCE = ("--once", "hi")


def bench_args(tokenizer: Path) -> tuple[str, ...]:
    return ("--tokenizer", str(tokenizer), "--input-len", "8", "--output-len", "4", "--num-prompts", "1")


@pytest.fixture(scope="module")
def keyed_stub() -> Iterator[str]:
    with running_stub(StubConfig(api_key="sk-right")) as base_url:
        yield base_url


@pytest.mark.parametrize(
    ("flags", "error", "words"),
    [
        (TargetFlags(local=True), EndpointUnreachable, "--local: no `notus serve` is running"),
        (TargetFlags(), ConfigError, "say which endpoint to use"),
        (TargetFlags(name="prod", endpoint="ep1"), ConfigError, "give one target, not NAME and --endpoint"),
        (TargetFlags(name="nobody"), ConfigError, "no deployment named 'nobody'"),
        (TargetFlags(endpoint="ep1"), AuthError, "a RunPod API key is needed"),
        (TargetFlags(base_url="ftp://x"), ConfigError, "--base-url must start with http:// or https://"),
    ],
)
def test_both_commands_read_the_flags_with_the_same_errors(
    flags: TargetFlags, error: type[NotusError], words: str
) -> None:
    settings = load_settings()
    with pytest.raises(error, match=words) as chat:
        resolve_backend(settings, flags)
    with pytest.raises(error, match=words) as bench:
        resolve_target(settings, name=flags.name, endpoint=flags.endpoint, local=flags.local, base_url=flags.base_url)
    assert type(chat.value) is type(bench.value)
    assert chat.value.exit_code == bench.value.exit_code == error.exit_code


def test_local_without_notus_serve_is_exit_3_in_both(tiny_model: Path) -> None:
    chat = notus("chat", "--local", *ONCE)
    bench = notus("bench", "--local", *bench_args(tiny_model))
    for done in (chat, bench):
        assert done.returncode == 3, done.stderr
        assert "Error: --local: no `notus serve` is running" in done.stderr
        assert "Traceback" not in done.stderr


def assert_same_class(chat: tuple[str, ...], bench: tuple[str, ...], env: dict[str, str]) -> None:
    """With NOTUS_DEBUG the error's class is in the traceback: one class for the failure in both commands."""
    for args in (chat, bench):
        done = notus(*args, env={**env, "NOTUS_DEBUG": "1"})
        assert "notus_cli.errors.AuthError: the " in done.stderr, done.stderr[-2000:]


def test_a_key_runpod_refuses_is_the_same_error_in_both(emulator: Harness, tiny_model: Path) -> None:
    endpoint, _pool = emulator.endpoint(0)
    env = {"RUNPOD_ENDPOINT_BASE_URL": f"{emulator.url}/v2", "RUNPOD_API_KEY": "rpa_wrong"}
    chat = notus("chat", "--endpoint", endpoint.id, *ONCE, env=env)
    bench = notus("bench", "--endpoint", endpoint.id, *bench_args(tiny_model), env=env)
    for done in (chat, bench):
        assert done.returncode == 5, done.stderr
        assert "Error: the endpoint rejected the API key (HTTP 401)" in done.stderr
        assert "rpa_wrong" not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
    assert_same_class(
        ("chat", "--endpoint", endpoint.id, *ONCE), ("bench", "--endpoint", endpoint.id, *bench_args(tiny_model)), env
    )


def test_a_key_an_openai_server_refuses_is_the_same_error_in_both(keyed_stub: str, tiny_model: Path) -> None:
    env = {"OPENAI_API_KEY": "sk-wrong"}
    chat = notus("chat", "--base-url", keyed_stub, *ONCE, env=env)
    bench = notus("bench", "--base-url", keyed_stub, *bench_args(tiny_model), env=env)
    for done in (chat, bench):
        assert done.returncode == 5, done.stderr
        assert "Error: the server rejected the API key (HTTP 401)" in done.stderr
        assert "sk-wrong" not in done.stdout + done.stderr
    assert_same_class(
        ("chat", "--base-url", keyed_stub, *ONCE), ("bench", "--base-url", keyed_stub, *bench_args(tiny_model)), env
    )
    accepted = notus("chat", "--base-url", keyed_stub, *ONCE, env={"OPENAI_API_KEY": "sk-right"})
    assert accepted.returncode == 0, accepted.stderr


def test_endpoint_ids_follow_the_runpod_api_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """--endpoint's API base comes from the settings model: NOTUS_RUNPOD_API_URL or the SDK's
    RUNPOD_ENDPOINT_BASE_URL, else RunPod's own."""
    monkeypatch.setenv("RUNPOD_API_KEY", "rp-key")
    assert resolve_target(load_settings(), endpoint="ep1").url == "https://api.runpod.ai/v2"
    monkeypatch.setenv("RUNPOD_ENDPOINT_BASE_URL", "http://127.0.0.1:9/v2")
    assert resolve_target(load_settings(), endpoint="ep1").url == "http://127.0.0.1:9/v2"
    monkeypatch.setenv("NOTUS_RUNPOD_API_URL", "http://127.0.0.1:10/v2")
    assert resolve_target(load_settings(), endpoint="ep1").url == "http://127.0.0.1:10/v2"


def test_a_deployments_gpu_count_reaches_bench_for_its_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """`notus deploy` records the GPUs per worker; bench prices a deployment with them."""
    monkeypatch.setenv("RUNPOD_API_KEY", "rp-key")
    extra = {"gpu_count": "2"}
    save_deployment(Deployment("prod", "ep1", "tpl1", "img@sha256:1", "AMPERE_80", extra=extra))
    spec = resolve_target(load_settings(), name="prod")
    assert (spec.gpu, spec.gpu_count) == ("AMPERE_80", 2)
