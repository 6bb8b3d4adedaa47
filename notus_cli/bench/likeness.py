"""Whether two bench runs measured the same thing, so `notus bench compare` can put them side by side.

A comparison is meant to change one thing (the GPU, usually: `compare runs/a100 runs/h100`) and hold
the rest still. What must be held still is what shapes the numbers: the workload (prompt and answer
lengths, dataset, requests per level), the route the requests took (a job's queue and polling vs an
OpenAI stream), the sampling, the model that answered and whether it was a toy (a tiny model, or a
CPU standing in for the GPU). Levels are matched by their load, so they need only overlap.

The endpoint type may differ, as the GPU may: a queue endpoint's OpenAI route beside an LB endpoint's
workers' own OpenAI API is the same request on the two paths RunPod offers, which is what a
comparison of the types is for (the route must still match: jobs are not an OpenAI stream).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from notus_cli.bench.results import BenchRun

Fact = Callable[[BenchRun], Any]


def _workload(key: str) -> Fact:
    return lambda run: run.settings.get("workload", {}).get(key)


def _load(key: str) -> Fact:
    return lambda run: run.settings.get("load", {}).get(key)


def _dataset(run: BenchRun) -> str | None:
    path = run.settings.get("workload", {}).get("path")
    return PurePath(path).name if path else None  # the same file may live in two checkouts


def _burstiness(run: BenchRun) -> float | None:
    """Only an open-loop (--rate) run's arrivals have a burstiness."""
    return _load("burstiness")(run) if any(r.level.rate is not None for r in run.levels) else None


def _toy(run: BenchRun) -> str:
    return "toy" if run.measured_on.toy else "real"


# (what, how to read it): each must be equal in every run compared
MUST_MATCH: tuple[tuple[str, Fact], ...] = (
    ("workload", _workload("kind")),
    ("dataset", _dataset),
    ("input tokens", _workload("input_len")),
    ("output tokens", _workload("output_len")),
    ("length range", _workload("range_ratio")),
    ("ignore EOS", _workload("ignore_eos")),
    ("requests per level", _load("num_prompts")),
    ("seconds per level", _load("duration")),
    ("burstiness", _burstiness),
    ("route", lambda run: run.settings.get("target", {}).get("route")),
    ("temperature", lambda run: run.settings.get("sampling", {}).get("temperature")),
    ("model", lambda run: run.server.get("model")),  # as the server named it
    ("served by", _toy),
)


@dataclass(frozen=True)
class Difference:
    what: str
    values: list[Any]

    def __str__(self) -> str:
        return f"{self.what}: {' vs '.join(_show(value) for value in self.values)}"


def _show(value: Any) -> str:
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def differences(runs: Sequence[BenchRun]) -> list[Difference]:
    """What differs between the runs of what must not (see MUST_MATCH), plus levels with no load in common."""
    found = []
    for what, fact in MUST_MATCH:
        values = [fact(run) for run in runs]
        if any(value != values[0] for value in values[1:]):
            found.append(Difference(what, values))
    labels = [{result.level.label for result in run.levels} for run in runs]
    if labels and not set.intersection(*labels):
        found.append(Difference("load levels", [", ".join(sorted(each)) or "none" for each in labels]))
    return found


def varied(runs: Sequence[BenchRun]) -> list[Difference]:
    """What the comparison is about and may differ: the GPU each run is priced on, what measured it, and
    the endpoint type."""
    gpus = [run.gpu.id if run.gpu else "none" for run in runs]
    hardware = [run.measured_on.hardware for run in runs]
    types = [_endpoint_type(run) for run in runs]
    found = []
    if any(gpu != gpus[0] for gpu in gpus[1:]):
        found.append(Difference("GPU", gpus))
    if any(each != hardware[0] for each in hardware[1:]):
        found.append(Difference("measured on", hardware))
    if any(each != types[0] for each in types[1:]):
        found.append(Difference("endpoint type", types))
    return found


def _endpoint_type(run: BenchRun) -> str:
    """queue or lb; a run recorded before LB endpoints on a RunPod target was a queue's, one of a server
    named by --base-url was no RunPod endpoint."""
    target = run.settings.get("target", {})
    return str(target.get("endpoint_type") or ("no endpoint" if target.get("source") == "--base-url" else "queue"))
