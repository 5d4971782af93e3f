"""Plain objects in a store: bookkeeping documents, not chunks.

Blocking helpers: call them from any thread but zarr's I/O loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore

from cellvol._store._s3 import S3Store
from cellvol.errors import ReadOnlyStoreError

__all__ = [
    "delete_all_but",
    "delete_prefix",
    "is_local_store",
    "list_keys",
    "list_sizes",
    "object_size",
    "read_bytes",
    "read_objects",
    "read_range",
    "read_tail",
    "write_bytes",
]


def _read_local(path: Path, byte_range: ByteRequest | None) -> bytes | None:
    """A local object's bytes (or the part ``byte_range`` asks for), as zarr's store reads it."""
    try:
        with open(path, "rb") as stream:
            if isinstance(byte_range, RangeByteRequest):
                stream.seek(byte_range.start)
                return stream.read(max(0, byte_range.end - byte_range.start))
            if isinstance(byte_range, SuffixByteRequest):
                size = os.fstat(stream.fileno()).st_size
                stream.seek(max(0, size - byte_range.suffix))
            elif isinstance(byte_range, OffsetByteRequest):
                stream.seek(byte_range.offset)
            return stream.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def read_bytes(store: Store, key: str) -> bytes | None:
    """Return the whole object at ``key``, or None if there is none.

    Parameters
    ----------
    store
        A store from :func:`open_store`.
    key
        The object's key, relative to the store's root (``"a/zarr.json"``).
    """
    return read_objects(store, [key])[0]


def read_tail(store: Store, key: str, nbytes: int) -> bytes | None:
    """The last ``nbytes`` bytes of the object at ``key`` (fewer if it is shorter), or None."""
    return read_objects(store, [key], SuffixByteRequest(nbytes))[0]


def read_range(store: Store, key: str, start: int, stop: int) -> bytes | None:
    """Bytes ``start`` to ``stop`` (exclusive) of the object at ``key``, or None if there is none.

    For copying an object larger than memory should hold, a piece at a time.
    """
    return read_objects(store, [key], RangeByteRequest(start, stop))[0]


def read_objects(
    store: Store, keys: Sequence[str], byte_range: ByteRequest | None = None
) -> list[bytes | None]:
    """Return the objects at ``keys``, fetched concurrently; None for each missing one.

    With ``byte_range``, that part of each object (its tail, say). On S3 and HTTP the
    requests overlap, so reading a few objects costs about one round trip instead of one each.
    """
    if not keys:
        return []
    if isinstance(store, LocalStore):
        # Plain reads in the calling thread: zarr's route (its I/O loop, a buffer, a copy out
        # of it) costs a local read about three times what the file system does.
        root = Path(store.root)
        return [_read_local(root / key, byte_range) for key in keys]
    prototype = default_buffer_prototype()

    async def fetch_all() -> list[Any]:
        return await asyncio.gather(
            *(store.get(key, prototype=prototype, byte_range=byte_range) for key in keys)
        )

    return [None if buffer is None else buffer.to_bytes() for buffer in sync(fetch_all())]


def write_bytes(
    store: Store, key: str, data: bytes | Sequence[bytes], sha256: str | None = None
) -> None:
    """Write ``data`` as the whole object at ``key``, replacing any object there.

    ``data`` may be a sequence of parts, stored as their concatenation: a local store writes
    them one after the other without joining them first (an encoded shard is a hundred parts
    and most of a shard's size, so a join would copy every byte once more).

    ``sha256``: the SHA-256 of ``data`` (64 hex digits), when the caller has it. An S3 store
    sends it for the server to check the body against (``x-amz-checksum-sha256``), in place
    of the two digests the client would otherwise compute over the body (see
    :mod:`cellvol._store._s3fs`); other stores ignore it.

    The object appears whole or not at all: a local file is written under a temporary name
    ending in ``.<32 hex digits>.partial`` (the name zarr's own local store uses, which an
    interrupted write's clean-up looks for) and then renamed; object stores write atomically.

    Raises
    ------
    ReadOnlyStoreError
        If the store was opened read-only.
    """
    _check_writable(store, key)
    parts: Sequence[bytes] = [data] if isinstance(data, bytes) else data
    if isinstance(store, LocalStore):
        _write_local_file(Path(store.root) / key, parts)
    elif sha256 is not None and isinstance(store, S3Store):
        sync(store.set_verified(key, b"".join(parts), sha256))
    else:
        joined = b"".join(parts)
        sync(store.set(key, default_buffer_prototype().buffer.from_bytes(joined)))


def _write_local_file(path: Path, parts: Sequence[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with open(temporary, "wb") as stream:
            stream.writelines(parts)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        if exc.filename is None:  # a failed write() names no file: say which one
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def is_local_store(store: Store) -> bool:
    """Whether ``store`` keeps its objects as files on this machine's file system."""
    return isinstance(store, LocalStore)


def object_size(store: Store, key: str) -> int | None:
    """Return the size in bytes of the object at ``key``, or None if there is none."""
    try:
        return sync(store.getsize(key))
    except FileNotFoundError:
        return None


def list_keys(store: Store, prefix: str = "") -> list[str]:
    """Return the sorted keys of every object under ``prefix``, relative to the store's root.

    Parameters
    ----------
    store
        A store from :func:`open_store` (not HTTP: HTTP servers cannot list reliably).
    prefix
        A "directory": ``""`` for the whole store, ``"a/b"`` (or ``"a/b/"``) for the objects
        whose keys start with ``"a/b/"``.
    """
    return sync(_list_keys(store, prefix))


def list_sizes(store: Store, prefix: str = "") -> dict[str, int] | None:
    """The size in bytes of every object under ``prefix`` (as :func:`list_keys` names them).

    One listing on S3 (its entries carry the sizes), a stat per file on a local disk. None
    for stores that cannot list (HTTP).
    """
    if not store.supports_listing:
        return None
    if isinstance(store, FsspecStore):
        protocols = store.fs.protocol
        if {"http", "https"} & set([protocols] if isinstance(protocols, str) else protocols):
            return None  # an HTTP server's listing (its index pages) is no reliable record
        root = store.path.rstrip("/")
        directory = prefix.strip("/")
        try:
            found = sync(store.fs._find(f"{root}/{directory}" if directory else root, detail=True))
        except FileNotFoundError:
            return {}
        start = f"{root}/"
        return {
            path[len(start) :]: int(info["size"])
            for path, info in found.items()
            if path.startswith(start) and info.get("type", "file") != "directory"
        }
    keys = list_keys(store, prefix)
    if isinstance(store, LocalStore):
        folder = Path(store.root)
        sizes: dict[str, int] = {}
        for key in keys:
            with contextlib.suppress(FileNotFoundError):  # deleted since the listing
                sizes[key] = (folder / key).stat().st_size
        return sizes
    return {key: size for key in keys if (size := object_size(store, key)) is not None}


def delete_prefix(store: Store, prefix: str) -> None:
    """Delete the object ``prefix`` and every object under ``prefix/``; ``""`` empties the store.

    Whole key components only: ``delete_prefix(store, "a/b")`` leaves ``"a/bc"`` alone.
    Deleting what does not exist is not an error.

    Raises
    ------
    ReadOnlyStoreError
        If the store was opened read-only.
    """
    _check_writable(store, prefix)
    sync(_delete_prefix(store, prefix.strip("/")))


def delete_all_but(store: Store, kept: str) -> None:
    """Empty the store except for the object ``kept`` (a lease that must outlive the rest).

    Raises
    ------
    ReadOnlyStoreError
        If the store was opened read-only.
    """
    _check_writable(store, "")
    sync(_delete_all_but(store, kept.strip("/")))


async def _delete_all_but(store: Store, kept: str) -> None:
    # Walk down the kept object's directories, deleting every other child whole on the way:
    # a local store removes a directory in one call, an object store lists it once.
    chain = kept.split("/")[:-1]
    for depth in range(len(chain) + 1):
        here = "/".join(chain[:depth])
        spared = {kept, "/".join(chain[: depth + 1])}
        children = [child async for child in store.list_dir(here)]
        for child in children:
            name = f"{here}/{child}" if here else child
            if name not in spared:
                await _delete_prefix(store, name)


def _check_writable(store: Store, key: str) -> None:
    if store.read_only:
        raise ReadOnlyStoreError(f"cannot write {key!r}: {store} was opened read-only")


async def _list_keys(store: Store, prefix: str) -> list[str]:
    directory = prefix.strip("/")
    start = f"{directory}/" if directory else ""
    keys: set[str] = set()
    try:
        async for key in store.list_prefix(start):
            if key.startswith(start):
                keys.add(key)
    except FileNotFoundError:
        pass
    return sorted(keys)


async def _delete_prefix(store: Store, prefix: str) -> None:
    if isinstance(store, LocalStore):  # removes the emptied directories too
        if not prefix:
            with contextlib.suppress(FileNotFoundError):  # a local root never created
                await store.clear()
            return
        if await store.exists(prefix):
            await store.delete(prefix)
        await store.delete_dir(prefix)
        return
    # Not FsspecStore.clear / delete_dir: in zarr 3.4 the first stops at the first key that a
    # recursive delete already removed, and either may reach for the bucket itself.
    keys = await _list_keys(store, prefix)
    if prefix and await store.exists(prefix):
        keys.append(prefix)
    if not keys:
        return
    if isinstance(store, FsspecStore):  # batched: one request per 1000 S3 objects
        root = store.path.rstrip("/")
        await store.fs._rm([f"{root}/{key}" for key in keys])
    else:
        for key in keys:
            await store.delete(key)
