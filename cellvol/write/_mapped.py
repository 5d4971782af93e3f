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

    def make_room(self, rows: tuple[int, ...], nbytes: int) -> bool:
        """Release the oldest spans until a read of ``rows`` (``nbytes``) fits the budget.

        Called before the read, so that a span released to make room cannot take the pages the
        read is about to map (spans run across the rows of a batch's planes, which the next
        shard reads too). Rows already kept (a neighbouring shard's read of them) count once
        and are kept. Returns False, releasing nothing, where ``nbytes`` exceed the calling
        thread's budget: the caller then releases the read's span itself once done.
        """
        budget = _BUDGET.get()
        if nbytes > budget:
            return False
        with self._lock:
            kept = self._spans.get(rows)
            if kept is not None:
                self._spans.move_to_end(rows)  # the newest: released last
                nbytes -= kept[0]
            released = self._evict(budget - nbytes, spare=rows)
        for old in released:
            self._release(*old)
        return True

    def note(self, rows: tuple[int, ...], nbytes: int, span: tuple[int, int]) -> None:
        """Keep ``span`` of the map, read for ``rows`` (``nbytes`` of pages at most).

        Called after the read (after :meth:`make_room`), so no other thread releases it while
        it is copied: its pages would be mapped again and left untracked. ``rows`` tells which
        rows of the file were read (first, last, count): rows read again (by a neighbouring
        shard) count once, and keep the union of both reads' spans. Spans beyond the calling
        thread's budget, oldest first, are released.
        """
        budget = _BUDGET.get()
        with self._lock:
            previous = self._spans.pop(rows, None)
            if previous is not None:
                self._held -= previous[0]
                (start, length), (old_start, old_length) = span, previous[1]
                first = min(start, old_start)
                span = (first, max(start + length, old_start + old_length) - first)
            self._spans[rows] = (nbytes, span)
            self._held += nbytes
            released = self._evict(budget)
        if previous is None:
            with _HOLDING_LOCK:
                _HOLDING.add(self)
        for old in released:
            self._release(*old)

    def _evict(self, limit: int, spare: tuple[int, ...] | None = None) -> list[tuple[int, int]]:
        """Forget the oldest spans until at most ``limit`` bytes are held; the spans forgotten.

        The span of the rows ``spare`` (the newest, if kept) stays. The caller holds the lock,
        and releases the spans after letting it go.
        """
        released: list[tuple[int, int]] = []
        while self._held > limit and self._spans and next(iter(self._spans)) != spare:
            _, (size, old) = self._spans.popitem(last=False)
            self._held -= size
            released.append(old)
        return released

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
