"""``GET /segments/{name}/{labels}``: a label image's segments as JSON, for the page's list.

Query parameters:

``q``
    Keep the segments whose ID, name, description or a reference (``GO:0005739``) contains
    this text, case-insensitively.
``ids``
    ``7,12,40``: exactly these segments.
``limit``
    At most this many records (default 200, at most 5000); ``total`` counts all matches.

Annotated segments come first, then the rest by decreasing voxel count, so that the named
structures head the list and the largest unnamed ones follow. Each record holds the ID, voxel
count, bounding box and centroid (level-0 voxels and physical units), the label image's colour
for the ID, and the segment's annotations (name, description, references with links).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import anyio.to_thread
import numpy as np
import numpy.typing as npt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cellvol.errors import InvalidInputError
from cellvol.labels._references import Reference
from cellvol.ome._display import label_color
from cellvol.read._segments import SegmentTable
from cellvol.read._volume import LabelImage

if TYPE_CHECKING:
    from cellvol.server._app import Served

__all__ = ["public_references", "segment_route"]

_DEFAULT_LIMIT: Final = 200
_MAX_LIMIT: Final = 5000


def segment_route(
    find: Callable[[str], Served],
    labels_of: Callable[[Served, str], LabelImage],
    bounded: Callable[[Callable[[], Awaitable[Response]]], Awaitable[Response]],
) -> Route:
    """The route, finding volumes and labels as the app does, its work within ``bounded``."""
    # The IDs as text, for searches by ID, per label image: made once per table read.
    id_texts: dict[tuple[str, str], tuple[SegmentTable, npt.NDArray[np.str_]]] = {}

    def texts(key: tuple[str, str], table: SegmentTable) -> npt.NDArray[np.str_]:
        cached = id_texts.get(key)
        if cached is None or cached[0] is not table:
            cached = (table, table.ids.astype(str))
            id_texts[key] = cached
        return cached[1]

    async def segment_list(request: Request) -> Response:
        """The segments of ``/segments/{name}/{labels}`` matching the query (see the module)."""
        target = find(request.path_params["name"])
        name = request.path_params["labels"]
        labels = labels_of(target, name)
        query = request.query_params
        limit = _limit(query.get("limit"))

        def answer() -> dict[str, Any]:
            table = labels.segments  # read once (cached), a column per statistic
            colors = labels.colors
            if "ids" in query:
                rows = _rows_of_ids(table, query["ids"])
            else:
                text = query.get("q", "").strip().lower()
                rows = _matching_rows(table, text, lambda: texts((target.name, name), table))
            return {
                "unit": table.unit,
                "total": len(rows),
                "truncated": len(rows) > limit,
                "segments": [_record(table, colors, row) for row in rows[:limit]],
            }

        async def work() -> Response:
            # Reading the table and searching a large one take a while: not on the event
            # loop, and within the server's concurrency limit and timeout, like rendering.
            body = await anyio.to_thread.run_sync(answer)
            return JSONResponse(body, headers={"Cache-Control": "no-cache"})

        return await bounded(work)

    return Route("/segments/{name}/{labels}", segment_list, methods=["GET", "HEAD"])


def _limit(text: str | None) -> int:
    if text is None:
        return _DEFAULT_LIMIT
    try:
        value = int(text)
    except ValueError:
        raise InvalidInputError(f"limit must be an integer, got {text!r}") from None
    if not 1 <= value <= _MAX_LIMIT:
        raise InvalidInputError(f"limit must be between 1 and {_MAX_LIMIT}, got {value}")
    return value


def _rows_of_ids(table: SegmentTable, text: str) -> list[int]:
    rows = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            segment_id = int(part)
        except ValueError:
            raise InvalidInputError(
                f"ids must be integers separated by commas, got {part!r}"
            ) from None
        row = int(np.searchsorted(table.ids, segment_id))
        if row < len(table) and int(table.ids[row]) == segment_id:
            rows.append(row)
    return rows


def _matching_rows(
    table: SegmentTable, text: str, id_texts: Callable[[], npt.NDArray[np.str_]]
) -> list[int]:
    """Rows matching ``text``: annotated ones first (by ID), then by decreasing size."""
    # Label images may list every segment's voxel count among their properties: not a name.
    annotated = {int(i) for i, entry in table.annotations.items() if set(entry) - {"voxel_count"}}
    is_annotated = np.isin(table.ids, np.fromiter(annotated, dtype=np.int64, count=len(annotated)))
    if text:
        # Unannotated segments can match by ID only; annotated ones by their words too.
        keep = np.char.find(id_texts(), text) >= 0
        for row in np.flatnonzero(is_annotated):
            entry = table.annotations[int(table.ids[row])]
            keep[row] |= text in _searchable(entry)
    else:
        keep = np.ones(len(table), dtype=bool)
    first = np.flatnonzero(keep & is_annotated)
    rest = np.flatnonzero(keep & ~is_annotated)
    rest = rest[np.argsort(-table.voxel_count[rest], kind="stable")]
    return [int(r) for r in np.concatenate([first, rest])]


def _searchable(entry: Any) -> str:
    words = [str(entry.get("name") or ""), str(entry.get("description") or "")]
    for reference in entry.get("references") or ():
        if isinstance(reference, dict):
            resource, accession = (
                str(reference.get("resource", "")),
                str(reference.get("accession", "")),
            )
            words += [resource, accession, f"{resource}:{accession}"]
    return " ".join(words).lower()


def _record(
    table: SegmentTable, colors: dict[int, tuple[int, int, int, int]], row: int
) -> dict[str, Any]:
    record = table[int(table.ids[row])]
    segment_id = record["id"]
    annotation = table.annotations.get(segment_id, {})
    record["color"] = list(colors.get(segment_id) or label_color(segment_id))
    record["name"] = annotation.get("name")
    record["description"] = annotation.get("description")
    record["references"] = public_references(annotation.get("references"))
    return record


def public_references(stored: Any) -> list[dict[str, str]]:
    """Stored references as the page may show them: URLs rebuilt, never taken as stored.

    Any image served may carry any ``url`` (a ``javascript:`` one, say): a reference to a
    resource cellvol knows gets that resource's URL for its accession; any other keeps its
    resource and accession as text, without a link.
    """
    found = []
    for item in stored if isinstance(stored, list) else ():
        if not isinstance(item, dict):
            continue
        resource, accession = str(item.get("resource", "")), str(item.get("accession", ""))
        try:
            found.append(Reference.of(resource, accession).to_json())
        except InvalidInputError:
            found.append({"resource": resource, "accession": accession})
    return found
