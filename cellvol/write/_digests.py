"""The records a write leaves at its end (manifest, digests), and keeping the digests true.

:func:`end_records` gathers, from the ledger's one listing of its shard records, what the
manifest and ``_cellvol/digests.json`` (:mod:`cellvol.ome._digests`) say of every shard; the
few metadata documents are hashed as they are read back. :func:`refresh_digests` is for every
later edit of a finished image (its labels group, a label image's colours and annotations,
its segment table): it re-hashes the objects the edit changed and rewrites the record.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from zarr.abc.store import Store

from cellvol._codec._keys import shard_object_key
from cellvol._store import (
    list_keys,
    make_durable,
    open_store,
    parse_location,
    read_bytes,
    read_objects,
    write_bytes,
)
from cellvol._store._lease import take_lease
from cellvol.errors import IntegrityError, WriteConflictError
from cellvol.ome._crate import CRATE_KEY, write_crate
from cellvol.ome._digests import (
    DIGESTS_KEY,
    Digests,
    encode_digests,
    is_recordable,
    parse_digests,
    sha256_hex,
)
from cellvol.ome._manifest import LEASE_KEY, LEDGER_PREFIX, MANIFEST_KEY
from cellvol.write._ledger import Ledger
from cellvol.write._plan import PyramidPlan

__all__ = [
    "editing",
    "end_records",
    "metadata_digests",
    "refresh_crate",
    "refresh_digests",
    "rewrite_crate",
    "write_digests",
]

#: A write's own records that belong in its digests (the shards' records are empty).
JOB_KEY = f"{LEDGER_PREFIX}/job.json"


def end_records(
    ledger: Ledger, plan: PyramidPlan, dtype: np.dtype[Any]
) -> tuple[dict[str, dict[str, tuple[int, str]]], dict[str, dict[str, Any]], Digests]:
    """Every shard's size and fingerprint, every level's layout, and every shard's digest.

    Raises
    ------
    OSError
        If a shard has no record although every task finished.
    """
    finished = ledger.finished()
    shards: dict[str, dict[str, tuple[int, str]]] = {}
    arrays: dict[str, dict[str, Any]] = {}
    digests: Digests = {}
    for number, level in enumerate(plan.levels):
        counts = [-(-n // s) for n, s in zip(level.shape, level.shards, strict=True)]
        entries: dict[str, tuple[int, str]] = {}
        for index in np.ndindex(*counts):
            key = shard_object_key(level.path, index)
            record = finished.get((number, tuple(index)))
            if record is None or record.sha256 is None:
                raise OSError(f"{ledger.url}: shard {key} has no record after every task finished")
            entries[".".join(map(str, index))] = (record.nbytes, record.fingerprint)
            digests[key] = (record.nbytes, record.sha256)
        shards[level.path] = entries
        arrays[level.path] = {
            "shape": list(level.shape),
            "dtype": dtype.name,
            "chunks": list(level.chunks),
            "shards": list(level.shards),
        }
    return shards, arrays, digests


def metadata_digests(
    store: Store, level_paths: Sequence[str], extra: Sequence[str] = ()
) -> Digests:
    """The digests of a freshly written image's documents: its metadata, job and manifest.

    ``extra`` names other documents the write left (its RO-Crate metadata).
    """
    keys = [
        "zarr.json",
        *(f"{path}/zarr.json" for path in level_paths),
        JOB_KEY,
        MANIFEST_KEY,
        *extra,
    ]
    found: Digests = {}
    for key, data in zip(keys, read_objects(store, keys), strict=True):
        if data is None:
            raise OSError(f"{key} is missing although the write just wrote it")
        found[key] = (len(data), sha256_hex(data))
    return found


def write_digests(store: Store, image_prefix: str, objects: Mapping[str, tuple[int, str]]) -> None:
    """Write an image's digests (one object, whole or not at all) and sync it to the disk."""
    key = _prefix(image_prefix) + DIGESTS_KEY
    write_bytes(store, key, encode_digests(dict(sorted(objects.items()))))
    make_durable(store, [key])


