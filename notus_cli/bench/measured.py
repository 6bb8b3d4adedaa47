"""What actually served a bench run, and so whether its dollar figures mean anything.

`--gpu a100` says which GPU pool to price the run on; it does not make the server an A100. The run
knows more than the flag: the model id the server reported, the weights the local stack (`notus
serve`'s connection file) or an OpenAI server's /models (vLLM's `root`) says it loaded, and, for a
server on this machine, this machine's NVIDIA GPUs (nvidia-smi). From those:

    toy       the weights have fewer than TOY_PARAMETERS parameters (`notus serve --tiny` has about 2 M),
              or the server is on this machine and this machine has no NVIDIA GPU (a CPU served it)
    priced    a GPU was named, the run is no toy, and what served is that pool: this machine's card is
              one of the pool's, or a deployment runs on the pool; elsewhere bench cannot see the card
              and takes --gpu at its word (the report says so)

Dollar figures are shown and kept only when `priced`; otherwise `why_unpriced` says why.
"""

from __future__ import annotations

import ipaddress
import math
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from notus_cli.model.safetensors_io import read_safetensors_header
from notus_cli.runpod.gpus import GpuPool
from notus_cli.serve.connection import read_connection

TOY_PARAMETERS = 100_000_000  # below this a model is a test model, not one anyone prices serving for
GPU_PROBE_TIMEOUT = 10.0
UNRECORDED = "not recorded"


@dataclass(frozen=True)
class MeasuredOn:
    """What served the run (see the module docstring), as bench.json keeps it under `measured_on`."""

    served_model: str | None  # the model id the server reported
    weights: str | None  # the weights it loaded, where the run could learn them
    parameters: int | None  # counted from those weights' safetensors headers
    hardware: str  # what ran them, in words
    toy: bool
    toy_reason: str | None
    priced: bool  # the dollar figures are those of the measured server
    price_basis: str | None  # why they hold: this machine's card, the deployment's pool, or --gpu taken at its word
    why_unpriced: str | None  # why there are none, when a GPU was named

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasuredOn:
        fields: dict[str, Any] = {name: data.get(name) for name in cls.__dataclass_fields__}
        return cls(**fields)

    @classmethod
    def unrecorded(cls, priced: bool) -> MeasuredOn:
        """A bench.json written before runs said what served them: prices as they were recorded."""
        return cls(None, None, None, UNRECORDED, False, None, priced, UNRECORDED if priced else None, None)

    @property
    def recorded(self) -> bool:
        return self.hardware != UNRECORDED

    def sentence(self) -> str:
        """One line for the report: the model, its weights, the hardware, and toy or not."""
        model = self.served_model or "a model the server did not name"
        weights = f" (weights {self.weights}{_parameters(self.parameters)})" if self.weights else ""
        toy = f". A toy run: {self.toy_reason}" if self.toy else ""
        return f"Measured on: {model}{weights}, {self.hardware}{toy}"


def _parameters(count: int | None) -> str:
    if count is None:
        return ""
    return f", {count / 1e6:.1f} M parameters" if count < 1e9 else f", {count / 1e9:.1f} B parameters"


@dataclass(frozen=True)
class ServerFacts:
    """What a run learnt of its server, gathered by `gather` (tests build it directly)."""

    served_model: str | None
    weights: Path | None  # a directory on this machine, when the server said which
    on_this_machine: bool
    local_gpus: Sequence[str] | None  # this machine's NVIDIA GPU names; None when the server is elsewhere
    deployment: str | None = None  # how the target was named ("deployment prod"), when it runs on a known pool
    deployment_pool: str | None = None  # that pool


