"""Open any OME-Zarr image (0.4 or 0.5) or bare zarr array as a :class:`Volume`.

A volume is a list of levels, finest first. Each :class:`Level` is sliced numpy-style and
returns numpy arrays; ``volume[...]`` slices level 0.

Layouts recognised, in this order: an image group with ``multiscales`` metadata (0.5 under the
``ome`` key, 0.4 at the top level); a bioformats2raw collection (its first image, ``0``); a bare
zarr array, read as a single level with unit voxel size.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import zarr

from cellvol.cache import ChunkCache, default_cache
from cellvol.chunkread import ChunkReader, box_of, chunk_layout
from cellvol.display import Window, window_of
from cellvol.errors import (
    IntegrityError,
    InvalidInputError,
    LevelError,
    MetadataError,
    NotOMEZarrError,
)
from cellvol.integrity import ShardPresence
from cellvol.ledger import MANIFEST_KEY, parse_manifest
from cellvol.metadata import (
    PROVENANCE_KEY,
    Axis,
    Dataset,
    Multiscale,
    ome_namespace,
    read_multiscale,
)
from cellvol.nodes import open_node, read_arrays
from cellvol.select import finest_level_within, level_for_resolution, voxel_slices
from cellvol.spec import SPATIAL_AXES, VoxelSize
from cellvol.storage import open_store, parse_location

if TYPE_CHECKING:
    from cellvol.labels import Labels

__all__ = ["Level", "Region", "Volume", "open"]

_BF2RAW_KEY = "bioformats2raw.layout"


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

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape in voxels."""
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        """Element type."""
        return np.dtype(self.array.dtype)

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.array.shape)

    @property
    def chunks(self) -> tuple[int, ...]:
        """Shape of the smallest unit read and decoded (the inner chunk when sharded)."""
        return tuple(self.array.chunks)

    @property
    def shards(self) -> tuple[int, ...] | None:
        """Shape of one stored object when the array is sharded, else None."""
        shards = self.array.shards
        return tuple(shards) if shards is not None else None

    @property
    def nbytes(self) -> int:
        """Uncompressed size in bytes."""
        return int(self.array.nbytes)

    def nbytes_stored(self) -> int:
        """Bytes the level occupies in its store (lists the store: slow on large S3 levels)."""
        return int(self.array.nbytes_stored())

    @property
    def voxel_size(self) -> VoxelSize | None:
        """The ``z, y, x`` voxel size, or None if the level is not 3-D spatial."""
        return Multiscale(
            version="", axes=self.axes, datasets=(Dataset(self.path, self.scale, self.translation),)
        ).voxel_size(0)

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        """Read a region numpy-style (integers, slices, Ellipsis); returns a numpy array.

        Raises
        ------
        IntegrityError
            If a stored chunk in the region fails its checksum, or a shard the write's
            manifest lists is missing (instead of reading it as fill values).
        """
        if self.reader is not None:
            selected = box_of(key, self.shape)
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
        if self.reader is not None:
            selected = box_of(key, self.shape)
            if selected is not None:
                box, within = selected
                return np.asarray((await self.reader.read_async(box))[within])
        return await asyncio.to_thread(self._read_with_zarr, key)

    def _read_with_zarr(self, key: Any) -> npt.NDArray[Any]:
        if self.presence is not None:
            self.presence.check(key, self.shape)
        try:
            return np.asarray(self.array[key])
        except ValueError as exc:
            # zarr reports a CRC32C mismatch (chunk or shard index) as a plain ValueError.
            if "checksum" not in str(exc):
                raise
            raise IntegrityError(
                f"level {self.index} ('{self.path}'): stored data in region {key!r} is "
                f"corrupt ({exc})"
            ) from exc

    def to_dask(self) -> Any:
        """Return the level as a dask array, one block per shard (see :mod:`cellvol.views`)."""
        from cellvol.views import level_to_dask

        return level_to_dask(self)

    def to_xarray(self, name: str | None = None) -> Any:
        """Return the level as a dask-backed ``xarray.DataArray`` in physical coordinates.

        Needs the ``xarray`` extra. ``sel(z=..., method="nearest")`` then selects in the axes'
        unit (nanometres for images cellvol writes).
        """
        from cellvol.views import level_to_xarray

        return level_to_xarray(self, name)

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


