"""A real Docker engine and registry for tests and benchmarks, private to one run.

`start_dockerd` runs Debian's dockerd on its own socket with its data under a temporary directory
(on ext4: overlay2 cannot stack on overlayfs), no bridge and no iptables, so it touches nothing
else on the machine. `import_base_image` makes a small Debian base (python3, and libnuma for
vLLM's CPU build) with debootstrap, since no registry is reachable; the rootfs tar is cached under
the repository's git-ignored .notus/test-cache so local reruns skip the minute it takes.
`start_registry` serves Debian's docker-registry on loopback, with htpasswd auth.
The packages come from scripts/apt-packages.txt (`scripts/setup --test`); nothing is installed here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx

from testbed.common import ROOT
from testbed.vllm import free_port

BASE_IMAGE = "notus-test/base:bookworm"
BASE_PACKAGES = ("python3", "libnuma1")
BASE_CACHE = ROOT / ".notus" / "test-cache" / f"base-bookworm-{'-'.join(BASE_PACKAGES)}.tar"
DEBIAN_MIRROR = "http://deb.debian.org/debian"


@dataclass
class Dockerd:
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def host(self) -> str:
        return f"unix://{self.root}/docker.sock"

    def client(self) -> docker.APIClient:
        return docker.APIClient(base_url=self.host, version="auto", timeout=600)

    def stop(self) -> None:
        """SIGTERM (dockerd then stops its containerd), then unmount what it left under its root."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for mountpoint in sorted((m for m in mounts if m.startswith(str(self.root))), reverse=True):
            subprocess.run(["umount", "-l", mountpoint], check=False, capture_output=True)


def start_dockerd(root: Path, *, timeout: float = 120) -> Dockerd:
    """Start dockerd under `root` and wait until it answers; raises RuntimeError with its log if it does not."""
    binary = shutil.which("dockerd")
    if binary is None:
        raise RuntimeError("dockerd is not installed: run scripts/setup --test (it installs docker.io)")
    root.mkdir(parents=True, exist_ok=True)
    command = [
        binary, "--storage-driver=overlay2", "--iptables=false", "--ip6tables=false", "--bridge=none",
        f"--host=unix://{root}/docker.sock", f"--data-root={root}/data", f"--exec-root={root}/exec",
        f"--pidfile={root}/docker.pid", "--log-level=warn",
    ]  # fmt: skip
    with (root / "dockerd.log").open("wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    daemon = Dockerd(root=root, process=process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log_tail = (root / "dockerd.log").read_text()[-2000:]
            raise RuntimeError(f"dockerd exited with {process.returncode}: {log_tail}")
        if _listening(root / "docker.sock"):
            with daemon.client() as client:
                client.ping()
            return daemon
        time.sleep(0.2)
    daemon.stop()
    raise RuntimeError(f"dockerd did not answer within {timeout} s; see {root / 'dockerd.log'}")


def _listening(path: Path) -> bool:
    """Probe the socket ourselves: a failed docker-py connect leaves an unclosed socket behind."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def import_base_image(api: docker.APIClient, work: Path) -> str:
    """Import a minimal Debian with python3 as BASE_IMAGE (debootstrap once, then from the cached tar)."""
    if not BASE_CACHE.exists():
        rootfs = work / "rootfs"
        command = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", "bookworm"]
        result = subprocess.run([*command, str(rootfs), DEBIAN_MIRROR], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap failed: {result.stdout[-1500:]}{result.stderr[-1500:]}")
        junk_dirs = (
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/locale",
        )
        for junk in junk_dirs:
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        BASE_CACHE.parent.mkdir(parents=True, exist_ok=True)
        partial = BASE_CACHE.with_suffix(f".{os.getpid()}.partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(rootfs, arcname=".")
        partial.replace(BASE_CACHE)
        shutil.rmtree(rootfs, ignore_errors=True)
    repository, tag = BASE_IMAGE.split(":")
    with BASE_CACHE.open("rb") as src:
        api.import_image(src=src, repository=repository, tag=tag)
    return BASE_IMAGE


@dataclass
class Registry:
    process: subprocess.Popen[bytes]
    address: str  # host:port
    username: str
    password: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_registry(root: Path, *, username: str = "notus", password: str = "registry-secret-7f3a") -> Registry:
    """Debian's docker-registry (distribution 2.8) on 127.0.0.1 with one htpasswd user.

    Loopback registries count as insecure by default in dockerd, so plain HTTP works without TLS.
    """
    import bcrypt  # test-only: htpasswd needs bcrypt hashes (installed with the worker's dependencies)

    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed: run scripts/setup --test")
    root.mkdir(parents=True, exist_ok=True)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    (root / "htpasswd").write_text(f"{username}:{hashed}\n")
    port = free_port()
    (root / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}/data\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: notus-test-only\n"
        f"auth:\n  htpasswd:\n    realm: notus-test\n    path: {root}/htpasswd\n"
    )
    with (root / "registry.log").open("wb") as log:
        process = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    registry = Registry(process=process, address=f"127.0.0.1:{port}", username=username, password=password)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {(root / 'registry.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://{registry.address}/v2/", timeout=2).status_code in (200, 401):
                return registry
        except httpx.HTTPError:
            time.sleep(0.2)
    registry.stop()
    raise RuntimeError("docker-registry did not answer within 60 s")
