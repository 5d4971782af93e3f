"""Input pages a write keeps mapped between its reads of a memory-mapped file, up to a budget.

A level-0 shard of a C-order file is a box whose rows are shorter than the file's: 256 voxels
of a 2048-voxel row touch every page of the rows they cross, so the eight shards side by side
along x touch the same pages. Released after every read (``MADV_DONTNEED``), each page was
mapped again by each of them: on tmpfs the page faults and the unmapping cost the build
about 1.5 s of CPU per GiB, four times the copy itself. Kept mapped for the next reads (the
next x-shard of the task, the neighbouring task's), a page is faulted once or twice instead.

The spans a process keeps are counted by the rows they cross (every page of those rows may be
mapped) and released oldest first once they pass the budget, which the write takes from its
memory limit (what its schedule leaves unused). Outside a write's tasks the budget is 0: a
read releases its pages at once, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Final

import numpy as np

from cellvol.write._allocator import _glibc

__all__ = ["MappedPages", "keeping_mapped", "release_mapped"]

# At most this much of the input stays mapped, whatever the memory limit leaves: more buys
# little, as tasks read neighbouring shards at about the same time.
MAX_KEPT: Final = 128 * 2**20

_BUDGET: ContextVar[int] = ContextVar("cellvol_keep_mapped", default=0)
_HOLDING: weakref.WeakSet[MappedPages] = weakref.WeakSet()
_HOLDING_LOCK = threading.Lock()


@contextlib.contextmanager
def keeping_mapped(budget: int) -> Iterator[None]:
    """Let this thread's reads of memory-mapped inputs keep up to ``budget`` bytes mapped."""
    token = _BUDGET.set(max(0, min(budget, MAX_KEPT)))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def release_mapped() -> None:
    """Release every input page this process keeps mapped (at the end of a write's stage)."""
    with _HOLDING_LOCK:
        holders = list(_HOLDING)
    for holder in holders:
        holder.release()


class MappedPages:
    """The spans of one file map read lately, released oldest first beyond the budget.

    The budget is the reading thread's (:func:`keeping_mapped`); the spans are the process's.

    Parameters
    ----------
    file_map
        The map the spans are of.
    """

    def __init__(self, file_map: mmap.mmap) -> None:
        self._map = file_map
        self.size = len(file_map)
        # The map's address, for releasing through the C library: mmap.madvise holds the GIL
        # while the kernel unmaps (milliseconds for a batch), which stalled the other tasks.
        self._base = np.frombuffer(file_map, dtype=np.uint8).ctypes.data
        self._lock = threading.Lock()
        # rows read -> (bytes of those rows, (start, length) to release)
        self._spans: OrderedDict[tuple[int, ...], tuple[int, tuple[int, int]]] = OrderedDict()
        self._held = 0

    def keep(self, rows: tuple[int, ...], nbytes: int, span: tuple[int, int]) -> bool:
        """Note a read of ``rows`` (``nbytes`` of pages at most) within ``span`` of the map.

        ``rows`` tells which rows of the file are read (first, last, count): rows read
        again (by a neighbouring shard) count once. Spans beyond the budget of the calling
        thread, oldest first, are released. Returns False, noting nothing, where the thread
        has no budget for them: the caller releases ``span`` itself once read.
        """
        budget = _BUDGET.get()
        if nbytes > budget:
            return False
        released: list[tuple[int, int]] = []
        with self._lock:
            previous = self._spans.pop(rows, None)
            if previous is not None:
                self._held -= previous[0]
            self._spans[rows] = (nbytes, span)
            self._held += nbytes
            while self._held > budget and self._spans:
                _, (size, old) = self._spans.popitem(last=False)
                self._held -= size
                released.append(old)
        if previous is None:
            with _HOLDING_LOCK:
                _HOLDING.add(self)
        for old in released:
            self._release(*old)
        return True

    def release_span(self, span: tuple[int, int]) -> None:
        """Release ``span`` (start, length) of the map at once."""
        self._release(*span)

    def release(self) -> None:
        """Release every span kept."""
        with self._lock:
            spans = [span for _, span in self._spans.values()]
            self._spans.clear()
            self._held = 0
        for span in spans:
            self._release(*span)

    def _release(self, start: int, length: int) -> None:
        """``MADV_DONTNEED`` on ``length`` bytes from ``start``, without holding the GIL."""
        libc = _glibc()
        address = ctypes.c_void_p(self._base + start)
        if libc is None or libc.madvise(address, ctypes.c_size_t(length), mmap.MADV_DONTNEED):
            self._map.madvise(mmap.MADV_DONTNEED, start, length)  # elsewhere, or to raise
