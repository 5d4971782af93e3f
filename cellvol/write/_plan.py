"""Pure arithmetic that decides a pyramid's layout before any byte is read or written.

From a volume's shape, dtype and voxel size, :func:`plan_pyramid` picks the levels, each level's
per-axis downsampling factors, its chunk and shard shapes, and the physical scale and
translation that place every level's voxel centres on the same object.

Factors (anisotropy-aware)
    An axis can be halved while its extent is larger than one tile, or is at least one chunk
    along it. At each step, among the axes that can be, those whose voxel is clearly finer
    than the coarsest (by more than a factor of sqrt(2)) are halved; when none is, all of them
    are. A 3D-SEM stack of 30 x 5 x 5 nm voxels therefore gets factors (1, 2, 2) until y and x
    reach about 30 nm, then (2, 2, 2), and an isotropic volume of 256 planes in 64-plane
    chunks halves z with y and x instead of keeping its z voxel while they coarsen (levels
    approach isotropy, as ngff-zarr's and tensorstore's pyramids do). An axis shorter than a
    chunk that already fits in one tile is left alone: there is little left to gain.

Stopping
    Levels are added until every axis fits in one tile (``tile`` voxels, 256 by default), so a
    viewer can show the whole volume from the coarsest level in one request.

Compression
    Every chunk is zstd-compressed, except in the coarse levels that hold at most
    ``uncompressed_fraction`` of level 0's voxels (1/64 by default: from level 2 of a 2x
    isotropic pyramid). Those store raw bytes, each chunk still followed by its CRC32C. Image
    noise keeps zstd's ratio near 1.1-1.4, so the raw coarse levels add well under 1% to a
    store, while their planes, the ones viewers and overviews read most, are read at memory
    speed instead of zstd's decompression rate (``docs/benchmarks.md``).

Shards
    Every level is written in whole shards, and the writer gives each shard to exactly one task,
    so no two tasks ever write the same shard object. Shards must be a whole number of chunks.

This module imports neither zarr nor fsspec.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from cellvol.errors import LayoutError
from cellvol.units import VoxelSize

__all__ = [
    "DEFAULT_CHUNKS",
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_SHARDS",
    "DEFAULT_TILE",
    "DEFAULT_UNCOMPRESSED_FRACTION",
    "LevelPlan",
    "PyramidPlan",
    "Schedule",
    "StagePlan",
    "anisotropic_factors",
    "check_alignment",
    "child_regions",
    "plan_pyramid",
    "plan_schedule",
    "shard_regions",
    "with_leading_axes",
]

Shape = tuple[int, ...]
Region = tuple[slice, ...]

DEFAULT_CHUNKS: Shape = (64, 64, 64)
DEFAULT_SHARDS: Shape = (256, 256, 256)
DEFAULT_TILE = 256
DEFAULT_UNCOMPRESSED_FRACTION = 1 / 64
DEFAULT_MEMORY_LIMIT = 2**30
# Per task, besides its data: kernel slabs (see cellvol.write._downsample) and codec buffers.
_TASK_OVERHEAD = 64 * 2**20
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
    compression
        The zstd level of this level's chunks, or None where they are stored uncompressed.
    """

    path: str
    shape: Shape
    factors: Shape
    chunks: Shape
    shards: Shape
    scale: tuple[float, ...]
    translation: tuple[float, ...]
    compression: int | None = 3

    @property
    def n_shards(self) -> int:
        """How many shard objects this level consists of."""
        return math.prod(-(-n // s) for n, s in zip(self.shape, self.shards, strict=True))


@dataclass(frozen=True, slots=True)
class PyramidPlan:
    """A whole pyramid: its levels, finest first, and the voxel size of level 0."""

    levels: tuple[LevelPlan, ...]
    voxel_size: VoxelSize
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __len__(self) -> int:
        return len(self.levels)


@dataclass(frozen=True, slots=True)
class StagePlan:
    """One pass that reads a base once and produces the levels above it.

    A task owns one shard of the stage's top level. It obtains that shard's children (the
    shards of the level below that it covers) one at a time, depth first, down to the base,
    writes each as soon as it is complete and folds its downsampled data into its parent's
    buffer. A task therefore holds about one shard per level, and every shard is written by
    exactly one task.

    Attributes
    ----------
    index
        Position of the stage in the schedule.
    base
        The level read by the stage; ``-1`` for the source itself (then level 0 is produced
        from source regions of one level-0 shard each).
    levels
        The levels this stage writes, finest first; the last is the top level.
    task_bytes
        Estimated peak memory of one task.
    workers
        Tasks of this stage that may run at once within the memory limit.
    """

    index: int
    base: int
    levels: tuple[int, ...]
    task_bytes: int
    workers: int

    @property
    def top(self) -> int:
        """The level whose shards are the stage's tasks."""
        return self.levels[-1]


@dataclass(frozen=True, slots=True)
class Schedule:
    """The stages of a pyramid write and the memory limit they were planned for."""

    stages: tuple[StagePlan, ...]
    memory_limit: int

    @property
    def peak_bytes(self) -> int:
        """Estimated peak memory of the whole write: the largest stage at full parallelism."""
        return max(stage.workers * stage.task_bytes for stage in self.stages)


def plan_schedule(
    plan: PyramidPlan,
    itemsize: int,
    *,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    workers: int = 2,
    tasks_per_worker: int = 4,
    levels_per_stage: int = 2,
) -> Schedule:
    """Group a planned pyramid's levels into stages whose tasks fit in memory and in parallel.

    Each stage's top level is the coarsest level, at most ``levels_per_stage`` levels above
    its first, that still has at least ``tasks_per_worker * workers`` shards (so the workers
    stay busy and a killed task loses little); when no level above the base has that many,
    the stage runs as far as the cap allows, because what remains is small. The source is read
    once; only the top level of each stage is read back, by the next stage. The cap keeps a
    task's memory the same whatever the volume's size: a deeper stage holds one more shard
    buffer per level, so an uncapped stage would grow with the volume.

    Parameters
    ----------
    plan
        The pyramid's levels.
    itemsize
        Bytes per voxel.
    memory_limit
        Bytes the write's tasks may hold at once (default 1 GiB).
    workers
        Tasks to run at once at most (typically the number of cores or cluster workers).
    tasks_per_worker
        Tasks wanted per worker in each stage, for load balance.
    levels_per_stage
        Most levels one stage writes. Two costs a read-back of about an eighth of the input
        (level 1, decoded) and keeps the peak memory of a 16 GiB build that of a 1 GiB one.

    Raises
    ------
    LayoutError
        If one task does not fit in ``memory_limit``, or if a level's shards are not aligned
        with the shards of the level below (a parent shard must cover whole child shards).
    """
    if workers < 1:
        raise LayoutError(f"workers must be at least 1, got {workers}")
    if levels_per_stage < 1:
        raise LayoutError(f"levels_per_stage must be at least 1, got {levels_per_stage}")
    levels = plan.levels
    check_alignment(plan)
    wanted = tasks_per_worker * workers

    def task_bytes(first: int, top: int) -> int:
        # One buffer per produced level, the child being folded in, and codec buffers.
        shard_bytes = [math.prod(levels[j].shards) * itemsize for j in range(first, top + 1)]
        return int(1.25 * sum(shard_bytes)) + 2 * max(shard_bytes) + _TASK_OVERHEAD

    def coarsest(first: int, last: int, min_tasks: int, parallel: int) -> int | None:
        fitting = [
            top
            for top in range(first, last + 1)
            if levels[top].n_shards >= min_tasks
            and parallel * task_bytes(first, top) <= memory_limit
        ]
        return max(fitting) if fitting else None

    stages: list[StagePlan] = []
    base = -1
    while base + 1 < len(levels):
        first = base + 1
        last = min(first + levels_per_stage, len(levels)) - 1  # the stage cap
        top = coarsest(first, last, wanted, workers)
        if top is None:
            top = coarsest(first, last, workers, workers)
        if top is None:
            # Too few shards left to keep the workers busy: go as far as the cap, if it fits.
            top = last if task_bytes(first, last) <= memory_limit else first
        need = task_bytes(first, top)
        if need > memory_limit:
            raise LayoutError(
                f"memory_limit of {memory_limit / 2**20:.0f} MiB is below what one task needs "
                f"({need / 2**20:.0f} MiB for level {first} with shards of "
                f"{levels[first].shards} {itemsize}-byte voxels); raise memory_limit or "
                "choose smaller shards"
            )
        parallel = max(1, min(workers, memory_limit // need, levels[top].n_shards))
        stages.append(StagePlan(len(stages), base, tuple(range(first, top + 1)), need, parallel))
        base = top
    return Schedule(tuple(stages), memory_limit=memory_limit)


def check_alignment(plan: PyramidPlan) -> None:
    """Raise unless each shard of every level covers whole shards of the level below.

    Along each axis, a level's shard scaled back by its factor must be a whole number of the
    lower level's shards, and those must be a whole number of factors (so no downsampling
    window straddles two shards). An axis where the lower level has a single shard is always
    aligned; where only the upper level has one, that shard covers the whole axis below, but
    the windows must still fall within the lower level's shards.

    Raises
    ------
    LayoutError
        Naming the level, the axis and the shapes that do not fit.
    """
    for index in range(1, len(plan.levels)):
        upper, lower = plan.levels[index], plan.levels[index - 1]
        # The spatial axes are the last three; axes before them (time, channel) keep factor 1.
        for axis, name in enumerate("zyx", start=len(upper.shape) - 3):
            f = upper.factors[axis]
            if lower.shape[axis] <= lower.shards[axis]:
                continue
            span = upper.shards[axis] * f
            if (upper.shape[axis] > upper.shards[axis] and span % lower.shards[axis]) or (
                lower.shards[axis] % f
            ):
                raise LayoutError(
                    f"level {index} shards {upper.shards} times factors {upper.factors} do not "
                    f"cover whole shards {lower.shards} of level {index - 1} along {name}; "
                    "use shard shapes that are equal or powers of two apart"
                )


def child_regions(plan: PyramidPlan, level: int, region: Region) -> Iterator[Region]:
    """The shards of ``level - 1`` that make up ``region`` (one shard of ``level``)."""
    lower = plan.levels[level - 1]
    factors = plan.levels[level].factors
    span = tuple(
        slice(r.start * f, min(r.stop * f, n))
        for r, f, n in zip(region, factors, lower.shape, strict=True)
    )
    counts = [-(-(s.stop - s.start) // c) for s, c in zip(span, lower.shards, strict=True)]
    for index in np.ndindex(*counts):
        yield tuple(
            slice(s.start + i * c, min(s.start + (i + 1) * c, s.stop))
            for s, i, c in zip(span, index, lower.shards, strict=True)
        )


def anisotropic_factors(
    voxel: Sequence[float],
    shape: Sequence[int],
    tile: int,
    min_extent: Sequence[int] | None = None,
) -> Shape:
    """Per-axis factors (1 or 2) for the next level; see the module notes for the rule.

    Parameters
    ----------
    voxel
        The current level's voxel size along each axis.
    shape
        The current level's extent along each axis.
    tile
        Levels are needed while some axis is longer than this.
    min_extent
        Per axis, the extent (typically one chunk) from which an axis that already fits in a
        tile is still halved to keep levels near isotropic; None halves only longer axes.

    Returns
    -------
    tuple of int
        All ones when no axis is longer than ``tile``: the pyramid is complete.
    """
    if not any(n > tile for n in shape):
        return tuple(1 for _ in shape)
    floors = min_extent if min_extent is not None else [tile + 1] * len(shape)
    can = [n > tile or n >= max(2, m) for n, m in zip(shape, floors, strict=True)]
    coarsest = max(v for v, ok in zip(voxel, can, strict=True) if ok)
    finer = [ok and v * math.sqrt(2) < coarsest for v, ok in zip(voxel, can, strict=True)]
    chosen = finer if any(finer) else can
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
    origin: Sequence[float] | None = None,
    downsample_z: bool = True,
    compression_level: int = 3,
    uncompressed_fraction: float = DEFAULT_UNCOMPRESSED_FRACTION,
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
    origin
        Physical position of level 0's first voxel centre, ``(z, y, x)`` in the voxel size's
        unit (default: the origin).
    downsample_z
        False for a stack of separate images (z is not a spatial axis): only y and x shrink.
    compression_level
        zstd level (1-22) of the compressed levels.
    uncompressed_fraction
        Levels holding at most this fraction of level 0's voxels (by their factors: one
        voxel in 64 for 1/64) are stored uncompressed; 0 compresses every level, 1 none.

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
    if not 1 <= compression_level <= 22:
        raise LayoutError(f"compression_level must be 1-22, got {compression_level}")
    if not 0 <= uncompressed_fraction <= 1:
        raise LayoutError(
            f"uncompressed_fraction must be between 0 and 1, got {uncompressed_fraction}"
        )

    start = _origin(origin)
    steps = _level_factors(shape, voxel_size, n_levels, factors, tile, downsample_z, chunk_shape)
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
            o + v * (c - 1) / 2 for o, v, c in zip(start, voxel_size.zyx, cumulative, strict=True)
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
                # By the factors, not the shapes: rounding up at the edges must not decide.
                compression=(
                    None
                    if math.prod(cumulative) * uncompressed_fraction >= 1
                    else compression_level
                ),
            )
        )
    return PyramidPlan(levels=tuple(levels), voxel_size=voxel_size, origin=start)


def _origin(origin: Sequence[float] | None) -> tuple[float, float, float]:
    if origin is None:
        return (0.0, 0.0, 0.0)
    try:
        values = tuple(float(v) for v in origin)
    except (TypeError, ValueError):
        raise LayoutError(f"origin must be three numbers (z, y, x), got {origin!r}") from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise LayoutError(f"origin must be three finite numbers (z, y, x), got {origin!r}")
    return (values[0], values[1], values[2])


def with_leading_axes(plan: PyramidPlan, sizes: Sequence[int]) -> PyramidPlan:
    """The same pyramid over arrays with axes before ``z, y, x`` (time, channel) of ``sizes``.

    Those axes are never downsampled, and every chunk and shard holds one index of each, so a
    shard of such an array holds the same bytes as the 3-D shard of its ``(t, c)`` volume.
    """
    ones = tuple(1 for _ in sizes)
    lead = tuple(int(n) for n in sizes)
    levels = tuple(
        replace(
            level,
            shape=(*lead, *level.shape),
            factors=(*ones, *level.factors),
            chunks=(*ones, *level.chunks),
            shards=(*ones, *level.shards),
            scale=(*(1.0 for _ in sizes), *level.scale),
            translation=(*(0.0 for _ in sizes), *level.translation),
        )
        for level in plan.levels
    )
    return replace(plan, levels=levels)


def shard_regions(shape: Sequence[int], shards: Sequence[int]) -> Iterator[Region]:
    """Yield the region of every shard of an array, in C order, clipped to the shape."""
    counts = [-(-n // s) for n, s in zip(shape, shards, strict=True)]
    for index in np.ndindex(*counts):
        yield tuple(
            slice(i * s, min((i + 1) * s, n)) for i, s, n in zip(index, shards, shape, strict=True)
        )


def _level_factors(
    shape: Shape,
    voxel_size: VoxelSize,
    n_levels: int | None,
    factors: Sequence[Sequence[int]] | None,
    tile: int,
    downsample_z: bool = True,
    chunks: Shape | None = None,
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
        # An image stack's z is never eligible: its sections are separate images.
        candidates = current if downsample_z else (1, *current[1:])
        step = anisotropic_factors(voxel, candidates, tile if n_levels is None else 1, chunks)
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
