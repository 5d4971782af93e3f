"""Deep verification: each coarser level recomputed from the level below, compared bit for bit.

Checksums prove that the stored bytes are the ones written, not that what was written is
right: a coarser level computed wrongly (a kernel bug, a level left from another write) passes
every CRC32C, manifest entry and fingerprint. Here each coarser level is recomputed from the
level below with the write's own kernel (:func:`cellvol.write._downsample.downsample`), using
the method and per-level factors the write recorded (``_cellvol/job.json``, or the same
parameters in the provenance attribute), and compared with the stored level bit for bit. A
difference is a ``pyramid`` :class:`~cellvol.integrity.Problem` naming the coarser level's shard.

An image without such a record was made by a method cellvol cannot know; it is listed under
``unchecked`` rather than recomputed into false alarms.

Data is read through cellvol's reader (the library's decode path) in pieces: one inner chunk
of a coarser shard at a time, split further while the region below it would exceed
``_PIECE_BYTES``, so memory stays bounded whatever the shard size or dtype. A piece that cannot
be read (damage the checksum pass has already reported) leaves its shard unchecked, with a note.
"""

from __future__ import annotations

import itertools
import json
import math
import secrets
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
from zarr.abc.store import Store

from cellvol._codec._cache import ChunkCache
from cellvol._codec._layout import Box
from cellvol._store import read_bytes
from cellvol.errors import CellvolError, InvalidInputError
from cellvol.integrity._pool import bounded
from cellvol.integrity._report import Problem, VerifyReport
from cellvol.ome._manifest import LEDGER_PREFIX
from cellvol.ome._metadata import PROVENANCE_KEY
from cellvol.progress import ProgressCallback, ProgressReporter
from cellvol.read._level import Level
from cellvol.read._open import open as open_image
from cellvol.read._volume import Volume
from cellvol.write._downsample import METHODS, Method, downsample

__all__ = ["check_pyramids", "deep_fraction", "sample"]

JOB_KEY = f"{LEDGER_PREFIX}/job.json"
# Bytes of the finer region one piece reads. The kernels' temporaries (a float64 sum for
# means) add at most a few times this, per piece in flight.
_PIECE_BYTES: Final = 16 * 2**20


def deep_fraction(deep: bool | float) -> float:
    """The fraction of each level's shards to recompute: 0 (no deep check) to 1 (all).

    Raises
    ------
    InvalidInputError
        For a fraction outside ``(0, 1]``.
    """
    if deep is True or deep is False:
        return float(deep)
    fraction = float(deep)
    if not 0 < fraction <= 1:
        raise InvalidInputError(
            f"deep must be True, False or a fraction of the shards in (0, 1], got {deep!r}"
        )
    return fraction


def sample(count: int, fraction: float, seed: int, image: int, level: int) -> list[int]:
    """Which of a level's ``count`` shards a ``fraction`` sample recomputes, at least one.

    The choice depends only on the seed, the image's place in the report and the level, so
    the same seed picks the same shards again.
    """
    if fraction >= 1:
        return list(range(count))
    chosen = max(1, min(count, round(fraction * count)))
    rng = np.random.default_rng((seed, image, level))
    return sorted(int(i) for i in rng.choice(count, chosen, replace=False))


def check_pyramids(
    store: Store,
    url: str,
    storage_options: Mapping[str, Any] | None,
    report: VerifyReport,
    *,
    fraction: float,
    seed: int | None,
    workers: int,
    progress: ProgressCallback | None,
    first_stage: int,
) -> None:
    """Recompute the coarser levels of every image in ``report.images``; add what differs.

    One progress stage per image with coarser levels, numbered from ``first_stage``; its
    tasks are the coarser shards recomputed.
    """
    seed = secrets.randbits(32) if seed is None and fraction < 1 else seed
    try:
        # No cache: every chunk is read once, and caching would only evict others' chunks.
        root = open_image(url, storage_options, cache=ChunkCache(0))
    except CellvolError as exc:
        report.unchecked.append(f"pyramids not recomputed: the image cannot be read ({exc})")
        return
    stage = first_stage
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="cellvol-deep") as pool:
        for number, image in enumerate(report.images):
            name = image or "the image"
            try:
                volume: Volume = root.labels[image.split("/", 1)[1]] if image else root
            except (CellvolError, KeyError) as exc:
                report.unchecked.append(f"{name}: pyramid not recomputed: cannot be read ({exc})")
                continue
            prefix = f"{image}/" if image else ""
            recipe = _recipe(store, prefix, volume)
            if isinstance(recipe, str):
                report.unchecked.append(f"{name}: pyramid not recomputed: {recipe}")
                continue
            if len(volume.levels) < 2:
                continue
            check = _ImageCheck(volume, prefix, recipe, report)
            check.plan(fraction, seed or 0, number)
            if fraction < 1:
                counts = ", ".join(f"level {k}: {n} of {t}" for k, n, t in check.sampled)
                report.unchecked.append(
                    f"{name}: pyramid recomputed on a sample of {fraction:g} of each level's "
                    f"shards (seed {seed}; {counts}); the other shards not"
                )
            if check.chosen:
                reporter = ProgressReporter(progress, stage, check.levels, check.total)
                check.run(pool, workers, reporter)
                stage += 1


