"""Write and read safetensors files with numpy alone.

The tiny model needs BF16 tensors (the dtype of the real checkpoint) and numpy has no bfloat16,
so we write the format ourselves: an 8-byte little-endian header length, a JSON header that maps
each tensor name to its dtype, shape and byte range, then the raw bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}


def to_bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (nearest, ties to even) and return the raw 16-bit words."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + 0x7FFF
    return ((bits + rounding) >> 16).astype(np.uint16)


def write_safetensors(
    path: Path, tensors: Mapping[str, np.ndarray], *, bfloat16: bool, metadata: dict[str, str]
) -> None:
    """Write `tensors` to `path`; float tensors are stored as BF16 when `bfloat16` is set."""
    header: dict[str, object] = {"__metadata__": dict(metadata)}
    blobs: list[bytes] = []
    offset = 0
    for name, array in tensors.items():
        if bfloat16:
            dtype, blob = "BF16", to_bfloat16_bits(array).tobytes()
        else:
            dtype, blob = _DTYPES[array.dtype], np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format asks for an 8-byte aligned data section
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for blob in blobs:
            out.write(blob)


def read_safetensors_header(path: Path) -> dict[str, dict[str, object]]:
    """Return the tensor table of a safetensors file without reading its data.

    Raises ValueError when the file is too short or its header is not valid JSON.
    """
    with path.open("rb") as src:
        raw_len = src.read(8)
        if len(raw_len) != 8:
            raise ValueError(f"{path.name} is too short to be a safetensors file")
        (length,) = struct.unpack("<Q", raw_len)
        if length > 100 * 1024 * 1024:
            raise ValueError(f"{path.name} declares an implausible header of {length} bytes")
        raw = src.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name} has a header that is not JSON") from exc
    header.pop("__metadata__", None)
    return dict(header)
