"""Where `notus bench` meets `notus deploy`: the cost estimate of `--deploy`, and two adapters.

- `endpoint_scaler(settings)` for `--force-cold` (coldstart.EndpointScaler): saveEndpoint with the
  endpoint's whole current spec but workersMax 0 (it is a full replace), then the saved spec back.
- `temporary_endpoints(settings)` for `--deploy`: a temporary deployment (deploy.temporary) named
  `bench-<pool>-<random>` with at most one worker and none kept warm, as the TargetSpec to bench;
  it is removed however the run ends.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

from pydantic import SecretStr

from notus_cli.bench.coldstart import EndpointScaler
from notus_cli.bench.endpoints import DEFAULT_ROUTE, TargetSpec, check_route, runpod_spec
from notus_cli.bench.load import LoadPlan
from notus_cli.deploy.apply import scaled_to_zero
from notus_cli.deploy.request import DeployFlags, control_plane
from notus_cli.deploy.temporary import temporary_deployment
from notus_cli.errors import BenchError
from notus_cli.runpod.control import EndpointInfo
from notus_cli.runpod.gpus import GpuPool
from notus_cli.runpod_key import find_api_key
from notus_cli.settings import NotusSettings

STARTUP_ALLOWANCE = 600.0  # seconds billed while a new worker pulls the image and loads the weights
LEVEL_ALLOWANCE = 120.0  # seconds per level when --duration does not bound it


class TemporaryEndpoints(Protocol):
    def create(self, pool: GpuPool) -> AbstractContextManager[TargetSpec]:
        """Deploy a temporary endpoint on `pool`; leaving the context deletes it."""
        ...


@dataclass(frozen=True)
class DeployEstimate:
    pool: GpuPool
    seconds: float
    usd: float

    def sentence(self) -> str:
        return (
            f"--deploy creates a temporary endpoint on {self.pool.id} (${self.pool.usd_per_hour:.2f}/h) and deletes it "
            f"after the run: about {self.seconds / 60:.0f} min of one worker, about ${self.usd:.2f} "
            f"(assumes {STARTUP_ALLOWANCE / 60:.0f} min to start, {LEVEL_ALLOWANCE:.0f} s per level unless --duration)"
        )


def estimate_temporary_run(pool: GpuPool, plan: LoadPlan) -> DeployEstimate:
    """A rough upper estimate of what one worker on `pool` costs for this plan (billing is per second)."""
    per_level = plan.duration if plan.duration else LEVEL_ALLOWANCE
    seconds = STARTUP_ALLOWANCE + per_level * len(plan.levels)
    return DeployEstimate(pool, seconds, seconds * pool.usd_per_second)


class ControlPlaneScaler:
    """--force-cold through RunPod's control plane; remembers each endpoint's spec until restored."""

    def __init__(self, settings: NotusSettings, key: SecretStr) -> None:
        self.settings, self.key = settings, key
        self.saved: dict[str, EndpointInfo] = {}

    def scale_to_zero(self, endpoint_id: str) -> None:
        """Raises BenchError when the control plane has no such endpoint, or what the control plane raises."""
        with control_plane(self.settings, self.key) as control:
            endpoint = next((e for e in control.endpoints() if e.id == endpoint_id), None)
            if endpoint is None:
                raise BenchError(
                    f"--force-cold: RunPod's API at {self.settings.runpod_graphql_url} has no endpoint {endpoint_id}",
                    hint="drop --force-cold (and let the idle timeout scale it to zero), or check runpod_graphql_url",
                )
            self.saved.setdefault(endpoint_id, endpoint)  # asked twice: keep the spec from before the first
            control.save_endpoint(scaled_to_zero(endpoint))

    def restore(self, endpoint_id: str) -> None:
        saved = self.saved.pop(endpoint_id, None)
        if saved is not None:
            with control_plane(self.settings, self.key) as control:
                control.save_endpoint(saved)


def endpoint_scaler(settings: NotusSettings) -> EndpointScaler:
    """--force-cold's scaler. Raises AuthError now, before the run, when no API key is found."""
    return ControlPlaneScaler(settings, find_api_key(settings).value)


@dataclass(frozen=True)
class DeployedTemporarily:
    """--deploy's endpoints: the image and deploy settings of `notus deploy`, workers 0 to 1."""

    settings: NotusSettings
    key: SecretStr
    say: Callable[[str], None]  # what was created and removed, for people
    image: str | None = None  # None: as `notus deploy` picks it ([deploy] image, else the last push)
    route: str = DEFAULT_ROUTE

    @contextmanager
    def create(self, pool: GpuPool) -> Iterator[TargetSpec]:
        name = temporary_name(pool)
        flags = DeployFlags(name=name, image=self.image, gpu=pool.id, workers_min=0, workers_max=1)
        with temporary_deployment(self.settings, flags, key=self.key, say=self.say) as deployment:
            source = f"temporary endpoint {name}"
            api_base = self.settings.runpod_api_url
            yield runpod_spec(api_base, deployment.endpoint_id, source, self.key, self.route, gpu=pool.id)


def temporary_name(pool: GpuPool) -> str:
    """`bench-<pool>-<6 hex>`: a valid deployment name no other run picks."""
    return f"bench-{pool.id.lower().replace('_', '-')}-{secrets.token_hex(3)}"


def temporary_endpoints(
    settings: NotusSettings, *, say: Callable[[str], None], image: str | None = None, route: str = DEFAULT_ROUTE
) -> TemporaryEndpoints:
    """--deploy's endpoints. Raises ConfigError (--route) or AuthError (no key) before anything is made."""
    return DeployedTemporarily(settings, find_api_key(settings).value, say, image, check_route(route))
