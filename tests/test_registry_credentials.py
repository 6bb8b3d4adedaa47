"""Where registry credentials are found (`find_registry_credentials`) and how `notus login --registry` keeps them.

Everything is real: files in the test's own HOME, Docker's config.json as the docker CLI writes it,
a real `docker-credential-*` helper program on PATH, and the `notus` CLI in a subprocess. Only the
registry is absent (the docker tests in tests/image/test_push.py log in to a real one).
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from pydantic import SecretStr

from notus_cli.errors import ConfigError, RegistryError
from notus_cli.files import user_config_dir
from notus_cli.registry_credentials import (
    REGISTRIES_FILE,
    credentials_for_image,
    find_registry_credentials,
    normalize_host,
    store_registry_credentials,
)
from notus_cli.settings import NotusSettings, load_settings
from testbed.common import ROOT, notus_command
from testbed.common import notus as run_notus

PASSWORD = "ghp_registryPasswordThatMustNotLeak77"


def notus(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_notus(*args, stdin=stdin, env=env, timeout=120)


def docker_config(config: dict[str, object]) -> Path:
    path = Path.home() / ".docker" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def auth(username: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real credential helper, `docker-credential-notustest`, on PATH. Like docker's, it reads the
    server on stdin; it answers from its store (a JSON file) and records what it was asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    store = tmp_path / "helper-store.json"
    store.write_text("{}")
    script = bin_dir / "docker-credential-notustest"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"store = json.load(open({str(store)!r}))\n"
        "server = sys.stdin.read()\n"
        f"open({str(tmp_path / 'asked')!r}, 'a').write(sys.argv[1] + ' ' + server + '\\n')\n"
        "if server not in store:\n"
        "    print('credentials not found in native keychain'); sys.exit(1)\n"
        "print(json.dumps({'ServerURL': server, 'Username': store[server][0], 'Secret': store[server][1]}))\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return store


def asked(tmp_path: Path) -> list[str]:
    path = tmp_path / "asked"
    return path.read_text().splitlines() if path.exists() else []


def test_login_stores_credentials_0600_and_never_prints_the_password() -> None:
    """`notus login --registry` with the password on stdin: a 0600 file in a 0700 dir, nothing echoed."""
    result = notus("login", "--registry", "GHCR.io", "--username", "alice", "--password-stdin", "--no-verify",
                   stdin=PASSWORD + "\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    path = user_config_dir() / REGISTRIES_FILE
    assert str(path) in result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    found = find_registry_credentials("ghcr.io", load_settings())
    assert found is not None
    assert (found.host, found.username, found.password.get_secret_value()) == ("ghcr.io", "alice", PASSWORD)
    assert found.source == str(path)
    assert PASSWORD not in repr(found)
    assert PASSWORD not in str(found)


def test_login_prompts_for_the_user_and_hides_the_password() -> None:
    """At a terminal (a pty) it asks; without one it says which flags to pass instead of reading a pipe."""
    program, *arguments = notus_command("login", "--registry", "registry.example.com:5000", "--no-verify")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = pexpect.spawn(program, arguments, env=env, encoding="utf-8", timeout=60)
    child.expect("Username for registry.example.com:5000")
    child.sendline("bob")
    child.expect("Password or token for registry.example.com:5000")
    child.sendline(PASSWORD)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert PASSWORD not in child.before
    piped = notus("login", "--registry", "registry.example.com:5000", "--no-verify", stdin=f"bob\n{PASSWORD}\n")
    assert piped.returncode == 2
    assert "Hint: pass --username USER" in piped.stderr
    found = find_registry_credentials("registry.example.com:5000", load_settings())
    assert found is not None
    assert found.username == "bob"


def test_a_second_login_keeps_the_other_hosts() -> None:
    store_registry_credentials("ghcr.io", "alice", SecretStr("one"))
    store_registry_credentials("quay.io", "carol", SecretStr("two"))
    store_registry_credentials("ghcr.io", "alice2", SecretStr("three"))
    settings = load_settings()
    ghcr, quay = find_registry_credentials("ghcr.io", settings), find_registry_credentials("quay.io", settings)
    assert ghcr is not None
    assert (ghcr.username, ghcr.password.get_secret_value()) == ("alice2", "three")
    assert quay is not None
    assert quay.username == "carol"


@pytest.mark.parametrize(
    ("args", "stdin", "named"),
    [
        (["--registry", "not a host!"], "u\np\n", "--registry 'not a host!' is not a registry host"),
        (["--registry", "ghcr.io", "--username", "a b", "--password-stdin"], "p", "--username"),
        (["--registry", "ghcr.io", "--username", "alice", "--password-stdin"], "\n", "registry password is empty"),
        (["--username", "alice"], "", "--registry"),
    ],
)
def test_bad_login_input_names_the_parameter(args: list[str], stdin: str, named: str) -> None:
    result = notus("login", *args, "--no-verify", stdin=stdin)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert not (user_config_dir() / REGISTRIES_FILE).exists()


def test_settings_win_then_notus_login_then_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented order: settings (notus.toml/env), `notus login`'s file, Docker's store."""
    docker_config({"auths": {"ghcr.io": auth("from-docker", "p3")}})
    store_registry_credentials("ghcr.io", "from-notus-login", SecretStr("p2"))
    monkeypatch.setenv("NOTUS_BUILD__REGISTRY_USERNAME", "from-settings")
    monkeypatch.setenv("NOTUS_BUILD__REGISTRY_PASSWORD", "p1")
    monkeypatch.setenv("NOTUS_BUILD__REGISTRY", "ghcr.io/acme")

    def who() -> str | None:
        found = find_registry_credentials("ghcr.io", load_settings())
        return found.username if found else None

    sources = [who()]
    monkeypatch.delenv("NOTUS_BUILD__REGISTRY_PASSWORD")
    sources.append(who())
    (user_config_dir() / REGISTRIES_FILE).unlink()
    sources.append(who())
    (Path.home() / ".docker" / "config.json").unlink()
    sources.append(who())
    assert sources == ["from-settings", "from-notus-login", "from-docker", None]


