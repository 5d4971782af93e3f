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
    """How far one stage of a pyramid write has come.

    A stage reads one base (the source, or a level already written) and produces one or more
    levels from it; its tasks are shard-aligned regions of the base.

    Attributes
    ----------
    stage
        Index of the stage, from 0.
    levels
        The pyramid levels this stage produces.
    done, total
        Finished and total tasks of the stage (tasks skipped on resume count as done).
    nbytes
        Uncompressed bytes of the base read by the finished tasks.
    """

    stage: int
    levels: tuple[int, ...]
    done: int
    total: int
    nbytes: int


ProgressCallback = Callable[[ProgressEvent], None]


class ProgressReporter:
    """Counts finished tasks of one stage and forwards events to a callback, thread-safely."""

    def __init__(
        self, callback: ProgressCallback | None, stage: int, levels: tuple[int, ...], total: int
    ) -> None:
        self._callback = callback
        self._stage = stage
        self._levels = levels
        self._total = total
        self._done = 0
        self._nbytes = 0
        self._lock = threading.Lock()

    def start(self, already_done: int = 0) -> None:
        """Announce the stage, counting ``already_done`` tasks finished by an earlier run."""
        with self._lock:
            self._done = already_done
            self._emit()

    def advance(self, nbytes: int) -> None:
        """Record one finished task that read ``nbytes`` uncompressed bytes."""
        with self._lock:
            self._done += 1
            self._nbytes += nbytes
            self._emit()

    def _emit(self) -> None:
        if self._callback is not None:
            event = ProgressEvent(self._stage, self._levels, self._done, self._total, self._nbytes)
            self._callback(event)
