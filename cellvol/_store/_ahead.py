"""Reading ahead of a sequential reader within a byte budget (verify's and pack's).

The kernel reads a hinted range into the page cache, which is memory too: the machine's, not
the process's. Hints that run far ahead of the reader push out the pages hinted first (read
from the disk twice) and other processes' cache. :class:`ReadAhead` keeps what is hinted and
not yet taken by the reader under :func:`read_ahead_budget` bytes, whatever the objects' sizes.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Final

__all__ = ["MAX_READ_AHEAD", "ReadAhead", "read_ahead_budget"]

#: The most bytes any reader hints ahead. A disk's queue stays full with far less (a fast
#: NVMe device reads it in about a tenth of a second, longer than a worker's hash of one
#: shard takes to hand back); more only adds to what the cache may drop before it is read.
MAX_READ_AHEAD: Final = 256 << 20
# Of the memory the kernel reports available, the part hints may fill: the rest stays for the
# reader's own buffers and for other processes' cache.
_AVAILABLE_SHARE: Final = 4
# Below this the hints are too small to keep a disk busy; they are then not worth skipping.
_MIN_READ_AHEAD: Final = 8 << 20


@functools.cache
def read_ahead_budget() -> int:
    """Bytes a reader may hint ahead: a quarter of the available memory, at most 256 MiB.

    Read once per process, from ``MemAvailable`` in ``/proc/meminfo`` (else the free pages);
    where neither is known, :data:`MAX_READ_AHEAD`.
    """
    available = _available_memory()
    if available is None:
        return MAX_READ_AHEAD
    return max(_MIN_READ_AHEAD, min(MAX_READ_AHEAD, available // _AVAILABLE_SHARE))


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) << 10
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


class ReadAhead[T]:
    """Iterates ``items`` in order while a thread hints those ahead, within ``budget`` bytes.

    ``hint(item, room)`` asks for at most ``room`` bytes of ``item`` to be read ahead and
    returns how many it asked for (0 where nothing can be hinted). An item counts against the
    budget from its hint until the reader takes it. An item the reader has taken is not hinted,
    unless it is one of the last ``held`` taken: a reader that takes several items before it
    reads them (a pool's items in flight) may not have read those yet, and hinting them first
    queues their reads ahead of the later items'. They count against no budget: the reader
    bounds them. The hints go out on a thread of their own: a kernel's read-ahead can block
    while it queues the reads, and the reader must not wait for it.

    Use as a context manager; leaving it (an error included) stops the thread after the hint
    under way, never after the hints still to come.
    """

    def __init__(
        self,
        items: Sequence[T],
        hint: Callable[[T, int], int],
        budget: int | None = None,
        *,
        held: int = 0,
    ) -> None:
        self._items = items
        self._hint = hint
        self._held = held
        self._budget = read_ahead_budget() if budget is None else budget
        self._changed = threading.Condition()
        self._taken = 0  # items handed to the reader
        self._hinted: list[int] = []  # bytes hinted, per item in order
        self._ahead = 0  # of those, the bytes of items the reader has not taken yet
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="cellvol-read-ahead", daemon=True)

    def __enter__(self) -> ReadAhead[T]:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        self._thread.join()

    def __iter__(self) -> Iterator[T]:
        for number, item in enumerate(self._items):
            with self._changed:
                self._taken = number + 1
                if number < len(self._hinted):
                    self._ahead -= self._hinted[number]
                self._changed.notify_all()
            yield item

    def _run(self) -> None:
        for number, item in enumerate(self._items):
            with self._changed:
                while not self._stopped and self._ahead >= self._budget:
                    self._changed.wait()
                if self._stopped:
                    return
                room = self._budget - self._ahead
                overtaken = number < self._taken - self._held
            hinted = 0 if overtaken else self._hint(item, room)
            with self._changed:
                self._hinted.append(hinted)
                if number >= self._taken:  # else taken while it was hinted: not ahead
                    self._ahead += hinted
