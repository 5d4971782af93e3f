"""Serving a scene: its images, the LM overlay on the EM planes, a neuroglancer state.

A scene (``cellvol link``) places images in a reference image's physical space. The server
serves each image as a volume of its own (``SCENE-IMAGE``: raw keys, tiles, slices), lists the
scene in the catalog, and adds:

==============================================  =================================================
``/overlay/{scene}/{image}.{fmt}``              ``image`` (its channels blended, each in its
                                                colour) sampled on a plane of the reference, as
                                                ``/slice`` of the reference takes it (``axis=&
                                                index=&level=&rows=&cols=``), with ``channel=``,
                                                ``windows=``, ``opacities=``; black outside it
``/neuroglancer/{scene}``                       a neuroglancer state (JSON) with both images,
                                                the placed one's affine as its ``transform``
                                                and one layer per channel (``_neuroglancer``)
==============================================  =================================================

The overlay reads only the box of the placed image that the plane passes through, at the
coarsest level whose voxels are no larger than the plane's pixels.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import anyio.to_thread
import numpy as np
import numpy.typing as npt
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cellvol._store import open_store, parse_location, read_bytes
from cellvol.errors import CellvolError, InvalidInputError
from cellvol.read._level import Level
from cellvol.read._resample import finest_level, index_matrix, sample_at
from cellvol.read._scene import Scene, open_scene, spatial
from cellvol.server._channels import Channel, blend, pick_channels, to_rgb, windows_of
from cellvol.server._neuroglancer import NEUROGLANCER, LayerImage, image_layers, state
from cellvol.server._render import encode

if TYPE_CHECKING:
    from cellvol.server._app import Served

__all__ = ["ServedScene", "is_scene", "neuroglancer_state", "scene_routes"]

#: The most voxels of the placed image one overlay reads (as float32: 256 MiB).
_BOX_VOXELS: Final = 64 * 2**20
#: The most pixels of one overlay.
_MAX_PIXELS: Final = 2048 * 2048


def is_scene(path_or_url: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether a location holds an OME-Zarr 0.6 scene group (``ome.scene`` in its zarr.json)."""
    location = parse_location(path_or_url)
    try:
        store = open_store(location.url, mode="r", storage_options=storage_options)
        data = read_bytes(store, "zarr.json")
        ome = json.loads(data or b"{}").get("attributes", {}).get("ome", {})
    except (CellvolError, OSError, ValueError, AttributeError):
        # Not readable as a scene: the image opener says why, naming the location.
        return False
    return isinstance(ome, dict) and "scene" in ome


@dataclass
class ServedScene:
    """A scene being served: its name, the open scene, its reference and placed images.

    ``served`` maps each image's name in the scene to the name it is served under.
    """

    name: str
    scene: Scene
    reference: str
    placed: list[str]
    served: dict[str, str]

    @classmethod
    def open(
        cls, path_or_url: str, name: str, storage_options: Mapping[str, Any] | None = None
    ) -> ServedScene:
        """Open a scene to serve as ``name``; its images are served as ``NAME-IMAGE``."""
        scene = open_scene(path_or_url, storage_options)
        sources = {e.source.path for e in scene.edges if e.index >= 0}
        targets = {e.target.path for e in scene.edges if e.index >= 0}
        by_path = {place.path: image for image, place in scene.places.items()}
        placed = [by_path[p] for p in sources if p in by_path]
        references = [by_path[p] for p in targets - sources if p in by_path]
        if len(references) != 1 or not placed:
            raise InvalidInputError(
                f"{scene.url}: the viewer shows scenes that place images into one reference "
                f"image; this one places {sorted(placed)} into {sorted(references)}"
            )
        served = {image: f"{name}-{image}" for image in scene.images}
        return cls(name, scene, references[0], sorted(placed), served)

    def catalog(self, base: str, served: Callable[[str], Served]) -> dict[str, Any]:
        """The scene as the catalog lists it; ``served(name)`` gives a served image."""
        return {
            "name": self.name,
            "source": self.scene.url,
            "view": f"{base}/view/{self.name}",
            "reference": self.reference,
            "placed": self.placed,
            "images": {image: f"{base}/data/{s}/" for image, s in self.served.items()},
            "served": self.served,
            "transforms": {
                image: self.scene.transform(image, self.reference).tolist() for image in self.placed
            },
            "neuroglancer": NEUROGLANCER
            + urllib.parse.quote(
                json.dumps(neuroglancer_state(self, base, served), separators=(",", ":")), safe=""
            ),
        }