class Volume:
    """A multiscale image opened for reading.

    Use :func:`cellvol.open` to make one.

    Attributes
    ----------
    url
        Where the image lives.
    multiscale
        Its metadata as read (axes, datasets, version, method).
    levels
        The pyramid levels, finest first.
    attributes
        The image group's raw attributes (empty for a bare array).
    group
        The image's zarr group (None for a bare array).
    storage_options, cache
        As given to :func:`open`; labels and other parts of the image open with them.
    """

    def __init__(
        self,
        url: str,
        multiscale: Multiscale,
        levels: tuple[Level, ...],
        attributes: Mapping[str, Any],
        *,
        group: zarr.Group | None = None,
        storage_options: Mapping[str, Any] | None = None,
        cache: ChunkCache | None = None,
    ) -> None:
        self.url = url
        self.multiscale = multiscale
        self.levels = levels
        self.attributes = attributes
        self.group = group
        self.storage_options = dict(storage_options or {})
        self.cache = cache

    @property
    def labels(self) -> Labels:
        """The image's label images by name: ``volume.labels["cells"]`` (empty if none)."""
        from cellvol.labels import Labels, label_names

        names = label_names(self.group) if self.group is not None else []
        return Labels(self, names)

    @property
    def ome_version(self) -> str | None:
        """The OME-Zarr version of the metadata, or None for a bare zarr array."""
        return self.multiscale.version or None

    @property
    def axes(self) -> tuple[str, ...]:
        """Axis names in array order."""
        return self.multiscale.axis_names

    @property
    def shape(self) -> tuple[int, ...]:
        """Full-resolution shape."""
        return self.levels[0].shape

    @property
    def dtype(self) -> np.dtype[Any]:
        """Element type."""
        return self.levels[0].dtype

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return self.levels[0].ndim

    @property
    def voxel_size(self) -> VoxelSize | None:
        """Full-resolution voxel size, or None if the image is not 3-D spatial."""
        return self.levels[0].voxel_size

    @property
    def window(self) -> Window | None:
        """The stored display window (OME-Zarr ``omero``), if the image has one."""
        return window_of(dict(self.attributes))

    @property
    def provenance(self) -> Mapping[str, Any] | None:
        """Cellvol's provenance record, when cellvol wrote the image."""
        record = self.attributes.get(PROVENANCE_KEY)
        return record if isinstance(record, Mapping) else None

    def info(self, *, stored_bytes: bool = True) -> dict[str, Any]:
        """A JSON-serialisable summary: levels, shapes, dtype, chunks, shards, sizes.

        Parameters
        ----------
        stored_bytes
            Also measure the bytes each level occupies in the store, which lists every
            object (fast locally, one listing per level on S3).
        """
        levels = []
        for level in self.levels:
            voxel = level.voxel_size
            entry: dict[str, Any] = {
                "index": level.index,
                "path": level.path,
                "shape": list(level.shape),
                "chunks": list(level.chunks),
                "shards": list(level.shards) if level.shards else None,
                "scale": list(level.scale),
                "translation": list(level.translation),
                "voxel_size": list(voxel.zyx) if voxel else None,
                "nbytes": level.nbytes,
            }
            if stored_bytes:
                entry["nbytes_stored"] = level.nbytes_stored()
            levels.append(entry)
        voxel = self.voxel_size
        return {
            "url": self.url,
            "ome_version": self.ome_version,
            "name": self.multiscale.name,
            "axes": list(self.axes),
            "dtype": str(self.dtype),
            "unit": voxel.unit if voxel else None,
            "method": self.multiscale.method,
            "levels": levels,
            "labels": list(self.labels),
        }

    def level(self, index: int) -> Level:
        """Return pyramid level ``index`` (negative indices count from the coarsest).

        Raises
        ------
        LevelError
            If the index is out of range.
        """
        n = len(self.levels)
        if not -n <= index < n:
            raise LevelError(
                f"level {index} is out of range: {self.url} has {n} level(s), 0 to {n - 1}"
            )
        return self.levels[index]

    def __len__(self) -> int:
        return len(self.levels)

    def __iter__(self) -> Iterator[Level]:
        return iter(self.levels)

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        """Read a region of the full-resolution level numpy-style."""
        return self.levels[0][key]

    def plane(self, axis: str, index: int, level: int = 0) -> npt.NDArray[Any]:
        """One orthogonal plane: ``plane("z", 10)`` is an XY plane, ``"y"`` XZ, ``"x"`` YZ.

        Parameters
        ----------
        axis
            The axis the plane is perpendicular to.
        index
            The plane's position along ``axis``, in voxels of ``level``.
        level
            The pyramid level (negative counts from the coarsest).

        Raises
        ------
        InvalidInputError
            For an unknown axis; ``IndexError`` for a position outside the level.
        """
        chosen = self.level(level)
        position = self._axis_number(axis)
        n = chosen.shape[position]
        if not -n <= index < n:
            raise IndexError(f"plane {axis}={index} is outside level {chosen.index} (0 to {n - 1})")
        key: list[Any] = [slice(None)] * chosen.ndim
        key[position] = index
        return chosen[tuple(key)]

    def level_for(self, resolution: float) -> Level:
        """The coarsest level whose voxels are at most ``resolution`` along every axis.

        ``resolution`` is in the axes' unit (nanometres for images cellvol writes). Level 0 is
        returned when even it is coarser.
        """
        return self.levels[level_for_resolution(self.levels, resolution)]

    def region(
        self,
        *,
        z: tuple[float, float] | None = None,
        y: tuple[float, float] | None = None,
        x: tuple[float, float] | None = None,
        level: int | None = None,
        max_bytes: int | None = None,
    ) -> Region:
        """Choose a block by physical coordinates: ``region(z=(100, 400), x=(0, 2000))``.

        Intervals are in the axes' unit and select the voxels whose centres fall inside; an
        axis not given is taken whole. With ``max_bytes`` (and no ``level``), the finest level
        whose block fits in that many bytes is used; otherwise ``level`` (default 0).

        Raises
        ------
        InvalidInputError
            If an interval selects no voxel, or no level fits in ``max_bytes``.
        """
        bounds = {
            self._axis_number(name): interval
            for name, interval in (("z", z), ("y", y), ("x", x))
            if interval is not None
        }
        if level is None and max_bytes is not None:
            level = finest_level_within(self.levels, bounds, max_bytes)
        chosen = self.level(level or 0)
        return Region(chosen, voxel_slices(chosen, bounds))

    def to_dask(self, level: int = 0) -> Any:
        """A level as a dask array (see :meth:`Level.to_dask`)."""
        return self.level(level).to_dask()

    def to_xarray(self, level: int = 0) -> Any:
        """A level as an ``xarray.DataArray`` in physical units (see :meth:`Level.to_xarray`)."""
        return self.level(level).to_xarray(name=self.multiscale.name)

    def _axis_number(self, name: str) -> int:
        if name not in self.axes:
            raise InvalidInputError(f"{self.url} has no axis {name!r}; its axes are {self.axes}")
        return self.axes.index(name)

    def _repr_html_(self) -> str:
        from cellvol.views import volume_html

        return volume_html(self)

    def __repr__(self) -> str:
        return (
            f"<Volume {self.url!r} shape={self.shape} dtype={self.dtype} "
            f"levels={len(self.levels)} voxel_size={self.voxel_size}>"
        )