@dataclass(frozen=True, slots=True)
class _Recipe:
    """How the write made each level from the one below: its method and factors per level."""

    method: Method
    factors: tuple[tuple[int, ...], ...]


def _recipe(store: Store, prefix: str, volume: Volume) -> _Recipe | str:
    """The recorded downsampling of an image, or why there is none to trust."""
    parameters: Any = None
    raw = read_bytes(store, f"{prefix}{JOB_KEY}")
    if raw is not None:
        try:
            parameters = json.loads(raw).get("parameters")
        except (ValueError, AttributeError):
            parameters = None
    if not isinstance(parameters, Mapping):
        provenance = volume.attributes.get(PROVENANCE_KEY)
        parameters = provenance.get("parameters") if isinstance(provenance, Mapping) else None
    if not isinstance(parameters, Mapping):
        return (
            "its levels were made by an unknown method (no record of a cellvol write's "
            "downsampling), so they cannot be recomputed"
        )
    method, levels = parameters.get("method"), parameters.get("levels")
    if method not in METHODS or not isinstance(levels, list):
        return f"its write record names no downsampling method cellvol knows ({method!r})"
    paths = [level.path for level in volume.levels]
    recorded = [entry.get("path") if isinstance(entry, Mapping) else None for entry in levels]
    if recorded != paths:
        return f"its write record lists levels {recorded}, its metadata {paths}"
    factors: list[tuple[int, ...]] = []
    for entry, level in zip(levels, volume.levels, strict=True):
        given = entry.get("factors")
        if (
            not isinstance(given, list)
            or len(given) != level.ndim
            or not all(isinstance(f, int) and f >= 1 for f in given)
        ):
            return f"its write record gives level {level.path!r} the factors {given!r}"
        factors.append(tuple(given))
    return _Recipe(cast(Method, method), tuple(factors))


@dataclass(frozen=True, slots=True)
class _Piece:
    """A box of a coarser level to recompute; ``last`` ends its shard's pieces."""

    level: int
    shard: int
    box: Box
    last: bool


@dataclass(slots=True)
class _Found:
    """What one piece showed: differing voxels, the first of them, bytes read, or an error."""

    differing: int = 0
    first: tuple[int, ...] | None = None
    values: tuple[Any, Any] | None = None
    nbytes: int = 0
    error: str | None = None


