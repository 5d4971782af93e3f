"""Encode a whole shard in zarr v3's ``sharding_indexed`` layout, on the writer's hot path.

Why not ``zarr.Array.__setitem__``: the pyramid writer always writes whole shards, so it can
encode each in one pass (gather, compress, checksum, index) and store it with one ``set``,
without zarr's per-chunk asynchronous pipeline (``docs/benchmarks.md`` compares the two).
zarr still creates the arrays and writes their metadata, and zarr, tensorstore and every
other reader decode the result. The tests check that the bytes
are identical to what zarr writes for the same data.

The codec chain (it must match :func:`sharding_codecs`, which the writer gives zarr):

- each inner chunk, placed in compressed Morton order (the order zarr writes and
  neuroglancer's precomputed format defines, so neighbouring chunks sit close together):
  raw bytes (little-endian, C order; partial edge chunks padded with the fill value), then
  zstd (for levels the plan compresses), then a CRC32C of the stored bytes (4 bytes,
  little-endian);
- chunks that lie wholly outside the array are absent: offset and length 2**64 - 1;
- the index: ``(offset, length)`` as little-endian uint64 per chunk, then its CRC32C, at the
  end of the shard.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Final

import google_crc32c
import numpy as np
import numpy.typing as npt
from numcodecs import Zstd
from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec

__all__ = [
    "parts_fingerprint",
    "shard_fingerprint",
    "ABSENT",
    "CRC_BYTES",
    "crc32c_bytes",
    "encode_shard",
    "morton_order",
    "sharding_codecs",
]

ABSENT: Final = 2**64 - 1
"""The offset and length a shard index gives a chunk it does not hold."""
CRC_BYTES: Final = 4


def sharding_codecs(compression_level: int | None) -> dict[str, Any]:
    """The zarr ``create_array`` arguments that describe what :func:`encode_shard` writes.

    ``compression_level`` None describes uncompressed chunks (still checksummed).
    """
    compressors: list[Any] = [Crc32cCodec()]
    if compression_level is not None:
        compressors.insert(0, ZstdCodec(level=compression_level, checksum=False))
    return {"serializer": BytesCodec(endian="little"), "compressors": compressors}


def morton_order(grid: Sequence[int]) -> list[tuple[int, ...]]:
    """Every position of ``grid`` sorted by its compressed Morton code.

    The code interleaves the positions' bits from the least significant up, axis 0 first at
    each bit; an axis stops contributing once its own bits are used up.
    """
    bits = [(n - 1).bit_length() for n in grid]

    def code(position: tuple[int, ...]) -> int:
        value, shift = 0, 0
        for bit in range(max(bits, default=0)):
            for axis, width in enumerate(bits):
                if bit < width:
                    value |= ((position[axis] >> bit) & 1) << shift
                    shift += 1
        return value

    return sorted((tuple(int(i) for i in p) for p in np.ndindex(*grid)), key=code)


def crc32c_bytes(data: bytes | memoryview) -> bytes:
    """The CRC32C of ``data`` as zarr's ``crc32c`` codec stores it (4 bytes, little-endian)."""
    if not isinstance(data, bytes):
        # google_crc32c refuses a memoryview but takes an array over it, without a copy.
        data = np.frombuffer(data, dtype=np.uint8)  # type: ignore[assignment]
    return struct.pack("<I", google_crc32c.value(data))


def copy_rows(target: npt.NDArray[Any], source: npt.NDArray[Any]) -> None:
    """Copy ``source`` into ``target`` (same shape), a whole innermost row at a time.

    numpy copies a strided block element by element; seen as one record per row, each row is
    a single ``memcpy``. Gathering a 64³ chunk of uint8 out of its shard this way took a third
    of the time. Falls back to an ordinary copy where a row is not contiguous on both sides or
    the element types differ (byte order included).
    """
    if (
        target.dtype == source.dtype
        and target.ndim > 0
        and target.shape[-1] > 1
        and target.strides[-1] == source.strides[-1] == target.itemsize
    ):
        row = np.dtype((np.void, target.shape[-1] * target.itemsize))
        target, source = target.view(row), source.view(row)
    np.copyto(target, source)


def encode_shard(
    data: npt.NDArray[Any],
    chunks: Sequence[int],
    shard: Sequence[int],
    compression_level: int | None,
    fill_value: int | float = 0,
) -> list[bytes]:
    """Encode one shard's data as the parts of its stored object, in order.

    The stored object is the parts' concatenation; they are returned apart so that a local
    store can write them without first copying them into one buffer.

    Parameters
    ----------
    data
        The shard's voxels; smaller than ``shard`` along an axis where the shard overhangs the
        array's end.
    chunks, shard
        Inner chunk shape and shard shape (a whole number of chunks).
    compression_level
        zstd level, or None to store the chunks' raw bytes.
    fill_value
        Pads partial edge chunks, as zarr does.
    """
    codec = None if compression_level is None else Zstd(level=compression_level, checksum=False)
    little = data.dtype.newbyteorder("<") if data.dtype.itemsize > 1 else data.dtype
    grid = [s // c for s, c in zip(shard, chunks, strict=True)]
    index = np.full((*grid, 2), ABSENT, dtype="<u8")
    # One buffer for every chunk of the shard: a fresh array per chunk costs the kernel's
    # zero-filled pages each time, about as long as the copy itself.
    gathered = np.empty(tuple(chunks), dtype=little)
    parts: list[bytes] = []
    offset = 0
    for position in morton_order(grid):
        start = [p * c for p, c in zip(position, chunks, strict=True)]
        if any(s >= n for s, n in zip(start, data.shape, strict=True)):
            continue  # wholly outside the array: zarr stores no chunk here
        region = tuple(
            slice(s, min(s + c, n)) for s, c, n in zip(start, chunks, data.shape, strict=True)
        )
        block = data[region]
        if block.shape != tuple(chunks):
            gathered.fill(fill_value)
            copy_rows(gathered[tuple(slice(0, n) for n in block.shape)], block)
        else:
            copy_rows(gathered, block)
        stored = gathered.tobytes() if codec is None else codec.encode(gathered)
        # Kept as two parts, joined once below: concatenating here would copy every chunk.
        parts += (stored, crc32c_bytes(stored))
        index[position] = (offset, len(stored) + CRC_BYTES)
        offset += len(stored) + CRC_BYTES
    index_bytes = index.tobytes()
    parts += (index_bytes, crc32c_bytes(index_bytes))
    return parts


def shard_fingerprint(tail: bytes) -> bytes:
    """A shard's fingerprint from its last ``index_nbytes + 4`` bytes: 8 bytes.

    They are the CRC32C of its last stored chunk (which ends just before the index) and the
    CRC32C of its index. The index lists every chunk's offset and length, and the last chunk's
    CRC follows its content, so two shards share a fingerprint only if their chunks have the
    same sizes and their last chunks the same bytes: enough to catch a shard stored under the
    wrong key, or taken from another image, from one read that fetches the index anyway.
    """
    return tail[:4] + tail[-4:]


def parts_fingerprint(parts: Sequence[bytes]) -> bytes:
    """The fingerprint of a shard encoded by :func:`encode_shard`, from its parts."""
    # Parts end with the last chunk's CRC, the index and the index's CRC.
    return parts[-3] + parts[-1]
