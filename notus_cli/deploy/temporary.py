"""A deployment that lives for one `with` block (`notus bench --deploy` measures one, then it is gone).

It is created as `notus deploy` creates any (plan_on, apply_deploy: so it is recorded locally,
and `notus down NAME` can still remove it should this process die), and removed as `notus down`
removes one, whatever ends the block: an error, a creation that failed halfway (a template made,
the endpoint not), or Ctrl-C, which is held back while the removal runs. Callers give it a name
of its own (e.g. with a random part), so every endpoint by that name is the block's: one a
retried request created twice goes too.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pydantic import SecretStr

from notus_cli.deploy.apply import apply_deploy, tear_down, what_to_remove
from notus_cli.deploy.plan import plan_on
from notus_cli.deploy.request import DeployFlags, api_base_url, control_plane, deploy_request
from notus_cli.deployments import Deployment
from notus_cli.errors import NotusError, RunPodError
from notus_cli.runpod.control import ControlPlane
from notus_cli.settings import NotusSettings

MAX_TWINS = 5  # endpoints by one name removed at most; more means something else is creating them


@contextmanager
def temporary_deployment(
    settings: NotusSettings, flags: DeployFlags, *, key: SecretStr, say: Callable[[str], None]
) -> Iterator[Deployment]:
    """Deploy `flags` (its name must be new), yield the deployment, then remove it (module docstring).

    Raises ConfigError before anything is created (bad flags, a GPU the model does not fit), and
    RunPodError naming `notus down NAME` if the removal itself fails.
    """
    request = deploy_request(settings, flags)
    with control_plane(settings, key) as control:
        plan = plan_on(control, request)
        try:
            result = apply_deploy(plan, control, api_base_url=api_base_url(settings))
            for line in result.done:
                say(line)
            yield result.deployment
        finally:
            with _interrupts_held():
                for line in _remove(control, request.name, say):
                    say(line)


def _remove(control: ControlPlane, name: str, say: Callable[[str], None]) -> list[str]:
    """Every endpoint called `name`, then its templates and the local record. Raises RunPodError."""
    try:
        done: list[str] = []
        found = what_to_remove(control, name)
        for _ in range(MAX_TWINS):
            if found.endpoint is None:
                break
            done += tear_down(dataclasses.replace(found, templates=(), forgotten=False), control)
            found = what_to_remove(control, name)
        return done + tear_down(found, control, say=say)
    except NotusError as exc:
        raise RunPodError(
            f"the temporary endpoint '{name}' may still exist: {exc.message}",
            hint=f"remove it with `notus down {name}` (see `notus endpoints`)",
        ) from exc


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ignore Ctrl-C while the block runs: stopping the removal halfway would leave a paid endpoint."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
