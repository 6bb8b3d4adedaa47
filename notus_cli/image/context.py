"""A build context streamed to the daemon as a tar, straight from the files where they lie.

The weights are never copied into a temporary folder and never held in memory: the tar headers
are made on the fly and each file is read in 1 MiB chunks as the daemon takes them, so the CLI's
memory stays flat whether the model is 2 MB or 60 GB. The stream's exact size is known up front,
which gives a true progress bar for the upload.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from notus_cli.errors import BuildError
from notus_cli.image.events import Progress, Reporter, ignore

BLOCK = 512
CHUNK = 1 << 20
MTIME = 0  # fixed, so the same files always make byte-identical layers


@dataclass(frozen=True)
class Entry:
    """One file of the context: read from `source`, or small generated `data` (Dockerfile, manifest)."""

    name: str
    size: int
    source: Path | None = None
    data: bytes | None = None
    mode: int = 0o644

    @classmethod
    def file(cls, name: str, source: Path, mode: int = 0o644) -> Entry:
        return cls(name=name, size=source.stat().st_size, source=source, mode=mode)

    @classmethod
    def text(cls, name: str, data: bytes | str) -> Entry:
        raw = data.encode() if isinstance(data, str) else data
        return cls(name=name, size=len(raw), data=raw)


class BuildContext:
    """The files the Dockerfile can COPY, in the order they are sent."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self._headers = [_header(name, size=0, mode=0o755, directory=True) for name in _directories(entries)]
        self._headers += [_header(e.name, size=e.size, mode=e.mode) for e in entries]

    @property
    def size(self) -> int:
        """Bytes on the wire: headers, contents padded to 512-byte blocks, and the two end blocks."""
        return sum(len(h) for h in self._headers) + sum(_padded(e.size) for e in self.entries) + 2 * BLOCK

    def files(self, prefix: str) -> list[Entry]:
        return [e for e in self.entries if e.name.startswith(prefix)]

    def stream(self, report: Reporter = ignore) -> Iterator[bytes]:
        """Yield the tar in chunks of at most 1 MiB; raises BuildError if a file changes while it is sent."""
        total, sent = self.size, 0
        directories = len(self._headers) - len(self.entries)
        for header in self._headers[:directories]:
            sent += len(header)
            yield header
        for header, entry in zip(self._headers[directories:], self.entries, strict=True):
            sent += len(header)
            yield header
            for chunk in _contents(entry):
                sent += len(chunk)
                yield chunk
                report(Progress("sending context", sent, total))
            padding = _padded(entry.size) - entry.size
            if padding:
                sent += padding
                yield b"\0" * padding
        yield b"\0" * (2 * BLOCK)
        report(Progress("sending context", total, total))


def _contents(entry: Entry) -> Iterator[bytes]:
    if entry.data is not None:
        yield entry.data
        return
    assert entry.source is not None
    read = 0
    with entry.source.open("rb") as src:
        while read < entry.size and (chunk := src.read(min(CHUNK, entry.size - read))):
            read += len(chunk)
            yield chunk
    if read != entry.size or entry.source.stat().st_size != entry.size:
        raise BuildError(f"{entry.source} changed while it was being sent", hint="build again once it is complete")


def _header(name: str, *, size: int, mode: int, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = MTIME
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def _directories(entries: list[Entry]) -> list[str]:
    seen: dict[str, None] = {}
    for entry in entries:
        for parent in reversed(PurePosixPath(entry.name).parents):
            if str(parent) != ".":
                seen.setdefault(str(parent), None)
    return list(seen)


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK
