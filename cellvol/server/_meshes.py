"""Segment surfaces over HTTP: a label image's mesh list, and each segment's mesh.

===========================================  ===================================================
``/meshes/{name}/{labels}``                  JSON: ``unit``, ``to_image_unit`` (the factor
                                             to the image's unit), ``stale``, and per segment
                                             its ``id``, ``triangles``, ``vertices``, ``url``,
                                             ``color`` (the label image's, or the default one)
                                             and ``name`` when annotated
``/meshes/{name}/{labels}/{id}``             the stored mesh object (``application/
                                             octet-stream``; layout in
                                             :mod:`cellvol.labels._mesh_store`)
===========================================  ===================================================

Both are plain reads of stored objects, through the same reader as ``/data`` (so the same
rules hold: nothing outside the served image is read). Labels changed after their meshes were
computed (by a tool that did not recompute them) still have their meshes served: a viewer
shows old surfaces rather than none, but is told: ``"stale": true`` in the list and the header
``Cellvol-Meshes-Stale: true`` on every mesh (``false`` when fresh; absent when unknown).

What the flag compares is cheap: one listing of the label levels' objects (their keys and
sizes) and the levels' placement, against what the mesh index recorded. It detects level
objects added, removed or resized, and a changed shape, voxel size or origin. It cannot see
a rewrite that leaves every object's size as it was (same-size shards with other voxels):
``cellvol meshes IMAGE --labels NAME`` reads the objects back and recomputes then, and
``cellvol verify`` reports such objects. It is unknown (absent) for meshes computed before
cellvol recorded the listing, and for images served over HTTP, which cannot be listed. A
listing is reused for a few seconds, so that a page fetching thousands of meshes lists once.
``cellvol meshes IMAGE --labels NAME`` recomputes stale meshes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cellvol.errors import IntegrityError, InvalidInputError
from cellvol.labels._mesh_store import (
    INDEX_KEY,
    MeshIndex,
    level_placement,
    level_sizes,
    listing_fingerprint,
    mesh_key,
)
from cellvol.ome._display import label_color
from cellvol.read._volume import LABELS_GROUP, LabelImage
from cellvol.server._keys import KeyReader, raw_key
from cellvol.units import convert_lengths

if TYPE_CHECKING:
    from cellvol.server._app import Served

__all__ = ["STALE_HEADER", "mesh_routes"]

STALE_HEADER: Final = "Cellvol-Meshes-Stale"
_LISTING_SECONDS: Final = 2.0  # how long one listing of the label levels is reused


def mesh_routes(
    find: Callable[[str], Served], labels_of: Callable[[Served, str], LabelImage]
) -> list[Route]:
    """The two mesh routes, finding served volumes with ``find`` and labels with ``labels_of``."""
    # Parsed documents by (volume, key), kept while the stored object's ETag stays the same.
    parsed: dict[tuple[str, str], tuple[str, Any]] = {}

    async def document(target: Served, key: str, parse: Callable[[bytes], Any]) -> Any:
        info = await target.keys.info(key)
        if info is None:
            return None
        cached = parsed.get((target.name, key))
        if cached is not None and cached[0] == info.etag:
            return cached[1]
        value = parse(await _read_all(target.keys, key, info.size))
        parsed[(target.name, key)] = (info.etag, value)
        return value

    # The labels' current listing fingerprint by (volume, labels): (when listed, fingerprint).
    listed: dict[tuple[str, str], tuple[float, str | None]] = {}

    async def listing_of(target: Served, name: str, labels: LabelImage) -> str | None:
        cached = listed.get((target.name, name))
        if cached is not None and time.monotonic() - cached[0] < _LISTING_SECONDS:
            return cached[1]

        def fingerprint() -> str | None:
            sizes = level_sizes(labels)
            return None if sizes is None else listing_fingerprint(sizes, level_placement(labels))

        value = await anyio.to_thread.run_sync(fingerprint)
        listed[(target.name, name)] = (time.monotonic(), value)
        return value

    async def state(request: Request) -> tuple[Served, str, LabelImage, MeshIndex, bool | None]:
        target = find(request.path_params["name"])
        name = request.path_params["labels"]
        labels = labels_of(target, name)
        prefix = f"{LABELS_GROUP}/{name}/"
        where = f"labels {name!r} of {target.name!r}"
        try:
            index = await document(
                target, prefix + INDEX_KEY, lambda raw: MeshIndex.decode(raw, f"{where}: meshes")
            )
        except IntegrityError as exc:
            # Damaged, or written by another cellvol: the labels are fine, their meshes are not.
            raise HTTPException(
                409, f"{exc}; recompute them with: cellvol meshes IMAGE --labels {name} --force"
            ) from None
        if index is None:
            raise HTTPException(
                404,
                f"{where} have no meshes; compute them with: cellvol meshes IMAGE --labels {name}",
            )
        stale = None
        if index.listing is not None:
            current = await listing_of(target, name, labels)
            stale = None if current is None else current != index.listing
        return target, name, labels, index, stale

    async def listing(request: Request) -> Response:
        target, name, labels, index, stale = await state(request)
        colors, properties = labels.colors, labels.properties
        segments = []
        for segment_id, entry in sorted(index.segments.items()):
            item: dict[str, Any] = {
                "id": segment_id,
                "triangles": entry.triangles,
                "vertices": entry.vertices,
                "url": f"/meshes/{target.name}/{name}/{segment_id}",
            }
            # Every segment's colour (the default for unlisted IDs, as /segments gives it):
            # the page needs no other request, however many segments there are.
            item["color"] = list(colors.get(segment_id) or label_color(segment_id))
            if properties.get(segment_id, {}).get("name"):
                item["name"] = properties[segment_id]["name"]
            segments.append(item)
        body = {
            "unit": index.unit,
            # Mesh units to one unit of the image's coordinates (its scale), from cellvol.units;
            # None when the image's unit is not a length unit.
            "to_image_unit": _to_image_unit(index.unit, target.volume.unit),
            "labels": name,
            "stale": stale,
            "triangle_budget": index.triangle_budget,
            "segments": segments,
            "skipped": [{"id": k, "reason": v} for k, v in sorted(index.skipped.items())],
        }
        return JSONResponse(body, headers={"Cache-Control": "no-cache", **_stale_header(stale)})

    async def mesh(request: Request) -> Response:
        target, name, labels, index, stale = await state(request)
        segment_id = request.path_params["id"]
        if segment_id not in index.segments:
            # The segment table's first read may be large (and on S3): not on the event loop.
            reason = await anyio.to_thread.run_sync(
                _no_mesh, labels, index, name, target.name, segment_id
            )
            raise HTTPException(404, reason)
        response = await raw_key(
            request, target.keys, f"{LABELS_GROUP}/{name}/" + mesh_key(segment_id)
        )
        response.headers.update(_stale_header(stale))
        return response

    methods = ["GET", "HEAD"]
    return [
        Route("/meshes/{name}/{labels}", listing, methods=methods),
        Route("/meshes/{name}/{labels}/{id:int}", mesh, methods=methods),
    ]


def _to_image_unit(mesh_unit: str, image_unit: str | None) -> float | None:
    try:
        return convert_lengths([1.0], mesh_unit, image_unit)[0] if image_unit else None
    except InvalidInputError:
        return None


def _stale_header(stale: bool | None) -> dict[str, str]:
    return {} if stale is None else {STALE_HEADER: "true" if stale else "false"}


def _no_mesh(labels: LabelImage, index: MeshIndex, name: str, served: str, segment: int) -> str:
    where = f"labels {name!r} of {served!r}"
    if segment in index.skipped:
        return f"segment {segment} of {where} has no mesh: {index.skipped[segment]}"
    try:
        table = labels.segments
    except IntegrityError:
        return f"{where} have no mesh for segment {segment} (and no complete segment table)"
    if segment in table:
        return (
            f"segment {segment} of {where} has no mesh: the meshes predate it; recompute them "
            f"with: cellvol meshes IMAGE --labels {name}"
        )
    return f"{where} have no mesh for segment {segment}: {table.missing_message(segment)}"


async def _read_all(keys: KeyReader, key: str, size: int) -> bytes:
    return b"".join([block async for block in keys.stream(key, 0, size)])