def open(
    path_or_url: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    cache: ChunkCache | None = None,
) -> Volume:
    """Open an OME-Zarr image or a zarr array for reading.

    Parameters
    ----------
    path_or_url
        A local path, ``file://``, ``s3://bucket/key`` or ``http(s)://`` URL.
    storage_options
        Passed to the store (for S3: ``endpoint_url``, ``anon``, ``key``/``secret``...).
    cache
        Where decoded chunks are kept between reads; by default the process-wide
        :func:`cellvol.cache.default_cache` (256 MiB, ``CELLVOL_CACHE_BYTES`` to change it).
        ``ChunkCache(0)`` disables caching.

    Raises
    ------
    StoreNotFoundError
        If nothing exists at the location.
    NotOMEZarrError
        If the location holds neither an OME-Zarr image nor a zarr array.
    MetadataError
        If the multiscale metadata is present but unusable.
    UnsupportedURLError
        For a URL scheme cellvol cannot open.
    """
    location = parse_location(path_or_url)
    store = open_store(location.url, mode="r", storage_options=storage_options)
    node = open_node(store, location.url)
    cache = cache if cache is not None else default_cache()
    if isinstance(node, zarr.Array):
        return _bare_array_volume(location.url, node, cache)
    return _image_volume(location.url, node, cache, storage_options, with_manifest=True)


