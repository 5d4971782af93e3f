"""The ASGI application behind ``cellvol serve``: raw keys, tiles, slices, catalog, browser page.

Routes (GET and HEAD only; anything else is 405):

===============================================  ================================================
``/data/{name}/{key}``                           a store's raw key, with byte ranges, ETag,
                                                 Last-Modified, 304s and CORS, for neuroglancer,
                                                 vizarr and napari
``/tiles/{name}/{level}/{axis}/{index}/{row}/    a 256 x 256 tile of an XY (``z``), XZ (``y``)
{col}.{png,jpeg,webp}``                          or YZ (``x``) plane
``/slice/{name}.{png,jpeg,webp}``                any region of a plane (``?axis=&index=&level=&
                                                 rows=a:b&cols=c:d``)
``/segment/{name}/{labels}?z=&y=&x=&level=``     the segment under a voxel, with its annotations
``/segments/{name}/{labels}?q=&ids=&limit=``     the segments, searchable, for the page's list
``/meshes/{name}/{labels}[/{id}]``               segment surfaces (see ``_meshes``)
``/catalog``                                     the served volumes and scenes as JSON
``/overlay/...``, ``/neuroglancer/{scene}``       a scene's overlay and state (see ``_scenes``)
``/view/{name}``                                 the three-plane browser page (of a scene:
                                                 the reference, the placed images over it)
===============================================  ================================================

Images take ``window=low,high`` (default: the stored display window), ``cmap`` (default
``gray``), ``labels=NAME`` and ``alpha`` (label overlay). Rendering runs on worker threads,
at most ``max_concurrency`` at once, each bounded by ``timeout`` seconds (then 503 or 504).
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import itertools
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import anyio.to_thread
import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cellvol._codec._cache import ChunkCache
from cellvol._codec._keys import touched_ranges
from cellvol._store import parse_location
from cellvol.errors import CellvolError, InvalidInputError
from cellvol.ome._display import Window, contrast_window
from cellvol.read._level import Level
from cellvol.read._open import open as open_volume
from cellvol.read._volume import LabelImage, Volume
from cellvol.server._catalog import catalog_entry
from cellvol.server._channels import (
    Channel,
    blend,
    channels_of_image,
    pick_channels,
    to_rgb,
    windows_of,
)
from cellvol.server._keys import KeyReader, key_reader, raw_key
from cellvol.server._meshes import STALE_HEADER, mesh_routes
from cellvol.server._render import encode, label_overlay, render
from cellvol.server._scenes import ServedScene, scene_routes
from cellvol.server._segments import public_references, segment_route

__all__ = ["Served", "create_app", "labels_of", "serve_name"]

TILE: Final = 256
_MAX_SLICE_PIXELS: Final = 4096 * 4096
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_AXES: Final = {"z": 0, "y": 1, "x": 2}
_EXPOSED: Final = ["Content-Range", "Content-Length", "ETag", "Last-Modified", "Accept-Ranges"]


@dataclass
class Served:
    """One volume being served: its name, where it lives, the open volume and its keys."""

    name: str
    url: str
    volume: Volume
    keys: KeyReader
    window: Window
    token: str = field(default="")
    channels: list[Channel] = field(default_factory=list)

    @property
    def planes(self) -> Volume:
        """The ``(z, y, x)`` volume whose geometry tiles and slices follow (channel 0's)."""
        return self.channels[0].volume if self.channels else self.volume

    @classmethod
    def open(
        cls,
        path_or_url: str,
        name: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        cache: ChunkCache | None = None,
    ) -> Served:
        """Open an image to serve under ``name`` (default: its folder's name, less .zarr)."""
        location = parse_location(path_or_url)
        chosen = name or serve_name(location.url)
        if not _NAME.fullmatch(chosen):
            raise InvalidInputError(
                f"served name {chosen!r} must be letters, digits, '_', '-' or '.'"
            )
        volume = open_volume(location.url, storage_options, cache=cache)
        store = volume.levels[0].array.store  # the root's store, already opened and probed
        channels = channels_of_image(volume)
        window = channels[0].window if channels else volume.window or _fallback_window(volume)
        token = hashlib.blake2b(
            json.dumps(dict(volume.attributes), sort_keys=True, default=str).encode(),
            digest_size=8,
        ).hexdigest()
        keys = key_reader(store, location, storage_options)
        return cls(chosen, location.url, volume, keys, window, token, channels)


def serve_name(url: str) -> str:
    """A volume's default name: the last path part without ``.ome.zarr``/``.zarr``/``.ozx``."""
    last = url.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".ome.zarr", ".zarr", ".ozx"):
        if last.lower().endswith(suffix):
            return last[: -len(suffix)] or last
    return last


