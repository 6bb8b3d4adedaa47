"""`notus bench --deploy --gpu GPU`: a benchmark of an endpoint that exists only for the run.

It deploys `bench-<pool>-<random>` as `notus deploy` would (the hooks in bench.deploy_hooks), after
showing the cost estimate and asking; the endpoint, its template and its local record are removed
however the run ends, so an error or Ctrl-C never leaves a GPU billing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager

from notus_cli.bench.deploy_hooks import DeployEstimate, estimate_temporary_run, temporary_endpoints
from notus_cli.bench.endpoints import DEFAULT_ROUTE
from notus_cli.bench.load import LoadProgress
from notus_cli.bench.run import BenchOptions, BenchRun, plan_for, run_benchmark
from notus_cli.errors import ConfigError
from notus_cli.runpod.gpus import resolve_pool
from notus_cli.settings import NotusSettings


@dataclasses.dataclass(frozen=True)
class Temporary:
    """How the temporary endpoint is made, and how the run talks to the person who asked for it."""

    gpu: str | None
    say: Callable[[str], None]  # what is created and removed (never a secret)
    warn: Callable[[str], None]
    confirm: Callable[[DeployEstimate], bool]  # False declines; may raise ConfigError (nobody to ask)
    image: str | None = None  # None: as `notus deploy` picks it
    route: str = DEFAULT_ROUTE


def bench_temporary(
    options: BenchOptions,
    settings: NotusSettings,
    temporary: Temporary,
    *,
    progress: LoadProgress | None = None,
    watching: Callable[[], AbstractContextManager[None]] | None = None,
) -> BenchRun | None:
    """Estimate, ask (`temporary.confirm`), deploy, benchmark, remove. None when the person declines.

    `watching` wraps the benchmark itself (a live view), not the deploy around it. Raises ConfigError
    (no --gpu, a bad --route), AuthError (no key) before anything is made, what run_benchmark
    raises, and KeyboardInterrupt after the endpoint is removed (having said so through `warn`).
    """
    if not temporary.gpu:
        raise ConfigError(
            "--deploy needs --gpu GPU, the card to deploy the temporary endpoint on", hint="e.g. --gpu a100"
        )
    pool = resolve_pool(temporary.gpu)
    endpoints = temporary_endpoints(settings, say=temporary.say, image=temporary.image, route=temporary.route)
    estimate = estimate_temporary_run(pool, plan_for(options))
    temporary.say(estimate.sentence())
    if not temporary.confirm(estimate):
        return None
    try:
        with endpoints.create(pool) as spec:
            aimed = dataclasses.replace(options, target=spec)
            if watching is None:
                return run_benchmark(aimed, progress=progress)
            with watching():
                return run_benchmark(aimed, progress=progress)
    except KeyboardInterrupt:
        temporary.warn("interrupted: the temporary endpoint was removed")
        raise