def neuroglancer_state(
    scene: ServedScene, base: str, served: Callable[[str], Served]
) -> dict[str, Any]:
    """A neuroglancer state showing the reference and, placed by their affine, the others.

    ``served(name)`` gives the image served under ``name``. The layers and their transforms
    are :func:`cellvol.server._neuroglancer.image_layers`'s; the placed images' layers are
    blended additively over the reference, half opaque.
    """
    reference = scene.scene[scene.reference]
    layers: list[dict[str, Any]] = []
    for image in [scene.reference, *scene.placed]:
        shown = served(scene.served[image])
        found = image_layers(
            LayerImage(
                name=image,
                data_url=f"{base}/data/{shown.name}/",
                volume=shown.volume,
                channels=shown.channels,
                window=shown.window,
                to_reference=scene.scene.transform(image, scene.reference),
            ),
            reference,
        )
        if image != scene.reference:
            for layer in found:
                layer.update(blend="additive", opacity=0.6)
        layers.extend(found)
    found_state = state(layers, reference)
    found_state["selectedLayer"] = {"layer": layers[-1]["name"], "visible": True}
    return found_state


def scene_routes(
    scenes: Mapping[str, ServedScene],
    layers: Callable[[str], tuple[Any, list[Channel]]],
    plane: Callable[[Request, Any], tuple[int, tuple[Any, ...]]],
    read: Callable[[Any, Level, tuple[Any, ...]], Awaitable[Any]],
    bounded: Callable[[Callable[[], Awaitable[Response]]], Awaitable[Response]],
) -> list[Route]:
    """The scene routes (see the module's table).

    ``layers(served_name)`` gives a served image and its channels (one, for a plain volume);
    ``plane(request, volume)`` the level and box a ``/slice`` request names; ``read`` reads a
    box as the server reads every box; ``bounded`` runs work within the server's limits.
    """

    def find(name: str) -> ServedScene:
        found = scenes.get(name)
        if found is None:
            raise HTTPException(404, f"no scene named {name!r}; served: {', '.join(scenes)}")
        return found

    async def overlay(request: Request) -> Response:
        scene = find(request.path_params["scene"])
        image = request.path_params["image"]
        if image not in scene.placed:
            raise HTTPException(
                404, f"scene {scene.name!r} places no image {image!r}; it places {scene.placed}"
            )
        target, _ = layers(scene.served[scene.reference])
        level_index, box = plane(request, target)
        pixels = int(np.prod([k.stop - k.start for k in box if isinstance(k, slice)]))
        if pixels > _MAX_PIXELS:
            # Each pixel's sample coordinates take 24 bytes: a screenful is well under this.
            raise InvalidInputError(f"an overlay is at most {_MAX_PIXELS:,} pixels, not {pixels:,}")
        grid = spatial(target.volume).levels[level_index]
        moving, channels = layers(scene.served[image])
        query = request.query_params
        chosen = pick_channels(channels, query.get("channel"), image)
        windows = windows_of(query.get("windows"), chosen)
        opacities = _opacities(query.get("opacities"), len(chosen))
        matrix = scene.scene.transform(image, scene.reference)

        async def work() -> Response:
            planes = []
            for channel in chosen:
                planes.append(await _sample(moving, channel, matrix, grid, box, read))

            def draw() -> tuple[bytes, str]:
                rgb, _ = blend(planes, windows, [c.color for c in chosen], opacities)
                return encode(to_rgb(rgb), request.path_params["fmt"])

            body, media = await anyio.to_thread.run_sync(draw)
            return Response(body, media_type=media, headers={"Cache-Control": "no-cache"})

        return await bounded(work)

    async def neuroglancer(request: Request) -> Response:
        scene = find(request.path_params["scene"])
        base = str(request.base_url).rstrip("/")
        found = neuroglancer_state(scene, base, lambda name: layers(name)[0])
        return JSONResponse(found, headers={"Cache-Control": "no-cache"})

    return [
        Route("/overlay/{scene}/{image}.{fmt}", overlay, methods=["GET", "HEAD"]),
        Route("/neuroglancer/{scene}", neuroglancer, methods=["GET", "HEAD"]),
    ]


