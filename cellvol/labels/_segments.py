"""Computing and storing a label image's segment table (see :mod:`cellvol.read` for reading it).

For each label ID other than 0 (background), the table holds its voxel count, its bounding box
(first and last voxel along each axis, inclusive) and its centroid, in voxels of level 0; the
physical values follow from the level's scale and translation. It is computed in one streaming
pass over level 0, a block at a time on a thread per core, so memory stays bounded whatever the
volume's size, and stored as a zarr group of column arrays beside the label image's levels
(``segments/``), which any zarr reader can open.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
import zarr
from zarr.abc.store import Store

from cellvol._store import is_local_store, list_keys, make_durable
from cellvol.errors import IntegrityError
from cellvol.read._segments import SEGMENT_COLUMNS, SEGMENTS_PATH, SegmentTable
from cellvol.read._volume import LabelImage
from cellvol.write._digests import refresh_digests

__all__ = ["compute_segments", "current_segments", "write_segments"]

# 4 Mi voxels per block: its sort and coordinates take about 60 bytes per voxel.
_BLOCK = (64, 256, 256)
_FOLD_EVERY = 64


def compute_segments(
    read: Callable[[tuple[slice, ...]], npt.NDArray[Any]],
    shape: Sequence[int],
    *,
    scale: Sequence[float],
    translation: Sequence[float],
    unit: str | None = None,
    workers: int | None = None,
) -> SegmentTable:
    """Stream a label volume block by block and return its segment table.

    Parameters
    ----------
    read
        Returns the labels in a ``(z, y, x)`` box of slices (``Level.__getitem__``).
    shape
        The volume's shape.
    scale, translation, unit
        Level 0's voxel size and origin, stored with the table.
    workers
        Blocks read and reduced at once (default: the number of CPUs).
    """
    shape = tuple(int(n) for n in shape)
    grid = [range(0, n, b) for n, b in zip(shape, _BLOCK, strict=True)]
    boxes = [
        tuple(slice(o, min(o + b, n)) for o, b, n in zip(origin, _BLOCK, shape, strict=True))
        for origin in itertools.product(*grid)
    ]

    def one(box: tuple[slice, ...]) -> _Partial:
        return _block_stats(np.asarray(read(box)), tuple(s.start for s in box))

    totals: _Partial | None = None
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        # Folded into running totals every few dozen blocks, so memory does not grow with the
        # number of blocks a segment spans.
        for at in range(0, len(boxes), _FOLD_EVERY):
            parts = list(pool.map(one, boxes[at : at + _FOLD_EVERY]))
            totals = _fold([totals, *parts] if totals is not None else parts)
    if totals is None:
        totals = _block_stats(np.zeros((0, 0, 0), np.uint8), (0, 0, 0))
    ids, counts, sums, lows, highs = totals
    centroid = np.asarray(sums / np.maximum(counts, 1)[:, None], dtype=np.float64)
    return SegmentTable(
        ids,
        counts,
        lows,
        highs,
        centroid,
        tuple(float(v) for v in scale),  # type: ignore[arg-type]
        tuple(float(v) for v in translation),  # type: ignore[arg-type]
        unit,
    )


_Partial = tuple[npt.NDArray[Any], ...]
"""IDs, voxel counts, coordinate sums, minima and maxima of some blocks."""


def _block_stats(block: npt.NDArray[Any], origin: tuple[int, ...]) -> _Partial:
    """The statistics of one block whose first voxel is at ``origin`` (background excluded)."""
    flat = block.reshape(-1)
    order = np.argsort(flat, kind="stable")  # stable: each ID's voxels stay in raster order
    ordered = flat[order]
    keep = ordered != 0
    order, ordered = order[keep], ordered[keep]
    if not ordered.size:
        empty = np.zeros((0, 3), dtype=np.int64)
        return ordered[:0], np.zeros(0, np.int64), empty.astype(np.float64), empty, empty
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    ids = ordered[starts]
    counts = np.diff(np.concatenate((starts, [ordered.size]))).astype(np.int64)
    coords = np.unravel_index(order, block.shape)
    sums = np.stack([np.add.reduceat(c.astype(np.float64), starts) for c in coords], axis=1)
    lows = np.stack([np.minimum.reduceat(c, starts) for c in coords], axis=1).astype(np.int64)
    highs = np.stack([np.maximum.reduceat(c, starts) for c in coords], axis=1).astype(np.int64)
    shift = np.asarray(origin, dtype=np.int64)
    return ids, counts, sums + counts[:, None] * shift, lows + shift, highs + shift


def _fold(parts: Sequence[_Partial]) -> _Partial:
    """Combine the statistics of several blocks into one row per ID."""
    ids_all = np.concatenate([p[0] for p in parts])
    ids, inverse = np.unique(ids_all, return_inverse=True)
    n = ids.size
    counts = np.zeros(n, np.int64)
    sums = np.zeros((n, 3), np.float64)
    lows = np.full((n, 3), np.iinfo(np.int64).max, np.int64)
    highs = np.full((n, 3), -1, np.int64)
    at = 0
    for _, part_counts, part_sums, part_lows, part_highs in parts:
        rows = inverse[at : at + part_counts.size]
        at += part_counts.size
        np.add.at(counts, rows, part_counts)
        np.add.at(sums, rows, part_sums)
        np.minimum.at(lows, rows, part_lows)
        np.maximum.at(highs, rows, part_highs)
    return ids, counts, sums, lows, highs


def write_segments(group: zarr.Group, table: SegmentTable) -> None:
    """Store ``table`` as the ``segments`` group of a label image (replacing any there)."""
    segments = group.require_group(SEGMENTS_PATH)
    columns: dict[str, npt.NDArray[Any]] = {
        "id": table.ids,
        "voxel_count": table.voxel_count,
        "bbox_min": table.bbox_min,
        "bbox_max": table.bbox_max,
        "centroid": table.centroid,
    }
    for name, column in columns.items():
        values = np.ascontiguousarray(column)
        array = segments.create_array(
            name,
            shape=values.shape,
            dtype=values.dtype,
            chunks=(max(1, min(values.shape[0], 2**16)), *values.shape[1:]),
            overwrite=True,
        )
        if values.size:
            array[...] = values
    segments.attrs.update(
        {
            "cellvol": {
                "table": "segments",
                "columns": list(SEGMENT_COLUMNS),
                "excludes": [0],
                "scale": list(table.scale),
                "translation": list(table.translation),
                "unit": table.unit,
                "rows": len(table),
            }
        }
    )
    # Through zarr the table reaches the page cache only; on the disk before write_labels
    # (or its rerun) goes on, so that a crash cannot leave a torn table behind a later step.
    if is_local_store(segments.store):  # (an object store's writes are durable already)
        make_durable(segments.store, list_keys(segments.store, f"{segments.path}/"))


def current_segments(
    label_image: LabelImage, store: Store, *, recompute: bool = False
) -> SegmentTable:
    """The label image's segment table, computed and stored first when it has none.

    Labels written by another tool come without one; ``recompute`` is for a stored table that
    no longer describes the levels (rewritten since by another tool). The caller holds the
    label image's lease; ``store`` is the label image's, opened for writing.
    """
    if not recompute:
        try:
            return label_image.segments
        except IntegrityError:  # no complete table stored: computed below
            pass
    level = label_image.levels[0]
    voxel = label_image.voxel_size
    table = compute_segments(
        level.__getitem__,
        level.shape,
        scale=level.scale,
        translation=level.translation,
        unit=voxel.unit if voxel is not None else None,
    )
    write_segments(zarr.open_group(store=store, mode="a"), table)
    refresh_digests(store, "", [f"{SEGMENTS_PATH}/"])
    return table