def test_settings_credentials_are_for_the_configured_registry_only() -> None:
    settings = NotusSettings(build={"registry": "ghcr.io/acme", "registry_username": "u", "registry_password": "p"})
    assert find_registry_credentials("ghcr.io", settings) is not None
    assert find_registry_credentials("quay.io", settings) is None
    anywhere = NotusSettings(build={"registry_username": "u", "registry_password": "p"})
    assert find_registry_credentials("quay.io", anywhere) is not None


def test_docker_auths_in_docker_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`auths` as `docker login` writes it, in $DOCKER_CONFIG when set; Docker Hub under its v1 URL."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    (directory / "config.json").write_text(
        json.dumps({"auths": {"https://index.docker.io/v1/": auth("hubuser", "hub:pass:word"), "quay.io": {}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    found = credentials_for_image("acme/notus:v1", load_settings())
    assert found is not None
    assert (found.host, found.username, found.password.get_secret_value()) == ("docker.io", "hubuser", "hub:pass:word")
    assert found.source == str(directory / "config.json")
    assert find_registry_credentials("quay.io", load_settings()) is None  # an entry without auth is no credential


def test_cred_helper_for_the_host_is_asked_with_the_host_on_stdin(helper: Path, tmp_path: Path) -> None:
    helper.write_text(json.dumps({"ghcr.io": ["helper-user", PASSWORD]}))
    docker_config({"credHelpers": {"ghcr.io": "notustest"}, "auths": {"ghcr.io": auth("stale", "old")}})
    found = credentials_for_image("ghcr.io/acme/notus@sha256:" + "a" * 64, load_settings())
    assert found is not None
    assert (found.username, found.password.get_secret_value()) == ("helper-user", PASSWORD)
    assert found.source == "docker-credential-notustest"
    assert asked(tmp_path) == ["get ghcr.io"]


def test_creds_store_asks_for_docker_hub_by_its_v1_url_and_falls_back_to_auths(helper: Path, tmp_path: Path) -> None:
    helper.write_text(json.dumps({"https://index.docker.io/v1/": ["hub-helper", "s1"]}))
    docker_config({"credsStore": "notustest", "auths": {"localhost:5000": auth("local", "s2")}})
    settings = load_settings()
    hub = find_registry_credentials("docker.io", settings)
    local = find_registry_credentials("localhost:5000", settings)  # the helper has none: the file's entry
    assert hub is not None
    assert hub.username == "hub-helper"
    assert local is not None
    assert local.username == "local"
    assert asked(tmp_path) == ["get https://index.docker.io/v1/", "get localhost:5000"]


def test_a_missing_or_broken_helper_is_an_error_that_names_it(helper: Path) -> None:
    docker_config({"credHelpers": {"ghcr.io": "nosuchhelper"}})
    with pytest.raises(RegistryError, match="docker-credential-nosuchhelper, which is not on PATH"):
        find_registry_credentials("ghcr.io", load_settings())
    helper.write_text("not json")  # the helper itself now fails
    docker_config({"credHelpers": {"ghcr.io": "notustest"}})
    with pytest.raises(RegistryError, match="docker-credential-notustest get failed"):
        find_registry_credentials("ghcr.io", load_settings())


def test_host_names_are_normalized() -> None:
    assert normalize_host("https://ghcr.io/v2/") == "ghcr.io"
    assert normalize_host("index.docker.io") == "docker.io"
    assert normalize_host("Registry.Example.com:5000") == "registry.example.com:5000"
    with pytest.raises(ConfigError, match="--registry"):
        normalize_host("")
