"""Choosing levels and regions in physical units: pure arithmetic on levels' scale and offset.

A level's voxel ``i`` along an axis is centred at ``translation + i * scale`` (OME-Zarr's
coordinate transformations), in the axes' unit. A physical interval ``[low, high]`` selects the
voxels whose centres fall inside it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from cellvol.errors import InvalidInputError

__all__ = [
    "Resolution",
    "ScaledLevel",
    "finest_level_within",
    "level_for_resolution",
    "voxel_at",
    "voxel_slices",
]

#: A wanted voxel size: one number for every spatial axis, or a number per named axis.
type Resolution = float | Mapping[str, float]

# Scales read from JSON are decimals: 8.000000001 nm is 8 nm.
_TOLERANCE = 1e-9


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


def level_for_resolution(
    levels: Sequence[ScaledLevel],
    resolution: Resolution,
    axes: Sequence[str],
    spatial: Sequence[int],
) -> int:
    """The coarsest level that still resolves ``resolution``, by the rule below.

    A number ``r`` asks for voxels of at most ``r`` along every spatial axis, except that an
    axis whose level-0 voxel is already coarser than ``r`` must keep its level-0 voxel. For
    serial sections of 50 x 4 x 4 nm, ``r = 8`` gives the level of 50 x 8 x 8 nm: the sections
    cannot be made finer, so they must not stop the lateral axes from being coarsened (the old
    rule, every axis at most ``r``, fell back to level 0). For isotropic data it is the plain
    "every axis at most ``r``". A mapping ``{"y": 8, "x": 8}`` bounds only the axes it names.

    Parameters
    ----------
    levels
        The pyramid, finest first.
    resolution
        A number, or a mapping of axis names to numbers, in the axes' unit.
    axes
        The name of every axis, in array order.
    spatial
        The positions of the spatial axes among ``axes`` (the ones a number applies to).

    Raises
    ------
    InvalidInputError
        If a value is not positive, names no axis, or asks for finer voxels than level 0 has:
        a number finer than level 0's finest spatial voxel, or a mapping value finer than
        level 0's voxel along its axis. The data holds no such detail, and returning level 0
        silently would hide that.
    """
    base = levels[0].scale
    targets: dict[int, float] = {}
    if isinstance(resolution, Mapping):
        if not resolution:
            raise InvalidInputError("a resolution mapping must name at least one axis")
        for name, value in resolution.items():
            if name not in axes:
                raise InvalidInputError(f"resolution names axis {name!r}; the axes are {axes}")
            axis = axes.index(name)
            _check_positive(value, name)
            if value < base[axis] * (1 - _TOLERANCE):
                raise InvalidInputError(
                    f"resolution {name}={value} is finer than level 0, whose voxel along "
                    f"{name} is {base[axis]}; read level 0 to get the finest there is"
                )
            targets[axis] = value
    else:
        _check_positive(resolution, "resolution")
        finest = min(base[axis] for axis in spatial)
        if resolution < finest * (1 - _TOLERANCE):
            raise InvalidInputError(
                f"resolution {resolution} is finer than level 0, whose finest voxel is "
                f"{finest}; read level 0 to get the finest there is"
            )
        targets = {axis: max(resolution, base[axis]) for axis in spatial}
    chosen = 0
    for index, level in enumerate(levels):
        if all(level.scale[axis] <= t * (1 + _TOLERANCE) for axis, t in targets.items()):
            chosen = index
    return chosen


def _check_positive(value: object, name: str) -> None:
    if not (isinstance(value, numbers.Real) and 0 < float(value) < math.inf):
        raise InvalidInputError(f"{name} must be a positive number, got {value!r}")


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


def voxel_at(level: ScaledLevel, axis: int, position: float, name: str) -> int:
    """The index of the voxel of ``level`` whose extent along ``axis`` holds ``position``.

    A voxel spans half a voxel either side of its centre; a position exactly between two voxels
    goes to the later one.

    Raises
    ------
    InvalidInputError
        If ``position`` lies outside the level's voxels.
    """
    n, scale, offset = level.shape[axis], level.scale[axis], level.translation[axis]
    index = math.floor((position - offset) / scale + 0.5 + 1e-9)
    if not 0 <= index < n:
        low, high = offset - scale / 2, offset + (n - 0.5) * scale
        raise InvalidInputError(
            f"{name}={position} lies outside the image, which spans {low} to {high} along {name}"
        )
    return index
