"""Opt-in tuning of glibc's malloc for processes whose main work is writing pyramids.

A library must not change its host's process-wide settings, so no write calls this by itself:
the ``cellvol`` command line calls :func:`tune_allocator` at start, and a program or a dask
worker that mostly writes pyramids may call it too (``client.run(cellvol.tune_allocator)``).
What it buys is measured in ``docs/benchmarks.md``; what follows is why.

glibc's malloc gives each thread that allocates its own pool (an *arena*) and keeps memory
freed in an arena for that arena's later use instead of returning it. A write allocates
shard-sized buffers (16 MiB for 256³ uint8) from several threads in turn, so every arena
ends up holding its own few, and the peak grew with the number of tasks: 260 MiB of
anonymous memory for a 1 GiB input, 317 MiB for 4 GiB, with the same stages; with one arena,
222 and 228 MiB in the same time. The buffers are large and few, so the threads hardly ever
wait for the one arena's lock.

glibc also learns, as large blocks are freed, to serve blocks of up to 32 MiB from its pools
rather than mapping each anew, and to keep up to twice the largest block it has seen freed at
the top of its pool. That second figure is too small for a write: each shard's encoded chunks
(about 16 MiB of 256 KiB blocks) are freed together, the pool is trimmed, and the next shard's
chunks come back as fresh zero-filled pages from the kernel, some 4000 page faults per shard.
Some environments also stop the learning altogether: dask.distributed's nanny sets
``MALLOC_TRIM_THRESHOLD_`` in every worker, and then every block over 128 KiB is mapped,
zero-filled by the kernel and unmapped again. :func:`reuse_large_blocks` fixes both
thresholds at what a write needs.
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
# The ceiling of glibc's own adaptive mmap threshold on 64-bit systems; the trim threshold is
# kept at twice it, as glibc's adaptation does.
_LARGE_BLOCK: Final = 32 * 2**20
_limited = False
_reusing = False


def tune_allocator() -> bool:
    """Tune glibc's malloc of this process for pyramid writes (opt-in; no write calls it).

    Caps malloc at one arena for threads started from now on (:func:`limit_malloc_arenas`),
    so a write's shard-sized buffers are not kept once per thread, and keeps freed blocks of
    up to 32 MiB in malloc's pool rather than handing them back to the kernel after every shard
    (:func:`reuse_large_blocks`). Call it before the threads that write start: first thing in
    a script, or on each dask worker with ``client.run(cellvol.tune_allocator)``.

    Settings the user chose through ``MALLOC_ARENA_MAX`` or ``MALLOC_MMAP_THRESHOLD_`` are left
    alone; elsewhere than glibc this does nothing.

    Returns
    -------
    bool
        True if both settings are in force.
    """
    limited = limit_malloc_arenas()
    return reuse_large_blocks() and limited


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
    """Serve blocks of up to 32 MiB from malloc's pool, and keep up to 64 MiB freed in it.

    Without this, a pool trimmed after every shard hands its memory back to the kernel, which
    zero-fills it again for the next: about 4000 page faults per 16 MiB shard, and about a
    quarter of the system time of a 1 GiB build. Where dask.distributed's nanny has set
    ``MALLOC_TRIM_THRESHOLD_`` (in every worker), glibc stops adapting altogether and maps every
    block over 128 KiB on its own, which slows a build on a dask worker about twofold
    (``docs/benchmarks.md``). The memory kept is memory the write had in use, so the peak does
    not grow with it.

    Idempotent. Does nothing where the C library is not glibc, or where
    ``MALLOC_MMAP_THRESHOLD_`` is set (the user's own choice).

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