def _opacities(text: str | None, count: int) -> list[float]:
    if text is None or text == "":
        return [1.0] * count
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InvalidInputError(f"opacities {text!r} must be numbers, one per channel") from None
    if len(values) != count or not all(0 <= v <= 1 for v in values):
        raise InvalidInputError(
            f"opacities {text!r}: expected {count} number(s) between 0 and 1, one per channel"
        )
    return values


async def _sample(
    served: Any,
    channel: Channel,
    matrix: npt.NDArray[np.float64],
    grid: Level,
    box: tuple[Any, ...],
    read: Callable[[Any, Level, tuple[Any, ...]], Awaitable[Any]],
) -> npt.NDArray[np.float32]:
    """``channel`` sampled (trilinear) at the voxels of ``grid[box]``; NaN outside it.

    The numeric work (hundreds of MB for a large plane) runs in worker threads, within the
    caller's ``bounded`` work: the event loop keeps serving other requests meanwhile.
    """
    level, coords, shape = await anyio.to_thread.run_sync(_locate, channel, matrix, grid, box)
    if level is None:
        return np.full(_plane_shape(box, shape), np.nan, np.float32)
    low = np.maximum(np.floor(coords.min(axis=1)).astype(int) - 1, 0)
    high = np.minimum(np.ceil(coords.max(axis=1)).astype(int) + 2, level.shape)
    values = np.asarray(
        await read(
            served, level, tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
        )
    )

    def sample() -> npt.NDArray[np.float32]:
        sampled, inside = sample_at(values, coords - low[:, None], 1)  # as Scene.resample
        return (
            np.where(inside, sampled, np.nan).astype(np.float32).reshape(_plane_shape(box, shape))
        )

    return await anyio.to_thread.run_sync(sample)


def _locate(
    channel: Channel, matrix: npt.NDArray[np.float64], grid: Level, box: tuple[Any, ...]
) -> tuple[Level | None, npt.NDArray[np.float64], tuple[int, ...]]:
    """The level to sample ``grid[box]``'s voxels in, their coordinates there, the box's shape."""
    spans = [
        (k, k + 1) if isinstance(k, int) else (k.start, k.stop)
        for k in box  # one index (the plane) and two slices
    ]
    shape = tuple(b - a for a, b in spans)
    index = np.indices(shape, dtype=np.float64).reshape(3, -1)
    index += np.array([a for a, _ in spans], dtype=np.float64)[:, None]
    physical = (_inverse(matrix) @ index_matrix(grid))[:3]
    where = physical[:, :3] @ index + physical[:, 3:]  # in the placed image's physical space
    # The plane's pixel size, in the placed image's units: the shorter in-plane step.
    steps = np.linalg.norm(physical[:, :3], axis=0)
    spacing = min(float(s) for k, s in zip(box, steps, strict=True) if not isinstance(k, int))
    level, coords = _finest_readable(channel, where, spacing)
    return level, coords, shape


def _inverse(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The inverse of a homogeneous affine."""
    return np.asarray(np.linalg.inv(matrix), dtype=np.float64)


def _plane_shape(box: tuple[Any, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(n for k, n in zip(box, shape, strict=True) if not isinstance(k, int))


def _finest_readable(
    channel: Channel, physical: npt.NDArray[np.float64], spacing: float
) -> tuple[Level | None, npt.NDArray[np.float64]]:
    """The level to sample at these points, and their voxel coordinates in it.

    The coarsest level whose voxels are no larger than the points' spacing, made coarser
    while the box the points span would exceed :data:`_BOX_VOXELS`; None if they miss it.
    """
    levels = channel.volume.levels
    # The level Scene.resample would pick for points this far apart: one rule for both.
    for level in levels[finest_level(levels, spacing) :]:
        to_index = _inverse(index_matrix(level))[:3]
        coords = to_index[:, :3] @ physical + to_index[:, 3:]
        low = np.maximum(np.floor(coords.min(axis=1)) - 1, 0)
        high = np.minimum(np.ceil(coords.max(axis=1)) + 2, level.shape)
        if np.any(high <= low):
            return None, coords
        if np.prod(high - low) <= _BOX_VOXELS:
            return level, coords
    raise InvalidInputError(
        "the overlay would read more than "
        f"{_BOX_VOXELS:,} voxels of the placed image even at its coarsest level"
    )
