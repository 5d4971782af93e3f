"""One pyramid level: a zarr array placed in physical space, sliced numpy-style."""

from __future__ import annotations

import asyncio
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import zarr

from cellvol._codec._keys import box_of, per_axis, touched_chunks, touched_ranges
from cellvol._codec._reader import ChunkReader
from cellvol.errors import CellvolError, IntegrityError
from cellvol.ome._metadata import (
    Axis,
    Dataset,
    Multiscale,
)
from cellvol.read._integrity import ShardPresence
from cellvol.units import VoxelSize


@dataclass(frozen=True, slots=True, eq=False)
class Level:
    """One pyramid level: a zarr array and where its voxels sit in physical space.

    Attributes
    ----------
    index
        0 for full resolution, increasing towards coarser levels.
    path
        The array's path inside the image group.
    array
        The underlying zarr array.
    scale, translation
        Physical size and offset of a voxel along each axis, in the axes' units.
    """

    index: int
    path: str
    array: zarr.Array[Any]
    scale: tuple[float, ...]
    translation: tuple[float, ...]
    axes: tuple[Axis, ...]
    presence: ShardPresence | None = None
    """For images with a write manifest: checks the shards a read touches exist."""
    reader: ChunkReader | None = None
    """Reads boxes directly from the chunks, for layouts it knows (else zarr reads)."""
    fixed: tuple[int, ...] = ()
    """Indices of the array's first axes that this level is a view at (one channel of one
    time point, see :meth:`Volume.channel`): the level has the remaining axes only, and
    ``axes``, ``scale`` and ``translation`` describe those."""

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape in voxels."""
        return tuple(self.array.shape)[len(self.fixed) :]

    @property
    def dtype(self) -> np.dtype[Any]:
        """Element type."""
        return np.dtype(self.array.dtype)

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    @property
    def chunks(self) -> tuple[int, ...]:
        """Shape of the smallest unit read and decoded (the inner chunk when sharded)."""
        return tuple(self.array.chunks)[len(self.fixed) :]

    @property
    def shards(self) -> tuple[int, ...] | None:
        """Shape of one stored object when the array is sharded, else None."""
        shards = self.array.shards
        return tuple(shards)[len(self.fixed) :] if shards is not None else None

    @property
    def nbytes(self) -> int:
        """Uncompressed size in bytes."""
        return math.prod(self.shape) * self.dtype.itemsize

    def nbytes_stored(self) -> int:
        """Bytes the level occupies in its store (lists the store: slow on large S3 levels).

        A channel's view counts its share of the whole array's bytes.
        """
        if self.fixed:
            share = math.prod(self.array.shape[: len(self.fixed)])
            return int(self.array.nbytes_stored()) // max(share, 1)
        return int(self.array.nbytes_stored())

    @property
    def voxel_size(self) -> VoxelSize | None:
        """The ``z, y, x`` voxel size, or None if the level is not 3-D spatial."""
        return self._multiscale().voxel_size(0)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Element size along each spatial axis in array order, whatever their number.

        For a 3-D level it is :attr:`voxel_size`'s ``zyx``; a 2-D image's pixel size is
        ``(y, x)``. In the unit of the spatial axes (see :attr:`Volume.unit`).
        """
        return self._multiscale().spacing(0)

    def _multiscale(self) -> Multiscale:
        return Multiscale(
            version="", axes=self.axes, datasets=(Dataset(self.path, self.scale, self.translation),)
        )

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        """Read a region numpy-style (integers, slices, Ellipsis); returns a numpy array.

        Raises
        ------
        IntegrityError
            If a stored chunk in the region fails its checksum, or a shard the write's
            manifest lists is missing (instead of reading it as fill values).
        """
        key = self._in_array(key)
        if self.reader is not None:
            selected = box_of(key, self.array.shape)
            if selected is not None:
                box, within = selected
                return np.asarray(self.reader.read(box)[within])
        return self._read_with_zarr(key)

    async def read_async(self, key: Any) -> npt.NDArray[Any]:
        """``level[key]`` for asyncio code (a server): awaits without blocking its loop.

        The reads run on zarr's I/O loop, where the level's store lives, and the
        decompression on cellvol's thread pool; selections the direct reader does not cover
        run in a worker thread.
        """
        key = self._in_array(key)
        if self.reader is not None:
            selected = box_of(key, self.array.shape)
            if selected is not None:
                box, within = selected
                return np.asarray((await self.reader.read_async(box))[within])
        return await asyncio.to_thread(self._read_with_zarr, key)

    def _in_array(self, key: Any) -> Any:
        """``key`` as a key of the whole array: a view's fixed indices put in front."""
        if not self.fixed:
            return key
        parts = per_axis(key, self.ndim)
        if parts is None:
            raise IndexError(
                f"{key!r} does not select from a {self.ndim}-D channel view: use integers, "
                "slices, index arrays and at most one '...'"
            )
        return (*self.fixed, *parts)

    def _read_with_zarr(self, key: Any) -> npt.NDArray[Any]:
        # First the selection's own faults (a zero step raises ValueError here, before any
        # read), so that every ValueError zarr raises below is the stored data's.
        shape = tuple(self.array.shape)
        touched_ranges(key, shape)
        key, flipped = _positive_steps(key, shape)
        try:
            data = np.asarray(self.array[key])
            if flipped:  # zarr reads only steps >= 1: negative ones were read forwards
                data = data[tuple(slice(None, None, -1) if f else slice(None) for f in flipped)]
        except (CellvolError, IndexError, TypeError, OSError, MemoryError):
            raise  # a bad selection (IndexError), the store's own failure, or already ours
        except Exception as exc:
            # A codec's failure on stored bytes: crc32c's ValueError, zstd's RuntimeError, a
            # shard too short for its index... Which chunk is damaged, zarr does not say.
            raise self._damage(key, exc) from exc
        # After zarr has judged the selection (its bounds are the caller's fault, and come
        # first), and before the data is returned: the shards read must be those written.
        if self.presence is not None:
            self.presence.check(key, shape)
        return data

    def _damage(self, key: Any, exc: Exception) -> IntegrityError:
        """The error for a selection zarr could not decode, naming the chunk where it can.

        The chunks the selection touched are read again, one at a time, through the direct
        reader, whose checks name the chunk and its shard; this costs what the failed read
        did, and only when reading has already failed.
        """
        where = f"level {self.index} ('{self.path}'), selection {key!r}"
        if self.reader is not None:
            shape, chunks = tuple(self.array.shape), tuple(self.array.chunks)
            for index in itertools.product(*touched_chunks(key, shape, chunks)):
                box = [
                    (i * c, min((i + 1) * c, n))
                    for i, c, n in zip(index, chunks, shape, strict=True)
                ]
                try:
                    self.reader.read(box)
                except IntegrityError as found:
                    return IntegrityError(f"{found.message} ({where})")
        return IntegrityError(
            f"{where}: stored data cannot be decoded, it is corrupt ({type(exc).__name__}: {exc})"
        )

    def to_dask(self) -> Any:
        """Return the level as a dask array, one block per shard (see ``_views``)."""
        from cellvol.read._views import level_to_dask

        return level_to_dask(self)

    def to_xarray(self, name: str | None = None) -> Any:
        """Return the level as a dask-backed ``xarray.DataArray`` in physical coordinates.

        Needs the ``xarray`` extra. ``sel(z=..., method="nearest")`` then selects in the axes'
        unit (nanometres for images cellvol writes).
        """
        from cellvol.read._views import level_to_xarray

        return level_to_xarray(self, name)

    def _repr_html_(self) -> str:
        from cellvol.read._views import level_html

        return level_html(self)

    def __repr__(self) -> str:
        return (
            f"<Level {self.index} '{self.path}' shape={self.shape} dtype={self.dtype} "
            f"chunks={self.chunks} shards={self.shards}>"
        )