def _fallback_window(volume: Volume) -> Window:
    """For images without a stored window: estimate one from the coarsest level."""
    level = volume.levels[-1]
    if level.ndim != 3:
        return Window(0.0, 1.0, 0.0, 1.0)
    return contrast_window(level.__getitem__, level.shape, level.chunks, level.dtype)


def create_app(
    served: Sequence[Served],
    *,
    max_concurrency: int = 8,
    timeout: float = 30.0,
    scenes: Sequence[ServedScene] = (),
) -> Starlette:
    """The ASGI app serving ``served`` volumes and ``scenes`` (see the module's route table).

    A scene's images must be among ``served``, under the names :class:`ServedScene` gives.
    """
    names = [s.name for s in served]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInputError(
            f"two volumes would be served as {duplicates}: give one another name (NAME=PATH)"
        )
    volumes = {s.name: s for s in served}
    by_scene = {s.name: s for s in scenes}
    clashes = sorted(set(by_scene) & set(volumes))
    missing = sorted({n for s in scenes for n in s.served.values()} - set(volumes))
    if clashes or missing:
        raise InvalidInputError(
            f"scenes {clashes} share a volume's name, or their images {missing} are not served"
        )
    limit = asyncio.Semaphore(max_concurrency)

    def find(name: str) -> Served:
        found = volumes.get(name)
        if found is None:
            raise HTTPException(404, f"no volume named {name!r}; served: {', '.join(volumes)}")
        return found

    async def bounded(work: Callable[[], Awaitable[Response]]) -> Response:
        """Run a request's work within the concurrency limit and the timeout."""
        try:
            await asyncio.wait_for(limit.acquire(), timeout)
        except TimeoutError:
            raise HTTPException(503, "the server is busy; try again") from None
        try:
            return await asyncio.wait_for(work(), timeout)
        except TimeoutError:
            raise HTTPException(504, f"the request took longer than {timeout:g} s") from None
        finally:
            limit.release()

    async def data(request: Request) -> Response:
        target = find(request.path_params["name"])
        return await raw_key(request, target.keys, request.path_params["key"])

    async def data_root(request: Request) -> Response:
        raise HTTPException(404, "name a key: /data/{name}/zarr.json")

    async def tile(request: Request) -> Response:
        target = find(request.path_params["name"])
        params = request.path_params
        level = _level(target.planes, params["level"])
        axis = _axis(params["axis"])
        rows, cols = _plane_axes(axis)
        r0, c0 = params["row"] * TILE, params["col"] * TILE
        if r0 >= level.shape[rows] or c0 >= level.shape[cols] or r0 < 0 or c0 < 0:
            raise HTTPException(404, f"tile {params['row']}/{params['col']} is outside the plane")
        box = _box(level.shape, axis, params["index"], (r0, r0 + TILE), (c0, c0 + TILE))
        return await bounded(lambda: _image(request, target, params["level"], box, params["fmt"]))

    async def slice_(request: Request) -> Response:
        target = find(request.path_params["name"])
        level_index, box = _plane(request, target)
        fmt = request.path_params["fmt"]
        return await bounded(lambda: _image(request, target, level_index, box, fmt))

    async def segment(request: Request) -> Response:
        target = find(request.path_params["name"])
        labels = labels_of(target, request.path_params["labels"])
        query = request.query_params
        level_index = _int(query.get("level", "0"), "level")
        level = _level(labels, level_index)
        where = tuple(_int(query.get(a, ""), a) for a in "zyx")
        if not all(0 <= w < n for w, n in zip(where, level.shape, strict=True)):
            raise HTTPException(400, f"voxel {where} is outside level {level_index} {level.shape}")

        async def lookup() -> Response:
            value = int((await _read(target, level, where)).item())
            body: dict[str, Any] = {"id": value, "voxel": list(where), "level": level_index}
            if value != 0:
                table = labels.segments
                body["segment"] = table[value] if value in table else None  # noqa: SIM401
                properties = dict(labels.properties.get(value, {}))
                if "references" in properties:
                    properties["references"] = public_references(properties["references"])
                body["properties"] = properties
            return JSONResponse(body, headers={"Cache-Control": "public, max-age=60"})

        return await bounded(lookup)

    async def catalog(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        entries = [catalog_entry(s, base) for s in served]
        listed = [s.catalog(base, find) for s in scenes]
        return JSONResponse(
            {"volumes": entries, "scenes": listed}, headers={"Cache-Control": "no-cache"}
        )

    async def view(request: Request) -> Response:
        scene = by_scene.get(request.path_params["name"])
        shown = scene.served[scene.reference] if scene else request.path_params["name"]
        target = find(shown)
        page = resources.files("cellvol.server").joinpath("static/viewer.html").read_text()
        # Names come from the files (a scene's image names): escaped, never markup.
        page = page.replace("{{name}}", html.escape(target.name, quote=True)).replace(
            "{{scene}}", html.escape(scene.name if scene else "", quote=True)
        )
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    def layers(name: str) -> tuple[Served, list[Channel]]:
        target = find(name)
        # A plain image overlays in green, the usual colour of one fluorescence channel.
        plain = [Channel(name, target.volume, target.window, "00FF00")]
        return target, target.channels or plain

    async def index(request: Request) -> Response:
        if len(volumes) == 1:
            return RedirectResponse(f"/view/{names[0]}")
        links = "".join(
            f'<li><a href="/view/{quote(n, safe="")}">{html.escape(n)}</a></li>'
            for n in [*by_scene, *volumes]
        )
        return HTMLResponse(f"<!doctype html><title>cellvol</title><ul>{links}</ul>")

    static = Path(str(resources.files("cellvol.server").joinpath("static")))
    routes: list[Route | Mount] = [
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/favicon.ico", lambda request: Response(status_code=204), methods=["GET", "HEAD"]),
        Route("/catalog", catalog, methods=["GET", "HEAD"]),
        Route("/view/{name}", view, methods=["GET", "HEAD"]),
        Route("/data/{name}", data_root, methods=["GET", "HEAD"]),
        Route("/data/{name}/", data_root, methods=["GET", "HEAD"]),
        Route("/data/{name}/{key:path}", data, methods=["GET", "HEAD"]),
        Route(
            "/tiles/{name}/{level:int}/{axis}/{index:int}/{row:int}/{col:int}.{fmt}",
            tile,
            methods=["GET", "HEAD"],
        ),
        Route("/slice/{name}.{fmt}", slice_, methods=["GET", "HEAD"]),
        Route("/segment/{name}/{labels}", segment, methods=["GET", "HEAD"]),
        segment_route(find, labels_of, bounded),
        *mesh_routes(find, labels_of),
        *scene_routes(by_scene, layers, _plane, _read, bounded),
        Mount("/static", StaticFiles(directory=static), name="static"),
    ]
    application = Starlette(
        routes=routes,
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "HEAD"],
                allow_headers=["Range", "If-None-Match", "If-Modified-Since", "If-Range"],
                expose_headers=[*_EXPOSED, STALE_HEADER],
                max_age=3600,
            )
        ],
        exception_handlers={
            HTTPException: _http_error,
            CellvolError: _cellvol_error,
            IndexError: _bad_request,
        },
    )
    application.state.served = list(served)
    application.state.scenes = list(scenes)
    return application


