"""How a zarr array's chunks are stored, read off its metadata: the direct reader's contract.

:func:`chunk_layout` recognises zarr v3 arrays whose chunks are raw C-order bytes followed by
any of ``zstd``, ``blosc``, ``gzip`` and a final ``crc32c``, one object per chunk or inner
chunks of ``sharding_indexed`` shards, and zarr v2 arrays in C order with at most a
compressor. It returns None for anything else, which zarr then reads itself.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numcodecs
import numpy as np
import zstandard
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, GzipCodec, ShardingCodec, ZstdCodec

from cellvol._codec._shard import CRC_BYTES

__all__ = ["Box", "ChunkLayout", "ZstdDecoder", "chunk_layout", "zstd_decoder"]

# Chunks up to this size decompress faster with a reused zstd context (see zstd_decoder).
_SMALL_CHUNK_BYTES: Final = 512 * 1024

Box = list[tuple[int, int]]
"""A ``[start, stop)`` range of voxel indices per axis."""


@dataclass(frozen=True, slots=True)
class ChunkLayout:
    """How one array's chunks are keyed, encoded and (optionally) grouped into shards.

    Attributes
    ----------
    chunks
        The shape of one decoded chunk (the inner chunk when sharded).
    shards
        The shape of one stored shard object, or None when every chunk is its own object.
    dtype, stored_dtype
        The element type of what zarr returns, and as stored (with its byte order).
    decoders
        numcodecs codecs to undo, outermost first.
    checksum
        Whether each stored chunk ends with a CRC32C of the bytes before it.
    index_checksum, index_at_end
        For shards: whether the index ends with its CRC32C, and where the index sits.
    """

    dtype: np.dtype[Any]
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    stored_dtype: np.dtype[Any]
    fill_value: Any
    decoders: tuple[Any, ...]
    checksum: bool
    index_checksum: bool
    index_at_end: bool
    chunk_key: Callable[[tuple[int, ...]], str]

    @property
    def chunks_per_shard(self) -> tuple[int, ...]:
        """Inner chunks along each axis of a shard (1 each when unsharded)."""
        if self.shards is None:
            return tuple(1 for _ in self.chunks)
        return tuple(s // c for s, c in zip(self.shards, self.chunks, strict=True))

    @property
    def index_nbytes(self) -> int:
        """Bytes of one shard index: 16 per inner chunk, plus its checksum."""
        count = int(np.prod(self.chunks_per_shard))
        return 16 * count + (CRC_BYTES if self.index_checksum else 0)


def chunk_layout(array: Any) -> ChunkLayout | None:
    """Describe how ``array`` (a ``zarr.Array``) stores its chunks.

    Returns None for a layout this module does not read; zarr reads those.
    """
    metadata = array.metadata
    if metadata.zarr_format == 2:
        return _v2_layout(array, metadata)
    grid_shape = getattr(metadata.chunk_grid, "chunk_shape", None)
    if getattr(metadata, "storage_transformers", ()) or grid_shape is None:
        return None  # irregular grids and transformers: zarr reads them
    outer = tuple(int(n) for n in grid_shape)
    codecs = tuple(metadata.codecs)
    dtype = np.dtype(array.dtype)
    if len(codecs) == 1 and isinstance(codecs[0], ShardingCodec):
        sharding = codecs[0]
        inner = tuple(int(n) for n in sharding.chunk_shape)
        chain = _v3_chain(tuple(sharding.codecs), dtype, math.prod(inner) * dtype.itemsize)
        index = tuple(sharding.index_codecs)
        index_ok = (
            len(index) in (1, 2)
            and isinstance(index[0], BytesCodec)
            and index[0].endian in (None, "little")
            and (len(index) == 1 or isinstance(index[1], Crc32cCodec))
        )
        if chain is None or not index_ok or any(o % i for o, i in zip(outer, inner, strict=True)):
            return None
        stored, decoders, checksum = chain
        return ChunkLayout(
            dtype,
            inner,
            outer,
            stored,
            metadata.fill_value,
            decoders,
            checksum,
            index_checksum=len(index) == 2,
            index_at_end=str(getattr(sharding.index_location, "value", sharding.index_location))
            == "end",
            chunk_key=metadata.encode_chunk_key,
        )
    chain = _v3_chain(codecs, dtype, math.prod(outer) * dtype.itemsize)
    if chain is None:
        return None
    stored, decoders, checksum = chain
    return ChunkLayout(
        dtype,
        outer,
        None,
        stored,
        metadata.fill_value,
        decoders,
        checksum,
        index_checksum=False,
        index_at_end=True,
        chunk_key=metadata.encode_chunk_key,
    )


def _v3_chain(
    codecs: tuple[Any, ...], dtype: np.dtype[Any], chunk_nbytes: int
) -> tuple[np.dtype[Any], tuple[Any, ...], bool] | None:
    """(stored dtype, decoders outermost first, trailing crc32c) for a bytes-first chain."""
    if not codecs or not isinstance(codecs[0], BytesCodec) or dtype.kind not in "biufc":
        return None
    endian = codecs[0].endian
    stored = dtype.newbyteorder(">" if str(getattr(endian, "value", endian)) == "big" else "<")
    rest = list(codecs[1:])
    checksum = bool(rest) and isinstance(rest[-1], Crc32cCodec)
    if checksum:
        rest.pop()
    decoders: list[Any] = []
    for codec in rest:
        if isinstance(codec, ZstdCodec):
            decoders.append(zstd_decoder(chunk_nbytes))
        elif isinstance(codec, BloscCodec):
            decoders.append(numcodecs.Blosc())
        elif isinstance(codec, GzipCodec):
            decoders.append(numcodecs.GZip())
        else:
            return None
    return stored, tuple(reversed(decoders)), checksum


def zstd_decoder(chunk_nbytes: int) -> Any:
    """A decoder of zstd frames that decompress to ``chunk_nbytes``: the faster of two.

    numcodecs' ``Zstd.decode`` sets up a new decompression context for every frame; for small
    chunks that set-up is a large part of the work, so chunks up to 512 KiB reuse a context
    (:class:`ZstdDecoder`); larger ones, where the two are equal, stay with numcodecs
    (``docs/reading.md`` has the rates).
    """
    if chunk_nbytes <= _SMALL_CHUNK_BYTES:
        return ZstdDecoder(chunk_nbytes)
    return numcodecs.Zstd()


class ZstdDecoder:
    """Decompress zstd frames with one reused decompression context per thread.

    Parameters
    ----------
    chunk_nbytes
        The decompressed size, which bounds the output of a frame that does not record its
        own size (zstd makes recording it optional).
    """

    def __init__(self, chunk_nbytes: int) -> None:
        self._limit = chunk_nbytes
        self._local = threading.local()  # a context is not thread-safe

    def decode(self, data: Any) -> bytes:
        """The decompressed bytes of one zstd frame."""
        context = getattr(self._local, "context", None)
        if context is None:
            context = self._local.context = zstandard.ZstdDecompressor()
        return context.decompress(data, max_output_size=self._limit)


def _v2_layout(array: Any, metadata: Any) -> ChunkLayout | None:
    dtype = np.dtype(array.dtype)
    if metadata.filters or metadata.order != "C" or dtype.kind not in "biufc":
        return None
    compressor = metadata.compressor
    if isinstance(compressor, numcodecs.Zstd):
        compressor = zstd_decoder(math.prod(metadata.chunks) * dtype.itemsize)
    fill = metadata.fill_value if metadata.fill_value is not None else 0
    return ChunkLayout(
        dtype,
        tuple(int(n) for n in metadata.chunks),
        None,
        dtype,
        fill,
        (compressor,) if compressor is not None else (),
        checksum=False,
        index_checksum=False,
        index_at_end=True,
        chunk_key=metadata.encode_chunk_key,
    )