@dataclass(frozen=True, slots=True)
class Region:
    """A block of one level chosen in physical units (see :meth:`Volume.region`).

    Attributes
    ----------
    level
        The level it is read from.
    slices
        Its voxel index range along each axis of that level.
    """

    level: Level
    slices: tuple[slice, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape in voxels."""
        return tuple(s.stop - s.start for s in self.slices)

    @property
    def nbytes(self) -> int:
        """Bytes the region takes once read."""
        return int(np.prod(self.shape)) * self.level.dtype.itemsize

    @property
    def origin(self) -> tuple[float, ...]:
        """Physical position of the region's first voxel centre along each axis."""
        return tuple(
            t + s.start * k
            for t, s, k in zip(self.level.translation, self.slices, self.level.scale, strict=True)
        )

    def read(self) -> npt.NDArray[Any]:
        """Read the region as a numpy array."""
        return self.level[self.slices]


def _positive_steps(key: Any, shape: tuple[int, ...]) -> tuple[Any, tuple[bool, ...]]:
    """``key`` with every negative slice step made positive, and which result axes to flip.

    zarr refuses negative steps; a slice that walks backwards selects the same voxels as one
    that walks forwards from its last voxel, in reverse. Only keys of integers and slices are
    rewritten (one part per axis, ``...`` expanded); others are returned as they are.
    """
    parts = per_axis(key, len(shape))
    if parts is None or not all(isinstance(p, int | np.integer | slice) for p in parts):
        return key, ()
    if not any(isinstance(p, slice) and (p.step or 1) < 0 for p in parts):
        return key, ()
    rewritten: list[Any] = []
    flipped: list[bool] = []
    for part, n in zip(parts, shape, strict=True):
        if isinstance(part, slice):
            start, stop, step = part.indices(n)
            if step < 0:
                count = len(range(start, stop, step))
                last = start + step * (count - 1) if count else 0
                rewritten.append(slice(last, last + -step * count if count else 0, -step))
                flipped.append(True)
                continue
            flipped.append(False)
        rewritten.append(part)
    return tuple(rewritten), tuple(flipped)