# -- images ----------------------------------------------------------------------------------


async def _image(
    request: Request, target: Served, level_index: int, box: tuple[Any, ...], fmt: str
) -> Response:
    query = request.query_params
    window = _window(query.get("window"), target.window)
    colormap = query.get("cmap", "gray")
    labels_name = query.get("labels")
    alpha = _float(query.get("alpha", "0.5"), "alpha")
    if not 0 <= alpha <= 1:
        raise InvalidInputError(f"alpha must be between 0 and 1, got {alpha}")
    etag = (
        '"'
        + hashlib.blake2b(
            f"{target.token}|{request.url.path}|{sorted(query.items())}".encode(), digest_size=12
        ).hexdigest()
        + '"'
    )
    headers = {"ETag": etag, "Cache-Control": "public, max-age=300"}
    if etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    if target.channels:
        return await _channel_image(request, target, level_index, box, fmt, headers)
    level = _level(target.volume, level_index)
    plane = await _read(target, level, box)
    overlay = None
    if labels_name:
        labels = labels_of(target, labels_name)
        label_level = _level(labels, level_index)
        if label_level.shape != level.shape:
            raise InvalidInputError(
                f"labels {labels_name!r} level {level_index} has shape {label_level.shape}, "
                f"the image {level.shape}"
            )
        overlay = (await _read(target, label_level, box), labels.colors)

    def draw() -> tuple[bytes, str]:
        image = render(plane, (window.start, window.end), colormap)
        if overlay is not None:
            image = label_overlay(image, overlay[0], overlay[1], alpha)
        return encode(image, fmt)

    body, media = await anyio.to_thread.run_sync(draw)
    return Response(body, media_type=media, headers=headers)