@dataclass(slots=True)
class _ImageCheck:
    """The deep check of one image: which coarser shards to recompute, and recomputing them."""

    volume: Volume
    prefix: str
    recipe: _Recipe
    report: VerifyReport
    # Per coarser level: the grid positions of the shards chosen.
    chosen: dict[int, list[tuple[int, ...]]] = field(default_factory=dict)
    sampled: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(self.chosen)

    @property
    def total(self) -> int:
        return sum(len(positions) for positions in self.chosen.values())

    def plan(self, fraction: float, seed: int, number: int) -> None:
        """Choose the shards of each coarser level whose shape is what its factors make."""
        for k in range(1, len(self.volume.levels)):
            finer, coarse = self.volume.levels[k - 1], self.volume.levels[k]
            factors = self.recipe.factors[k]
            expected = tuple(-(-n // f) for n, f in zip(finer.shape, factors, strict=True))
            if expected != coarse.shape or coarse.dtype != finer.dtype:
                self.problem(
                    f"{self.prefix}{coarse.path}/zarr.json",
                    f"level {k} is {coarse.shape} {coarse.dtype}, but level {k - 1} "
                    f"({finer.shape} {finer.dtype}) downsampled by {list(factors)} makes "
                    f"{expected} {finer.dtype}",
                )
                continue
            grid = [-(-n // s) for n, s in zip(coarse.shape, _shard_shape(coarse), strict=True)]
            count = math.prod(grid)
            picked = sample(count, fraction, seed, number, k)
            # C order, as the grid is listed: index i is the i-th shard of the level.
            self.chosen[k] = [tuple(int(p) for p in np.unravel_index(i, grid)) for i in picked]
            self.sampled.append((k, len(picked), count))

    def problem(self, key: str, detail: str) -> None:
        self.report.problems.append(Problem(key, "pyramid", detail))

    def run(self, pool: ThreadPoolExecutor, workers: int, reporter: ProgressReporter) -> None:
        """Recompute the chosen shards, ``workers`` pieces at a time; report what differs."""
        reporter.start()
        shard = _Found()
        for piece, found in bounded(pool, self.check_piece, self.pieces(), workers):
            shard.differing += found.differing
            shard.nbytes += found.nbytes
            shard.error = shard.error or found.error
            if found.first is not None and (shard.first is None or found.first < shard.first):
                shard.first, shard.values = found.first, found.values
            if piece.last:
                self.finish(piece, shard)
                reporter.advance(shard.nbytes)
                shard = _Found()

    def pieces(self) -> Iterator[_Piece]:
        """Every piece of every chosen shard, shard after shard (made as they are needed)."""
        for k, positions in self.chosen.items():
            coarse, finer = self.volume.levels[k], self.volume.levels[k - 1]
            size = _shard_shape(coarse)
            for index, position in enumerate(positions):
                shard_box = [
                    (p * s, min((p + 1) * s, n))
                    for p, s, n in zip(position, size, coarse.shape, strict=True)
                ]
                boxes = list(self.split(shard_box, coarse.chunks, k, finer))
                for i, box in enumerate(boxes):
                    yield _Piece(k, index, box, last=i == len(boxes) - 1)

    def split(self, shard: Box, chunks: Sequence[int], k: int, finer: Level) -> Iterator[Box]:
        """The shard's inner chunks, each halved while the region below is too large."""
        factors = self.recipe.factors[k]
        starts = [range(a, b, c) for (a, b), c in zip(shard, chunks, strict=True)]
        for corner in itertools.product(*starts):
            box = [(a, min(a + c, b)) for a, c, (_, b) in zip(corner, chunks, shard, strict=True)]
            yield from _halved(box, factors, finer.shape, finer.dtype.itemsize)

    def check_piece(self, piece: _Piece) -> tuple[_Piece, _Found]:
        """Recompute one piece from the level below and compare it with the stored one."""
        k, box = piece.level, piece.box
        finer, coarse = self.volume.levels[k - 1], self.volume.levels[k]
        factors = self.recipe.factors[k]
        below = _below(box, factors, finer.shape)
        try:
            source = finer[tuple(slice(a, b) for a, b in below)]
            stored = coarse[tuple(slice(a, b) for a, b in box)]
        except CellvolError as exc:
            return piece, _Found(error=exc.message)
        recomputed = downsample(source, factors, self.recipe.method)
        differ = _differing(recomputed, stored)
        found = _Found(nbytes=source.nbytes + stored.nbytes)
        found.differing = int(np.count_nonzero(differ))
        if found.differing:
            at = np.unravel_index(int(np.argmax(differ)), differ.shape)
            found.first = tuple(int(i) + a for i, (a, _) in zip(at, box, strict=True))
            found.values = (stored[at].item(), recomputed[at].item())
        return piece, found

    def finish(self, piece: _Piece, shard: _Found) -> None:
        """Report one shard's outcome: a problem, a note, or nothing when it matches."""
        coarse = self.volume.levels[piece.level]
        position = self.chosen[piece.level][piece.shard]
        key = f"{self.prefix}{coarse.path}/{coarse.array.metadata.encode_chunk_key(position)}"
        if shard.error is not None:
            # What could be read is still compared: a difference there is real.
            self.report.unchecked.append(
                f"{key}: not recomputed in full, part of it or of the region below is "
                f"unreadable ({shard.error})"
            )
        else:
            self.report.recomputed += 1
        if shard.differing and shard.values is not None:
            stored, recomputed = shard.values
            self.problem(
                key,
                f"{shard.differing:,} voxel(s) differ from level {piece.level - 1} downsampled "
                f"by {self.recipe.method} {list(self.recipe.factors[piece.level])}; the first "
                f"at {list(shard.first or ())} (level {piece.level} voxels) holds {stored!r}, "
                f"recomputed {recomputed!r}",
            )


def _shard_shape(level: Level) -> tuple[int, ...]:
    return level.shards or level.chunks


def _below(box: Box, factors: Sequence[int], shape: Sequence[int]) -> Box:
    """The region of the finer level that a box of the coarser one is made from."""
    return [(a * f, min(b * f, n)) for (a, b), f, n in zip(box, factors, shape, strict=True)]


def _halved(box: Box, factors: Sequence[int], shape: Sequence[int], itemsize: int) -> Iterator[Box]:
    """``box`` split in halves along its longest axis until the region below fits a piece."""
    below = math.prod(b - a for a, b in _below(box, factors, shape)) * itemsize
    extents = [b - a for a, b in box]
    if below <= _PIECE_BYTES or max(extents) == 1:
        yield box
        return
    axis = extents.index(max(extents))
    middle = box[axis][0] + extents[axis] // 2
    for half in ((box[axis][0], middle), (middle, box[axis][1])):
        yield from _halved(
            [half if i == axis else r for i, r in enumerate(box)], factors, shape, itemsize
        )


def _differing(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Where two arrays of one dtype differ bit for bit (NaNs with equal bits are equal)."""
    unsigned = np.dtype(f"u{a.dtype.itemsize}")
    bits_a = np.ascontiguousarray(a).view(unsigned)
    differ: npt.NDArray[np.bool_] = bits_a != np.ascontiguousarray(b).view(unsigned)
    return differ
