"""Zipped OME-Zarr (``.ozx``, RFC-9): pack a stored image into one file, and unpack it.

The archive follows RFC-9's recommendations: the zip root is the hierarchy's root; entries are
STORED (chunks are already compressed, and a stored entry is read by a plain byte range);
every entry carries ZIP64 fields, so an archive or entry past 4 GiB needs nothing special;
the root ``zarr.json`` comes first, then the other ``zarr.json`` documents breadth-first, then
everything else, both in the files and in the central directory, so that a reader finds the
whole hierarchy's metadata at the start; and the archive comment is the JSON
``{"ome": {"version": ..., "zipFile": {"centralDirectory": {"jsonFirst": true}}}}`` announcing
that order.

Both directions copy one object at a time, in pieces of at most :data:`PIECE_BYTES`, so memory
stays bounded whatever the image's size, and both are atomic: the archive is written as
``OUT.ozx.partial`` and renamed when complete; an unpacked directory is filled under a hidden
temporary name beside it and renamed at the end.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from zarr.abc.store import Store
from zarr.storage import LocalStore

from cellvol._store import (
    ReadAhead,
    list_keys,
    make_durable,
    object_size,
    open_store,
    parse_location,
    read_bytes,
    read_range,
    replace_durably,
    will_read_file,
)
from cellvol._store._zip import ZIP_SUFFIX
from cellvol.errors import (
    InvalidInputError,
    NotOMEZarrError,
    SourceChangedError,
    WriteConflictError,
)
from cellvol.formats._zip_entries import EntryWriter, FileHasher
from cellvol.ome._manifest import LEDGER_PREFIX

__all__ = ["PIECE_BYTES", "entry_order", "pack", "unpack"]

PIECE_BYTES: Final = 64 << 20
"""The most of one object held in memory while it is copied."""

_ROOT_DOCUMENT: Final = "zarr.json"
_DEFAULT_VERSION: Final = "0.5"


def pack(
    image: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Pack a stored OME-Zarr image into a single zipped OME-Zarr file (``.ozx``, RFC-9).

    Parameters
    ----------
    image
        The image's root: a local path or ``s3://`` URL (HTTP cannot list its objects).
    out
        The local file to write; its name must end in ``.ozx``.
    storage_options
        For an S3 ``image``, as in :func:`cellvol.open`.
    overwrite
        Replace ``out`` if it exists.

    Returns
    -------
    pathlib.Path
        The absolute path of the archive written.

    Raises
    ------
    InvalidInputError
        If ``out`` does not end in ``.ozx``, or ``image`` is itself an archive or an HTTP URL.
    NotOMEZarrError
        If ``image`` has no ``zarr.json`` at its root.
    WriteConflictError
        If ``out`` exists and ``overwrite`` is false.
    SourceChangedError
        If an object of ``image`` changed size while it was copied.
    """
    source = parse_location(image)
    target = Path(os.path.abspath(os.fspath(out)))
    if not target.name.lower().endswith(ZIP_SUFFIX) or len(target.name) == len(ZIP_SUFFIX):
        raise InvalidInputError(
            f"{target}: a zipped OME-Zarr's name ends in {ZIP_SUFFIX} (RFC-9)",
            hint=f"name the output like {target.name}{ZIP_SUFFIX}",
        )
    if source.is_archive:
        raise InvalidInputError(f"{source.url} is already a zipped OME-Zarr")
    if source.scheme in ("http", "https"):
        raise InvalidInputError(
            f"cannot pack {source.url}: an HTTP server does not list the objects of an image",
            hint="pack a local or s3:// copy of the image",
        )
    if target.exists() and not overwrite:
        raise WriteConflictError(f"{target} exists", hint="pass {overwrite=True} to replace it")
    store = open_store(source.url, mode="r", storage_options=storage_options)
    keys = [key for key in list_keys(store) if not key.endswith(".partial")]
    root = read_bytes(store, _ROOT_DOCUMENT)
    if root is None:
        raise NotOMEZarrError(f"{source.url} has no {_ROOT_DOCUMENT} at its root: nothing to pack")
    if f"{LEDGER_PREFIX}/job.json" in keys and f"{LEDGER_PREFIX}/complete.json" not in keys:
        # An archive is a finished image: one packed mid-write would hold a mix of states.
        raise WriteConflictError(
            f"{source.url} holds a write that has not finished",
            hint="finish it (resume the write with {resume=True}) before packing",
        )
    comment = {
        "ome": {"version": _ome_version(root), "zipFile": {"centralDirectory": {"jsonFirst": True}}}
    }
    # One temporary name, so that a failed pack is recognised and replaced by the next one.
    partial = target.with_name(f"{target.name}.partial")
    stamp = time.localtime()[:6]
    try:
        with (
            open(partial, "wb", buffering=0) as stream,
            zipfile.ZipFile(stream, "w", zipfile.ZIP_STORED, allowZip64=True) as archive,
        ):
            with EntryWriter(archive, stream) as writer:
                _copy_entries(store, entry_order(keys), writer, stamp, source.url)
            archive.comment = json.dumps(comment, separators=(",", ":")).encode()
        replace_durably(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def unpack(
    archive: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Unpack a zipped OME-Zarr (``.ozx``) into a directory store, object for object.

    Parameters
    ----------
    archive
        The ``.ozx`` file: a local path, ``s3://`` or ``http(s)://`` URL.
    out
        The local directory to create.
    storage_options
        For a remote ``archive``, as in :func:`cellvol.open`.
    overwrite
        Replace ``out`` if it exists.

    Returns
    -------
    pathlib.Path
        The absolute path of the directory written.

    Raises
    ------
    InvalidInputError
        If ``archive`` is not a ``.ozx`` zip file, or names an entry outside its root.
    StoreNotFoundError
        If ``archive`` does not exist.
    WriteConflictError
        If ``out`` exists and ``overwrite`` is false.
    """
    source = parse_location(archive)
    if not source.is_archive:
        raise InvalidInputError(f"{source.url} is not a zipped OME-Zarr (name ending {ZIP_SUFFIX})")
    target = Path(os.path.abspath(os.fspath(out)))
    if target.exists() and not overwrite:
        raise WriteConflictError(f"{target} exists", hint="pass {overwrite=True} to replace it")
    store = open_store(source.url, mode="r", storage_options=storage_options)
    keys = [key for key in list_keys(store) if not key.endswith("/")]  # no directory entries
    for key in keys:
        if key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in key.split("/")):
            raise InvalidInputError(f"{source.url}: entry {key!r} would land outside {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        for key in keys:
            _copy_out(store, key, temporary / key, source.url)
        make_durable(LocalStore(temporary), keys)
        if target.exists():  # overwrite: the old copy goes only once the new one is whole
            retired = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
            os.replace(target, retired)
            os.replace(temporary, target)
            _remove(retired)
        else:
            os.replace(temporary, target)
    except BaseException:
        _remove(temporary)
        raise
    return target


def entry_order(keys: Sequence[str]) -> list[str]:
    """RFC-9's order: the root ``zarr.json``, the other ``zarr.json`` breadth-first, the rest."""
    documents = [k for k in keys if k == _ROOT_DOCUMENT or k.endswith(f"/{_ROOT_DOCUMENT}")]
    documents.sort(key=lambda k: (k.count("/"), k))
    chosen = set(documents)
    return documents + sorted(k for k in keys if k not in chosen)


def _ome_version(root: bytes) -> str:
    try:
        document = json.loads(root)
        version = document["attributes"]["ome"]["version"]
    except (ValueError, KeyError, TypeError):
        return _DEFAULT_VERSION  # a bare zarr hierarchy: the version RFC-9 builds on
    return version if isinstance(version, str) else _DEFAULT_VERSION


def _pieces(store: Store, key: str, where: str) -> Any:
    """Yield the object at ``key`` in pieces of at most :data:`PIECE_BYTES`."""
    size = object_size(store, key)
    if size is None:
        raise SourceChangedError(f"{where}: {key} disappeared while it was copied")
    for start in range(0, size, PIECE_BYTES):
        stop = min(start + PIECE_BYTES, size)
        piece = read_range(store, key, start, stop)
        if piece is None or len(piece) != stop - start:
            raise SourceChangedError(f"{where}: {key} changed size while it was copied")
        yield piece


def _copy_entries(
    store: Store, keys: Sequence[str], writer: EntryWriter, stamp: tuple[int, ...], where: str
) -> None:
    """Every object at ``keys`` into the archive, in that order.

    A local object is copied by the kernel while its CRC-32 is computed on another thread
    (reading a piece at a time, one file ahead of the copy), and the files after it are read
    ahead within the read-ahead budget; anything else is streamed in pieces of at most
    :data:`PIECE_BYTES`.
    """
    if not isinstance(store, LocalStore):
        for key in keys:
            size = object_size(store, key)
            if size is None:
                raise SourceChangedError(f"{where}: {key} disappeared while it was copied")
            writer.add_pieces(_info(key, stamp), size, _pieces(store, key, where))
        return
    root = Path(store.root)
    hasher = FileHasher()
    crcs = ThreadPoolExecutor(1, thread_name_prefix="cellvol-pack-crc")
    try:
        # The CRC-32 thread is the reader the files are hinted ahead of.
        with ReadAhead(keys, lambda key, room: will_read_file(root / key, room)) as ahead:
            futures = (crcs.submit(hasher.crc, root / key) for key in ahead)
            pending = collections.deque(itertools.islice(futures, 1))
            for key in keys:
                pending.extend(itertools.islice(futures, 1))  # the next file's, beside this copy
                crc = pending.popleft()
                try:
                    writer.add_file(_info(key, stamp), root / key, crc)
                except FileNotFoundError:
                    gone = f"{where}: {key} disappeared while it was copied"
                    raise SourceChangedError(gone) from None
    except BaseException:
        hasher.stop()  # the CRC under way ends at its next piece: nothing needs it
        raise
    finally:
        # Joined on every exit: no thread outlives the pack, and no file it opened.
        crcs.shutdown(wait=True, cancel_futures=True)


def _info(key: str, stamp: tuple[int, ...]) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(key, date_time=stamp)  # type: ignore[arg-type]
    info.external_attr = 0o644 << 16  # a regular file, rw-r--r--, for unzip tools
    return info


def _copy_out(store: Store, key: str, path: Path, where: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as stream:
        for piece in _pieces(store, key, where):
            stream.write(piece)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
