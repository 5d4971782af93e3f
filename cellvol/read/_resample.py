"""One level's voxels on another grid, through an affine, lazily and block by block.

Each output block maps back through the affine to a box of the source level: the box around
the block's eight corners, a voxel wider on every side for the interpolation. Only that box
is read, then sampled with :func:`scipy.ndimage.map_coordinates`. Blocks are made smaller
until their source box fits :data:`BOX_BYTES`, so memory stays bounded whatever the sizes and
whichever way the affine scales.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from cellvol.errors import InvalidInputError
from cellvol.read._level import Level

__all__ = [
    "BOX_BYTES",
    "Interpolation",
    "finest_level",
    "index_matrix",
    "resample_level",
    "sample_at",
]

#: The most bytes one output block's source box takes (at 8 bytes a voxel: float64 for linear).
BOX_BYTES: Final = 32 * 2**20
# Output voxels whose source coordinates are computed at once (24 bytes each).
_SLAB_VOXELS: Final = 2**18

Interpolation = Literal["linear", "nearest"]
_ORDERS: Final = {"linear": 1, "nearest": 0}


def index_matrix(level: Level) -> npt.NDArray[np.float64]:
    """The homogeneous matrix from a level's voxel indices to its physical coordinates."""
    n = level.ndim
    matrix = np.eye(n + 1)
    matrix[:n, :n] = np.diag(level.scale)
    matrix[:n, n] = level.translation
    return matrix


def finest_level(levels: Sequence[Level], spacing: float) -> int:
    """The coarsest level whose voxels are no larger than ``spacing`` (level 0 if none is).

    What a sampler at points ``spacing`` apart needs: a finer level adds nothing.
    """
    chosen = 0
    for level in levels:
        if max(level.scale) <= spacing * (1 + 1e-6):
            chosen = level.index
    return chosen


