"""The Docker Engine, through docker-py's low-level API: connect, pull, probe, build, inspect, push.

Every Docker error becomes a BuildError or RegistryError here and nowhere else. The client is
injected (`DockerEngine(api)`), so tests hand it a real daemon on a private socket.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import requests
from pydantic import SecretStr

from notus_cli.errors import BuildError, RegistryError
from notus_cli.image.base import daemon_platform, emulation_hint, image_platform
from notus_cli.image.context import BuildContext
from notus_cli.image.events import Layer, Log, Phase, Reporter, Step, ignore
from notus_cli.image.wheels import PROBE_CODE, PythonTarget
from notus_cli.image_reference import ImageRef, parse_reference

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_TAIL = 15
# The legacy builder's own notes between steps; RUN output is what a reader wants to see.
_BOOKKEEPING = ("---> ", "Removing intermediate container", "Successfully built", "Successfully tagged")
DAEMON_HINT = "start Docker, or point DOCKER_HOST at a running daemon (e.g. unix:///var/run/docker.sock)"


def connect(timeout: float = 600.0) -> Any:
    """A docker-py APIClient for DOCKER_HOST (or the default socket); raises BuildError if no daemon answers."""
    kwargs = docker.utils.kwargs_from_env()
    where = kwargs.get("base_url") or "unix:///var/run/docker.sock"
    try:
        return docker.APIClient(version="auto", timeout=timeout, **kwargs)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        text = str(exc)
        reason = "nothing is listening there" if "FileNotFoundError" in text or "refused" in text else _short(exc)
        raise BuildError(f"cannot reach the Docker daemon at {where}: {reason}", hint=DAEMON_HINT) from None


@dataclass(frozen=True)
class LayerInfo:
    instruction: str
    size: int
    layer: str  # the image id of that history entry, or "<missing>" for layers from the base


class DockerEngine:
    """The daemon operations notus needs. Without an `api`, it connects on first use, so checks
    that need no daemon (model files, names) fail first and fast."""

    def __init__(self, api: Any = None, report: Reporter = ignore) -> None:
        self._api = api
        self.report = report

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = connect()
        return self._api

    def inspect(self, reference: str) -> dict[str, Any] | None:
        try:
            return dict(self.api.inspect_image(reference))
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code == 404:
                return None
            raise BuildError(f"the Docker daemon failed to inspect {reference}: {_short(exc)}") from None

    def platform(self) -> str:
        """The daemon's own "os/arch": what its RUN steps execute without emulation."""
        try:
            return daemon_platform(dict(self.api.version()))
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise BuildError(f"the Docker daemon did not say its platform: {_short(exc)}", hint=DAEMON_HINT) from None

    def ensure_image(self, reference: str, platform: str | None = None) -> dict[str, Any]:
        """The image, pulled (for `platform`) with per-layer progress if it is not here yet.

        Raises BuildError if it cannot be had.
        """
        found = self.inspect(reference)
        if found is not None:
            return found
        self.report(Phase(f"pulling {reference}"))
        parsed = parse_reference(reference, what="the base image")
        try:
            stream = self.api.pull(
                parsed.repository,
                tag=parsed.digest or parsed.tag or "latest",
                stream=True,
                decode=True,
                platform=platform,
            )
            with _drained(stream) as items:
                for item in items:
                    _raise_stream_error(item, lambda m: BuildError(f"base image {reference} could not be pulled: {m}"))
                    self._layer(item)
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise BuildError(
                f"base image {reference} is not on this daemon and could not be pulled: {_short(exc)}",
                hint="check the name (--base-image), or `docker load` / `docker pull` it first",
            ) from None
        found = self.inspect(reference)
        if found is None:
            raise BuildError(f"base image {reference} is still missing after the pull")
        return found

    def probe_python(self, image: str, python: str) -> PythonTarget:
        """Ask the base image's Python (no network) for its version, C library and machine."""
        self.report(Phase(f"asking {python} in the base image which wheels it takes"))
        config = self.api.create_host_config(network_mode="none")
        try:
            container = self.api.create_container(
                image, command=["-c", PROBE_CODE], entrypoint=[python], host_config=config, network_disabled=True
            )
        except docker.errors.APIError as exc:
            raise BuildError(f"could not start the base image: {_short(exc)}") from None
        try:
            self.api.start(container)
            code = self.api.wait(container, timeout=120).get("StatusCode", 1)
            output = self.api.logs(container, stdout=True, stderr=True).decode(errors="replace")
        except (docker.errors.APIError, requests.RequestException) as exc:
            output, code = _short(exc), -1
        finally:
            self.api.remove_container(container, force=True)
        if "exec format error" in output:
            image_arch = image_platform(self.inspect(image) or {})
            raise BuildError(
                f"the base image ({image_arch}) cannot run on this Docker daemon",
                hint=emulation_hint(image_arch, self.platform()),
            )
        if code == -1:
            raise BuildError(f"{python} in the base image did not answer: {output}")
        if code != 0:
            raise BuildError(
                f"{python} does not run in the base image (exit {code}): {output.strip()[-300:]}",
                hint="set build.base_python (NOTUS_BUILD__BASE_PYTHON) to the Python that has vLLM",
            )
        try:
            return PythonTarget.from_probe(output)
        except (ValueError, KeyError, IndexError):
            raise BuildError(f"unexpected answer from {python} in the base image: {output.strip()[-300:]}") from None

    def build(self, context: BuildContext, tag: str, platform: str | None = None) -> str:
        """Build `context` (its Dockerfile at the root) for `platform` with no network; return the image id.

        Only a successful build is tagged. Raises BuildError naming the failed step and its last lines.
        """
        try:
            stream = self.api.build(
                fileobj=context.stream(self.report),
                custom_context=True,
                tag=tag,
                rm=True,
                forcerm=True,
                pull=False,
                network_mode="none",
                decode=True,
                platform=platform,
            )
            with _drained(stream) as items:
                return self._follow_build(items)
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise BuildError(f"the Docker daemon stopped the build: {_short(exc)}") from None

    def _follow_build(self, stream: Iterator[dict[str, Any]]) -> str:
        step: Step | None = None
        tail: deque[str] = deque(maxlen=_TAIL)
        image_id = None
        for item in stream:
            if "error" in item or "errorDetail" in item:
                message = (item.get("errorDetail") or {}).get("message") or item.get("error") or "unknown error"
                where = f"step {step.number}/{step.total} ({step.instruction})" if step else "the build"
                lines = "\n  ".join(tail) if tail else "(no output)"
                raise BuildError(f"{where} failed: {message.strip()}\n  last lines:\n  {lines}")
            if "aux" in item and isinstance(item["aux"], dict) and "ID" in item["aux"]:
                image_id = str(item["aux"]["ID"])
            for line in str(item.get("stream", "")).splitlines():
                if match := _STEP.match(line):
                    step = Step(int(match[1]), int(match[2]), match[3])
                    self.report(step)
                elif line.strip() == "---> Using cache":
                    self.report(Log("(cached)"))
                elif line.strip() and not line.lstrip().startswith(_BOOKKEEPING):
                    tail.append(line.rstrip())
                    self.report(Log(line.rstrip()))
            if "status" in item:
                self._layer(item)
        if image_id is None:
            raise BuildError("the daemon ended the build without an image id", hint="see the build output above")
        return image_id

    def layers(self, reference: str, *, skip: int = 0) -> list[LayerInfo]:
        """The image's history, oldest first, without the first `skip` entries (the base image's own)."""
        history = list(reversed(self.api.history(reference)))
        return [
            LayerInfo(
                instruction=_instruction(h.get("CreatedBy", "")), size=int(h.get("Size", 0)), layer=h.get("Id", "")
            )
            for h in history[skip:]
        ]

    def history_length(self, reference: str) -> int:
        return len(self.api.history(reference))

    def push(self, ref: ImageRef, auth: dict[str, str] | None) -> str:
        """Push with per-layer progress; return the manifest digest the registry answered with.

        Raises RegistryError (the credentials are never part of the message).
        """
        host = ref.registry or "docker.io"
        hint = f"log in with `notus login --registry {host}` (or `docker login {host}`), or set NOTUS_BUILD__REGISTRY_USERNAME and NOTUS_BUILD__REGISTRY_PASSWORD"  # noqa: E501
        digest = None
        try:
            with _drained(
                self.api.push(ref.repository, tag=ref.tag, stream=True, decode=True, auth_config=auth)
            ) as items:
                for item in items:
                    _raise_stream_error(item, lambda m: RegistryError(f"push of {ref} failed: {m}", hint=hint))
                    aux = item.get("aux")
                    if isinstance(aux, dict) and aux.get("Digest"):
                        digest = str(aux["Digest"])
                    self._layer(item)
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise RegistryError(f"push of {ref} failed: {_short(exc)}", hint=hint) from None
        if digest is None:
            raise RegistryError(f"the registry took {ref} but reported no digest")
        return digest

    def check_login(self, host: str, username: str, password: SecretStr) -> None:
        """Have the daemon log in to `host` (as `docker login` does) without storing anything.

        Raises RegistryError when the registry refuses (the password is never part of the message)
        and BuildError when no daemon answers.
        """
        server = "https://index.docker.io/v1/" if host == "docker.io" else host
        try:
            self.api.login(username, password=password.get_secret_value(), registry=server, reauth=True)
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise RegistryError(
                f"{host} refused the login of {username}: {_short(exc)}",
                hint="check the user and password (a token needs push scope), or skip the check with --no-verify",
            ) from None

    def pull(self, reference: str, auth: dict[str, str] | None = None) -> None:
        repository, _, digest = reference.partition("@")
        try:
            items = self.api.pull(repository, tag=digest or None, stream=True, decode=True, auth_config=auth)
            with _drained(items):
                for item in items:
                    _raise_stream_error(item, lambda m: RegistryError(f"pull of {reference} failed: {m}"))
                    self._layer(item)
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise RegistryError(f"pull of {reference} failed: {_short(exc)}") from None

    def _layer(self, item: dict[str, Any]) -> None:
        layer_id, status = item.get("id"), item.get("status")
        if not layer_id or not status or ":" in str(layer_id):  # "latest: digest: …" lines are not layers
            return
        detail = item.get("progressDetail") or {}
        self.report(Layer(str(layer_id), str(status), detail.get("current"), detail.get("total")))


@contextmanager
def _drained(stream: Iterator[dict[str, Any]]) -> Iterator[Iterator[dict[str, Any]]]:
    """The daemon's messages; if we stop early (an error), the rest is read so the connection goes
    back to the pool instead of leaking (the daemon has finished by then: errors come last)."""
    try:
        yield stream
    finally:
        with suppress(docker.errors.APIError, requests.RequestException):
            for _ in stream:
                pass


def _raise_stream_error(item: dict[str, Any], make: Any) -> None:
    if "error" in item or "errorDetail" in item:
        message = (item.get("errorDetail") or {}).get("message") or item.get("error") or "unknown error"
        raise make(str(message).strip())


def _instruction(created_by: str) -> str:
    text = created_by.replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ").strip()
    text = re.sub(r"(?:file|dir):[0-9a-f]{64} in ", "", text)  # COPY's content hash: noise to a reader
    return re.sub(r"\s+", " ", text)


def _short(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return (str(text).strip().splitlines() or [type(exc).__name__])[-1][:400]
