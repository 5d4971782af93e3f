"""Durability: flushing what was written to stable storage, so a power cut loses none of it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from zarr.abc.store import Store
from zarr.storage import LocalStore

__all__ = ["make_durable", "replace_durably"]


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