def _image_volume(
    url: str,
    group: zarr.Group,
    cache: ChunkCache,
    storage_options: Mapping[str, Any] | None = None,
    *,
    with_manifest: bool = False,
) -> Volume:
    attributes = dict(group.attrs)
    multiscale = read_multiscale(attributes, where=url)
    if multiscale is None and _is_bioformats2raw(attributes):
        try:
            series = group["0"]
        except KeyError:
            raise NotOMEZarrError(f"{url}: bioformats2raw layout without image '0'") from None
        if isinstance(series, zarr.Group):
            return _image_volume(f"{url.rstrip('/')}/0", series, cache, storage_options)
    if multiscale is None:
        raise NotOMEZarrError(
            f"{url} is a zarr group without OME-Zarr 'multiscales' metadata: not an OME-Zarr "
            "image, or a write that did not finish"
        )
    paths = [dataset.path for dataset in multiscale.datasets]
    # The levels' documents and the write's manifest come in one round of requests.
    arrays, others = read_arrays(group, paths, url, also=[MANIFEST_KEY] if with_manifest else [])
    manifest = parse_manifest(others[0], url) if with_manifest else None
    store = group.store
    levels: list[Level] = []
    for index, (dataset, array) in enumerate(zip(multiscale.datasets, arrays, strict=True)):
        if array is None:
            raise MetadataError(
                f"{url}: level {index} names array {dataset.path!r}, which does not exist"
            )
        if array.ndim != len(multiscale.axes):
            raise MetadataError(
                f"{url}: level {index} array {dataset.path!r} is {array.ndim}-D but the "
                f"metadata names {len(multiscale.axes)} axes {multiscale.axis_names}"
            )
        presence = None
        if manifest is not None and dataset.path in manifest and array.shards is not None:
            presence = ShardPresence(store, url, dataset.path, array.shards, manifest[dataset.path])
        levels.append(
            Level(
                index,
                dataset.path,
                array,
                dataset.scale,
                dataset.translation,
                multiscale.axes,
                presence,
                _direct_reader(array, cache, url, dataset.path, presence),
            )
        )
    from cellvol.labels import LabelImage

    kind = LabelImage if "image-label" in ome_namespace(attributes) else Volume
    return kind(
        url,
        multiscale,
        tuple(levels),
        attributes,
        group=group,
        storage_options=storage_options,
        cache=cache,
    )


def _is_bioformats2raw(attributes: Mapping[str, Any]) -> bool:
    ome = attributes.get("ome")
    return _BF2RAW_KEY in attributes or (isinstance(ome, Mapping) and _BF2RAW_KEY in ome)


def _direct_reader(
    array: zarr.Array[Any],
    cache: ChunkCache,
    url: str,
    path: str,
    presence: ShardPresence | None,
) -> ChunkReader | None:
    layout = chunk_layout(array)
    if layout is None:
        return None
    expects = presence.expects if presence is not None else None
    return ChunkReader(array.store_path, layout, cache, url, path, expects)


def _bare_array_volume(url: str, array: zarr.Array[Any], cache: ChunkCache) -> Volume:
    names = _dimension_names(array)
    axes = tuple(
        Axis(name=n, type="space" if n in SPATIAL_AXES else None, unit=None) for n in names
    )
    ones = tuple(1.0 for _ in names)
    zeros = tuple(0.0 for _ in names)
    multiscale = Multiscale(version="", axes=axes, datasets=(Dataset("", ones, zeros),))
    reader = _direct_reader(array, cache, url, "", None)
    level = Level(0, "", array, ones, zeros, axes, None, reader)
    return Volume(url, multiscale, (level,), {}, cache=cache)


def _dimension_names(array: zarr.Array[Any]) -> tuple[str, ...]:
    stored = getattr(array.metadata, "dimension_names", None)
    if stored and all(isinstance(n, str) for n in stored):
        return tuple(stored)
    # Without names, the last three axes of an array are taken as z, y, x.
    defaults = ("t", "c", *SPATIAL_AXES)
    if array.ndim <= len(defaults):
        return defaults[len(defaults) - array.ndim :]
    return tuple(f"dim_{i}" for i in range(array.ndim))