def sample_at(
    box: npt.NDArray[Any], coords: npt.NDArray[np.float64], order: int
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    """``box`` sampled at voxel coordinates ``coords`` (``(ndim, n)``), and which lie inside.

    ``order`` 0 (nearest) indexes ``box`` itself, so values keep their dtype exactly (label
    IDs above 2**24 do not survive float32). ``order`` 1 (linear) interpolates in float64 for
    integers and float64 sources, float32 otherwise; the caller rounds back if it must.
    Values outside ``box`` are 0 and marked ``False``.
    """
    from scipy.ndimage import map_coordinates

    if order == 0:
        index = np.rint(coords).astype(np.intp)
        limits = np.asarray(box.shape)[:, None]
        inside = np.all((index >= 0) & (index < limits), axis=0)
        values = np.zeros(coords.shape[1], dtype=box.dtype)
        values[inside] = box[tuple(index[:, inside])]
        return values, inside
    wide = np.issubdtype(box.dtype, np.integer) or box.dtype == np.float64
    data = box.astype(np.float64 if wide else np.float32, copy=False)
    values = map_coordinates(data, coords, order=order, mode="constant", cval=np.nan)
    inside = ~np.isnan(values)
    values[~inside] = 0
    return values, inside


def resample_level(
    source: Level,
    physical: npt.NDArray[np.float64],
    like: Level,
    *,
    interpolation: Interpolation = "linear",
    chunks: Sequence[int] | None = None,
    fill: float = 0,
) -> Any:
    """``source`` sampled at every voxel of ``like``'s grid, as a lazy dask array.

    Parameters
    ----------
    source
        The level whose values are sampled.
    physical
        The homogeneous matrix from ``source``'s physical coordinates to ``like``'s.
    like
        The level whose grid (shape, voxel size, position) the result takes.
    interpolation
        ``"linear"`` (trilinear) or ``"nearest"`` (for labels).
    chunks
        The result's block shape; by default ``like``'s chunks, made smaller while a block's
        source box would exceed :data:`BOX_BYTES`.
    fill
        The value where the grid lies outside the source.

    Returns
    -------
    dask.array.Array
        Of ``like``'s shape and ``source``'s dtype.
    """
    import dask.array as da

    if interpolation not in _ORDERS:
        raise InvalidInputError(
            f"interpolation {interpolation!r}: expected one of {', '.join(_ORDERS)}"
        )
    if source.ndim != like.ndim or physical.shape != (like.ndim + 1, source.ndim + 1):
        raise InvalidInputError(
            f"cannot resample a {source.ndim}-D level onto a {like.ndim}-D grid through a "
            f"{physical.shape} matrix"
        )
    # Output voxel index -> source voxel index.
    to_source = np.linalg.inv(index_matrix(source)) @ np.linalg.inv(physical) @ index_matrix(like)
    block = _block_shape(to_source, like, chunks)
    normalized = tuple(_split(n, b) for n, b in zip(like.shape, block, strict=True))
    order = _ORDERS[interpolation]

    def sample(block_info: dict[Any, Any] | None = None) -> npt.NDArray[Any]:
        assert block_info is not None
        location = block_info[None]["array-location"]
        return _sample_block(source, to_source, location, order, fill)

    meta = np.empty((0,) * like.ndim, dtype=source.dtype)
    return da.map_blocks(  # type: ignore[no-untyped-call]
        sample, chunks=normalized, dtype=source.dtype, meta=meta
    )


def _split(n: int, step: int) -> tuple[int, ...]:
    return tuple(min(step, n - start) for start in range(0, n, step)) or (0,)


def _block_shape(
    to_source: npt.NDArray[np.float64], like: Level, chunks: Sequence[int] | None
) -> list[int]:
    if chunks is not None:
        if len(chunks) != like.ndim or any(int(c) < 1 for c in chunks):
            raise InvalidInputError(
                f"chunks {tuple(chunks)} must be {like.ndim} positive block lengths"
            )
        return [int(c) for c in chunks]
    block = [max(1, min(c, n)) for c, n in zip(like.chunks, like.shape, strict=True)]
    linear = np.abs(to_source[:-1, :-1])
    while True:
        extent = linear @ np.asarray(block, dtype=float) + 3  # the box, margins included
        if np.prod(extent) * 8 <= BOX_BYTES or max(block) == 1:
            return block
        widest = int(np.argmax(block))
        block[widest] = max(1, block[widest] // 2)


def _sample_block(
    source: Level,
    to_source: npt.NDArray[np.float64],
    location: Sequence[tuple[int, int]],
    order: int,
    fill: float,
) -> npt.NDArray[Any]:
    shape = tuple(stop - start for start, stop in location)
    out = np.full(shape, fill, dtype=source.dtype)
    n = len(shape)
    # The block's eight corners (voxel edges, not centres), as homogeneous columns.
    corners = np.array(
        [
            [*(loc[i] - 0.5 for i, loc in zip(pick, location, strict=True)), 1.0]
            for pick in itertools.product((0, 1), repeat=n)
        ]
    ).T
    mapped = (to_source @ corners)[:-1]
    low = np.maximum(np.floor(mapped.min(axis=1)).astype(int) - 1, 0)
    high = np.minimum(np.ceil(mapped.max(axis=1)).astype(int) + 2, source.shape)
    if np.any(high <= low):
        return out  # the block lies outside the source
    box = source[tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))]
    integer = np.issubdtype(source.dtype, np.integer)
    # The coordinates take 24 bytes a voxel: made a slab of the block at a time.
    plane = int(np.prod(shape[1:]))
    step = max(1, _SLAB_VOXELS // max(plane, 1))
    offset = (to_source[:-1, -1] - low)[:, None]
    for first in range(0, shape[0], step):
        part = (min(step, shape[0] - first), *shape[1:])
        grid = np.indices(part, dtype=np.float64).reshape(n, -1)
        grid += np.asarray([start for start, _ in location], dtype=np.float64)[:, None]
        grid[0] += first
        coords = to_source[:-1, :-1] @ grid + offset
        values, inside = sample_at(box, coords, order)
        values, inside = values.reshape(part), inside.reshape(part)
        if integer and order:
            limits = np.iinfo(source.dtype)
            values = np.clip(np.rint(values), limits.min, limits.max)
        out[first : first + part[0]][inside] = values[inside].astype(source.dtype)
    return out
