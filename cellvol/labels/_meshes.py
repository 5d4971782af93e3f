"""Segment surfaces (meshes) computed from a label image and stored with it.

Each segment of the segment table gets a surface by marching cubes on its own bounding box
(padded by one voxel of background, so every surface is closed), smoothed by Taubin's
method (which keeps the enclosed volume), in nanometres and x, y, z order. The level is the
finest whose surface can stay within the triangle budget: segments too large for the budget
at full resolution are meshed on a coarser level of the label pyramid, which also bounds
memory: a mask is at most :data:`MAX_MASK_VOXELS`, read a slab at a time, and sampled every
few voxels when even the coarsest level's box is larger. The whole label volume is never
loaded. Segments are meshed on a thread per core, in the order of their position, so
neighbouring segments share decoded chunks.

Stored as ``labels/<name>/meshes/`` (see :mod:`cellvol.labels._mesh_store`), the objects
listed in the label image's digests. :func:`cellvol.write_labels` computes them after writing
the labels; :func:`compute_meshes` (``cellvol meshes IMAGE --labels NAME``) computes them for
labels written earlier, and does nothing when the stored ones are up to date: when the label
levels' stored bytes, read back and hashed, and their placement are those the meshes were
computed from (whoever rewrote them).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from cellvol._codec._cache import ChunkCache
from cellvol._store import (
    delete_prefix,
    list_keys,
    make_durable,
    open_store,
    read_bytes,
    read_objects,
    write_bytes,
)
from cellvol.errors import IntegrityError, InvalidInputError
from cellvol.labels._lookup import find_labels, open_labels
from cellvol.labels._mesh_store import (
    INDEX_KEY,
    MESH_UNIT,
    MESHES_PATH,
    Mesh,
    MeshEntry,
    MeshIndex,
    level_placement,
    level_sizes,
    listing_fingerprint,
    mesh_key,
    source_fingerprint,
)
from cellvol.labels._segments import current_segments
from cellvol.labels._surface import (
    ITERATIONS,
    TAUBIN,
    boundary_faces,
    estimated_triangles,
    surface,
)
from cellvol.ome._digests import DIGESTS_KEY, is_recordable, parse_digests, sha256_hex
from cellvol.read._level import Level
from cellvol.read._open import open as open_volume
from cellvol.read._volume import LABELS_GROUP, LabelImage
from cellvol.units import convert_lengths
from cellvol.write._digests import editing, refresh_digests

__all__ = [
    "DEFAULT_TRIANGLE_BUDGET",
    "MAX_MASK_VOXELS",
    "compute_meshes",
    "mesh_index",
    "read_mesh",
    "store_meshes",
    "stored_meshes",
]

#: The most triangles one segment's surface gets by default: detailed enough to recognise an
#: organelle's shape, small enough that a browser draws a few hundred segments at once.
DEFAULT_TRIANGLE_BUDGET: Final = 20_000
#: The most voxels of one segment's mask held at once (its float copy for marching cubes
#: takes 4 bytes a voxel): beyond it a coarser level, or every n-th voxel, is meshed.
MAX_MASK_VOXELS: Final = 2**23
# Triangles per boundary face of a mask: marching cubes gives 2 on smooth shapes, more on rough
_FACE_TRIANGLES: Final = 1.9
_SLAB_VOXELS: Final = 2**22  # label voxels read at once while building a mask
_CACHE_BYTES: Final = 128 * 2**20  # decoded chunks kept for neighbouring segments
_HASH_BATCH_BYTES: Final = 64 * 2**20  # stored label bytes read at once to fingerprint them


def compute_meshes(
    image: str | os.PathLike[str],
    labels: str,
    *,
    triangle_budget: int = DEFAULT_TRIANGLE_BUDGET,
    smoothing: bool = True,
    force: bool = False,
    workers: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> MeshIndex:
    """Compute and store the surfaces of every segment of labels ``labels`` of ``image``.

    Parameters
    ----------
    image
        The OME-Zarr image (local path or URL).
    labels
        The label image's name.
    triangle_budget
        The most triangles one segment's surface may have.
    smoothing
        Smooth the surfaces (Taubin); off gives the raw marching-cubes surface.
    force
        Recompute even when the stored meshes are up to date with these settings.
    workers
        Segments meshed at once (default: the number of CPUs).
    storage_options
        Passed to the store.

    Returns
    -------
    MeshIndex
        What was stored: each segment's counts, and the segments left without a mesh.

    Raises
    ------
    InvalidInputError
        For unknown labels or a budget below 100 triangles.
    WriteConflictError
        If another write or edit of the image is under way.
    """
    options = dict(storage_options or {})
    volume = open_volume(image, options, cache=ChunkCache(0))
    find_labels(volume, labels)  # an unknown name is refused before the lease is taken
    image_store = open_store(volume.url, mode="a", storage_options=options)
    with editing(image_store, volume.url, ("", f"{LABELS_GROUP}/{labels}")):
        return store_meshes(
            f"{volume.url.rstrip('/')}/{LABELS_GROUP}/{labels}",
            options,
            triangle_budget=triangle_budget,
            smoothing=smoothing,
            force=force,
            workers=workers,
        )


def store_meshes(
    url: str,
    storage_options: Mapping[str, Any],
    *,
    triangle_budget: int = DEFAULT_TRIANGLE_BUDGET,
    smoothing: bool = True,
    force: bool = False,
    workers: int | None = None,
) -> MeshIndex:
    """Compute and store the meshes of the label image at ``url``; the caller holds the lease.

    The old index goes first, then the new objects replace the old ones (those of segments
    gone are deleted), the new index comes last; the digests are refreshed after it, or after
    an error or interruption, which leaves no index: that reads as "no meshes", the image
    verifies clean, and a rerun computes them again.
    """
    if isinstance(triangle_budget, bool) or not isinstance(triangle_budget, int):
        raise InvalidInputError(f"triangle_budget must be an integer, got {triangle_budget!r}")
    if triangle_budget < 100:
        raise InvalidInputError(f"triangle_budget must be at least 100, got {triangle_budget}")
    label_image = open_volume(url, storage_options, cache=ChunkCache(_CACHE_BYTES))
    if not isinstance(label_image, LabelImage):
        raise InvalidInputError(f"{url} is not a label image")
    store = open_store(url, mode="a", storage_options=storage_options)
    placement = level_placement(label_image)
    sizes = level_sizes(label_image)
    # The stored bytes, read back: a record of them (the digests) misses other tools' writes.
    objects = None if sizes is None else list(_hashed(store, sizes))
    source = None if objects is None else source_fingerprint(objects, placement)
    listing = None if sizes is None else listing_fingerprint(sizes, placement)
    settings = dict(TAUBIN) if smoothing else {"method": "none"}
    stored = _stored_index(store, url)
    if (
        not force
        and stored is not None
        and source is not None
        and (stored.source, stored.listing, stored.triangle_budget, dict(stored.smoothing))
        == (source, listing, triangle_budget, settings)
    ):
        return stored
    mesher = _Mesher(label_image, triangle_budget, ITERATIONS if smoothing else 0)
    prefixes = tuple(f"{level.path.strip('/')}/" for level in label_image.levels)
    rewritten = objects is not None and _rewritten_elsewhere(
        store, url, objects, prefixes, stored, source
    )
    table = current_segments(label_image, store, recompute=rewritten)
    # Whatever happens from here (an error, Ctrl-C), the digests are refreshed: the objects
    # under meshes/ are this code's alone, under the lease, and verify must not call an
    # interrupted run (no index: "no meshes") damage.
    try:
        delete_prefix(store, INDEX_KEY)
        earlier = set(list_keys(store, MESHES_PATH))  # replaced in place, the rest deleted after

        def one(row: int) -> tuple[int, MeshEntry | str]:
            segment_id = int(table.ids[row])
            voxels = int(table.voxel_count[row])
            found = mesher.mesh(segment_id, voxels, table.bbox_min[row], table.bbox_max[row])
            if isinstance(found, str):
                return segment_id, found
            mesh, level, step = found
            data = mesh.encode()
            write_bytes(store, mesh_key(segment_id), data)
            entry = MeshEntry(
                segment_id,
                int(mesh.vertices.shape[0]),
                int(mesh.triangles.shape[0]),
                level,
                step,
                len(data),
                sha256_hex(data),
            )
            return segment_id, entry

        chunks = label_image.levels[0].chunks
        order = sorted(range(len(table)), key=lambda r: tuple(table.bbox_min[r] // chunks))
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            results = list(pool.map(one, order))
            entries = {k: v for k, v in results if isinstance(v, MeshEntry)}
            skipped = {k: v for k, v in results if isinstance(v, str)}
            written = [mesh_key(k) for k in entries]
            # Synced in batches on the pool: the syncs overlap, each batch's folders synced once.
            batches = [written[at : at + 256] for at in range(0, len(written), 256)]
            list(pool.map(functools.partial(make_durable, store), batches))
            for key in sorted(earlier - set(written)):
                delete_prefix(store, key)
        index = MeshIndex(source, triangle_budget, settings, entries, skipped, listing=listing)
        write_bytes(store, INDEX_KEY, index.encode())
        make_durable(store, [INDEX_KEY])
    finally:
        refresh_digests(store, "", [f"{MESHES_PATH}/"])
    return index


def mesh_index(
    image: str | os.PathLike[str],
    labels: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> MeshIndex | None:
    """The stored mesh index of labels ``labels`` of ``image`` (None when it has no meshes)."""
    label_image = open_labels(image, labels, storage_options)
    store = open_store(label_image.url, mode="r", storage_options=storage_options)
    return _stored_index(store, label_image.url, strict=True)


def read_mesh(
    image: str | os.PathLike[str],
    labels: str,
    segment_id: int,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> Mesh:
    """The stored surface of one segment (vertices x, y, z in nanometres).

    Raises
    ------
    InvalidInputError
        If the labels have no meshes, or none for that segment.
    """
    index, _, load = stored_meshes(open_labels(image, labels, storage_options), storage_options)
    if index is None:
        raise InvalidInputError(
            f"labels {labels!r} of {image} have no meshes",
            hint=f"compute them: cellvol meshes IMAGE --labels {labels}",
        )
    if segment_id not in index.segments:
        reason = index.skipped.get(segment_id, "no such segment in the meshes' index")
        raise InvalidInputError(f"labels {labels!r} of {image}: segment {segment_id}: {reason}")
    return load(segment_id)


def stored_meshes(
    label_image: LabelImage,
    storage_options: Mapping[str, Any] | None = None,
    *,
    thorough: bool = False,
) -> tuple[MeshIndex | None, bool | None, Callable[[int], Mesh]]:
    """A label image's stored mesh index, whether it is stale, and a reader of its meshes.

    Stale is None when unknown (meshes from before the listing was recorded, or a store that
    cannot list). Otherwise it says whether a level object was added, removed or resized, or
    the levels' placement changed, since the meshes were computed: one listing, no object
    read. ``thorough`` reads the level objects back and compares their SHA-256 too (as
    :func:`compute_meshes` does), which also catches a rewrite that kept every size.
    """
    store = open_store(label_image.url, mode="r", storage_options=storage_options)
    index = _stored_index(store, label_image.url, strict=True)
    stale = None
    sizes = level_sizes(label_image) if index is not None else None
    if index is not None and sizes is not None:
        placement = level_placement(label_image)
        if thorough and index.source is not None:
            stale = source_fingerprint(_hashed(store, sizes), placement) != index.source
        elif index.listing is not None:
            stale = listing_fingerprint(sizes, placement) != index.listing

    def load(segment_id: int) -> Mesh:
        where = f"{label_image.url}/{mesh_key(segment_id)}"
        data = read_bytes(store, mesh_key(segment_id))
        if data is None:
            raise IntegrityError(f"{where} is missing although the meshes' index lists it")
        return Mesh.decode(data, where)

    return index, stale, load


def _rewritten_elsewhere(
    store: Any,
    url: str,
    objects: Sequence[tuple[str, int, str]],
    prefixes: tuple[str, ...],
    stored: MeshIndex | None,
    source: str | None,
) -> bool:
    """Whether the levels were rewritten by a tool that did not refresh the segment table.

    cellvol rewrites the table with the levels and records both in the digests: levels that
    differ from their record were rewritten by another tool. Labels without digests (another
    tool's) tell it by meshes computed from other levels.
    """
    digests = parse_digests(read_bytes(store, DIGESTS_KEY), url)
    if digests is None:
        return stored is not None and stored.source != source
    actual = {key: (size, digest) for key, size, digest in objects if is_recordable(key)}
    recorded = {k: v for k, v in digests.items() if k.startswith(prefixes)}
    return recorded != actual


def _hashed(store: Any, sizes: Mapping[str, int]) -> Iterator[tuple[str, int, str]]:
    """Each listed object's key, size and SHA-256, read a batch at a time."""
    batch: list[str] = []
    held = 0
    for key in [*sorted(sizes), None]:
        if key is not None:
            batch.append(key)
            held += sizes[key]
        if batch and (key is None or held >= _HASH_BATCH_BYTES):
            for name, data in zip(batch, read_objects(store, batch), strict=True):
                if data is not None:  # deleted since the listing: no longer a level object
                    yield name, len(data), sha256_hex(data)
            batch, held = [], 0


def _stored_index(store: Any, url: str, *, strict: bool = False) -> MeshIndex | None:
    """The stored index; an unreadable one is None (to be recomputed) unless ``strict``."""
    raw = read_bytes(store, INDEX_KEY)
    if raw is None:
        return None
    try:
        return MeshIndex.decode(raw, f"{url}/{INDEX_KEY}")
    except IntegrityError:
        if strict:
            raise
        return None


_Step = tuple[int, int, int]
"""Level voxels between neighbouring mask voxels along z, y and x."""


@dataclass(frozen=True)
class _Mesher:
    """Chooses each segment's level and sampling step, reads its mask and meshes it."""

    labels: LabelImage
    budget: int
    iterations: int

    def mesh(
        self, segment_id: int, voxels: int, low: npt.NDArray[Any], high: npt.NDArray[Any]
    ) -> tuple[Mesh, int, _Step] | str:
        """The surface of a segment of ``voxels`` voxels in ``[low, high]``, its level and step.

        Or, for a segment with no surface, why. Each candidate's mask is read and its
        boundary faces counted before any surface is made: marching cubes gives about two
        triangles a face, so a mask far over the budget moves on to a coarser level (or
        step) at once, and no surface much larger than the budget is ever held.
        """
        choices = [self._box(index, low, high) for index in range(len(self.labels.levels))]
        fits = [
            estimated_triangles(voxels / (math.prod(factor) * math.prod(step))) <= self.budget
            for factor, _, _, step in choices
        ]
        at = fits.index(True) if True in fits else len(choices) - 1
        best: tuple[Mesh, int, _Step] | None = None
        # The last candidate found over the budget but not empty: level, box and step.
        fallback: tuple[int, tuple[int, ...], _Step] | None = None
        finer_only = False
        for _ in range(64):  # each pass cuts the triangles or moves towards level 0
            factor, box_low, box_high, step = choices[at]
            mask = _read_mask(self.labels.levels[at], box_low, box_high, segment_id, step)
            if not mask.any():
                if best is not None or fallback is not None:
                    break  # coarser sampling lost the segment: keep what was finer
                if at == 0:
                    return "no voxel of it is left in the labels"
                at, finer_only = at - 1, True  # too thin for this level: try a finer one
                continue
            if not finer_only and _FACE_TRIANGLES * boundary_faces(mask) > self.budget:
                fallback = (at, box_low, step)
            else:
                mesh = self._surface(at, mask, box_low, step)
                best = (mesh, at, step)
                if mesh.triangles.shape[0] <= self.budget or finer_only:
                    break
            del mask
            if at + 1 < len(choices):
                at += 1
            else:  # the coarsest level: sample its finest axes more sparsely
                choices[at] = (factor, box_low, box_high, self._coarser(at, step))
        if best is None:
            # Over the budget wherever it survives (a thin sheet spanning the volume, say):
            # the coarsest sampling that still holds it.
            assert fallback is not None
            at, box_low, step = fallback
            box_high = choices[at][2]
            mask = _read_mask(self.labels.levels[at], box_low, box_high, segment_id, step)
            best = (self._surface(at, mask, box_low, step), at, step)
        return best

    def _box(
        self, index: int, low: npt.NDArray[Any], high: npt.NDArray[Any]
    ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], _Step]:
        """Level ``index``'s factors, the segment's box there (exclusive end) and the step.

        Mode downsampling keeps an ID only in parents of its own voxels, so the box at a
        coarser level is the level-0 box divided by the factors. The step is the least
        that keeps the mask within :data:`MAX_MASK_VOXELS`.
        """
        levels = self.labels.levels
        level = levels[index]
        factor = tuple(
            max(1, round(s / s0)) for s, s0 in zip(level.scale, levels[0].scale, strict=True)
        )
        box_low = tuple(int(v) // f for v, f in zip(low, factor, strict=True))
        box_high = tuple(
            min(int(v) // f + 1, n) for v, f, n in zip(high, factor, level.shape, strict=True)
        )
        sizes = [h - lo for lo, h in zip(box_low, box_high, strict=True)]
        step: _Step = (1, 1, 1)
        while math.prod(-(-n // s) for n, s in zip(sizes, step, strict=True)) > MAX_MASK_VOXELS:
            step = self._coarser(index, step)
        return factor, box_low, box_high, step

    def _coarser(self, index: int, step: _Step) -> _Step:
        """Twice the step along the axes of the smallest sampled spacing (towards isotropy).

        Serial sections (50 x 4 x 4 nm) are thinned in y and x first, never in z until the
        sampled voxels are about as large across as they are deep.
        """
        spacing = [s * n for s, n in zip(self.labels.levels[index].scale, step, strict=True)]
        finest = min(spacing)
        z, y, x = (
            n * 2 if size < 1.5 * finest else n for n, size in zip(step, spacing, strict=True)
        )
        return z, y, x

    def _surface(
        self, index: int, mask: npt.NDArray[np.bool_], low: Sequence[int], step: _Step
    ) -> Mesh:
        level = self.labels.levels[index]
        voxel = self.labels.voxel_size
        unit = voxel.unit if voxel is not None else MESH_UNIT
        scale = convert_lengths(level.scale, unit, MESH_UNIT)
        translation = convert_lengths(level.translation, unit, MESH_UNIT)
        mesh = surface(mask, low, step, scale, translation, iterations=self.iterations)
        assert mesh is not None  # the mask holds voxels
        return mesh


def _read_mask(
    level: Level, low: Sequence[int], high: Sequence[int], segment_id: int, step: _Step
) -> npt.NDArray[np.bool_]:
    """Where level voxels ``[low, high)`` (every ``step``-th) hold ``segment_id``, tile by tile.

    Each read is a box of at most :data:`_SLAB_VOXELS` voxels (a plane of a huge box is split
    in rows and columns too), its sides multiples of the step so that the sampled voxels of
    neighbouring tiles line up; with a step along z only the sampled planes are read.
    """
    sz, sy, sx = step
    sizes = [h - lo for lo, h in zip(low, high, strict=True)]
    mask = np.zeros([-(-n // s) for n, s in zip(sizes, step, strict=True)], dtype=bool)
    if not mask.size:
        return mask
    columns = min(-(-sizes[2] // sx) * sx, max(sx, (_SLAB_VOXELS // sy) // sx * sx))
    rows = min(-(-sizes[1] // sy) * sy, max(sy, (_SLAB_VOXELS // columns) // sy * sy))
    planes = 1 if sz > 1 else max(1, _SLAB_VOXELS // (rows * columns))
    for z in range(low[0], high[0], sz if sz > 1 else planes):
        for y in range(low[1], high[1], rows):
            for x in range(low[2], high[2], columns):
                block = level[
                    z : min(z + planes, high[0]),
                    y : min(y + rows, high[1]),
                    x : min(x + columns, high[2]),
                ]
                at = ((z - low[0]) // sz, (y - low[1]) // sy, (x - low[2]) // sx)
                found = block[:, ::sy, ::sx] == segment_id
                mask[
                    at[0] : at[0] + found.shape[0],
                    at[1] : at[1] + found.shape[1],
                    at[2] : at[2] + found.shape[2],
                ] = found
    return mask
