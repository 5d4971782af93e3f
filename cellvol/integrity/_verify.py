"""The entry point of a verification: open the location, scan it, and run the optional passes.

The scan itself (``_scan``) reads every object once; for a ``.ozx`` the archive's own checks
(``_archive``) are added, and ``deep`` adds the recomputation of the pyramid (``_deep``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from cellvol._store import open_archive, open_store, parse_location
from cellvol.errors import NotOMEZarrError
from cellvol.integrity._archive import EntryReader, archive_problems
from cellvol.integrity._deep import check_pyramids, deep_fraction
from cellvol.integrity._report import VerifyReport
from cellvol.integrity._scan import Scan
from cellvol.integrity._sources import Source, StoreSource
from cellvol.integrity._zarr_checksum import ZarrChecksum
from cellvol.progress import ProgressCallback

__all__ = ["verify"]


def verify(
    path_or_url: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    deep: bool | float = False,
    seed: int | None = None,
    zarr_checksum: bool = False,
) -> VerifyReport:
    """Check that a stored OME-Zarr image is whole and unchanged, reading every object once.

    Checks the structure (every level of the image and of each label image exists, the
    OME-Zarr metadata is valid, each array's layout is the one the write recorded), the
    completeness (every shard the write manifest lists exists with its recorded size and
    fingerprint; objects under a level's ``c/`` prefix that it does not list are reported,
    never deleted) and the integrity (every chunk's and every shard index's CRC32C, and
    every object's size and SHA-256 against the image's ``_cellvol/digests.json``, which also
    makes any other object in the image ``unlisted``). An image written by another tool has
    no manifest: it is checked by its checksums alone, and the report says so; one written
    before cellvol recorded digests is checked without them, and the report says that too.

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
        stored bytes read. A deep check adds one stage per image after those, one task per
        coarser shard recomputed, ``nbytes`` decoded bytes read.
    deep
        Also recompute every coarser level from the level below with the write's own
        downsampling and compare it bit for bit (``True``), or a seeded random fraction of
        each level's shards (a float in ``(0, 1]``, at least one shard per level). What
        differs is a ``pyramid`` problem; an image without a record of its downsampling is
        listed under ``unchecked``.
    seed
        Chooses the sampled shards (by default a random seed, named in ``unchecked``).
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
    AccessDeniedError, EndpointUnreachableError, UnsupportedURLError
        When the store cannot be reached at all.
    InvalidInputError
        For a ``deep`` fraction outside ``(0, 1]``, or a ``.ozx`` that is not a readable zip
        archive (truncated, its central directory damaged): no entry can be located.
    """
    fraction = deep_fraction(deep)
    location = parse_location(path_or_url)
    store = open_store(location.url, mode="r", storage_options=storage_options)
    archive = open_archive(location, storage_options) if location.is_archive else None
    try:
        source: Source = StoreSource(store) if archive is None else EntryReader(archive)
        listable = archive is not None or location.scheme in ("file", "s3")
        checksum = ZarrChecksum() if zarr_checksum and listable else None
        scan = Scan(store, location.url, listable=listable, source=source, checksum=checksum)
        # Left on any path, an error's too, it ends the RO-Crate check that image() starts.
        with scan:
            scan.image("")
            if scan.report.images == [] and not scan.report.problems:
                raise NotOMEZarrError(f"{location.url} holds no OME-Zarr image: nothing to verify")
            workers = workers or os.cpu_count() or 1
            scan.check_objects(workers, progress)
            scan.crate_checked()
        if archive is not None:
            scan.report.problems += archive_problems(archive)
        if archive is not None or checksum is not None:
            scan.check_the_rest(workers)
        if checksum is not None:
            scan.report.zarr_checksum = checksum.zarr_checksum()
        elif zarr_checksum:
            scan.report.unchecked.append(
                "zarr checksum: HTTP cannot list the image's objects, so none can cover them all"
            )
        if fraction:
            check_pyramids(
                store,
                location.url,
                storage_options,
                scan.report,
                fraction=fraction,
                seed=seed,
                workers=workers,
                progress=progress,
                first_stage=len(scan.objects),
            )
    finally:
        if archive is not None:
            archive.close()
    scan.report.problems.sort(key=lambda p: (p.key, p.kind, p.byte_range or (0, 0)))
    return scan.report
