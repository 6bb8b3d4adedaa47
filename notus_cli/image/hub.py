"""Model files from the Hugging Face Hub: a revision resolved to a commit, then only the serving files
downloaded (in parallel, resumable, with progress), checked and hashed as local files are (weights.py).

huggingface_hub's own failures, and its HTTP library's (a connection refused offline), become one
HubUnreachable that names the host and says what to do.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from notus_cli.errors import ModelError
from notus_cli.image.events import Phase, Progress, Reporter, ignore
from notus_cli.image.weights import Weights, is_serving_file, local_weights


class HubUnreachable(ModelError):
    """The Hugging Face Hub could not be reached (offline, DNS, proxy): nothing is known of the model there."""


def hub_errors() -> tuple[type[BaseException], ...]:
    """What the Hub client raises when a request fails: its own HTTP error, OSError, and its HTTP library's
    base error, whose transport errors (ConnectError when offline) are not HfHubHTTPError. The library is
    found through HfHubHTTPError's bases (httpx2 in huggingface_hub 2.x), so no transitive import is named here.
    """
    from huggingface_hub.errors import HfHubHTTPError

    return (HfHubHTTPError, OSError, *HfHubHTTPError.__bases__)


def hub_files(model_id: str, *, revision: str, token: str | None, endpoint: str | None) -> tuple[str, dict[str, Any]]:
    """The commit `revision` resolves to, and the serving files there (name -> the Hub's file metadata).

    Raises ModelError for an unknown repository or revision or refused access, and HubUnreachable
    (a ModelError) when no answer came back.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi(endpoint=endpoint, token=token).model_info(model_id, revision=revision, files_metadata=True)
    except RevisionNotFoundError:
        raise ModelError(f"{model_id} has no revision {revision!r}", hint="use a branch, tag or commit") from None
    except RepositoryNotFoundError:
        raise ModelError(
            f"model {model_id!r} was not found on the Hub (or it is private or gated)",
            hint="check the id; for a gated model accept its licence and set HF_TOKEN",
        ) from None
    except HfHubHTTPError as exc:  # an answer: 401, 403, 5xx
        raise ModelError(f"the Hugging Face Hub did not list {model_id}: {_first_line(exc)}") from None
    except hub_errors() as exc:
        raise _unreachable(exc) from None
    commit = str(info.sha)
    remote = {s.rfilename: s for s in info.siblings or [] if is_serving_file(s.rfilename)}
    if not remote:
        raise ModelError(f"{model_id}@{commit[:12]} has no files a server needs (config, safetensors, tokenizer)")
    return commit, remote


def _unreachable(exc: BaseException) -> HubUnreachable:
    return HubUnreachable(
        f"the Hugging Face Hub could not be reached: {_first_line(exc)}",
        hint="for an air-gapped build pass --model-path",
    )


def download_weights(
    model_id: str,
    *,
    revision: str,
    token: str | None,
    cache_dir: Path,
    endpoint: str | None = None,
    report: Reporter = ignore,
    max_workers: int = 4,
) -> Weights:
    """Fetch the serving files of `model_id` at `revision` into the HF cache (resumable, reused), then check them.

    The token is used here, on this host, and nowhere else. Raises ModelError when the repository
    or revision does not exist, access is refused, or a file does not match the Hub's sha256.
    """
    from huggingface_hub import hf_hub_download  # imported late: it reads HF_* variables on import

    report(Phase(f"resolving {model_id}@{revision} on the Hugging Face Hub"))
    commit, remote = hub_files(model_id, revision=revision, token=token, endpoint=endpoint)
    fetched = _Fetched({name: int(meta.size or 0) for name, meta in remote.items()}, report)
    report(Phase(f"downloading {len(remote)} files of {model_id}@{commit[:12]}"))

    def fetch(name: str) -> Path:
        path = hf_hub_download(
            model_id, name, revision=commit, token=token, endpoint=endpoint, tqdm_class=fetched.bar_for(name)
        )
        fetched.finish(name)
        return Path(str(path))

    try:
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            paths = list(pool.map(fetch, sorted(remote)))
    except hub_errors() as exc:
        raise ModelError(
            f"download of {model_id} failed: {_first_line(exc)}",
            hint="run the same command again: finished files are kept and partial ones resume",
        ) from None
    weights = local_weights(paths[0].parent, model_id=model_id, cache_dir=cache_dir, report=report, revision=commit)
    for file in weights.files:
        lfs = remote[file.name].lfs
        expected = getattr(lfs, "sha256", None) if lfs is not None else None
        if expected and expected != file.sha256:
            raise ModelError(
                f"{file.name} does not match the Hub: sha256 {file.sha256[:16]}… where the Hub says {expected[:16]}…",
                hint=f"delete it from the Hugging Face cache ({file.source}) and build again",
            )
    return weights


class _Fetched:
    """Adds the byte counts of parallel downloads into one progress figure."""

    def __init__(self, sizes: dict[str, int], report: Reporter) -> None:
        self.sizes = sizes
        self.total = sum(sizes.values())
        self.done: dict[str, int] = {}
        self.lock = threading.Lock()
        self.report = report

    def add(self, name: str, count: int, *, absolute: bool = False) -> None:
        with self.lock:
            self.done[name] = count if absolute else self.done.get(name, 0) + count
            done = sum(self.done.values())
        self.report(Progress("downloading", done, self.total))

    def finish(self, name: str) -> None:
        self.add(name, self.sizes[name], absolute=True)  # a file found in the cache reports no bytes

    def bar_for(self, name: str) -> Any:
        fetched = self

        class Bar:
            """What huggingface_hub calls on its tqdm_class: created with totals, updated with byte counts."""

            def __init__(self, *_args: Any, initial: int = 0, **_kwargs: Any) -> None:
                fetched.add(name, initial, absolute=True)

            def __enter__(self) -> Bar:
                return self

            def __exit__(self, *_exc: object) -> None:
                return None

            def update(self, count: int | float | None = 1) -> None:
                fetched.add(name, int(count or 0))

            def close(self) -> None:
                return None

        return Bar


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
