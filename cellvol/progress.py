"""Progress as a stream of events: the library reports, the caller decides how to draw.

The library never prints. Long operations accept ``progress=callback``; the callback receives
:class:`ProgressEvent` values, possibly from worker threads, one call at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ProgressCallback", "ProgressEvent", "ProgressReporter"]


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """How far a multi-level operation has come.

    Attributes
    ----------
    level
        The pyramid level being worked on.
    done, total
        Finished and total units of work (shards) in that level.
    nbytes
        Uncompressed bytes finished in that level so far.
    """

    level: int
    done: int
    total: int
    nbytes: int


ProgressCallback = Callable[[ProgressEvent], None]


class ProgressReporter:
    """Counts finished units of one level and forwards events to a callback, thread-safely."""

    def __init__(self, callback: ProgressCallback | None, level: int, total: int) -> None:
        self._callback = callback
        self._level = level
        self._total = total
        self._done = 0
        self._nbytes = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        """Announce the level with nothing done yet."""
        if self._callback is not None:
            with self._lock:
                self._callback(ProgressEvent(self._level, 0, self._total, 0))

    def advance(self, nbytes: int) -> None:
        """Record one finished unit of ``nbytes`` uncompressed bytes."""
        if self._callback is None:
            return
        with self._lock:
            self._done += 1
            self._nbytes += nbytes
            self._callback(ProgressEvent(self._level, self._done, self._total, self._nbytes))