def refresh_digests(store: Store, image_prefix: str, keys: Iterable[str]) -> None:
    """Re-hash objects an edit changed and rewrite the image's digests.

    Call it after any change to a finished image's objects, once they are stored (and
    synced), so that :func:`cellvol.verify` finds the image intact. An image without digests
    (written before cellvol recorded them, or by another tool) is left without.

    Parameters
    ----------
    store
        A writable store holding the image.
    image_prefix
        The image's place in ``store``: ``""`` for its root, or ``"labels/cells"``.
    keys
        The changed objects, relative to the image (``"labels/zarr.json"``, ``"zarr.json"``,
        ``"ro-crate-metadata.json"``). A key ending in ``/`` stands for every object under it
        (``"segments/"``): entries under it that no longer exist are dropped. A named object
        that no longer exists is dropped from the record.

    Raises
    ------
    IntegrityError
        If the stored digests are damaged: rewriting them would vouch for damage, so run
        :func:`cellvol.verify` first.
    """
    prefix = _prefix(image_prefix)
    objects = _stored_digests(store, prefix)
    if objects is None:
        return
    changed: set[str] = set()
    for key in keys:
        if key.endswith("/"):
            changed.update(k for k in objects if k.startswith(key))
            changed.update(k[len(prefix) :] for k in list_keys(store, prefix + key))
        else:
            changed.add(key)
    names = sorted(k for k in changed if is_recordable(k))
    # A few at a time: the reads overlap, and memory holds only a batch of objects.
    for start in range(0, len(names), _BATCH):
        batch = names[start : start + _BATCH]
        for key, data in zip(batch, read_objects(store, [prefix + k for k in batch]), strict=True):
            if data is None:
                objects.pop(key, None)
            else:
                objects[key] = (len(data), sha256_hex(data))
    write_digests(store, image_prefix, objects)


@contextmanager
def editing(store: Store, url: str, image_prefixes: Sequence[str] = ("",)) -> Iterator[None]:
    """Hold a finished image's lease for an edit, its digests checked before anything changes.

    Every edit of an image after its write (labels, annotations, its crate) runs inside:
    edits of one image never interleave (each rewrites its digests from what it read), and
    none lands on an image whose digests are damaged, which the edit could not record.

    Parameters
    ----------
    store, url
        The image's store, opened for writing, and its location.
    image_prefixes
        The images whose digests the edit will refresh: ``""`` for the image itself,
        ``"labels/<name>"`` for a label image.

    Raises
    ------
    WriteConflictError
        If another writer holds the image, or its own write has not finished.
    IntegrityError
        If the digests of one of the images are damaged.
    """
    with take_lease(store, url, LEASE_KEY):
        ledger = Ledger(store, url)
        if ledger.job() is not None and not ledger.is_complete():
            raise WriteConflictError(
                f"{url} holds a write that has not finished: it cannot be edited yet",
                hint="finish it (resume the write with {resume=True}) first",
            )
        for prefix in image_prefixes:
            _stored_digests(store, _prefix(prefix))
        yield


def _stored_digests(store: Store, prefix: str) -> Digests | None:
    """The digests of the image at ``prefix`` (None if it has none), refusing damaged ones."""
    where = prefix.rstrip("/") or "the image"
    try:
        return parse_digests(read_bytes(store, prefix + DIGESTS_KEY), where)
    except IntegrityError as exc:
        raise IntegrityError(
            f"{exc.message}; not rewritten, as that would vouch for whatever changed",
            hint="run 'cellvol verify' on the image",
        ) from exc


def rewrite_crate(store: Store, where: str) -> None:
    """Rewrite the image's RO-Crate metadata from what it stores, and re-hash it in its digests.

    Every change that the crate describes (labels written, segments annotated) calls it.
    """
    write_crate(store, where)
    refresh_digests(store, "", [CRATE_KEY])


def refresh_crate(
    image: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> str:
    """Rewrite the crate of an image written earlier (local path or ``s3://`` URL); its URL.

    The image's digests are kept true (see :func:`rewrite_crate`).

    Raises
    ------
    StoreNotFoundError
        If nothing exists at ``image``.
    NotOMEZarrError
        If ``image`` holds no OME-Zarr image at its root.
    ReadOnlyStoreError
        For a location that cannot be written (HTTP, a ``.ozx`` archive).
    """
    location = parse_location(image)
    open_store(location.url, mode="r", storage_options=storage_options)  # it must exist
    store = open_store(location.url, mode="a", storage_options=storage_options)
    with editing(store, location.url):
        rewrite_crate(store, location.url)
    return f"{location.url.rstrip('/')}/{CRATE_KEY}"


_BATCH = 16


def _prefix(image_prefix: str) -> str:
    stripped = image_prefix.strip("/")
    return f"{stripped}/" if stripped else ""
