"""The model files an image serves: chosen, fetched, checked and hashed before any build starts.

Only what vLLM needs to serve is taken (weights, index, configs, tokenizer, chat template, custom
code), from a local directory (`--model-path`, air-gapped builds) or from the Hugging Face Hub at
a revision resolved to a commit. Either way every shard the index names must be present, every
safetensors file must be whole, config and tokenizer must load, and each file gets a sha256 in a
manifest that goes into the image, so a running endpoint can be traced to its exact weights.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from notus_cli.errors import ModelError
from notus_cli.files import write_atomic
from notus_cli.image.events import Phase, Progress, Reporter, ignore
from notus_cli.model.safetensors_io import read_safetensors_header

# Files vLLM reads to serve a model; everything else in a repository (README, images, original
# checkpoints, other formats) stays out of the image.
SERVING_PATTERNS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "*.tiktoken",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "*.py",
)
INDEX_FILE = "model.safetensors.index.json"
MANIFEST_FORMAT = "notus.weights.v1"
_CHUNK = 4 * 1024 * 1024
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class WeightFile:
    name: str  # relative to the model directory
    source: Path  # where its bytes are read from (symlinks resolved: HF cache snapshots link to blobs)
    size: int
    sha256: str


@dataclass(frozen=True)
class Weights:
    """A checked model directory, ready to be streamed into an image."""

    model_id: str
    revision: str  # a commit for Hub downloads; for local directories the commit if known, else "local"
    directory: Path
    files: tuple[WeightFile, ...]
    manifest: bytes  # the JSON written into the image next to the model

    @property
    def manifest_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def is_serving_file(name: str) -> bool:
    return "/" not in name and any(fnmatch.fnmatchcase(name, pattern) for pattern in SERVING_PATTERNS)


def local_weights(
    directory: Path, *, model_id: str, cache_dir: Path, report: Reporter = ignore, revision: str | None = None
) -> Weights:
    """Check and hash a model directory (files are read in place, never copied).

    Raises ModelError if the directory is missing, or a file the model needs is missing or corrupt.
    """
    names = serving_files(directory)
    check_model_files(directory, names)
    files = hash_files(directory, names, cache_dir=cache_dir, report=report)
    return Weights(
        model_id=model_id,
        revision=revision or _snapshot_commit(directory) or "local",
        directory=directory,
        files=tuple(files),
        manifest=manifest_bytes(files),
    )


def serving_files(directory: Path) -> list[str]:
    """The names of the files in `directory` an image takes; raises ModelError if it is not a directory."""
    if not directory.is_dir():
        raise ModelError(
            f"model directory {directory} does not exist"
            if not directory.exists()
            else f"{directory} is not a directory",
            hint="pass --model-path with a directory that holds config.json, the safetensors files and the tokenizer",
        )
    return sorted(p.name for p in directory.iterdir() if p.is_file() and is_serving_file(p.name))


def check_model_files(directory: Path, names: list[str]) -> None:
    """Fail fast, before any build: config and tokenizer load, every indexed shard exists and is whole."""
    where = f"in {directory}"
    if "config.json" not in names:
        raise ModelError(f"no config.json {where}", hint="point --model-path at a Hugging Face model directory")
    config = _load_json(directory / "config.json")
    if not isinstance(config, dict) or not (config.get("architectures") or config.get("model_type")):
        raise ModelError(f"config.json {where} names no architectures or model_type", hint="is this a model config?")
    shards = [n for n in names if n.endswith(".safetensors")]
    if INDEX_FILE in names:
        index = _load_json(directory / INDEX_FILE)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelError(f"{INDEX_FILE} {where} has no weight_map")
        missing = sorted(set(map(str, weight_map.values())) - set(shards))
        if missing:
            raise ModelError(
                f"{INDEX_FILE} names {len(missing)} shard(s) missing {where}: {', '.join(missing[:5])}",
                hint="download the missing files again (an interrupted download resumes)",
            )
    if not shards:
        raise ModelError(f"no .safetensors weights {where}", hint="only safetensors checkpoints are served")
    for name in shards:
        _check_safetensors(directory / name)
    _check_tokenizer(directory, names)


def _check_safetensors(path: Path) -> None:
    try:
        header = read_safetensors_header(path)
        with path.open("rb") as src:
            header_len = int.from_bytes(src.read(8), "little")
        end = max((int(t["data_offsets"][1]) for t in header.values()), default=0)  # type: ignore[index]
    except (ValueError, KeyError, TypeError, IndexError, OSError) as exc:
        raise ModelError(f"{path.name} is not a readable safetensors file: {exc}", hint="download it again") from None
    expected = 8 + header_len + end
    if path.stat().st_size != expected:
        raise ModelError(
            f"{path.name} is corrupt: {path.stat().st_size} bytes where its header promises {expected}",
            hint="the file is truncated or padded; download it again",
        )


def _check_tokenizer(directory: Path, names: list[str]) -> None:
    if "tokenizer.json" in names:
        try:
            Tokenizer.from_file(str(directory / "tokenizer.json"))
        except Exception as exc:  # the tokenizers library raises plain Exception for a bad file
            raise ModelError(f"tokenizer.json in {directory} does not load: {exc}") from None
    elif not any(n in names for n in ("tokenizer.model", "vocab.json", "vocab.txt")) and not any(
        n.endswith(".tiktoken") for n in names
    ):
        raise ModelError(f"no tokenizer in {directory}", hint="a model needs tokenizer.json (or tokenizer.model)")
    if "tokenizer_config.json" in names:
        _load_json(directory / "tokenizer_config.json")


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path.name} in {path.parent} does not load: {exc}") from None


def _snapshot_commit(directory: Path) -> str | None:
    """The commit of a Hugging Face cache snapshot (…/snapshots/<commit>), so local builds stay traceable."""
    resolved = directory.resolve()
    return resolved.name if resolved.parent.name == "snapshots" and _COMMIT.fullmatch(resolved.name) else None


def manifest_bytes(files: Iterable[WeightFile]) -> bytes:
    """Deterministic JSON (no timestamps), so the same weights always give the same manifest digest."""
    entries = [{"path": f.name, "size": f.size, "sha256": f.sha256} for f in sorted(files, key=lambda f: f.name)]
    return (json.dumps({"format": MANIFEST_FORMAT, "files": entries}, indent=2) + "\n").encode()


# --- image layers: weights in several bounded layers, so a pull runs in parallel ---


@dataclass(frozen=True)
class WeightLayer:
    """One image layer of weights: `weights/<name>/` in the build context, copied to /opt/notus/."""

    name: str
    files: tuple[WeightFile, ...]
    with_manifest: bool = False  # the manifest travels with the first layer (config and tokenizer)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def weight_layers(files: Iterable[WeightFile], *, max_bytes: int) -> list[WeightLayer]:
    """Group the files into layers of at most `max_bytes` each (a bigger shard gets a layer of its own).

    The first layer holds every small file (config, tokenizer, index, custom code) and the
    manifest, so it is the one a pull finishes first; the safetensors shards follow in name order,
    packed whole into the next layers. Docker pulls layers in parallel (3 at a time by default)
    and some registries refuse very large blobs, which one 60 GB layer would be. The grouping
    depends only on the names and sizes, so unchanged weights give the same layers (and cache hits).
    """
    ordered = sorted(files, key=lambda f: f.name)
    small = tuple(f for f in ordered if not f.name.endswith(".safetensors"))
    layers = [WeightLayer("layer-00", small, with_manifest=True)]
    group: list[WeightFile] = []
    for shard in (f for f in ordered if f.name.endswith(".safetensors")):
        if group and sum(f.size for f in group) + shard.size > max_bytes:
            layers.append(WeightLayer(f"layer-{len(layers):02d}", tuple(group)))
            group = []
        group.append(shard)
    if group:
        layers.append(WeightLayer(f"layer-{len(layers):02d}", tuple(group)))
    return layers


# --- hashing, with a stat cache so a rebuild does not re-read gigabytes that did not change ---


def hash_files(directory: Path, names: list[str], *, cache_dir: Path, report: Reporter = ignore) -> list[WeightFile]:
    """sha256 of each file; a file whose size, mtime and inode are unchanged since last time is not re-read."""
    cache = _HashCache(cache_dir / "hashes.json")
    sources = [(name, (directory / name).resolve()) for name in names]
    stats = {name: source.stat() for name, source in sources}
    total = sum(s.st_size for s in stats.values())
    done = 0
    report(Phase(f"hashing {len(names)} model files"))
    files = []
    for name, source in sources:
        stat = stats[name]
        digest = cache.get(source, stat)
        if digest is None:
            digest = _sha256(source, lambda n, base=done: report(Progress("hashing", base + n, total)))
            cache.put(source, stat, digest)
        done += stat.st_size
        report(Progress("hashing", done, total))
        files.append(WeightFile(name=name, source=source, size=stat.st_size, sha256=digest))
    cache.save()
    return files


def _sha256(path: Path, on_bytes: Any) -> str:
    digest = hashlib.sha256()
    read = 0
    with path.open("rb") as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            read += len(chunk)
            on_bytes(read)
    return digest.hexdigest()


class _HashCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.changed = False
        try:
            self.entries: dict[str, list[Any]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def get(self, source: Path, stat: os.stat_result) -> str | None:
        entry = self.entries.get(str(source))
        if entry and entry[:3] == [stat.st_size, stat.st_mtime_ns, stat.st_ino]:
            return str(entry[3])
        return None

    def put(self, source: Path, stat: os.stat_result, digest: str) -> None:
        self.entries[str(source)] = [stat.st_size, stat.st_mtime_ns, stat.st_ino, digest]
        self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        write_atomic(self.path, json.dumps(self.entries))
