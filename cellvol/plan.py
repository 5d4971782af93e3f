"""Pure arithmetic that decides a pyramid's layout before any byte is read or written.

From a volume's shape, dtype and voxel size, :func:`plan_pyramid` picks the levels, each level's
per-axis downsampling factors, its chunk and shard shapes, and the physical scale and
translation that place every level's voxel centres on the same object.

Factors (anisotropy-aware)
    At each step an axis is halved when its voxel is clearly finer than the coarsest axis
    (finer by more than a factor of sqrt(2)); when no axis is, all axes are halved. A 3D-SEM
    stack of 30 x 5 x 5 nm voxels therefore gets factors (1, 2, 2) until y and x reach about
    30 nm, then (2, 2, 2). An axis whose extent already fits in one tile is not shrunk further.

Stopping
    Levels are added until every axis fits in one tile (``tile`` voxels, 256 by default), so a
    viewer can show the whole volume from the coarsest level in one request.

Shards
    Every level is written in whole shards, and the writer gives each shard to exactly one task,
    so no two tasks ever write the same shard object. Shards must be a whole number of chunks.

This module imports neither zarr nor fsspec.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from cellvol.errors import LayoutError
from cellvol.spec import VoxelSize

__all__ = [
    "DEFAULT_CHUNKS",
    "DEFAULT_SHARDS",
    "DEFAULT_TILE",
    "LevelPlan",
    "PyramidPlan",
    "anisotropic_factors",
    "plan_pyramid",
    "shard_regions",
]

Shape = tuple[int, ...]
Region = tuple[slice, ...]

DEFAULT_CHUNKS: Shape = (64, 64, 64)
DEFAULT_SHARDS: Shape = (256, 256, 256)
DEFAULT_TILE = 256
# Cap on the number of levels: a 2**32-voxel axis needs 24 halvings to reach a 256 tile.
_MAX_LEVELS = 32


@dataclass(frozen=True, slots=True)
class LevelPlan:
    """One level of a planned pyramid.

    Attributes
    ----------
    path
        The level's array name inside the image group (``"0"``, ``"1"``, ...).
    shape
        Array shape in voxels.
    factors
        Per-axis downsampling factors from the previous level (all ones for level 0).
    chunks, shards
        Inner chunk and shard shapes; shards are a whole number of chunks.
    scale, translation
        The OME-NGFF coordinate transformation of this level, in the voxel size's unit.
    """

    path: str
    shape: Shape
    factors: Shape
    chunks: Shape
    shards: Shape
    scale: tuple[float, ...]
    translation: tuple[float, ...]

    @property
    def n_shards(self) -> int:
        """How many shard objects this level consists of."""
        return math.prod(-(-n // s) for n, s in zip(self.shape, self.shards, strict=True))


@dataclass(frozen=True, slots=True)
class PyramidPlan:
    """A whole pyramid: its levels, finest first, and the voxel size of level 0."""

    levels: tuple[LevelPlan, ...]
    voxel_size: VoxelSize

    def __len__(self) -> int:
        return len(self.levels)


def anisotropic_factors(voxel: Sequence[float], shape: Sequence[int], tile: int) -> Shape:
    """Per-axis factors (1 or 2) for the next level; see the module notes for the rule."""
    eligible = [n > tile for n in shape]
    if not any(eligible):
        return tuple(1 for _ in shape)
    coarsest = max(v for v, ok in zip(voxel, eligible, strict=True) if ok)
    finer = [ok and v * math.sqrt(2) < coarsest for v, ok in zip(voxel, eligible, strict=True)]
    chosen = finer if any(finer) else eligible
    return tuple(2 if c else 1 for c in chosen)


def plan_pyramid(
    shape: Sequence[int],
    voxel_size: VoxelSize,
    *,
    chunks: Sequence[int] | None = None,
    shards: Sequence[int] | None = None,
    n_levels: int | None = None,
    factors: Sequence[Sequence[int]] | None = None,
    tile: int = DEFAULT_TILE,
) -> PyramidPlan:
    """Plan the levels of a pyramid for a ``(z, y, x)`` volume.

    Parameters
    ----------
    shape
        Level-0 shape in voxels.
    voxel_size
        Level-0 voxel size.
    chunks, shards
        Inner chunk and shard shape for every level (default 64³ chunks in 256³ shards); each
        is clipped to the level's shape, rounded up to whole chunks for shards.
    n_levels
        Exact number of levels; by default levels are added until every axis fits in ``tile``.
    factors
        Explicit per-level factors from the previous level (one triple per level after the
        first); overrides the anisotropy rule and fixes the number of levels.
    tile
        Target extent of the coarsest level along each axis.

    Raises
    ------
    LayoutError
        If the shape, chunks, shards, factors or level count cannot be honoured; raised before
        any work starts.
    """
    shape = _positive_shape("shape", shape)
    ndim = len(shape)
    if ndim != 3:
        raise LayoutError(f"cellvol pyramids are 3-D (z, y, x); got a {ndim}-D shape {shape}")
    chunk_shape = _positive_shape("chunks", chunks or DEFAULT_CHUNKS, ndim)
    shard_shape = _positive_shape("shards", shards or DEFAULT_SHARDS, ndim)
    if shards is not None:
        bad = [s % c for s, c in zip(shard_shape, chunk_shape, strict=True)]
        if any(bad):
            raise LayoutError(
                f"shards {shard_shape} must be a whole number of chunks {chunk_shape} "
                "along every axis"
            )
    if tile < 1:
        raise LayoutError(f"tile must be a positive number of voxels, got {tile}")

    steps = _level_factors(shape, voxel_size, n_levels, factors, tile)
    levels: list[LevelPlan] = []
    level_shape: Shape = shape
    cumulative: Shape = tuple(1 for _ in shape)
    for index, step in enumerate(steps):
        if index:
            level_shape = tuple(-(-n // f) for n, f in zip(level_shape, step, strict=True))
            cumulative = tuple(c * f for c, f in zip(cumulative, step, strict=True))
        level_chunks = tuple(min(c, n) for c, n in zip(chunk_shape, level_shape, strict=True))
        level_shards = tuple(
            min(s, -(-n // c) * c)
            for s, c, n in zip(shard_shape, level_chunks, level_shape, strict=True)
        )
        # Clipping the chunk to a small axis can break divisibility; round shards up to it.
        level_shards = tuple(
            -(-s // c) * c for s, c in zip(level_shards, level_chunks, strict=True)
        )
        scale = tuple(v * c for v, c in zip(voxel_size.zyx, cumulative, strict=True))
        # Voxel centres align: a coarse voxel's centre is the mean of the fine centres it covers.
        translation = tuple(
            v * (c - 1) / 2 for v, c in zip(voxel_size.zyx, cumulative, strict=True)
        )
        levels.append(
            LevelPlan(
                path=str(index),
                shape=level_shape,
                factors=step,
                chunks=level_chunks,
                shards=level_shards,
                scale=scale,
                translation=translation,
            )
        )
    return PyramidPlan(levels=tuple(levels), voxel_size=voxel_size)


def shard_regions(shape: Sequence[int], shards: Sequence[int]) -> Iterator[Region]:
    """Yield the region of every shard of an array, in C order, clipped to the shape."""
    counts = [-(-n // s) for n, s in zip(shape, shards, strict=True)]
    for index in np.ndindex(*counts):
        yield tuple(
            slice(i * s, min((i + 1) * s, n))
            for i, s, n in zip(index, shards, shape, strict=True)
        )


def _level_factors(
    shape: Shape,
    voxel_size: VoxelSize,
    n_levels: int | None,
    factors: Sequence[Sequence[int]] | None,
    tile: int,
) -> list[Shape]:
    ones: Shape = tuple(1 for _ in shape)
    if factors is not None:
        steps = [_positive_shape(f"factors[{i}]", f, len(shape)) for i, f in enumerate(factors)]
        if n_levels is not None and n_levels != len(steps) + 1:
            raise LayoutError(
                f"n_levels={n_levels} contradicts {len(steps)} factor triples "
                f"(which make {len(steps) + 1} levels)"
            )
        current = shape
        for i, step in enumerate(steps, start=1):
            if any(f > n for f, n in zip(step, current, strict=True)):
                raise LayoutError(
                    f"factors {step} for level {i} exceed that level's input shape {current}"
                )
            current = tuple(-(-n // f) for n, f in zip(current, step, strict=True))
        return [ones, *steps]
    if n_levels is not None and not 1 <= n_levels <= _MAX_LEVELS:
        raise LayoutError(f"n_levels must be between 1 and {_MAX_LEVELS}, got {n_levels}")
    result: list[Shape] = [ones]
    voxel = list(voxel_size.zyx)
    current = shape
    while len(result) < (n_levels or _MAX_LEVELS):
        # With an explicit level count, keep halving past the tile until the count is met.
        step = anisotropic_factors(voxel, current, tile if n_levels is None else 1)
        if all(f == 1 for f in step):
            if n_levels is not None:
                raise LayoutError(
                    f"cannot make {n_levels} levels from shape {shape}: level {len(result)} "
                    f"is already {current}, one voxel along every axis it could shrink"
                )
            break
        result.append(step)
        voxel = [v * f for v, f in zip(voxel, step, strict=True)]
        current = tuple(-(-n // f) for n, f in zip(current, step, strict=True))
    return result


def _positive_shape(name: str, value: Sequence[int], ndim: int | None = None) -> Shape:
    try:
        result = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise LayoutError(f"{name} must be a sequence of integers, got {value!r}") from None
    if any(int(v) != v for v in value):
        raise LayoutError(f"{name} must hold whole numbers, got {value!r}")
    if ndim is not None and len(result) != ndim:
        raise LayoutError(f"{name} needs {ndim} entries (z, y, x), got {len(result)}: {result}")
    if not result or any(v < 1 for v in result):
        raise LayoutError(f"{name} must be positive along every axis, got {result}")
    return result
