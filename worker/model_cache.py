"""Find a RunPod cached model on the worker's disk, at exactly the revision that was deployed.

An endpoint with a model reference (`https://huggingface.co/<org>/<name>:<revision>`) has RunPod
download that model before the worker starts, into a Hugging Face hub cache:

    /runpod-volume/huggingface-cache/hub/models--<org>--<name>/refs/<branch>      (a commit)
    /runpod-volume/huggingface-cache/hub/models--<org>--<name>/snapshots/<commit>/ (the files)

(runpod/docs serverless/endpoints/model-caching.mdx, "Where cached models are stored"; runpod's
model-caching tutorial reads refs/main the same way). The worker serves the snapshot of the commit
that `notus deploy` pinned, never "whatever snapshot is there": a cache holding another revision
is a failed start, naming the directory it looked in, rather than an endpoint serving other weights.

This module knows paths only; `worker.settings.resolve_weights` applies it to the settings (settings
import this module, never the other way round).
"""

from __future__ import annotations

import re
from pathlib import Path

RUNPOD_MODEL_CACHE = "/runpod-volume/huggingface-cache/hub"
COMMIT = re.compile(r"[0-9a-f]{40}")
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
# What vLLM and huggingface_hub need to load a local snapshot without ever asking the Hub.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class CachedModelMissing(Exception):
    """The cache lacks the deployed model or revision; the message names the path looked in."""


def repo_dir(cache_root: Path, model_id: str) -> Path:
    """`models--<org>--<name>`: the hub cache's folder for one repository."""
    return cache_root / ("models--" + model_id.replace("/", "--"))


def find_snapshot(cache_root: Path, model_id: str, revision: str) -> Path:
    """The snapshot directory of `model_id` at `revision` (a commit, or a branch named in refs/).

    Raises CachedModelMissing naming the directory it looked in and the snapshots that are there.
    """
    repo = repo_dir(cache_root, model_id)
    commit = revision if COMMIT.fullmatch(revision) else _ref(repo, revision)
    if commit is None:
        raise CachedModelMissing(
            f"cached model {model_id}@{revision} not found: no {repo / 'refs' / revision}{_present(repo)}"
        )
    snapshot = repo / "snapshots" / commit
    if not (snapshot / "config.json").is_file():
        raise CachedModelMissing(
            f"cached model {model_id}@{commit[:12]} not found: looked in {snapshot}{_present(repo)}"
        )
    return snapshot


def _ref(repo: Path, name: str) -> str | None:
    try:
        commit = (repo / "refs" / name).read_text().strip()
    except OSError:
        return None
    return commit if COMMIT.fullmatch(commit) else None


def _present(repo: Path) -> str:
    snapshots = repo / "snapshots"
    names = sorted(p.name[:12] for p in snapshots.iterdir() if p.is_dir()) if snapshots.is_dir() else []
    if names:
        return f" (the cache holds {', '.join(names)}: another revision than the one deployed)"
    return "" if repo.is_dir() else f" (no {repo.name} in {repo.parent}: is the endpoint's model reference set?)"
