"""Keep freed buffers of a pyramid write from piling up in the C allocator.

glibc's malloc gives each thread that allocates its own pool (an *arena*) and keeps memory
freed in an arena for that arena's later use instead of returning it. A write allocates
shard-sized buffers (16 MiB for 256³ uint8) from several threads in turn, so every arena
ends up holding its own few, and the peak grew with the number of tasks: 260 MiB of
anonymous memory for a 1 GiB input, 317 MiB for 4 GiB, with the same stages. With one arena
the same builds peaked at 222 and 228 MiB and took as long (docs/pyramid.md, Memory). The
buffers are large and few, so the threads hardly ever wait for the one arena's lock.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Final

# mallopt's parameter number for the arena limit, from glibc's malloc.h.
_M_ARENA_MAX: Final = -8
_limited = False


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
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    # The interpreter's own symbols include its C library's (no find_library: that runs
    # ldconfig or a compiler to locate a file name).
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False  # musl and others: no arenas to limit
    _limited = bool(libc.mallopt(_M_ARENA_MAX, arenas))
    return _limited
