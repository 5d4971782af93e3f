"""Durability: flushing what was written to stable storage, so a power cut loses none of it."""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from zarr.abc.store import Store
from zarr.storage import LocalStore

__all__ = ["make_durable", "replace_durably", "start_writeback"]

# sync_file_range's flag that starts writing a range's dirty pages back without waiting.
_SYNC_FILE_RANGE_WRITE = 2


def make_durable(store: Store, keys: Iterable[str]) -> None:
    """Flush the objects at ``keys`` to stable storage, so that a power cut loses none of them.

    :func:`write_bytes` leaves a local file in the kernel's page cache, which survives the
    process (a kill) but not the machine (a crash or power cut). This syncs each file, then
    every directory from the file's up to the store's parent, so that the names survive too
    (a new file or directory is an entry in its parent). An object store's write is durable
    when it returns: there is nothing to do.
    """
    if not isinstance(store, LocalStore):
        return
    root = Path(store.root)
    top = root.parent
    directories: set[Path] = set()
    for key in keys:
        path = root / key
        _fsync(path)
        directories.update(p for p in path.parents if p == top or top in p.parents)
    # Deepest first: a directory's entry is flushed after the directory's own contents.
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        _fsync(directory)


def replace_durably(finished: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename a finished local file over ``target`` so that a crash leaves the old or the new.

    The file's data is flushed before the rename and the directory after it. Without the first,
    a power cut soon after the rename can leave ``target`` naming a file whose data never
    reached the disk (empty or short) although the rename did.
    """
    _fsync(Path(finished))
    os.replace(finished, target)
    _fsync(Path(target).parent)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def start_writeback(descriptor: int, start: int, stop: int) -> None:
    """Start writing bytes ``start`` to ``stop`` of an open local file to disk.

    It returns without waiting for the writes to finish (it may block while the device
    queue is full).

    A large file written in full and then synced leaves the disk idle while it is written
    and the writer idle while it is synced; started a range at a time as the file grows, the
    disk writes while the rest is produced, and the final ``fsync`` has little left to wait
    for. Only a hint (``sync_file_range(SYNC_FILE_RANGE_WRITE)``, Linux): it makes nothing
    durable, and where it is not available nothing is done.
    """
    call = _sync_file_range()
    if call is not None and stop > start:
        # A refusal (a file system without it) changes nothing: the final fsync writes it all.
        call(descriptor, start, stop - start, _SYNC_FILE_RANGE_WRITE)


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """The C library's ``sync_file_range``, or None off Linux or where it lacks one."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function
