"""A multiscale image opened for reading (:class:`Volume`), and its label images."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import zarr

from cellvol._codec._cache import ChunkCache
from cellvol._store import read_bytes
from cellvol.errors import (
    InvalidInputError,
    LevelError,
    MetadataError,
)
from cellvol.ome._crate import CRATE_KEY
from cellvol.ome._display import Window, window_of
from cellvol.ome._metadata import (
    PROVENANCE_KEY,
    Multiscale,
    ome_namespace,
)
from cellvol.read._channels import channel_names, channel_view, name_channels
from cellvol.read._level import Level, Region
from cellvol.read._segments import SegmentTable, read_segments, segment_count
from cellvol.read._select import (
    Resolution,
    finest_level_within,
    level_for_resolution,
    voxel_at,
    voxel_slices,
)
from cellvol.units import VoxelSize

LABELS_GROUP: Final = "labels"


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
    open_part
        Opens a part of the image (a label image) by URL, as :func:`open` opened the image.
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
        open_part: Callable[[str], Volume] | None = None,
    ) -> None:
        self.url = url
        self.multiscale = multiscale
        self.levels = levels
        self.attributes = attributes
        self.group = group
        self.storage_options = dict(storage_options or {})
        self.cache = cache
        # How the image's parts (its label images) are opened: as the image was, with the same
        # storage options and cache. Given by the function that opened it.
        self._open_part = open_part

    @property
    def labels(self) -> Labels:
        """The image's label images by name: ``volume.labels["cells"]`` (empty if none)."""
        names = label_names(self.group) if self.group is not None else []
        return Labels(self, names)

    def open_part(self, url: str) -> Volume:
        """Open a part of this image (a label image) at ``url``, as the image was opened.

        Raises
        ------
        MetadataError
            If the volume was made without a way to open its parts.
        """
        if self._open_part is None:
            raise MetadataError(f"{self.url}: this volume cannot open the parts of its image")
        return self._open_part(url)

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
    def unit(self) -> str | None:
        """The length unit of the spatial axes, whatever their number; None when unitless.

        For a 3-D image it is :attr:`voxel_size`'s unit (nanometres when the metadata names
        none, the unit of EM); a 2-D image reports the unit its axes name, if any.
        """
        voxel = self.voxel_size
        return voxel.unit if voxel is not None else self.multiscale.spatial_unit()

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels' names in order (from the display metadata, else their indices).

        Empty for an image without a channel axis.
        """
        return channel_names(self)

    def channel(self, which: int | str, *, t: int = 0) -> Volume:
        """One channel (at time point ``t``) as a ``(z, y, x)`` volume with the usual API.

        ``which`` is a name from :attr:`channels` or an index. Nothing is read until the view
        is sliced; its levels read the image's own chunks.

        Raises
        ------
        InvalidInputError
            If the image has no channel axis, or no such channel or time point.
        """
        return channel_view(self, which, t)

    @property
    def window(self) -> Window | None:
        """The stored display window (OME-Zarr ``omero``), if the image has one."""
        return window_of(dict(self.attributes))

    @property
    def provenance(self) -> Mapping[str, Any] | None:
        """Cellvol's provenance record, when cellvol wrote the image."""
        record = self.attributes.get(PROVENANCE_KEY)
        return record if isinstance(record, Mapping) else None

    @property
    def crate(self) -> dict[str, Any] | None:
        """The image's RO-Crate metadata (``ro-crate-metadata.json``) as JSON, if it has one.

        Read from the store on each access (the crate is refreshed when labels or annotations
        change). None when the image has none, or for a label image (its image's crate
        describes it).

        Raises
        ------
        MetadataError
            If the stored crate is not a JSON object.
        """
        if self.group is None:
            return None
        key = "/".join(p for p in (self.group.store_path.path, CRATE_KEY) if p)
        raw = read_bytes(self.group.store, key)
        if raw is None:
            return None
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise MetadataError(f"{self.url}: {CRATE_KEY} is not valid JSON ({exc})") from exc
        if not isinstance(document, dict):
            raise MetadataError(f"{self.url}: {CRATE_KEY} is not a JSON object")
        return document

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
                # z, y, x for volumes; y, x (the pixel size) for a 2-D image
                "voxel_size": list(voxel.zyx) if voxel else list(level.spacing) or None,
                "nbytes": level.nbytes,
            }
            if stored_bytes:
                entry["nbytes_stored"] = level.nbytes_stored()
            levels.append(entry)
        summary: dict[str, Any] = {
            "url": self.url,
            "ome_version": self.ome_version,
            "name": self.multiscale.name,
            "axes": list(self.axes),
            "dtype": str(self.dtype),
            "unit": self.unit,
            "method": self.multiscale.method,
            "levels": levels,
            "labels": list(self.labels),
        }
        if self.channels:
            summary["channels"] = list(self.channels)
        return summary

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

    def plane_index(self, axis: str, index: int, *, level: int = 0) -> npt.NDArray[Any]:
        """One orthogonal plane by voxel index: ``plane_index("z", 10)`` is an XY plane.

        ``"y"`` gives an XZ plane, ``"x"`` a YZ plane. For a position in the axes' unit, use
        :meth:`plane_at`.

        Parameters
        ----------
        axis
            The axis the plane is perpendicular to.
        index
            The plane's position along ``axis``, in voxels of ``level`` (negative counts from
            the end).
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

    def plane(self, axis: str, index: int, level: int = 0) -> npt.NDArray[Any]:
        """The same as :meth:`plane_index` (voxel indices), under its earlier name."""
        return self.plane_index(axis, index, level=level)

    def plane_at(
        self,
        *,
        z: float | None = None,
        y: float | None = None,
        x: float | None = None,
        resolution: Resolution | None = None,
        level: int | None = None,
    ) -> npt.NDArray[Any]:
        """One orthogonal plane at a physical position: ``plane_at(y=1200.0, resolution=8)``.

        Exactly one of ``z``, ``y``, ``x`` places the plane, in the axes' unit (nanometres for
        images cellvol writes); the voxel whose extent holds that position is read. The level
        is :meth:`level_for` ``(resolution)``, or ``level`` (an index), or else level 0.

        Raises
        ------
        InvalidInputError
            If not exactly one position is given, if both ``resolution`` and ``level`` are,
            if the position lies outside the image, or as :meth:`level_for` does.
        """
        given = [
            (name, value) for name, value in (("z", z), ("y", y), ("x", x)) if value is not None
        ]
        if len(given) != 1:
            raise InvalidInputError(
                f"plane_at needs exactly one of z, y, x (a position), got {[n for n, _ in given]}"
            )
        name, value = given[0]
        chosen = self._chosen_level(level, resolution)
        axis = self._axis_number(name)
        return self.plane_index(name, voxel_at(chosen, axis, value, name), level=chosen.index)

    def level_for(self, resolution: Resolution) -> Level:
        """The coarsest level that still resolves ``resolution``, in the axes' unit.

        ``level_for(8)`` asks for voxels of at most 8 along every spatial axis, except where
        level 0 is already coarser: those axes keep level 0's voxel, so serial sections of
        50 x 4 x 4 nm get the 50 x 8 x 8 nm level, and isotropic data the level of at most
        8 nm everywhere. Why: an axis that cannot be as fine as asked must not keep the others
        at full resolution. ``level_for({"y": 8, "x": 8})`` bounds only the axes it names.

        Parameters
        ----------
        resolution
            A voxel size, or a mapping of axis names to voxel sizes, in the axes' unit
            (nanometres for images cellvol writes).

        Raises
        ------
        InvalidInputError
            If the request is finer than level 0 (a number finer than its finest voxel, a
            mapping value finer than its voxel along that axis): the data has no such detail,
            so the caller hears of it instead of silently reading level 0. ``level(0)`` reads
            the finest there is.
        """
        spatial = self.multiscale.spatial_indices() or tuple(range(self.ndim))
        return self.levels[level_for_resolution(self.levels, resolution, self.axes, spatial)]

    def region(
        self,
        *,
        z: tuple[float, float] | None = None,
        y: tuple[float, float] | None = None,
        x: tuple[float, float] | None = None,
        level: int | None = None,
        resolution: Resolution | None = None,
        max_bytes: int | None = None,
    ) -> Region:
        """Choose a block by physical coordinates: ``region(z=(100, 400), x=(0, 2000))``.

        Intervals are in the axes' unit and select the voxels whose centres fall inside; an
        axis not given is taken whole. At most one of these chooses the level: ``level`` (an
        index), ``resolution`` (as :meth:`level_for`), ``max_bytes`` (the finest level whose
        block fits in that many bytes); with none, level 0.

        Raises
        ------
        InvalidInputError
            If more than one of ``level``, ``resolution``, ``max_bytes`` is given, if an
            interval selects no voxel, if no level fits in ``max_bytes``, or as
            :meth:`level_for` does.
        """
        bounds = {
            self._axis_number(name): interval
            for name, interval in (("z", z), ("y", y), ("x", x))
            if interval is not None
        }
        if max_bytes is not None:
            if level is not None or resolution is not None:
                raise InvalidInputError(
                    "give one of level, resolution and max_bytes: each chooses the level"
                )
            chosen = self.levels[finest_level_within(self.levels, bounds, max_bytes)]
        else:
            chosen = self._chosen_level(level, resolution)
        return Region(chosen, voxel_slices(chosen, bounds))

    def _chosen_level(self, level: int | None, resolution: Resolution | None) -> Level:
        if level is not None and resolution is not None:
            raise InvalidInputError("give level or resolution, not both: each chooses the level")
        if resolution is not None:
            return self.level_for(resolution)
        return self.level(level or 0)

    def to_dask(self, level: int = 0) -> Any:
        """A level as a dask array (see :meth:`Level.to_dask`)."""
        return self.level(level).to_dask()

    def to_xarray(self, level: int = 0) -> Any:
        """A level as an ``xarray.DataArray`` in physical units (see :meth:`Level.to_xarray`).

        A channel axis's coordinate holds the channels' names.
        """
        return name_channels(self, self.level(level).to_xarray(name=self.multiscale.name))

    def _axis_number(self, name: str) -> int:
        if name not in self.axes:
            raise InvalidInputError(f"{self.url} has no axis {name!r}; its axes are {self.axes}")
        return self.axes.index(name)

    def _repr_html_(self) -> str:
        from cellvol.read._views import volume_html

        return volume_html(self)

    def __repr__(self) -> str:
        return (
            f"<Volume {self.url!r} shape={self.shape} dtype={self.dtype} "
            f"levels={len(self.levels)} voxel_size={self.voxel_size}>"
        )


class LabelImage(Volume):
    """A label image: a :class:`~cellvol.Volume` of integer IDs with its metadata.

    Attributes added to a volume's: :attr:`segments` (the segment table), :attr:`colors`,
    :attr:`properties` (each segment's annotations), :attr:`source_image`.
    """

    @property
    def image_label(self) -> Mapping[str, Any]:
        """The ``image-label`` metadata as stored."""
        value = ome_namespace(self.attributes).get("image-label")
        return value if isinstance(value, Mapping) else {}

    @cached_property
    def segments(self) -> SegmentTable:
        """Every segment's voxel count, bounding box and centroid (background 0 excluded).

        Raises
        ------
        IntegrityError
            If the table is missing (an interrupted labels write; running it again completes
            it).
        """
        if self.group is None:
            raise MetadataError(f"{self.url} is not a label image group")
        return read_segments(self.group, self.url, self.properties)

    @property
    def segment_count(self) -> int | None:
        """How many segments the table lists, without loading it (None while incomplete)."""
        return segment_count(self.group) if self.group is not None else None

    @property
    def colors(self) -> dict[int, tuple[int, int, int, int]]:
        """RGBA colour of each listed label ID."""
        colors = {}
        for entry in self.image_label.get("colors") or ():
            rgba = entry.get("rgba")
            if isinstance(rgba, list) and len(rgba) == 4:
                colors[int(entry["label-value"])] = tuple(int(c) for c in rgba)
        return colors  # type: ignore[return-value]

    @property
    def properties(self) -> dict[int, dict[str, Any]]:
        """Each annotated segment's properties (name, description, references...), by ID."""
        return {
            int(entry["label-value"]): {k: v for k, v in entry.items() if k != "label-value"}
            for entry in self.image_label.get("properties") or ()
        }

    @property
    def source_image(self) -> str | None:
        """The relative path of the image these labels segment, as stored."""
        source = self.image_label.get("source")
        return source.get("image") if isinstance(source, Mapping) else None


class Labels(Mapping[str, LabelImage]):
    """The label images of an image, by name (``volume.labels["cells"]``); opened lazily."""

    def __init__(self, volume: Volume, names: Sequence[str]) -> None:
        self._volume = volume
        self._names = tuple(names)
        self._opened: dict[str, LabelImage] = {}

    def __getitem__(self, name: str) -> LabelImage:
        if name not in self._names:
            known = ", ".join(repr(n) for n in self._names) or "none"
            raise KeyError(f"{self._volume.url} has no labels {name!r}; its labels: {known}")
        if name not in self._opened:
            url = f"{self._volume.url.rstrip('/')}/{LABELS_GROUP}/{name}"
            opened = self._volume.open_part(url)
            if not isinstance(opened, LabelImage):
                raise MetadataError(f"{url} is listed as labels but has no image-label metadata")
            self._opened[name] = opened
        return self._opened[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"<Labels of {self._volume.url!r}: {list(self._names)}>"


def label_names(group: zarr.Group) -> list[str]:
    """The names listed in an image's ``labels`` group (empty when it has none)."""
    try:
        labels = group[LABELS_GROUP]
    except KeyError:
        return []
    listed = ome_namespace(dict(labels.attrs)).get("labels")
    return [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else []
