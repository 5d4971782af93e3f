"""Opening an OME-Zarr 0.6 scene: its images, how they sit in each other's space, resampling.

:func:`open_scene` reads the scene group's transformations, opens every image they refer to
(relative paths from the scene's own location), and names each image: by the names
:func:`cellvol.link` recorded, else by its path's last part (``../lm.ome.zarr`` is ``lm``).
"""

from __future__ import annotations

import os
import posixpath
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from cellvol._codec._cache import ChunkCache
from cellvol._store import open_store, parse_location
from cellvol.errors import InvalidInputError, MetadataError, NotOMEZarrError
from cellvol.ome._scene import Edge, Place, chain, group_attributes, read_scene
from cellvol.read._open import open as open_volume
from cellvol.read._resample import Interpolation, finest_level, resample_level
from cellvol.read._volume import Volume

__all__ = ["Scene", "open_scene", "spatial"]


class Scene:
    """An OME-Zarr 0.6 scene opened for reading. Use :func:`open_scene` to make one.

    Attributes
    ----------
    url
        Where the scene group is.
    images
        Each image, by name, as a :class:`~cellvol.Volume`.
    places
        The coordinate system each image's levels are placed in, by image name.
    edges
        The scene's transformations, as stored, with the systems they join.
    """

    def __init__(
        self,
        url: str,
        images: Mapping[str, Volume],
        places: Mapping[str, Place],
        edges: tuple[Edge, ...],
        systems: Mapping[str, tuple[bool, ...]],
    ) -> None:
        self.url = url
        self.images = dict(images)
        self.places = dict(places)
        self.edges = edges
        self._systems = dict(systems)

    def __getitem__(self, name: str) -> Volume:
        """The image called ``name``."""
        return self.images[self._name(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.images)

    def __len__(self) -> int:
        return len(self.images)

    def transform(self, source: str, target: str) -> npt.NDArray[np.float64]:
        """The ``4 x 4`` matrix from one image's physical coordinates to another's.

        ``(z, y, x)`` order, in the images' units: a point ``p`` of ``source`` is at
        ``(M @ [*p, 1])[:3]`` in ``target``.

        Raises
        ------
        MetadataError
            If the scene joins the two by no chain of linear, invertible transformations.
        """
        start, end = self.places[self._name(source)], self.places[self._name(target)]
        return chain(self.edges, start, end, self._spatial, self.url)

    def resample(
        self,
        name: str,
        like: str,
        level: int = 0,
        *,
        channel: int | str | None = None,
        source_level: int | None = None,
        interpolation: Interpolation = "linear",
        chunks: tuple[int, ...] | None = None,
        fill: float = 0,
    ) -> Any:
        """Image ``name`` on the voxel grid of image ``like`` at ``level``, as a dask array.

        Lazy: each block reads only the part of ``name`` it needs when computed. An image
        with channels keeps them: ``(c, z, y, x)``, each channel resampled the same way (at
        time point 0 when it also has a time axis).

        Parameters
        ----------
        name, like
            Image names, e.g. ``scene.resample("lm", like="em", level=2)``.
        level
            The level of ``like`` whose grid the result takes (its spatial grid, when ``like``
            has channels).
        channel
            One channel of ``name`` (a name from :attr:`Volume.channels` or an index): the
            result is then ``(z, y, x)``.
        source_level
            The level of ``name`` that is sampled; by default the coarsest whose voxels are
            no larger than the grid's (so nothing is skipped over).
        interpolation
            ``"linear"`` or ``"nearest"`` (for label images).
        chunks, fill
            The result's block shape, and the value outside ``name``'s extent.

        Raises
        ------
        InvalidInputError
            For an unknown image, or a ``channel`` that ``name`` does not have.
        """
        import dask.array as da

        moving, fixed = self[name], self[like]
        matrix = self.transform(name, like)
        grid = spatial(fixed).level(level)
        if channel is not None:
            views = [moving.channel(channel)]
        elif moving.channels:
            views = [moving.channel(i) for i in range(len(moving.channels))]
        else:
            views = [moving]
        if source_level is None:
            source_level = _finest_needed(views[0], matrix, grid.scale)
        planes = [
            resample_level(
                view.level(source_level),
                matrix,
                grid,
                interpolation=interpolation,
                chunks=chunks,
                fill=fill,
            )
            for view in views
        ]
        if channel is not None or not moving.channels:
            return planes[0]
        return da.stack(planes)  # type: ignore[no-untyped-call]

    def info(self) -> dict[str, Any]:
        """What the scene holds: each image's place, shape, voxel size; each transformation."""
        return {
            "url": self.url,
            "images": {
                name: {
                    "url": volume.url,
                    "coordinate_system": str(self.places[name]),
                    "shape": list(volume.shape),
                    "voxel_size": list(volume.level(0).scale),
                    "unit": volume.unit,
                    "levels": len(volume.levels),
                }
                for name, volume in self.images.items()
            },
            "transformations": [
                {"input": str(e.source), "output": str(e.target), "type": e.transform.get("type")}
                for e in self.edges
                if e.index >= 0
            ],
        }

    def _name(self, name: str) -> str:
        if name not in self.images:
            raise InvalidInputError(
                f"{self.url} has no image {name!r}; it has {sorted(self.images)}"
            )
        return name

    def _spatial(self, place: Place) -> tuple[bool, ...]:
        if place.path is None:
            if place.name not in self._systems:
                raise MetadataError(f"{self.url}: the scene defines no coordinate system {place}")
            return self._systems[place.name]
        for image, volume in self.images.items():
            if self.places[image].path == place.path:
                multiscale = volume.multiscale
                spatial = set(multiscale.spatial_indices())
                return tuple(i in spatial for i in range(len(multiscale.axes)))
        raise MetadataError(f"{self.url}: no image at {place.path!r}")

    def __repr__(self) -> str:
        return f"<Scene {self.url} images={sorted(self.images)}>"


def open_scene(
    path_or_url: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    cache: ChunkCache | None = None,
) -> Scene:
    """Open an OME-Zarr 0.6 scene group and the images it places.

    Raises
    ------
    StoreNotFoundError
        If nothing is at the location, or at an image it refers to.
    NotOMEZarrError
        If the group is not a scene.
    MetadataError
        If a transformation is malformed or an image cannot be read.
    """
    location = parse_location(path_or_url)
    store = open_store(location.url, mode="r", storage_options=storage_options)
    attributes = group_attributes(store, location.url, "an OME-Zarr 0.6 scene")
    ome = attributes.get("ome") if isinstance(attributes, Mapping) else None
    if not isinstance(ome, Mapping) or "scene" not in ome:
        raise NotOMEZarrError(f"{location.url} is not an OME-Zarr 0.6 scene: no 'ome' 'scene'")
    edges = read_scene(attributes, where=location.url)
    recorded = attributes.get("cellvol", {}).get("images", {}) if isinstance(
        attributes.get("cellvol"), Mapping) else {}  # fmt: skip
    named = {str(path): str(name) for name, path in recorded.items()}
    paths = list(dict.fromkeys(p.path for e in edges for p in (e.source, e.target) if p.path))
    images: dict[str, Volume] = {}
    places: dict[str, Place] = {}
    extra: list[Edge] = []
    for path in paths:
        volume = open_volume(_resolve(location.url, path), storage_options, cache=cache)
        name = named.get(path) or parse_location(_resolve(location.url, path)).name
        if name in images:
            name = path
        images[name] = volume
        system = volume.multiscale.default_system or "physical"
        places[name] = Place(path, system)
        # The image's own transformations lead from its levels' system to its others.
        for transform in volume.multiscale.transformations:
            output = transform.get("output")
            target = output.get("name") if isinstance(output, Mapping) else output
            if isinstance(target, str):
                extra.append(Edge(Place(path, system), Place(path, target), transform, -1))
    if not images:
        raise MetadataError(f"{location.url}: the scene refers to no image (no 'path')")
    systems = _scene_systems(attributes)
    return Scene(location.url, images, places, edges + tuple(extra), systems)


def _resolve(scene: str, path: str) -> str:
    if "://" in path or path.startswith("/"):
        return path
    if "://" not in scene:
        return os.path.normpath(os.path.join(scene, path))
    if scene.startswith(("http://", "https://")):
        return urllib.parse.urljoin(scene.rstrip("/") + "/", path)
    scheme, _, rest = scene.partition("://")
    return f"{scheme}://{posixpath.normpath(posixpath.join(rest, path))}"


def _scene_systems(attributes: Mapping[str, Any]) -> dict[str, tuple[bool, ...]]:
    """Each scene-defined system's axes: whether each is spatial (typed so, or named z/y/x)."""
    scene = attributes.get("ome", {}).get("scene", {})
    found: dict[str, tuple[bool, ...]] = {}
    for system in scene.get("coordinateSystems", None) or []:
        if isinstance(system, Mapping) and isinstance(system.get("axes"), list):
            found[str(system.get("name"))] = tuple(
                isinstance(a, Mapping)
                and (
                    a.get("type") == "space"
                    or (a.get("type") is None and a.get("name") in ("z", "y", "x"))
                )
                for a in system["axes"]
            )
    return found


def spatial(volume: Volume) -> Volume:
    """The volume, or its first channel's ``(z, y, x)`` view when it has channels."""
    return volume.channel(0) if volume.channels else volume


def _finest_needed(volume: Volume, matrix: npt.NDArray[np.float64], grid: tuple[float, ...]) -> int:
    # The length, in the source's units, of one grid step along each grid axis.
    steps = np.linalg.norm(np.linalg.inv(matrix)[:-1, :-1] @ np.diag(grid), axis=0)
    return finest_level(volume.levels, float(min(steps)))
