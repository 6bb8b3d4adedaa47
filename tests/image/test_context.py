"""The build context is a tar made on the fly from files where they lie."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from notus_cli.errors import BuildError
from notus_cli.image.context import CHUNK, BuildContext, Entry
from notus_cli.image.events import Event, Progress


def test_stream_is_a_valid_tar_of_exactly_the_announced_size(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 12_345)
    context = BuildContext(
        [
            Entry.text("Dockerfile", "FROM scratch\n"),
            Entry.file("weights/model/big.bin", big),
            Entry.text("weights/" + "long-name-" * 12 + ".json", b"{}"),
        ]
    )
    events: list[Event] = []
    chunks = list(context.stream(events.append))
    assert max(len(c) for c in chunks) <= CHUNK
    data = b"".join(chunks)
    assert len(data) == context.size
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        assert names[:2] == ["weights", "weights/model"]  # parents before their files
        member = tar.extractfile("weights/model/big.bin")
        assert member is not None
        assert member.read() == big.read_bytes()
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1] == Progress("sending context", context.size, context.size)
    assert [p.done for p in progress] == sorted(p.done for p in progress)


def test_a_file_that_changes_while_it_is_sent_stops_the_build(tmp_path: Path) -> None:
    shard = tmp_path / "shard.bin"
    shard.write_bytes(b"x" * (3 * CHUNK))
    stream = BuildContext([Entry.file("shard.bin", shard)]).stream()
    next(stream)  # header
    next(stream)  # first chunk
    shard.write_bytes(b"x" * CHUNK)  # truncated underneath us
    with pytest.raises(BuildError, match="changed while it was being sent"):
        list(stream)
