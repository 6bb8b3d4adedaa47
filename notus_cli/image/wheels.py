"""The worker's Python dependencies, as wheels fetched on this host for the image's Python.

Why wheels on the host: the build runs with no network (`network_mode="none"`; a daemon need not
have a bridge, and nothing in the image should reach the internet while it is made), and it is
reproducible: the same wheels give the same dependency layer, cached by the daemon. The base
image is asked once which Python, C library and machine it has, and pip downloads binary wheels
for exactly that target into a cache keyed by the requirements and the target.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

from packaging.requirements import Requirement

from notus_cli.errors import BuildError
from notus_cli.image.events import Phase, Reporter, ignore

# Run inside the base image (no network) to learn what wheels it can install.
PROBE_CODE = (
    "import json, os, platform, sys; print(json.dumps({"
    "'version': '%d.%d' % sys.version_info[:2], 'executable': sys.executable, 'machine': platform.machine(), "
    "'glibc': (os.confstr('CS_GNU_LIBC_VERSION') or ' ').split(' ')[1] or None}))"
)
_FORMAT = 1  # bump when the download command changes, to invalidate old caches


@dataclass(frozen=True)
class PythonTarget:
    """The interpreter in the base image that runs vLLM (and creates the worker's venv)."""

    version: str  # "3.12"
    executable: str  # "/usr/bin/python3"
    machine: str  # "x86_64"
    glibc: str | None  # "2.35"; None for musl, which has no manylinux wheels

    @classmethod
    def from_probe(cls, output: str) -> PythonTarget:
        data = json.loads(output.strip().splitlines()[-1])
        return cls(version=data["version"], executable=data["executable"], machine=data["machine"], glibc=data["glibc"])

    @property
    def abi(self) -> str:
        return "cp" + self.version.replace(".", "")

    def platforms(self) -> list[str]:
        """Every manylinux tag this glibc accepts (older pips do not expand `manylinux_2_N` by themselves)."""
        if not self.glibc:
            raise BuildError(
                f"the base image's Python has no glibc ({self.machine}); wheels for musl images are not supported",
                hint="use a glibc-based base image such as the vLLM images",
            )
        major, minor = (int(part) for part in self.glibc.split(".")[:2])
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(5, minor + 1)]
        legacy = {"manylinux1": 5, "manylinux2010": 12, "manylinux2014": 17}
        return tags + [f"{name}_{self.machine}" for name, needed in legacy.items() if minor >= needed]


@dataclass(frozen=True)
class Wheels:
    directory: Path
    requirements: tuple[str, ...]
    pip_wheel: str  # the pip wheel that installs the others inside the image (pip runs from its wheel)
    digest: str  # over every wheel's name and bytes: the dependency layer's identity

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.directory.glob("*.whl"))


def worker_requirements() -> tuple[str, ...]:
    """The `worker` extra of the installed notus package: what the container needs besides vLLM."""
    try:
        declared = requires("notus") or []
    except PackageNotFoundError:
        raise BuildError("the notus package metadata is missing", hint="install notus (pip install -e .)") from None
    wanted = []
    for line in declared:
        requirement = Requirement(line)
        if requirement.marker is not None and requirement.marker.evaluate({"extra": "worker"}):
            requirement.marker = None
            wanted.append(str(requirement))
    if not wanted:
        raise BuildError("the notus package declares no `worker` extra", hint="reinstall notus")
    return tuple(sorted(wanted))


def fetch_wheels(
    requirements: tuple[str, ...], target: PythonTarget, *, cache_dir: Path, report: Reporter = ignore
) -> Wheels:
    """Binary wheels for `target`, downloaded once per (requirements, target) and reused after that.

    Raises BuildError with pip's last lines when a wheel cannot be found (e.g. only an sdist exists).
    """
    key = hashlib.sha256(json.dumps([_FORMAT, requirements, asdict(target)]).encode()).hexdigest()[:16]
    directory = cache_dir / "wheels" / f"{target.abi}-{target.machine}-{key}"
    complete = directory / ".complete"
    if not complete.exists():
        report(Phase(f"downloading the worker's dependencies for Python {target.version} ({target.machine})"))
        partial = directory.with_name(directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _pip_download(requirements, target, partial)
        shutil.rmtree(directory, ignore_errors=True)
        partial.rename(directory)
        complete.write_text(_digest(directory))
    pip = sorted(p.name for p in directory.glob("pip-*.whl"))
    if not pip:
        raise BuildError(f"no pip wheel in {directory}", hint=f"delete {directory} and build again")
    return Wheels(directory=directory, requirements=requirements, pip_wheel=pip[-1], digest=complete.read_text())


def _pip_download(requirements: tuple[str, ...], target: PythonTarget, dest: Path) -> None:
    command = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
        "--only-binary=:all:", "--dest", str(dest),
        "--python-version", target.version, "--implementation", "cp",
        "--abi", target.abi, "--abi", "abi3", "--abi", "none",
    ]  # fmt: skip
    for platform in target.platforms():
        command += ["--platform", platform]
    command += [*requirements, "pip"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("WARNING:")]
        raise BuildError(
            "pip could not download the worker's dependencies for the image's Python "
            f"{target.version}:\n  " + "\n  ".join(lines[-8:] or ["(no output)"]),
            hint="check the network to the package index, or pip's configuration",
        )


def _digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for wheel in sorted(directory.glob("*.whl")):
        digest.update(wheel.name.encode() + b"\0")
        with wheel.open("rb") as src:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()
