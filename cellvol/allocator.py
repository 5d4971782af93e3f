"""Keep freed buffers of a pyramid write from piling up in the C allocator.

glibc's malloc gives each thread that allocates its own pool (an *arena*) and keeps memory
freed in an arena for that arena's later use instead of returning it. A write allocates
shard-sized buffers (16 MiB for 256³ uint8) from several threads in turn, so every arena
ends up holding its own few, and the peak grew with the number of tasks: 260 MiB of
anonymous memory for a 1 GiB input, 317 MiB for 4 GiB, with the same stages. With one arena
the same builds peaked at 222 and 228 MiB and took as long (docs/pyramid.md, Memory). The
buffers are large and few, so the threads hardly ever wait for the one arena's lock.

glibc also learns, as blocks are freed, to serve blocks of up to 32 MiB from its pools rather
than mapping each anew. Some environments turn that off: dask.distributed's nanny sets
``MALLOC_TRIM_THRESHOLD_`` in every worker, and then every block over 128 KiB is mapped,
zero-filled by the kernel and unmapped again. :func:`reuse_large_blocks` restores what glibc
would have learned.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from typing import Final

# mallopt's parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
_M_ARENA_MAX: Final = -8
# The ceiling of glibc's own adaptive mmap threshold on 64-bit systems; it keeps the trim
# threshold at twice the mmap threshold.
_LARGE_BLOCK: Final = 32 * 2**20
# Environment settings with which glibc stops adapting its thresholds (mallopt(3)).
_FIXED_THRESHOLD_SWITCHES: Final = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
_limited = False
_reusing = False


def prepare_for_writing() -> None:
    """Both allocator settings a pyramid write wants, before its threads start."""
    limit_malloc_arenas()
    reuse_large_blocks()


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Cap glibc's malloc at ``arenas`` arenas for threads started from now on.

    Idempotent. Does nothing where the C library is not glibc, or where the user chose a
    limit through the ``MALLOC_ARENA_MAX`` environment variable (which glibc reads at start).

    Parameters
    ----------
    arenas
        Arenas allowed; at least 1.

    Returns
    -------
    bool
        True if the limit is in force (set now or earlier by this function).
    """
    global _limited
    if arenas < 1:
        raise ValueError(f"arenas must be at least 1, got {arenas}")
    if _limited:
        return True
    libc = _glibc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    _limited = bool(libc.mallopt(_M_ARENA_MAX, arenas))
    return _limited


def reuse_large_blocks() -> bool:
    """Serve blocks of up to 32 MiB from malloc's pools where a setting stopped glibc doing so.

    glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB) and
    its trim threshold to twice that, so shard buffers freed by one task are reused by the
    next. Any of ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_`` or ``MALLOC_MMAP_MAX_`` in the
    environment stops that, and every block over 128 KiB is then mapped, zero-filled by the
    kernel and unmapped on free. dask.distributed's nanny sets ``MALLOC_TRIM_THRESHOLD_`` in
    every worker: a 1 GiB build on a one-worker LocalCluster took 16.7 s so, and 7.35 s with
    the thresholds set here, its worker's peak anonymous memory going from 106 to 140 MiB.

    Idempotent. Does nothing where the C library is not glibc, where glibc still adapts (none
    of those settings), or where ``MALLOC_MMAP_THRESHOLD_`` is set (the user's own choice).

    Returns
    -------
    bool
        True if the thresholds are in force (set now or earlier by this function).
    """
    global _reusing
    if _reusing:
        return True
    libc = _glibc()
    if libc is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    if not any(name in os.environ for name in _FIXED_THRESHOLD_SWITCHES):
        return False
    _reusing = bool(libc.mallopt(_M_MMAP_THRESHOLD, _LARGE_BLOCK)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * _LARGE_BLOCK)
    )
    return _reusing


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc, else None."""
    if not sys.platform.startswith("linux"):
        return None
    # The interpreter's own symbols include its C library's (no find_library: that runs
    # ldconfig or a compiler to locate a file name).
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return None  # musl and others
    return libc
