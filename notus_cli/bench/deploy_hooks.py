"""Where `notus bench` meets `notus deploy`: two hooks, to be wired once notus_cli/deploy lands.

- `endpoint_scaler(settings)` for `--force-cold`: scales an endpoint to zero and back (see
  coldstart.EndpointScaler). Through the GraphQL client: saveEndpoint with workersMax 0 (a full
  replace: send the whole current spec), wait, then restore the saved spec.
- `temporary_endpoints(settings)` for `--deploy`: creates an endpoint on a pool, yields its
  TargetSpec, and deletes it (workersMin/Max 0 first) whatever happens.

Until then both raise BenchError with a hint; the cost estimate and the confirmation that
precede `--deploy` already work (`estimate_temporary_run`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from notus_cli.bench.coldstart import EndpointScaler
from notus_cli.bench.endpoints import TargetSpec
from notus_cli.bench.load import LoadPlan
from notus_cli.errors import BenchError
from notus_cli.runpod.gpus import GpuPool
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


def endpoint_scaler(settings: NotusSettings) -> EndpointScaler:
    """HOOK (--force-cold): return the deploy code's scaler. Raises BenchError until it is wired."""
    raise BenchError(
        "--force-cold needs `notus deploy`'s RunPod control-plane client, which this build does not have yet",
        hint="drop --force-cold: --cold-start alone waits until the endpoint's idle timeout scales it to zero",
    )


def temporary_endpoints(settings: NotusSettings) -> TemporaryEndpoints:
    """HOOK (--deploy): return the deploy code's temporary endpoints. Raises BenchError until it is wired."""
    raise BenchError(
        "--deploy needs `notus deploy`, which this build does not have yet",
        hint="deploy an endpoint yourself (notus deploy NAME --gpu GPU), then run notus bench NAME",
    )
