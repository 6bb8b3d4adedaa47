"""What build and push report while they run; the command renders these, the library never prints.

Events arrive through a plain callback, from worker threads too (downloads run in parallel), so a
renderer must be thread-safe (rich's Progress is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    """A new stage of the work began (e.g. "hashing model files")."""

    text: str


@dataclass(frozen=True)
class Progress:
    """Bytes done out of a total for one task: a download, the hashing, the context upload, a layer."""

    task: str
    done: int
    total: int | None


@dataclass(frozen=True)
class Step:
    """The builder started Dockerfile step `number` of `total`."""

    number: int
    total: int
    instruction: str


@dataclass(frozen=True)
class Log:
    """One line of build output (a RUN step's output, the builder's own notes)."""

    text: str


@dataclass(frozen=True)
class Layer:
    """A layer's state during a pull or push ("Pushing", "Pushed", "Layer already exists", ...)."""

    layer_id: str
    status: str
    done: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class Warn:
    """Something the build went on without, that the person should know (e.g. the base image's CUDA is unknown)."""

    text: str


Event = Phase | Progress | Step | Log | Layer | Warn
Reporter = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """A reporter for callers that want no progress."""
