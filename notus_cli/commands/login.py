"""`notus login`: a RunPod API key, or a registry's credentials, stored for the user alone (mode 0600)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from pydantic import SecretStr

from notus_cli.deploy.request import verify_api_key
from notus_cli.errors import AuthError, ConfigError
from notus_cli.image.engine import DockerEngine
from notus_cli.output import Output
from notus_cli.registry_credentials import normalize_host, store_registry_credentials
from notus_cli.runpod_key import KEYS_PAGE, store_api_key
from notus_cli.settings import load_settings

app = typer.Typer()


@app.command("login")
def login(
    registry: Annotated[
        str | None,
        typer.Option(help="Log in to this container registry (ghcr.io, docker.io, host:port) instead of RunPod."),
    ] = None,
    username: Annotated[
        str | None, typer.Option("--username", "-u", help="Registry user (prompted for if not given).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the registry password or token from stdin.")
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Check the key with RunPod (the registry: via Docker) first.")
    ] = True,
) -> None:
    """Store a RunPod API key, or a registry's credentials, in your user config dir (mode 0600).

    Secrets are read from a hidden prompt or stdin, never from a flag, and never echoed.
    """
    out = Output()
    if registry is not None:
        _login_registry(out, registry, username, password_stdin=password_stdin, verify=verify)
        return
    if username is not None or password_stdin:
        raise typer.BadParameter("--username and --password-stdin go with --registry HOST", param_hint="--registry")
    if sys.stdin.isatty():
        key = SecretStr(out.ask("RunPod API key", hidden=True, otherwise="").strip())
    else:  # a pipe: `echo $KEY | notus login`; /dev/null gives nothing
        key = SecretStr(sys.stdin.readline().strip())
        if not key.get_secret_value():
            raise ConfigError(
                "no RunPod API key on stdin",
                hint='pipe the key in (echo "$RUNPOD_API_KEY" | notus login), or run it at a terminal to be asked',
            )
    if verify:
        try:
            verify_api_key(load_settings(), key)
        except AuthError:
            raise AuthError(
                "RunPod rejected this API key; nothing was stored",
                hint=f"copy the key again from {KEYS_PAGE} (--no-verify stores it unchecked)",
            ) from None
    path = store_api_key(key)
    out.info(f"key stored in {path} (readable by you only)")
    out.next_step("notus deploy --dry-run")


def _login_registry(out: Output, registry: str, username: str | None, *, password_stdin: bool, verify: bool) -> None:
    host = normalize_host(registry)
    user = username if username is not None else out.ask(f"Username for {host}", otherwise="pass --username USER")
    if password_stdin:
        secret = SecretStr(sys.stdin.read().rstrip("\r\n"))
    else:
        secret = SecretStr(
            out.ask(f"Password or token for {host}", hidden=True, otherwise="pipe it in with --password-stdin")
        )
    if verify:
        DockerEngine().check_login(host, user, secret)
    path = store_registry_credentials(host, user, secret)
    out.info(f"credentials for {host} stored in {path} (readable by you only)")
    out.next_step("notus push")
