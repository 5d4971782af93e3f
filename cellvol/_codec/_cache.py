"""A bounded, thread-safe cache of decoded chunks, shared by every volume a process opens.

Viewers and servers read overlapping planes: neighbouring tiles, the same plane at a new
contrast, a crosshair moving one voxel. Each of those would otherwise fetch and decompress the
same chunks again. The cache holds decoded chunks (and shard indexes) in least-recently-used
order up to a byte budget.

Entries are keyed by the object that reads them (one per opened level), never by URL alone:
re-opening an image that was rewritten in place can never be served stale chunks of the old
one; the old entries simply age out.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy.typing as npt

from cellvol.errors import InvalidInputError

__all__ = ["CacheStats", "ChunkCache", "default_cache"]

DEFAULT_CACHE_BYTES = 256 * 2**20
_ENV = "CELLVOL_CACHE_BYTES"


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of one cache since it was made or cleared."""

    hits: int
    misses: int
    entries: int
    nbytes: int
    max_bytes: int


class ChunkCache:
    """Least-recently-used store of read-only numpy arrays, bounded by their total bytes.

    Parameters
    ----------
    max_bytes
        Budget in bytes; 0 disables caching (every lookup misses, nothing is kept).
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
            raise InvalidInputError(f"cache max_bytes must be an integer >= 0, got {max_bytes!r}")
        self._max = max_bytes
        self._entries: OrderedDict[Hashable, npt.NDArray[Any]] = OrderedDict()
        self._nbytes = 0
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()

    @property
    def max_bytes(self) -> int:
        """The byte budget."""
        return self._max

    def get(self, key: Hashable) -> npt.NDArray[Any] | None:
        """The array stored under ``key`` (read-only), or None."""
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return value

    def put(self, key: Hashable, value: npt.NDArray[Any]) -> None:
        """Store ``value`` (made read-only) under ``key``, evicting the least recently used.

        Arrays larger than an eighth of the budget are not kept: one of them would evict
        many small, likelier-to-be-reused entries.
        """
        size = int(value.nbytes)
        if size > self._max // 8:
            return
        value.flags.writeable = False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._nbytes -= int(old.nbytes)
            self._entries[key] = value
            self._nbytes += size
            while self._nbytes > self._max:
                _, evicted = self._entries.popitem(last=False)
                self._nbytes -= int(evicted.nbytes)

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._entries.clear()
            self._nbytes = self._hits = self._misses = 0

    def stats(self) -> CacheStats:
        """Hits, misses, entries and bytes held."""
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._entries), self._nbytes, self._max)


_default: ChunkCache | None = None
_default_lock = threading.Lock()


def default_cache() -> ChunkCache:
    """The process-wide cache that :func:`cellvol.open` uses unless given another.

    Its budget is ``CELLVOL_CACHE_BYTES`` from the environment when set (0 disables it),
    else 256 MiB.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = ChunkCache(_budget_from_environment())
        return _default


def _budget_from_environment() -> int:
    text = os.environ.get(_ENV)
    if text is None or not text.strip():
        return DEFAULT_CACHE_BYTES
    try:
        value = int(text)
    except ValueError:
        raise InvalidInputError(
            f"{_ENV}={text!r} is not a whole number of bytes (use 0 to disable the cache)"
        ) from None
    if value < 0:
        raise InvalidInputError(f"{_ENV}={text!r} must be >= 0")
    return value
