"""Work on a thread pool with a bounded number of items in flight, results in order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["IN_FLIGHT_PER_WORKER", "bounded"]

# Items read or being checked per worker: one at work and one waiting.
IN_FLIGHT_PER_WORKER = 2


def bounded[T, R](
    pool: ThreadPoolExecutor, work: Callable[[T], R], items: Iterable[T], workers: int
) -> Iterator[R]:
    """``work`` over ``items`` on ``pool``, in order, with a bounded number in flight.

    When the caller stops early (an error, Ctrl-C), the items not yet started are cancelled,
    so that leaving the pool waits for the running ones alone.
    """
    waiting: deque[Future[R]] = deque()
    try:
        for item in items:
            if len(waiting) >= workers * IN_FLIGHT_PER_WORKER:
                yield waiting.popleft().result()
            waiting.append(pool.submit(work, item))
        while waiting:
            yield waiting.popleft().result()
    finally:
        for future in waiting:
            future.cancel()
