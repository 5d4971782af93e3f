"""The network sessions of the S3 and HTTP filesystems cellvol opens, and closing them."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any, Final

from zarr.core.sync import sync

__all__ = ["close_sessions", "track"]

# By id, not in a WeakSet: fsspec filesystems with equal options compare equal, yet each
# filesystem opened with skip_instance_cache has a session of its own.
_OPENED: Final[dict[int, weakref.ref[Any]]] = {}
# The attribute holding each kind of filesystem's client or session.
_SESSION_ATTRIBUTES: Final = ("_s3", "_session")


def track(fs: Any) -> None:
    """Remember ``fs`` so that :func:`close_sessions` can close its session later."""
    key = id(fs)
    _OPENED[key] = weakref.ref(fs, lambda _: _OPENED.pop(key, None))


def close_sessions(timeout: float = 5.0) -> None:
    """Close the network sessions of every S3 and HTTP filesystem opened so far.

    For a process about to exit (the ``cellvol`` command): aiohttp reports every session still
    open at exit as "Unclosed client session". Stores opened before stay usable: their
    filesystems open a new session on their next request. Best effort: a session is closed on
    zarr's event loop, where zarr's synchronous API opened it; one that belongs to another
    loop, or does not close within ``timeout`` seconds, is left to the garbage collector.
    """
    for reference in list(_OPENED.values()):
        fs = reference()
        for attribute in _SESSION_ATTRIBUTES:
            session = getattr(fs, attribute, None)
            if session is not None and hasattr(session, "close"):
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    sync(session.close(), timeout=timeout)
                # Forgotten, so that the filesystem (which fsspec caches and hands out again)
                # opens a new session on its next request instead of using the closed one.
                with contextlib.suppress(Exception):
                    setattr(fs, attribute, None)
    _OPENED.clear()
