"""RunPod's cached models, emulated: an endpoint's model reference is "downloaded" before its workers start.

What RunPod does (runpod/docs serverless/endpoints/model-caching.mdx; serverless/workers/overview.mdx,
"Worker states"): an endpoint names one Hugging Face model (`modelReferences`, each
`https://huggingface.co/<org>/<name>:<revision>`, the format of runpodctl's `--model-reference`,
cmd/serverless/create.go); a worker is started on a host that has it, or waits, in the
Initializing state (not billed), while the host downloads it; the model then sits in a Hugging Face
hub cache at /runpod-volume/huggingface-cache/hub/models--<org>--<name>/snapshots/<commit>/, with
refs/<branch> naming the commit. "Each endpoint is currently limited to one cached model at a time."

Here the Hub is a set of local directories (`sources`, model id -> directory; the tiny model in
tests), the host's cache is `root` (a temporary directory laid out like RunPod's), and workers are
pointed at it with NOTUS_MODEL_CACHE. A model with no source is not downloaded: its workers then
start without it and fail, as they would on a cache that lacks it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from graphql import GraphQLError

REFERENCE = re.compile(
    r"https://huggingface\.co/(?P<model>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*):(?P<revision>[\w./-]+)"
)
COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class ModelReference:
    model_id: str
    revision: str

    @classmethod
    def parse(cls, text: str) -> ModelReference:
        """Raises ValueError for anything but https://huggingface.co/<org>/<name>:<revision>."""
        match = REFERENCE.fullmatch(text)
        if match is None:
            raise ValueError(f"modelReferences: {text!r} is not https://huggingface.co/<org>/<model>:<revision>")
        return cls(match["model"], match["revision"])


def check_model_references(references: Iterable[str]) -> None:
    """RunPod's rules for `modelReferences`; raises GraphQLError naming the field."""
    references = list(references)
    if len(references) > 1:
        raise GraphQLError("modelReferences: an endpoint is limited to one cached model at a time")
    for text in references:
        try:
            ModelReference.parse(text)
        except ValueError as exc:
            raise GraphQLError(str(exc)) from None


class CachedModels:
    """The host's model cache (`root`) and where its downloads come from (`sources`). Thread-safe."""

    def __init__(self, root: Path, sources: Mapping[str, Path] | None = None, *, download_delay: float = 0.0) -> None:
        self.root = root
        self.sources = dict(sources or {})
        self.download_delay = download_delay  # seconds a download takes at least, so tests can watch it
        self.downloads = 0
        self._lock = threading.Lock()

    def publish(self, model_id: str, directory: Path) -> None:
        """Make `model_id` downloadable (the emulated Hub serves this directory at any revision)."""
        with self._lock:
            self.sources[model_id] = directory

    def ensure(self, references: Iterable[str]) -> None:
        """Download each referenced model into the cache unless it is there already; blocks."""
        for text in references:
            reference = ModelReference.parse(text)
            with self._lock:
                source = self.sources.get(reference.model_id)
                if source is not None:
                    self._download(reference, source)

    def _download(self, reference: ModelReference, source: Path) -> None:
        repo = self.root / ("models--" + reference.model_id.replace("/", "--"))
        commit = reference.revision if COMMIT.fullmatch(reference.revision) else _commit_of(source)
        snapshot = repo / "snapshots" / commit
        if not snapshot.is_dir():
            time.sleep(self.download_delay)
            partial = snapshot.with_name(commit + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            for path in sorted(source.iterdir()):
                if path.is_file():
                    shutil.copyfile(path, partial / path.name)
            os.replace(partial, snapshot)
            self.downloads += 1
        if not COMMIT.fullmatch(reference.revision):  # a branch: refs/<branch> names its commit
            (repo / "refs").mkdir(exist_ok=True)
            (repo / "refs" / reference.revision).write_text(commit)


def _commit_of(directory: Path) -> str:
    """A stand-in commit for a branch of a local directory: a hash of its file names and sizes."""
    listing = sorted((p.name, p.stat().st_size) for p in directory.iterdir() if p.is_file())
    return hashlib.sha1(repr(listing).encode()).hexdigest()
