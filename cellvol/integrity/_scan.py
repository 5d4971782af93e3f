"""The scan: find every object an image needs, then read each stored object once and check it.

It runs in two passes. The first reads the metadata documents and cellvol's records, image by
image (the image, then each label image), checking each document against the image's digests
as it reads it, and lists the store once; it notes what is missing, unreadable, changed or
unlisted, and collects the objects to read (the RO-Crate, whose check loads rocrate unless its
digest vouches for it, is checked on a thread of its own during the second pass). The second
reads those objects on a thread pool, each whole and once, and checks its size and fingerprint
against the manifest, every CRC32C inside it and its SHA-256 against the digests. At most two
objects per worker are in flight, so memory stays bounded by a few shards whatever the image's
size.

Objects are read through a source (``_sources``): the store itself, or for a ``.ozx`` the
archive's entry reader, which checks each entry's ZIP CRC-32 over the same bytes. For an
archive, and for the zarr checksum, a last pass reads every object the others did not
(cellvol's many small records), in runs, so that every object is read once and none twice.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.storage import StorePath

from cellvol._codec._layout import ChunkLayout, chunk_layout
from cellvol._store import ReadAhead, list_keys, read_objects
from cellvol._store._nodes import _node_from_document
from cellvol.errors import IntegrityError, MetadataError
from cellvol.integrity._digests import digest_problem, marker_format
from cellvol.integrity._pool import IN_FLIGHT_PER_WORKER, bounded
from cellvol.integrity._report import Problem, ProblemKind, VerifyReport
from cellvol.integrity._shards import check_object
from cellvol.integrity._sources import Read, Source
from cellvol.integrity._zarr_checksum import ZarrChecksum
from cellvol.ome._crate import CRATE_KEY, crate_problems
from cellvol.ome._digests import (
    COMPLETE_FORMAT,
    COMPLETE_KEY,
    DIGESTS_KEY,
    is_recordable,
    parse_digests,
)
from cellvol.ome._manifest import MANIFEST_KEY, Manifest, layout_differences, parse_manifest
from cellvol.ome._metadata import PROVENANCE_KEY, ome_namespace, read_multiscale
from cellvol.ome._validation import validate
from cellvol.progress import ProgressCallback, ProgressReporter

__all__ = ["Scan"]


@dataclass(frozen=True, slots=True)
class _Object:
    """A stored object to read and check.

    Its shard layout (None: not a shard, or one whose level's metadata changed), and what the
    manifest and the digests record of it.
    """

    key: str
    layout: ChunkLayout | None
    recorded: tuple[int, str | None] | None
    must_exist: bool
    digest: tuple[int, str] | None = None


class Scan:
    """One verification's scan of a store: its findings go into :attr:`report`."""

    def __init__(
        self,
        store: Store,
        url: str,
        *,
        listable: bool,
        source: Source,
        checksum: ZarrChecksum | None,
    ) -> None:
        self.store = store
        self.url = url
        self.listable = listable
        self.source = source
        self.checksum = checksum
        self.report = VerifyReport(url)
        # By image, as report.images: its number of levels, and the objects to read.
        self.objects: list[tuple[int, list[_Object]]] = []
        # Every image's digests by full key, and the keys already read, queued or reported.
        self.digests: dict[str, tuple[int, str]] = {}
        self.accounted: set[str] = set()
        self._listing: list[str] | None = None
        # The images whose digests record exists, readable or not.
        self.stored_digests: set[str] = set()
        # Keys read so far (from worker threads too), so that the last pass reads none twice.
        self.seen: set[str] = set()
        self._seen_lock = threading.Lock()
        # The RO-Crate's check under way (see crate): its thread, its result to come, and the
        # keys reported before it began.
        self._crate: (
            tuple[ThreadPoolExecutor, Future[tuple[list[str], list[str]]], set[str]] | None
        ) = None

    def __enter__(self) -> Scan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """End the RO-Crate's check if :meth:`crate_checked` did not: on an error's way out.

        A check not yet begun is cancelled; one under way is waited for (a thread cannot be
        stopped), so that it never outlives the verification. Its findings are dropped, and so
        is any error it raised: the error that ended the verification is the one to report.
        """
        if self._crate is None:
            return
        pool, pending, _ = self._crate
        self._crate = None
        pending.cancel()
        pool.shutdown(wait=True)

    def listing(self, prefix: str) -> list[str]:
        """Every stored key under ``prefix`` (the whole store is listed once)."""
        if self._listing is None:
            # Not directory entries, which an archive may hold.
            self._listing = sorted(k for k in list_keys(self.store, "") if not k.endswith("/"))
        # Sorted: the keys under a prefix are one run, found by bisection.
        start = bisect.bisect_left(self._listing, prefix)
        stop = start
        while stop < len(self._listing) and self._listing[stop].startswith(prefix):
            stop += 1
        return self._listing[start:stop]

    def fetch(self, key: str) -> Read:
        """The object at ``key`` and what its container found wrong with it."""
        return self.noted(key, self.source.read(key))

    def noted(self, key: str, read: Read) -> Read:
        """``read``, its key noted as read and its bytes in the zarr checksum."""
        with self._seen_lock:
            self.seen.add(key)
        if read[0] is not None and self.checksum is not None:
            self.checksum.add(key, read[0])
        return read

    def raw(self, key: str) -> bytes | None:
        """An object read by the metadata pass (on the calling thread)."""
        data, problems = self.fetch(key)
        self.report.problems += problems
        return data

    def read(self, key: str) -> bytes | None:
        """An object read in the first pass, checked against the digests if they list it."""
        raw = self.raw(key)
        self.matches_digest(key, raw)
        return raw

    def matches_digest(self, key: str, raw: bytes | None) -> bool:
        """False (and the problem reported) if the digests list ``key`` and it differs."""
        recorded = self.digests.get(key)
        if recorded is None:
            return True
        self.accounted.add(key)
        if raw is None:
            self.problem(key, "missing", "listed in the image's digests but missing")
            return False
        found = digest_problem(key, raw, recorded)
        if found is not None:
            self.report.problems.append(found)
        return found is None

    def problem(
        self, key: str, kind: ProblemKind, detail: str, byte_range: tuple[int, int] | None = None
    ) -> None:
        self.report.problems.append(Problem(key, kind, detail, byte_range))

    def document(self, key: str, what: str, *, required: bool = True) -> dict[str, Any] | None:
        """A JSON object stored at ``key``, or None (reported if missing and required)."""
        raw = self.read(key)
        if raw is None:
            if required and key not in self.digests:
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
        has_digests = self.image_digests(prefix)
        manifest_raw = self.raw(f"{prefix}{MANIFEST_KEY}")
        # A manifest that fails its digest is not trusted to blame the shards it lists; a
        # missing one is reported by the records' check, which says what its loss means.
        trusted = True
        if manifest_raw is None:
            self.accounted.add(f"{prefix}{MANIFEST_KEY}")
        else:
            trusted = self.matches_digest(f"{prefix}{MANIFEST_KEY}", manifest_raw)
        has_records = manifest_raw is not None or has_digests
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
        todo: list[_Object] = []
        self.objects.append((len(multiscale.datasets), todo))
        for found in validate(attributes):
            self.problem(group_key, "metadata", str(found))
        manifest = self.records(
            prefix, manifest_raw, cellvol_wrote=PROVENANCE_KEY in attributes, digests=has_digests
        )
        if not trusted:
            manifest = None
        for dataset in multiscale.datasets:
            self.level(prefix, dataset.path, manifest, digests=has_digests)
        if manifest is not None:
            named = {dataset.path for dataset in multiscale.datasets}
            for path in sorted(set(manifest.shards) - named):
                self.problem(
                    f"{prefix}{MANIFEST_KEY}",
                    "metadata",
                    f"the manifest lists level {path!r}, which the metadata does not name",
                )
        labels = self.labels() if not prefix else []
        if not prefix:
            self.crate()
        if has_digests:
            self.rest_of_digests(prefix, labels, todo)

    def image_digests(self, prefix: str) -> bool:
        """Read the image's digests into :attr:`digests`; whether they could be."""
        key = f"{prefix}{DIGESTS_KEY}"
        raw = self.raw(key)
        if raw is not None:
            self.stored_digests.add(prefix)
        try:
            found = parse_digests(raw, key)
        except IntegrityError as exc:
            self.problem(key, "unreadable", exc.message)
            return False
        if found is None:
            return False
        self.digests.update((f"{prefix}{k}", v) for k, v in found.items())
        return True

    def rest_of_digests(self, prefix: str, labels: list[str], todo: list[_Object]) -> None:
        """Queue the digested objects not read yet; report objects nothing accounts for.

        Objects of the image's label images are left to their own scans.
        """
        for key, recorded in sorted(self.digests.items()):
            if key.startswith(prefix) and key not in self.accounted:
                nested = any(key.startswith(f"{prefix}labels/{name}/") for name in labels)
                if not nested:
                    self.accounted.add(key)
                    todo.append(_Object(key, None, None, must_exist=True, digest=recorded))
        if not self.listable:
            return
        nested_prefixes = tuple(f"{prefix}labels/{name}/" for name in labels)
        for key in self.listing(prefix):
            relative = key[len(prefix) :]
            if (
                key in self.digests
                or key in self.accounted
                or not is_recordable(relative)
                or key.startswith(nested_prefixes)
            ):
                continue
            self.accounted.add(key)
            self.problem(key, "unlisted", "stored in the image but not listed in its digests")

    def records(
        self, prefix: str, raw: bytes | None, *, cellvol_wrote: bool, digests: bool
    ) -> Manifest | None:
        """The image's write manifest; checks its completion marker and what it promises."""
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
        if cellvol_wrote or raw is not None or digests:
            self.marker(prefix, name, digests=digests, has_manifest=raw is not None)
        return manifest

    def crate(self) -> None:
        """Start checking the RO-Crate metadata, when the image has one; see :meth:`crate_checked`.

        A crate whose bytes match the image's digests is the one cellvol built with rocrate:
        its structure is checked without importing rocrate. Any other is loaded with rocrate,
        which takes several times as long as the rest of the metadata pass. Either check runs
        on a thread of its own beside the objects' checks, as it needs nothing they find.
        """
        raw = self.raw(CRATE_KEY)
        recorded = CRATE_KEY in self.digests
        matches = self.matches_digest(CRATE_KEY, raw)
        if raw is None:
            return
        as_written = recorded and matches
        self.report.crate = "digest" if as_written else "rocrate"
        pool = ThreadPoolExecutor(1, thread_name_prefix="cellvol-verify-crate")
        check = pool.submit(crate_problems, raw, as_written=as_written)
        self._crate = (pool, check, {p.key for p in self.report.problems})

    def crate_checked(self) -> None:
        """Report the RO-Crate's problems, once its check is done.

        It must be JSON-LD that rocrate loads, listing objects the image holds (those reported
        missing before its check started are not reported again).
        """
        if self._crate is None:
            return
        pool, pending, reported = self._crate
        self._crate = None
        try:
            problems, keys = pending.result()
        finally:
            pool.shutdown(wait=True)  # its thread ends with its one task
        unlisted = [k for k in keys if k not in reported]
        if self.listable:  # the listing tells, and spares reading them
            stored = set(self.listing(""))
            absent = [key for key in unlisted if key not in stored]
        else:
            held = read_objects(self.store, unlisted)
            absent = [key for key, found in zip(unlisted, held, strict=True) if found is None]
        problems += [f"it lists {key}, which the image does not hold" for key in absent]
        for problem in problems:
            self.problem(CRATE_KEY, "metadata", f"RO-Crate metadata: {problem}")

    def marker(self, prefix: str, name: str, *, digests: bool, has_manifest: bool) -> None:
        """Check the completion marker, and that the digests it promises exist."""
        key = f"{prefix}{COMPLETE_KEY}"
        raw = self.raw(key)
        if raw is None:
            self.problem(key, "missing", "the write's completion marker is missing")
            return
        version = marker_format(raw)
        if isinstance(version, str):
            self.problem(key, "unreadable", version)
        elif version >= COMPLETE_FORMAT and not digests:
            if prefix not in self.stored_digests:
                self.problem(
                    f"{prefix}{DIGESTS_KEY}",
                    "missing",
                    "the completion marker says the write recorded digests, but they are missing",
                )
        elif version < COMPLETE_FORMAT and digests:
            self.problem(
                key,
                "unreadable",
                f"the completion marker is in format {version}, which predates digests, but "
                "the image has them: the marker was changed",
            )
        elif version < COMPLETE_FORMAT and has_manifest:
            self.report.unchecked.append(
                f"{name}: written before cellvol recorded digests: checked by the manifest "
                "and checksums alone; a changed document that stays valid goes unnoticed"
            )

    def labels(self) -> list[str]:
        """Check each label image the ``labels`` group names; return their names.

        When the group's document is damaged its list cannot be trusted: where the store can
        be listed, the label images stored (``labels/<name>/zarr.json``) are checked instead.
        """
        key = "labels/zarr.json"
        document = self.document(key, "the labels group", required=False)
        names = ome_namespace(document.get("attributes", {})).get("labels", []) if document else []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            self.problem(key, "metadata", f"'labels' is not a list of names: {names!r}")
            names = []
        if self.listable and any(p.key == key for p in self.report.problems):
            stored = self.listing("labels/")
            names = sorted(
                {k.split("/")[1] for k in stored if k.count("/") == 2 and k.endswith("/zarr.json")}
            )
        for name in names:
            self.image(f"labels/{name}/")
        return names

    def level(self, prefix: str, path: str, manifest: Manifest | None, *, digests: bool) -> None:
        """Check one level's metadata and layout; collect the objects it should and does hold.

        With the image's ``digests``, they name the level's shards; a level whose metadata
        fails its digest has its shards checked by their digests alone, as its layout may lie.
        """
        base = f"{prefix}{path}"
        key = f"{base}/zarr.json"
        raw = self.raw(key)
        trusted = self.matches_digest(key, raw)
        if raw is None:
            if key not in self.digests:
                self.problem(
                    key, "missing", f"level {path!r}, which the metadata names, is missing"
                )
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
        expected: dict[str, tuple[int, str | None] | None] = {
            f"{base}/{layout.chunk_key(_position(name))}": entry
            for name, entry in (listed or {}).items()
        }
        if digests:
            shards = f"{base}/c/"
            expected = {k: expected.get(k) for k in self.digests if k.startswith(shards)}
        found: set[str] | None = None
        if self.listable:
            found = set(self.listing(f"{base}/c"))
        elif manifest is None and not digests:
            # HTTP cannot list: try every position of the grid; absent ones are fill values.
            grid = [
                math.ceil(n / s)
                for n, s in zip(array.shape, layout.shards or layout.chunks, strict=True)
            ]
            found = {f"{base}/{layout.chunk_key(p)}" for p in np.ndindex(*grid)}
        else:
            self.report.unchecked.append(
                f"{base}: objects {'the digests do' if digests else 'the manifest does'} not "
                "list (HTTP cannot list them)"
            )
        todo = self.objects[-1][1]
        shard_layout = layout if trusted else None
        records = "image's digests" if digests else "write's manifest"
        for object_key, entry in sorted(expected.items()):
            self.accounted.add(object_key)
            if found is not None and self.listable and object_key not in found:
                self.problem(object_key, "missing", f"listed in the {records} but missing")
                continue
            digest = self.digests.get(object_key)
            todo.append(_Object(object_key, shard_layout, entry, True, digest))
        for object_key in sorted((found or set()) - set(expected)):
            self.accounted.add(object_key)
            if manifest is not None or digests:
                self.problem(
                    object_key,
                    "unlisted",
                    f"stored under the level but not listed in the {records}",
                )
            todo.append(_Object(object_key, shard_layout, None, must_exist=self.listable))

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
                # The source reads ahead of the workers, within one budget of bytes; the pool
                # takes its first objects at once, before the hints start: those are hinted too.
                held = workers * IN_FLIGHT_PER_WORKER + 1
                with ReadAhead(objects, self.prefetch, held=held) as ahead:
                    for problems, nbytes, chunks in bounded(pool, self.check_one, ahead, workers):
                        self.report.problems += problems
                        self.report.chunks += chunks
                        if nbytes is not None:
                            self.report.shards += 1
                            self.report.nbytes += nbytes
                        reporter.advance(nbytes or 0)

    def prefetch(self, item: _Object, limit: int) -> int:
        return self.source.prefetch(item.key, limit)

    def check_one(self, item: _Object) -> tuple[list[Problem], int | None, int]:
        data, found = self.fetch(item.key)
        if data is None:
            if item.must_exist and not found:
                records = "image's digests" if item.digest is not None else "write's manifest"
                return (
                    [Problem(item.key, "missing", f"listed in the {records} but missing")],
                    None,
                    0,
                )
            return found, None, 0
        problems: list[Problem] = []
        chunks = 0
        if item.layout is not None:
            problems, chunks = check_object(item.key, data, item.layout, item.recorded)
        # A digest that differs says nothing the checks above have not said more precisely.
        if item.digest is not None and not problems:
            digest = digest_problem(item.key, data, item.digest)
            problems += [digest] if digest is not None else []
        return found + problems, len(data), chunks

    def check_the_rest(self, workers: int) -> None:
        """Read every object the image's checks did not (cellvol's records, stray objects).

        For an archive's CRC-32s and for the zarr checksum, which cover every object.
        """
        keys = [k for k in self.listing("") if k not in self.seen]
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="cellvol-verify") as pool:
            for problems in bounded(pool, self.fetch_run, self.source.runs(keys), workers):
                self.report.problems += problems

    def fetch_run(self, keys: list[str]) -> list[Problem]:
        reads = self.source.read_run(keys)
        return [p for key, read in zip(keys, reads, strict=True) for p in self.noted(key, read)[1]]


def _position(name: str) -> tuple[int, ...]:
    return tuple(int(i) for i in name.split("."))