def judge(facts: ServerFacts, priced_on: GpuPool | None) -> MeasuredOn:
    """The verdict on a run's server (see the module docstring)."""
    parameters = count_parameters(facts.weights) if facts.weights else None
    reasons = []
    if parameters is not None and parameters < TOY_PARAMETERS:
        size = _parameters(parameters).removeprefix(", ")
        reasons.append(f"the model has {size} (a test model: under {TOY_PARAMETERS / 1e6:g} M)")
    gpus = list(facts.local_gpus or [])
    if facts.on_this_machine:
        hardware = (
            f"this machine ({', '.join(gpus)})" if gpus else "this machine's CPU (nvidia-smi finds no NVIDIA GPU)"
        )
        if not gpus:
            reasons.append("a CPU served it, not a GPU")
    elif facts.deployment_pool:
        hardware = f"RunPod pool {facts.deployment_pool} ({facts.deployment})"
    else:
        hardware = "hardware bench cannot see (a remote server)"
    toy = bool(reasons)
    priced, basis, why = _price(facts, priced_on, gpus, toy, reasons)
    return MeasuredOn(
        served_model=facts.served_model,
        weights=str(facts.weights) if facts.weights else None,
        parameters=parameters,
        hardware=hardware,
        toy=toy,
        toy_reason="; ".join(reasons) or None,
        priced=priced,
        price_basis=basis,
        why_unpriced=why,
    )


def _price(
    facts: ServerFacts, pool: GpuPool | None, gpus: list[str], toy: bool, reasons: list[str]
) -> tuple[bool, str | None, str | None]:
    """(priced, on what basis, or why not)."""
    if pool is None:
        return False, None, None
    if toy:
        return False, None, "; ".join(reasons)
    if facts.on_this_machine:
        cards = {card.id for card in pool.cards}
        mine = [gpu for gpu in gpus if gpu in cards]
        if mine:
            return True, f"this machine's {mine[0]}, a card of {pool.id}", None
        return False, None, f"the server runs on this machine, whose {', '.join(gpus)} is no card of {pool.id}"
    if facts.deployment_pool:
        if facts.deployment_pool == pool.id:
            return True, f"{facts.deployment} runs on {pool.id}", None
        return False, None, f"{facts.deployment} runs on {facts.deployment_pool}, not on {pool.id}"
    return True, "--gpu, as given: bench cannot see the remote server's GPU", None


def count_parameters(directory: Path) -> int | None:
    """Parameters in a model directory's safetensors files (headers only); None if it has none or is unreadable."""
    try:
        files = sorted(directory.glob("*.safetensors"))
        total = 0
        for file in files:
            for tensor in read_safetensors_header(file).values():
                shape: Any = tensor["shape"]
                total += math.prod(int(n) for n in shape)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return total if files else None


def nvidia_gpus(run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> list[str]:
    """This machine's NVIDIA GPU names as nvidia-smi reports them ([] without nvidia-smi or a driver).

    Those are the names RunPod's gpuTypes ids use (runpod/docs references/gpu-types.mdx), e.g.
    "NVIDIA A100-SXM4-80GB", which is how a card is matched to a pool (runpod.gpus.GpuCard.id).
    """
    command = shutil.which("nvidia-smi")
    if command is None:
        return []
    try:
        done = run(
            [command, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=GPU_PROBE_TIMEOUT, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def is_this_machine(url: str) -> bool:
    """A loopback address: the server runs here."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def gather(target: dict[str, Any], server: dict[str, Any], *, deployment_pool: str | None) -> ServerFacts:
    """The facts a finished run has about its server: `target` (TargetSpec.describe()), `server`
    (what the target's prepare and answers recorded) and the deployment's pool, if any."""
    url = str(target.get("base_url", ""))
    here = is_this_machine(url)
    weights = _weights(url, server) if here else None
    return ServerFacts(
        served_model=server.get("model"),
        weights=weights,
        on_this_machine=here,
        local_gpus=nvidia_gpus() if here else None,
        deployment=str(target.get("source")) if deployment_pool else None,
        deployment_pool=deployment_pool,
    )


def _weights(url: str, server: dict[str, Any]) -> Path | None:
    """The weights directory the server on this machine loaded: the local stack's, or vLLM's /models root."""
    connection = read_connection()
    if connection and url.startswith(str(connection.get("api_base", "")).rstrip("/") + "/"):
        model = Path(str(connection.get("model", "")))
        path = model if model.is_absolute() else Path(str(connection.get("project", "."))) / model
        return path if path.is_dir() else None
    root = server.get("root")
    return Path(root) if isinstance(root, str) and Path(root).is_dir() else None
