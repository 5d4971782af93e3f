"""The scan: find every object an image needs, then read each stored object once and check it.

It runs in two passes. The first reads the metadata documents and cellvol's records, image by
image (the image, then each label image), and lists each level's ``c/`` prefix; it notes what
is missing, unreadable or changed, and collects the objects to read. The second reads those
objects on a thread pool, each whole and once, and checks its size and fingerprint against
the manifest and every CRC32C inside it. At most two objects per worker are in flight, so
memory stays bounded by a few shards whatever the image's size.

Objects are read through a source: the store itself, or for a ``.ozx`` the archive's entry
reader, which checks each entry's ZIP CRC-32 over the same bytes. For an archive, and for
the zarr checksum, a third pass reads every object the first two did not (cellvol's many
small records), in runs, so that every object is read once and none twice.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.storage import StorePath

from cellvol._codec._layout import ChunkLayout, chunk_layout
from cellvol._store import (
    list_keys,
    open_archive,
    open_store,
    parse_location,
    read_bytes,
    read_objects,
)
from cellvol._store._nodes import _node_from_document
from cellvol.errors import IntegrityError, MetadataError, NotOMEZarrError
from cellvol.integrity._archive import EntryReader, archive_problems
from cellvol.integrity._digest import ObjectDigests
from cellvol.integrity._report import Problem, ProblemKind, VerifyReport
from cellvol.integrity._shards import check_object
from cellvol.ome._manifest import (
    LEDGER_PREFIX,
    MANIFEST_KEY,
    Manifest,
    layout_differences,
    parse_manifest,
)
from cellvol.ome._metadata import PROVENANCE_KEY, ome_namespace, read_multiscale
from cellvol.ome._validation import validate
from cellvol.progress import ProgressCallback, ProgressReporter

__all__ = ["verify"]

COMPLETE_KEY = f"{LEDGER_PREFIX}/complete.json"
# Objects read or being checked per worker: one at work and one waiting.
_IN_FLIGHT_PER_WORKER = 2

# Objects read in one go by the last pass, which reads cellvol's many small records.
_RUN_KEYS = 32
_Read = tuple[bytes | None, list[Problem]]


class _Source(Protocol):
    """Where the scan reads objects.

    Each read gives the object's bytes (None if absent) and what its container found wrong
    with it (an archive's entry failing its CRC-32, say).
    """

    def read(self, key: str) -> _Read: ...

    def runs(self, keys: Sequence[str]) -> list[list[str]]: ...

    def read_run(self, keys: Sequence[str]) -> list[_Read]: ...


class _StoreSource:
    """A store's objects, read with no container checks; runs are fetched concurrently."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def read(self, key: str) -> _Read:
        return read_bytes(self.store, key), []

    def runs(self, keys: Sequence[str]) -> list[list[str]]:
        return [list(keys[i : i + _RUN_KEYS]) for i in range(0, len(keys), _RUN_KEYS)]

    def read_run(self, keys: Sequence[str]) -> list[_Read]:
        return [(data, []) for data in read_objects(self.store, keys)]


def verify(
    path_or_url: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    zarr_checksum: bool = False,
) -> VerifyReport:
    """Check that a stored OME-Zarr image is whole and unchanged, reading every object once.

    Checks the structure (every level of the image and of each label image exists, the
    OME-Zarr metadata is valid, each array's layout is the one the write recorded), the
    completeness (every shard the write manifest lists exists with its recorded size and
    fingerprint; objects under a level's ``c/`` prefix that it does not list are reported,
    never deleted) and the integrity (every chunk's and every shard index's CRC32C). An
    image written by another tool has no manifest: it is checked by its checksums alone,
    and the report says so.

    A zipped OME-Zarr (``.ozx``) is checked as the image inside, and as an archive: each
    entry's ZIP CRC-32 and local header, entries stored uncompressed, and RFC-9's order and
    archive comment (problems of kind ``archive``). Every entry is read, the image's and
    cellvol's records alike.

    Parameters
    ----------
    path_or_url
        A local path, ``file://``, ``s3://bucket/key`` or ``http(s)://`` URL of the image, or
        of a ``.ozx`` archive. Over HTTP, objects the manifest does not list cannot be found
        in a directory store (HTTP cannot list); an archive lists its own entries.
    storage_options
        Passed to the store (for S3: ``endpoint_url``, ``anon``, ``key``/``secret``...).
    workers
        Threads reading and checking objects; by default one per core.
    progress
        Receives a :class:`~cellvol.ProgressEvent` after each object: one stage per image
        checked (the image, then each label image), ``done``/``total`` objects and ``nbytes``
        stored bytes read.
    zarr_checksum
        Also compute the DANDI zarr checksum of every object under the location (MD5s of the
        bytes read for the checks, plus cellvol's records, each read once), into
        :attr:`VerifyReport.zarr_checksum`. Not for a directory store over HTTP, which cannot
        be listed.

    Returns
    -------
    VerifyReport
        Every problem found (none for an intact image), with what was checked and what could
        not be.

    Raises
    ------
    StoreNotFoundError
        If nothing exists at the location.
    NotOMEZarrError
        If the location holds neither an OME-Zarr image nor cellvol's records of one.
    InvalidInputError
        If a ``.ozx`` is not a readable zip archive (truncated, its central directory
        damaged): no entry can be located.
    AccessDeniedError, EndpointUnreachableError, UnsupportedURLError
        When the store cannot be reached at all.
    """
    location = parse_location(path_or_url)
    store = open_store(location.url, mode="r", storage_options=storage_options)
    archive = open_archive(location, storage_options) if location.is_archive else None
    try:
        source: _Source = _StoreSource(store) if archive is None else EntryReader(archive)
        listable = archive is not None or location.scheme in ("file", "s3")
        digests = ObjectDigests() if zarr_checksum and listable else None
        scan = _Scan(store, location.url, listable=listable, source=source, digests=digests)
        scan.image("")
        if scan.report.images == [] and not scan.report.problems:
            raise NotOMEZarrError(f"{location.url} holds no OME-Zarr image: nothing to verify")
        threads = workers or os.cpu_count() or 1
        scan.check_objects(threads, progress)
        if archive is not None:
            scan.report.problems += archive_problems(archive)
        if archive is not None or digests is not None:
            scan.check_the_rest(threads)
        if digests is not None:
            scan.report.zarr_checksum = digests.zarr_checksum()
        elif zarr_checksum:
            scan.report.unchecked.append(
                "zarr checksum: HTTP cannot list the image's objects, so none can cover them all"
            )
    finally:
        if archive is not None:
            archive.close()
    scan.report.problems.sort(key=lambda p: (p.key, p.kind, p.byte_range or (0, 0)))
    return scan.report


@dataclass(frozen=True, slots=True)
class _Object:
    """A stored object to read and check."""

    key: str
    layout: ChunkLayout
    recorded: tuple[int, str | None] | None
    must_exist: bool


class _Scan:
    def __init__(
        self,
        store: Store,
        url: str,
        *,
        listable: bool,
        source: _Source,
        digests: ObjectDigests | None,
    ) -> None:
        self.store = store
        self.url = url
        self.listable = listable
        self.source = source
        self.digests = digests
        self.report = VerifyReport(url)
        # By image, as report.images: its number of levels, and the objects to read.
        self.objects: list[tuple[int, list[_Object]]] = []
        # Keys read so far (from worker threads too), so that none is read twice.
        self.seen: set[str] = set()
        self._seen_lock = threading.Lock()

    def fetch(self, key: str) -> tuple[bytes | None, list[Problem]]:
        """The object at ``key`` and what its container found wrong; noted for the digest."""
        return self.noted(key, self.source.read(key))

    def noted(self, key: str, read: _Read) -> _Read:
        with self._seen_lock:
            self.seen.add(key)
        if read[0] is not None and self.digests is not None:
            self.digests.add(key, read[0])
        return read

    def fetch_run(self, keys: list[str]) -> list[Problem]:
        reads = self.source.read_run(keys)
        return [p for key, read in zip(keys, reads, strict=True) for p in self.noted(key, read)[1]]

    def read(self, key: str) -> bytes | None:
        """:meth:`fetch` for the metadata pass, which runs on the calling thread."""
        data, problems = self.fetch(key)
        self.report.problems += problems
        return data

    def problem(
        self, key: str, kind: ProblemKind, detail: str, byte_range: tuple[int, int] | None = None
    ) -> None:
        self.report.problems.append(Problem(key, kind, detail, byte_range))

    def document(self, key: str, what: str, *, required: bool = True) -> dict[str, Any] | None:
        """A JSON object stored at ``key``, or None (reported if missing and required)."""
        raw = self.read(key)
        if raw is None:
            if required:
                self.problem(key, "missing", f"{what} is missing")
            return None
        try:
            body = json.loads(raw)
        except ValueError as exc:
            self.problem(key, "unreadable", f"{what} is not valid JSON ({exc})")
            return None
        if not isinstance(body, dict):
            self.problem(key, "unreadable", f"{what} is not a JSON object")
            return None
        return body

    def image(self, prefix: str) -> None:
        """Check one image's documents and records; collect its objects."""
        group_key = f"{prefix}zarr.json"
        manifest_raw = self.read(f"{prefix}{MANIFEST_KEY}")
        has_records = manifest_raw is not None
        document = self.document(
            group_key, "the image's metadata", required=has_records or bool(prefix)
        )
        if document is None:
            return
        attributes = document.get("attributes", {})
        where = f"{self.url}/{prefix}".rstrip("/")
        try:
            multiscale = read_multiscale(attributes, where=where)
        except MetadataError as exc:
            self.problem(group_key, "metadata", exc.message)
            return
        if multiscale is None:
            if prefix or has_records:
                self.problem(group_key, "metadata", "no OME-Zarr multiscales metadata")
            return
        self.report.images.append(prefix.rstrip("/"))
        self.objects.append((len(multiscale.datasets), []))
        for found in validate(attributes):
            self.problem(group_key, "metadata", str(found))
        manifest = self.records(prefix, manifest_raw, cellvol_wrote=PROVENANCE_KEY in attributes)
        for dataset in multiscale.datasets:
            self.level(prefix, dataset.path, manifest)
        if manifest is not None:
            named = {dataset.path for dataset in multiscale.datasets}
            for path in sorted(set(manifest.shards) - named):
                self.problem(
                    f"{prefix}{MANIFEST_KEY}",
                    "metadata",
                    f"the manifest lists level {path!r}, which the metadata does not name",
                )
        if not prefix:
            self.labels()

    def records(self, prefix: str, raw: bytes | None, *, cellvol_wrote: bool) -> Manifest | None:
        """The image's write manifest; checks its completion marker."""
        key = f"{prefix}{MANIFEST_KEY}"
        manifest = None
        try:
            manifest = parse_manifest(raw, key)
        except IntegrityError as exc:
            self.problem(key, "unreadable", exc.message)
        name = prefix.rstrip("/") or "the image"
        if raw is None and cellvol_wrote:
            self.problem(
                key,
                "missing",
                "cellvol wrote this image but its write manifest is missing: lost shards "
                "cannot be told from fill values",
            )
        elif raw is None:
            self.report.unchecked.append(
                f"{name}: no write manifest (not written by cellvol): checked by checksums "
                "alone; a lost shard cannot be told from fill values"
            )
        if cellvol_wrote or raw is not None:
            self.document(f"{prefix}{COMPLETE_KEY}", "the write's completion marker")
        return manifest

    def labels(self) -> None:
        """Check each label image the ``labels`` group names."""
        document = self.document("labels/zarr.json", "the labels group", required=False)
        if document is None:
            return
        names = ome_namespace(document.get("attributes", {})).get("labels", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            self.problem(
                "labels/zarr.json", "metadata", f"'labels' is not a list of names: {names!r}"
            )
            return
        for name in names:
            self.image(f"labels/{name}/")

    def level(self, prefix: str, path: str, manifest: Manifest | None) -> None:
        """Check one level's metadata and layout; collect the objects it should and does hold."""
        base = f"{prefix}{path}"
        key = f"{base}/zarr.json"
        raw = self.read(key)
        if raw is None:
            self.problem(key, "missing", f"level {path!r}, which the metadata names, is missing")
            return
        try:
            array = _node_from_document(StorePath(self.store, base), raw, self.url)
        except MetadataError as exc:
            self.problem(key, "unreadable", exc.message)
            return
        if not isinstance(array, zarr.Array):
            self.problem(key, "metadata", f"level {path!r} is a group, not an array")
            return
        recorded = manifest.arrays.get(path) if manifest is not None else None
        if recorded is not None:
            self.compare_layout(key, array, recorded)
        layout = chunk_layout(array)
        if layout is None:
            self.report.unchecked.append(f"{base}: codecs cellvol does not read; not checked")
            return
        if layout.shards is None and not layout.checksum:
            self.report.unchecked.append(f"{base}: chunks carry no checksum; only listed")
        elif not layout.checksum:
            self.report.unchecked.append(
                f"{base}: chunks carry no checksum; only their shard indexes' are checked"
            )
        listed = manifest.shards.get(path) if manifest is not None else None
        if manifest is not None and listed is None:
            self.problem(
                f"{prefix}{MANIFEST_KEY}", "metadata", f"the manifest omits level {path!r}"
            )
        expected = {
            f"{base}/{layout.chunk_key(_position(name))}": entry
            for name, entry in (listed or {}).items()
        }
        found: set[str] | None = None
        if self.listable:  # not directory entries, which an archive may hold
            found = {k for k in list_keys(self.store, f"{base}/c") if not k.endswith("/")}
        elif manifest is None:
            # HTTP cannot list: try every position of the grid; absent ones are fill values.
            grid = [
                math.ceil(n / s)
                for n, s in zip(array.shape, layout.shards or layout.chunks, strict=True)
            ]
            found = {f"{base}/{layout.chunk_key(p)}" for p in np.ndindex(*grid)}
        else:
            self.report.unchecked.append(
                f"{base}: objects the manifest does not list (HTTP cannot list them)"
            )
        todo = self.objects[-1][1]
        for object_key, entry in sorted(expected.items()):
            if found is not None and self.listable and object_key not in found:
                self.problem(object_key, "missing", "listed in the write's manifest but missing")
                continue
            todo.append(_Object(object_key, layout, entry, must_exist=True))
        for object_key in sorted((found or set()) - set(expected)):
            if manifest is not None:
                self.problem(
                    object_key, "unlisted", "stored under the level but not listed in the manifest"
                )
            todo.append(_Object(object_key, layout, None, must_exist=self.listable))

    def compare_layout(self, key: str, array: zarr.Array[Any], recorded: Mapping[str, Any]) -> None:
        for field, value, created in layout_differences(array, recorded):
            self.problem(key, "layout", f"{field} is {value}, but the write created {created}")

    def check_objects(self, workers: int, progress: ProgressCallback | None) -> None:
        """Read and check every collected object, ``workers`` at a time."""
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="cellvol-verify") as pool:
            for stage, (n_levels, objects) in enumerate(self.objects):
                levels = tuple(range(n_levels))
                reporter = ProgressReporter(progress, stage, levels, len(objects))
                reporter.start()
                for problems, nbytes, chunks in _bounded(pool, self.check_one, objects, workers):
                    self.report.problems += problems
                    self.report.chunks += chunks
                    if nbytes is not None:
                        self.report.shards += 1
                        self.report.nbytes += nbytes
                    reporter.advance(nbytes or 0)

    def check_one(self, item: _Object) -> tuple[list[Problem], int | None, int]:
        data, found = self.fetch(item.key)
        if data is None:
            if item.must_exist and not found:
                return (
                    [Problem(item.key, "missing", "listed in the write's manifest but missing")],
                    None,
                    0,
                )
            return found, None, 0
        problems, chunks = check_object(item.key, data, item.layout, item.recorded)
        return found + problems, len(data), chunks

    def check_the_rest(self, workers: int) -> None:
        """Read every object the image's checks did not (cellvol's records, stray objects).

        For an archive's CRC-32s and for the digest, which cover every object.
        """
        keys = [k for k in list_keys(self.store) if not k.endswith("/") and k not in self.seen]
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="cellvol-verify") as pool:
            for problems in _bounded(pool, self.fetch_run, self.source.runs(keys), workers):
                self.report.problems += problems


def _position(name: str) -> tuple[int, ...]:
    return tuple(int(i) for i in name.split("."))


def _bounded[T, R](
    pool: ThreadPoolExecutor, work: Callable[[T], R], items: list[T], workers: int
) -> Iterator[R]:
    """``work`` over ``items`` on ``pool``, in order, with a bounded number in flight."""
    waiting: deque[Future[R]] = deque()
    for item in items:
        if len(waiting) >= workers * _IN_FLIGHT_PER_WORKER:
            yield waiting.popleft().result()
        waiting.append(pool.submit(work, item))
    while waiting:
        yield waiting.popleft().result()