async def _channel_image(
    request: Request,
    target: Served,
    level_index: int,
    box: tuple[Any, ...],
    fmt: str,
    headers: dict[str, str],
) -> Response:
    """The chosen channels (``channel=``; default all), blended additively in their colours."""
    query = request.query_params
    chosen = pick_channels(target.channels, query.get("channel"), target.name)
    windows = windows_of(query.get("windows"), chosen)
    if len(chosen) == 1 and query.get("window") is not None:
        windows = [_window(query.get("window"), chosen[0].window)]
    planes = [await _read(target, _level(c.volume, level_index), box) for c in chosen]

    def draw() -> tuple[bytes, str]:
        if not planes:  # every channel switched off
            shape = [k.stop - k.start for k in box if isinstance(k, slice)]
            return encode(np.zeros((*shape, 3), np.uint8), fmt)
        rgb, _ = blend(planes, windows, [c.color for c in chosen])
        return encode(to_rgb(rgb), fmt)

    body, media = await anyio.to_thread.run_sync(draw)
    return Response(body, media_type=media, headers=headers)


async def _read(target: Served, level: Level, box: tuple[Any, ...]) -> Any:
    """``level[box]``, once the objects it reads are known to lie inside the served store.

    The rule ``/data`` applies to raw keys: a shard that is a symlink leading elsewhere on
    the server's disks is refused, not rendered.
    """
    escaping = target.keys.escaping(level.array.store, _objects_read(level, box))
    if escaping:
        raise HTTPException(404, f"{escaping[0]} leads outside the served image")
    return await level.read_async(box)


