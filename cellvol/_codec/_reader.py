"""Read a box of a zarr array by fetching and decoding only its chunks, concurrently.

Why not ``zarr.Array.__getitem__``: on small chunks zarr's time goes to per-chunk work in its
asynchronous codec pipeline rather than to decompression (``docs/benchmarks.md`` compares
the two on cellvol's layout). This module does what tensorstore does for the layouts pyramid
writers produce: it reads each shard's index once (and caches it), fetches the chunks a box
needs with one ranged request per run of neighbouring chunks, decompresses them on a thread
pool (the codecs release the GIL), and keeps decoded chunks in a bounded shared
:class:`~cellvol.ChunkCache`.

Layouts read here:

- zarr v3 arrays whose chunks are stored as raw bytes in C order (``bytes`` codec) followed by
  any of ``zstd``, ``blosc``, ``gzip`` and a final ``crc32c``, either one object per chunk or
  as inner chunks of ``sharding_indexed`` shards (index at the start or end, with or without
  its own ``crc32c``);
- zarr v2 arrays in C order with at most a compressor and no filters.

Everything else (transposes, filters, Fortran order, irregular grids) is read by zarr; the
caller falls back when :func:`chunk_layout` returns None, or when a selection is not a box
(index arrays, steps). Tests read the same stores both ways and compare.

A checksum mismatch, a truncated shard, or a shard the write's manifest lists but the store
lacks raises :class:`~cellvol.errors.IntegrityError`; nothing corrupt is returned.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from zarr.abc.store import ByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

from cellvol._codec._cache import ChunkCache
from cellvol._codec._layout import Box, ChunkLayout
from cellvol._codec._shard import ABSENT, CRC_BYTES, crc32c_bytes, shard_fingerprint
from cellvol._store._loop import on_zarr_loop
from cellvol.errors import IntegrityError

__all__ = ["ChunkReader"]

# Chunks of a shard closer than the gap are fetched in one request, up to a request's cap. On a
# local disk a read costs little either way. On S3 and HTTP a request costs a round trip
# (tens of milliseconds on S3) while an extra MiB in an open stream costs a few: the remote
# gap and cap are zarr-python's defaults for the same choice (1 MiB, 16 MiB). On moto they
# took a 512² XY plane of 64³ chunks in 256³ shards from 85 requests to 29 (and, with the
# decoding overlapped and 32 connections, from 1.0 s to 0.33 s: benchmarks/read_planes.py).
_MERGE_GAP_LOCAL: Final = 64 * 1024
_MERGE_GAP_REMOTE: Final = 2**20
_MAX_REQUEST_BYTES: Final = 16 * 2**20
# Shards fetched or decoding at once per read, so a large box never holds all its compressed
# bytes.
_SHARDS_IN_FLIGHT: Final = 16
_INDEX_CACHE_BYTES: Final = 16 * 2**20


class ChunkReader:
    """Reads boxes of one array through its :class:`ChunkLayout`.

    Local files are read with ``os.pread`` on the decompression threads, with no event loop
    in between (a loop round trip per chunk costs more than the read itself). Other stores
    (S3, HTTP) are read through zarr's store on its I/O loop, every request of a box in
    flight at once.

    Parameters
    ----------
    store_path
        The array's ``zarr.storage.StorePath`` (its store and key prefix).
    layout
        From :func:`chunk_layout`.
    cache
        Where decoded chunks are kept between reads (shared by all readers).
    where, level_path
        The image's location and the array's path in it, for error messages.
    expects_shard
        For images with a write manifest: whether a shard (by grid position) must exist, so
        a missing one raises instead of reading as fill values.
    fingerprint
        For images with a write manifest: the fingerprint recorded for a shard (by grid
        position), so a shard stored under another key, or another image's, raises instead
        of decoding as data.
    """

    def __init__(
        self,
        store_path: Any,
        layout: ChunkLayout,
        cache: ChunkCache,
        where: str,
        level_path: str = "",
        expects_shard: Callable[[tuple[int, ...]], bool] | None = None,
        fingerprint: Callable[[tuple[int, ...]], bytes | None] | None = None,
    ) -> None:
        self._store_path = store_path
        self.layout = layout
        self._cache = cache
        self._where = where
        self._prefix = f"{level_path}/" if level_path else ""
        self._expects = expects_shard
        self._fingerprint = fingerprint
        self._root = _local_root(store_path)
        # Shard indexes are tiny next to the chunks they locate; each reader keeps its own so
        # that a cache sized (or disabled) for data still reads every index once.
        self._indexes = ChunkCache(_INDEX_CACHE_BYTES)
        # The data cache is shared by every reader: this token keeps this reader's entries apart.
        self._token = object()
        self._chunk_nbytes = math.prod(layout.chunks) * layout.stored_dtype.itemsize

    def read(self, box: Box) -> npt.NDArray[Any]:
        """Read ``box`` (a ``[start, stop)`` range per axis) into a new array."""
        if self._root is None:
            return sync(self.read_async(box))
        out, todo, cacheable = self._start(box)
        if not todo:
            return out
        pool = _decode_pool()
        if self.layout.shards is None:
            # One object per chunk: each thread reads and decodes chunk after chunk, so reads
            # overlap decoding. (Measured: for shards, reading every index and run first and
            # then decoding in even batches was faster; a shard's chunks vary in number.)
            def whole(item: tuple[tuple[int, ...], list[tuple[int, ...]]]) -> None:
                for key, coords, raw in self._absorb(self._locate_local(*item), out, box):
                    self._store(key, coords, raw, out, box, cacheable)

            for _ in pool.map(whole, todo.items()):
                pass
            return out
        located = pool.map(lambda item: self._locate_local(*item), todo.items())
        pieces = [piece for found in located for piece in self._absorb(found, out, box)]
        self._decode_in(pool, pieces, out, box, cacheable)
        return out

    async def read_async(self, box: Box) -> npt.NDArray[Any]:
        """:meth:`read` for asyncio code; awaits without blocking the running loop."""
        if self._root is not None:
            return await asyncio.get_running_loop().run_in_executor(None, self.read, box)
        return await on_zarr_loop(self._read_from_store(box))

    def _start(
        self, box: Box
    ) -> tuple[npt.NDArray[Any], dict[tuple[int, ...], list[tuple[int, ...]]], bool]:
        """The output array, with cached chunks placed; what remains, grouped by shard."""
        out = np.empty([stop - start for start, stop in box], dtype=self.layout.dtype)
        todo: dict[tuple[int, ...], list[tuple[int, ...]]] = defaultdict(list)
        # A read larger than a quarter of the cache would only evict what others reuse.
        cacheable = out.nbytes <= self._cache.max_bytes // 4
        if out.size == 0:
            return out, todo, cacheable
        per = self.layout.chunks_per_shard
        ranges = [
            range(start // c, (stop - 1) // c + 1)
            for (start, stop), c in zip(box, self.layout.chunks, strict=True)
        ]
        for coords in itertools.product(*ranges):
            cached = self._cache.get((self._token, coords)) if cacheable else None
            if cached is not None:
                self._place(out, box, coords, cached)
            else:
                todo[tuple(c // p for c, p in zip(coords, per, strict=True))].append(coords)
        return out, todo, cacheable

    async def _read_from_store(self, box: Box) -> npt.NDArray[Any]:
        out, todo, cacheable = self._start(box)
        if not todo:
            return out
        limit = asyncio.Semaphore(_SHARDS_IN_FLIGHT)
        loop = asyncio.get_running_loop()
        pool = _decode_pool()

        async def fetch_and_decode(shard: tuple[int, ...], chunks: list[tuple[int, ...]]) -> None:
            async with limit:
                found = await self._locate_remote(shard, chunks)
                # Decoded as soon as its bytes arrive, while other requests are still in
                # flight: on S3 a read is mostly waiting, and decoding fills the wait.
                await asyncio.gather(
                    *(
                        loop.run_in_executor(
                            pool, self._store, key, coords, raw, out, box, cacheable
                        )
                        for key, coords, raw in self._absorb(found, out, box)
                    )
                )

        await asyncio.gather(*(fetch_and_decode(s, c) for s, c in todo.items()))
        return out

    # Locating and fetching: from a shard's grid position to its chunks' stored bytes.

    def _locate_local(self, shard: tuple[int, ...], chunks: list[tuple[int, ...]]) -> _Located:
        assert self._root is not None
        key = self._key(shard, chunks)
        try:
            fd = os.open(self._root / key, os.O_RDONLY)
        except FileNotFoundError:
            return _Located(shard, key, chunks, None)
        try:
            size = os.fstat(fd).st_size
            if self.layout.shards is None:
                return _Located(shard, key, chunks, [(chunks[0], _pread(fd, size, 0))])
            index = self._indexes.get(shard)
            if index is None:
                n, recorded = self._index_request(shard)
                at = size - n if self.layout.index_at_end else 0
                index = self._parse_index(key, _pread(fd, n, max(at, 0)), size, recorded)
                self._indexes.put(shard, index)
            runs, absent = self._runs(shard, chunks, index)
            fetched = [
                (run, _pread(fd, run[-1][0] + run[-1][1] - run[0][0], run[0][0])) for run in runs
            ]
        finally:
            os.close(fd)
        return _Located(shard, key, absent, self._split(key, fetched))

    async def _locate_remote(
        self, shard: tuple[int, ...], chunks: list[tuple[int, ...]]
    ) -> _Located:
        key = self._key(shard, chunks)
        if self.layout.shards is None:
            # A whole object is one GET on every store cellvol opens (see storage.S3Store).
            data = await self._get(key, None)
            found = None if data is None else [(chunks[0], data)]
            return _Located(shard, key, chunks, found)
        index = self._indexes.get(shard)
        if index is None:
            n, recorded = self._index_request(shard)
            request: ByteRequest = (
                SuffixByteRequest(n) if self.layout.index_at_end else RangeByteRequest(0, n)
            )
            data = await self._get(key, request)
            if data is None:
                return _Located(shard, key, chunks, None)
            index = self._parse_index(key, data, None, recorded)
            self._indexes.put(shard, index)
        runs, absent = self._runs(shard, chunks, index)
        fetched = await asyncio.gather(
            *(self._get(key, RangeByteRequest(r[0][0], r[-1][0] + r[-1][1])) for r in runs)
        )
        return _Located(shard, key, absent, self._split(key, list(zip(runs, fetched, strict=True))))

    async def _get(self, key: str, byte_range: ByteRequest | None) -> memoryview | None:
        buffer = await (self._store_path / key).get(default_buffer_prototype(), byte_range)
        if buffer is None:
            return None
        return memoryview(buffer.as_numpy_array())

    def _key(self, shard: tuple[int, ...], chunks: list[tuple[int, ...]]) -> str:
        return self.layout.chunk_key(shard if self.layout.shards is not None else chunks[0])

    def _name(self, key: str) -> str:
        """A stored object's key from the image's root, for messages."""
        return self._prefix + key

    def _index_request(self, shard: tuple[int, ...]) -> tuple[int, bytes | None]:
        """Bytes to read for a shard's index, and the fingerprint they must show, if any.

        With a recorded fingerprint, the 4 bytes before the index (its last chunk's CRC32C)
        come in the same read (see :func:`cellvol._codec._shard.shard_fingerprint`).
        """
        recorded = self._fingerprint(shard) if self._fingerprint is not None else None
        if recorded is None or not (self.layout.index_at_end and self.layout.index_checksum):
            return self.layout.index_nbytes, None
        return self.layout.index_nbytes + CRC_BYTES, recorded

    def _parse_index(
        self, key: str, data: Any, size: int | None, fingerprint: bytes | None
    ) -> npt.NDArray[Any]:
        raw = bytes(data)
        expected = self.layout.index_nbytes + (CRC_BYTES if fingerprint is not None else 0)
        if len(raw) != expected:
            raise IntegrityError(
                f"{self._where}: shard {self._name(key)} is truncated: "
                f"{size if size is not None else len(raw)} bytes, fewer than the "
                f"{expected} its index (and its last chunk's checksum) take"
            )
        if fingerprint is not None:
            if shard_fingerprint(raw) != fingerprint:
                raise IntegrityError(
                    f"{self._where}: shard {self._name(key)} is not the shard written under "
                    "this key (its fingerprint differs from the one the write recorded): "
                    "shards were swapped, or it comes from another image"
                )
            raw = raw[CRC_BYTES:]
        if self.layout.index_checksum:
            raw = _checked(
                raw,
                lambda: (
                    f"{self._where}: the index of shard {self._name(key)} fails its CRC32C "
                    "checksum: the shard is corrupt or was not fully written"
                ),
            )
        return np.frombuffer(raw, dtype="<u8").reshape(*self.layout.chunks_per_shard, 2)

    def _runs(
        self, shard: tuple[int, ...], chunks: list[tuple[int, ...]], index: npt.NDArray[Any]
    ) -> tuple[list[list[tuple[int, int, tuple[int, ...]]]], list[tuple[int, ...]]]:
        """The wanted chunks' byte runs (neighbours merged) and the chunks absent from it."""
        per = self.layout.chunks_per_shard
        wanted: list[tuple[int, int, tuple[int, ...]]] = []
        absent: list[tuple[int, ...]] = []
        for coords in chunks:
            local = tuple(c - s * p for c, s, p in zip(coords, shard, per, strict=True))
            offset, length = (int(v) for v in index[local])
            if offset == ABSENT and length == ABSENT:
                absent.append(coords)
            else:
                wanted.append((offset, length, coords))
        wanted.sort()
        gap = _MERGE_GAP_LOCAL if self._root is not None else _MERGE_GAP_REMOTE
        runs: list[list[tuple[int, int, tuple[int, ...]]]] = []
        for item in wanted:
            if runs:
                start, end = runs[-1][0][0], runs[-1][-1][0] + runs[-1][-1][1]
                if item[0] - end <= gap and item[0] + item[1] - start <= _MAX_REQUEST_BYTES:
                    runs[-1].append(item)
                    continue
            runs.append([item])
        return runs, absent

    def _split(
        self, key: str, fetched: Sequence[tuple[list[tuple[int, int, tuple[int, ...]]], Any]]
    ) -> list[tuple[tuple[int, ...], Any]]:
        """Cut each fetched run into its chunks' bytes; a short read means a truncated shard."""
        pieces: list[tuple[tuple[int, ...], Any]] = []
        for run, data in fetched:
            start, end = run[0][0], run[-1][0] + run[-1][1]
            if data is None or len(data) != end - start:
                raise IntegrityError(
                    f"{self._where}: shard {self._name(key)} is truncated or vanished while "
                    f"read: its index lists chunk bytes {start}-{end} that the store did not "
                    "return"
                )
            view = memoryview(data)
            for offset, length, coords in run:
                pieces.append((coords, view[offset - start : offset - start + length]))
        return pieces

    def _absorb(
        self, found: _Located, out: npt.NDArray[Any], box: Box
    ) -> list[tuple[str, tuple[int, ...], Any]]:
        """Fill in the chunks a shard lacks and return the ones to decode.

        A missing shard that the write's manifest lists raises.
        """
        if found.pieces is None and self._expects is not None and self._expects(found.shard):
            raise IntegrityError(
                f"{self._where}: shard {self._name(found.key)} is listed in the write's "
                "manifest but missing from the store; it would otherwise read as fill values"
            )
        for coords in found.absent:
            target, _ = self._overlap(box, coords)
            out[target] = self.layout.fill_value
        return [(found.key, coords, raw) for coords, raw in found.pieces or ()]

    # Decoding and placing.

    def _decode_in(
        self,
        pool: ThreadPoolExecutor,
        pieces: Sequence[tuple[str, tuple[int, ...], Any]],
        out: npt.NDArray[Any],
        box: Box,
        cacheable: bool,
    ) -> None:
        """Decode ``pieces`` into ``out`` on ``pool``, in one batch per thread and core."""
        if not pieces:
            return
        batches = min(len(pieces), 2 * (os.cpu_count() or 2))

        def work(batch: int) -> None:
            for key, coords, raw in pieces[batch::batches]:
                self._store(key, coords, raw, out, box, cacheable)

        for _ in pool.map(work, range(batches)):
            pass

    def _store(
        self,
        key: str,
        coords: tuple[int, ...],
        raw: Any,
        out: npt.NDArray[Any],
        box: Box,
        cacheable: bool,
    ) -> None:
        """Decode one chunk into its place in ``out`` (and the cache)."""
        chunk = self._decode(key, coords, raw)
        if cacheable:
            if not self.layout.decoders:
                # An uncompressed chunk is a view of the bytes fetched with its neighbours;
                # cached as it is, it would keep all of them alive.
                chunk = chunk.copy()
            self._cache.put((self._token, coords), chunk)
        self._place(out, box, coords, chunk)

    def _decode(self, key: str, coords: tuple[int, ...], raw: Any) -> npt.NDArray[Any]:
        layout = self.layout
        data: Any = raw
        if layout.checksum:
            data = _checked(
                data,
                lambda: (
                    f"{self._where}: chunk {coords} in {self._name(key)} fails its CRC32C "
                    "checksum: the stored data is corrupt"
                ),
            )
        try:
            for codec in layout.decoders:
                data = codec.decode(data)
        except Exception as exc:  # a codec's own error type varies by library
            raise IntegrityError(
                f"{self._where}: chunk {coords} in {self._name(key)} cannot be decompressed ({exc})"
            ) from exc
        expected = self._chunk_nbytes
        flat = np.frombuffer(data, dtype=np.uint8)
        if flat.size != expected:
            raise IntegrityError(
                f"{self._where}: chunk {coords} in {self._name(key)} decodes to {flat.size} bytes, "
                f"expected {expected} for a {layout.chunks} {layout.stored_dtype} chunk"
            )
        return flat.view(layout.stored_dtype).reshape(layout.chunks)

    def _place(
        self, out: npt.NDArray[Any], box: Box, coords: tuple[int, ...], chunk: npt.NDArray[Any]
    ) -> None:
        target, source = self._overlap(box, coords)
        out[target] = chunk[source]

    def _overlap(
        self, box: Box, coords: tuple[int, ...]
    ) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """Where chunk ``coords`` lands in the output, and which part of the chunk that is."""
        target, source = [], []
        for (start, stop), c, size in zip(box, coords, self.layout.chunks, strict=True):
            lo, hi = max(start, c * size), min(stop, (c + 1) * size)
            target.append(slice(lo - start, hi - start))
            source.append(slice(lo - c * size, hi - c * size))
        return tuple(target), tuple(source)


@dataclass(frozen=True, slots=True)
class _Located:
    """One shard's part of a read: its chunks' stored bytes, and the chunks it lacks.

    ``pieces`` is None when the shard (or unsharded chunk) object does not exist.
    """

    shard: tuple[int, ...]
    key: str
    absent: list[tuple[int, ...]]
    pieces: list[tuple[tuple[int, ...], Any]] | None


def _local_root(store_path: Any) -> Path | None:
    """The directory of a local array, whose files this module reads with ``os.pread``."""
    if not isinstance(store_path.store, LocalStore):
        return None
    return (
        Path(store_path.store.root) / store_path.path
        if store_path.path
        else Path(store_path.store.root)
    )


def _checked(data: Any, failure: Callable[[], str]) -> Any:
    """``data`` without its trailing CRC32C, which must match; else IntegrityError(failure())."""
    body = data[:-CRC_BYTES]
    if crc32c_bytes(body) != bytes(data[-CRC_BYTES:]):
        raise IntegrityError(failure())
    return body


def _pread(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    while len(data) < length:  # pread may return fewer bytes than asked; EOF returns b""
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _decode_pool() -> ThreadPoolExecutor:
    """One decompression pool per process, a thread per core (the codecs release the GIL)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="cellvol-decode")
        return _pool
