"""Choosing levels and regions in physical units: pure arithmetic on levels' scale and offset.

A level's voxel ``i`` along an axis is centred at ``translation + i * scale`` (OME-Zarr's
coordinate transformations), in the axes' unit. A physical interval ``[low, high]`` selects the
voxels whose centres fall inside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from cellvol.errors import InvalidInputError

__all__ = ["ScaledLevel", "finest_level_within", "level_for_resolution", "voxel_slices"]


class ScaledLevel(Protocol):
    """What the arithmetic needs of a level."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> Any: ...

    @property
    def scale(self) -> tuple[float, ...]: ...

    @property
    def translation(self) -> tuple[float, ...]: ...


def voxel_slices(
    level: ScaledLevel, bounds: Mapping[int, tuple[float, float]]
) -> tuple[slice, ...]:
    """The index slices of the voxels whose centres lie within physical ``bounds``.

    Parameters
    ----------
    level
        The level to index.
    bounds
        Axis number -> ``(low, high)`` in the level's unit; axes not given are taken whole.

    Raises
    ------
    InvalidInputError
        If an interval is reversed, or selects no voxel of the level.
    """
    slices: list[slice] = []
    for axis, (n, scale, offset) in enumerate(
        zip(level.shape, level.scale, level.translation, strict=True)
    ):
        if axis not in bounds:
            slices.append(slice(0, n))
            continue
        low, high = bounds[axis]
        if high < low:
            raise InvalidInputError(f"interval ({low}, {high}) along axis {axis} is reversed")
        first = max(0, math.ceil((low - offset) / scale - 1e-9))
        last = min(n - 1, math.floor((high - offset) / scale + 1e-9))
        if last < first:
            raise InvalidInputError(
                f"interval ({low}, {high}) along axis {axis} holds no voxel centre of this "
                f"level (centres {offset} to {offset + (n - 1) * scale}, every {scale})"
            )
        slices.append(slice(first, last + 1))
    return tuple(slices)


def level_for_resolution(levels: Sequence[ScaledLevel], resolution: float) -> int:
    """The coarsest level whose largest spatial voxel edge is at most ``resolution``.

    Level 0 when even it is coarser than asked (it is the best there is).
    """
    if not resolution > 0:
        raise InvalidInputError(f"resolution must be positive, got {resolution}")
    chosen = 0
    for index, level in enumerate(levels):
        if max(level.scale) <= resolution * (1 + 1e-9):
            chosen = index
    return chosen


def finest_level_within(
    levels: Sequence[ScaledLevel], bounds: Mapping[int, tuple[float, float]], max_bytes: int
) -> int:
    """The finest level at which the voxels within ``bounds`` take at most ``max_bytes``.

    Raises
    ------
    InvalidInputError
        If even the coarsest level's region is larger than ``max_bytes``.
    """
    for index, level in enumerate(levels):
        region = voxel_slices(level, bounds)
        size = math.prod(s.stop - s.start for s in region) * level.dtype.itemsize
        if size <= max_bytes:
            return index
    raise InvalidInputError(
        f"the region needs {size:,} bytes even at the coarsest level, more than "
        f"max_bytes={max_bytes:,}"
    )