def _objects_read(level: Level, box: tuple[Any, ...]) -> list[str]:
    """The store keys of the shards (or chunks, unsharded) that ``level[box]`` reads."""
    metadata = level.array.metadata
    outer = level.shards or level.chunks
    spans = [
        range(start // size, (stop - 1) // size + 1) if stop > start else range(0)
        for (start, stop), size in zip(touched_ranges(box, level.shape), outer, strict=True)
    ]
    prefix = f"{level.array.store_path.path}/" if level.array.store_path.path else ""
    # A channel's view reads at fixed leading indices (chunks along them: of one channel).
    full = level.array.shards or level.array.chunks
    lead = [range(f // size, f // size + 1) for f, size in zip(level.fixed, full, strict=False)]
    return [prefix + metadata.encode_chunk_key(index) for index in itertools.product(*lead, *spans)]


def _plane(request: Request, target: Served) -> tuple[int, tuple[Any, ...]]:
    """The level and box a ``/slice`` request names (``axis=&index=&level=&rows=&cols=``)."""
    query = request.query_params
    level_index = _int(query.get("level", "0"), "level")
    level = _level(target.planes, level_index)
    axis = _axis(query.get("axis", "z"))
    rows, cols = _plane_axes(axis)
    box = _box(
        level.shape,
        axis,
        _int(query.get("index", str(level.shape[axis] // 2)), "index"),
        _span(query.get("rows"), level.shape[rows], "rows"),
        _span(query.get("cols"), level.shape[cols], "cols"),
    )
    pixels = (box[rows].stop - box[rows].start) * (box[cols].stop - box[cols].start)
    if pixels > _MAX_SLICE_PIXELS:
        raise HTTPException(400, f"a slice is at most {_MAX_SLICE_PIXELS:,} pixels")
    return level_index, box


def _box(
    shape: tuple[int, ...], axis: int, index: int, rows: tuple[int, int], cols: tuple[int, int]
) -> tuple[Any, ...]:
    if not 0 <= index < shape[axis]:
        raise HTTPException(404, f"plane {index} is outside 0-{shape[axis] - 1}")
    row_axis, col_axis = _plane_axes(axis)
    key: list[Any] = [None, None, None]
    key[axis] = index
    key[row_axis] = slice(rows[0], min(rows[1], shape[row_axis]))
    key[col_axis] = slice(cols[0], min(cols[1], shape[col_axis]))
    return tuple(key)


def _plane_axes(axis: int) -> tuple[int, int]:
    """The (row, column) axes of a plane perpendicular to ``axis``."""
    return {0: (1, 2), 1: (0, 2), 2: (0, 1)}[axis]


def _axis(text: str) -> int:
    if text not in _AXES:
        raise HTTPException(400, f"axis must be z (XY), y (XZ) or x (YZ), not {text!r}")
    return _AXES[text]


def _level(volume: Volume, index: int) -> Any:
    if volume.ndim != 3:
        raise InvalidInputError(
            f"planes are rendered for 3-D (z, y, x) images; {volume.url} has axes {volume.axes} "
            "(its raw keys are served all the same)"
        )
    if not 0 <= index < len(volume.levels):
        raise HTTPException(404, f"level {index} does not exist (0-{len(volume.levels) - 1})")
    return volume.levels[index]


def labels_of(target: Served, name: str) -> LabelImage:
    """Labels ``name`` of a served volume, or a 404 naming the volume by its served name."""
    volume = target.volume
    if name not in volume.labels:
        known = ", ".join(sorted(volume.labels)) or "none"
        raise HTTPException(404, f"{target.name} has no labels {name!r} (labels: {known})")
    return volume.labels[name]


def _span(text: str | None, size: int, what: str) -> tuple[int, int]:
    if text is None:
        return 0, size
    parts = text.split(":")
    if len(parts) != 2:
        raise InvalidInputError(f"{what} must be start:stop, got {text!r}")
    start, stop = (_int(p, what) for p in parts)
    start, stop = max(0, start), min(size, stop)
    if stop <= start:
        raise InvalidInputError(f"{what} {text!r} selects nothing of 0:{size}")
    return start, stop


def _window(text: str | None, default: Window) -> Window:
    if text is None:
        return default
    parts = text.split(",")
    if len(parts) != 2:
        raise InvalidInputError(f"window must be low,high, got {text!r}")
    low, high = (_float(p, "window") for p in parts)
    if not high > low:
        raise InvalidInputError(f"window high must exceed low, got {text!r}")
    return Window(low, high, min(low, default.min), max(high, default.max))


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidInputError(f"{what} must be an integer, got {text!r}") from None


def _float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(f"{what} must be a number, got {text!r}") from None
    if not np.isfinite(value):
        raise InvalidInputError(f"{what} must be finite, got {text!r}")
    return value


# -- errors ----------------------------------------------------------------------------------


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (304,):
        return Response(status_code=exc.status_code)
    return JSONResponse({"error": _public(request, str(exc.detail))}, status_code=exc.status_code)


async def _cellvol_error(request: Request, exc: Exception) -> Response:
    status = 400 if isinstance(exc, InvalidInputError) else 500
    return JSONResponse({"error": _public(request, str(exc))}, status_code=status)


async def _bad_request(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": _public(request, str(exc))}, status_code=400)


def _public(request: Request, message: str) -> str:
    """``message`` with each served image's location replaced by its served name.

    Library errors name the store they concern; a client knows the image by its name, and the
    server's directories and buckets are none of its business.
    """
    places: dict[str, str] = {}
    for served in request.app.state.served:
        for place in (served.url, served.volume.url):
            places[place.rstrip("/")] = served.name
        if "://" not in served.url:
            places[str(Path(served.url).resolve())] = served.name
    # Longest first across all images: /d/img2 must not be rewritten as img's name + "2".
    for place in sorted(places, key=len, reverse=True):
        message = message.replace(place, places[place])
    return message
