"""Annotate segments of a label image: names, descriptions and database references.

Annotations are stored in the label image's OME-Zarr ``image-label.properties``, one entry per
segment (``{"label-value": 7, "name": ..., "description": ..., "references": [...]}``), so
every OME-Zarr reader finds them; the voxel data is never rewritten. Each reference carries
its resource, accession and URL (see :mod:`cellvol.labels`).

Annotation files, for :func:`annotate_from_file` and ``cellvol annotate``:

- CSV with a header row: ``segment_id`` (required), ``name``, ``description`` and
  ``references``, the last a ``;``-separated list such as ``UniProt:P69905; GO:0005739``;
- JSON: a list of objects ``{"segment_id": 7, "name": ..., "description": ...,
  "references": [{"resource": "UniProt", "accession": "P69905"}, ...]}``.

Every row is checked before anything is written: one bad row leaves the labels unchanged.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zarr

from cellvol._store import open_store
from cellvol.errors import InvalidInputError
from cellvol.labels._lookup import find_labels
from cellvol.labels._references import Reference, parse_references
from cellvol.labels._write import store_image_label
from cellvol.ome._metadata import ome_namespace
from cellvol.read._open import open as open_volume
from cellvol.read._volume import LABELS_GROUP
from cellvol.write._digests import editing, rewrite_crate

__all__ = ["Annotation", "annotate", "annotate_from_file", "read_annotation_file"]

_FIELDS = ("segment_id", "name", "description", "references")


@dataclass(frozen=True, slots=True)
class Annotation:
    """What to set on one segment; None leaves a field as it is."""

    segment_id: int
    name: str | None = None
    description: str | None = None
    references: tuple[Reference, ...] | None = None


def annotate(
    image: str | os.PathLike[str],
    labels: str,
    segment_id: int,
    *,
    name: str | None = None,
    description: str | None = None,
    references: Iterable[Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Set the name, description or references of one segment.

    Parameters
    ----------
    image
        The OME-Zarr image (local path or URL).
    labels
        The label image's name (``image/labels/<labels>``).
    segment_id
        The segment's label ID; it must be in the labels' segment table.
    name, description
        Replace the stored values when given.
    references
        Replace the stored references when given: mappings, ``(resource, accession)`` pairs
        or ``"UniProt:P69905"`` strings, each checked (see
        :func:`cellvol.labels._references.parse_references`).
    storage_options
        Passed to the store.

    Returns
    -------
    dict
        The segment's stored properties after the change.

    Raises
    ------
    InvalidInputError
        For an unknown segment ID, an unknown resource or a malformed accession.
    """
    refs = tuple(parse_references(references)) if references is not None else None
    entry = Annotation(_segment_id(segment_id, "segment_id"), name, description, refs)
    return apply_annotations(image, labels, [entry], storage_options)[entry.segment_id]


def annotate_from_file(
    image: str | os.PathLike[str],
    labels: str,
    path: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> int:
    """Apply every annotation in a CSV or JSON file (see the module's notes); returns how many.

    Raises
    ------
    InvalidInputError
        Naming the file and row of the first bad entry; nothing is written then.
    """
    entries = read_annotation_file(path)
    apply_annotations(image, labels, entries, storage_options, where=str(path))
    return len(entries)


def read_annotation_file(path: str | os.PathLike[str]) -> list[Annotation]:
    """Read and check an annotation file (``.csv`` or ``.json``)."""
    file = Path(path)
    if not file.is_file():
        raise InvalidInputError(f"annotation file {file} does not exist")
    suffix = file.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(file)
    elif suffix == ".json":
        rows = _json_rows(file)
    else:
        raise InvalidInputError(f"{file}: annotation files are .csv or .json, not '{suffix}'")
    entries = []
    seen: set[int] = set()
    for number, row in rows:
        try:
            entry = _annotation(row)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{file}, {number}: {exc}") from None
        if entry.segment_id in seen:
            raise InvalidInputError(f"{file}, {number}: segment {entry.segment_id} appears twice")
        seen.add(entry.segment_id)
        entries.append(entry)
    return entries


def apply_annotations(
    image: str | os.PathLike[str],
    labels: str,
    entries: Sequence[Annotation],
    storage_options: Mapping[str, Any] | None = None,
    where: str | None = None,
) -> dict[int, dict[str, Any]]:
    """Check every entry against the segment table, then write them all in one update."""
    options = dict(storage_options or {})
    volume = open_volume(image, options)
    label_image = find_labels(volume, labels)
    table = label_image.segments
    for entry in entries:
        if entry.segment_id not in table:
            prefix = f"{where}: " if where else ""
            raise InvalidInputError(
                f"{prefix}cannot annotate labels {labels!r} of {volume.url}: "
                + table.missing_message(entry.segment_id)
            )
    image_store = open_store(volume.url, mode="a", storage_options=options)
    with editing(image_store, volume.url, ("", f"{LABELS_GROUP}/{labels}")):
        store = open_store(label_image.url, mode="a", storage_options=options)
        group = zarr.open_group(store=store, mode="a", zarr_format=3)
        image_label = dict(ome_namespace(dict(group.attrs)).get("image-label") or {})
        properties = {int(p["label-value"]): dict(p) for p in image_label.get("properties") or ()}
        for entry in entries:
            stored = properties.setdefault(entry.segment_id, {"label-value": entry.segment_id})
            if entry.name is not None:
                stored["name"] = entry.name
            if entry.description is not None:
                stored["description"] = entry.description
            if entry.references is not None:
                stored["references"] = [r.to_json() for r in entry.references]
        image_label["properties"] = [properties[k] for k in sorted(properties)]
        store_image_label(group, image_label, table)
        # The image's crate lists the annotations' references: it is refreshed with them.
        rewrite_crate(image_store, volume.url)
    return {
        e.segment_id: {k: v for k, v in properties[e.segment_id].items() if k != "label-value"}
        for e in entries
    }


def _csv_rows(file: Path) -> list[tuple[str, dict[str, Any]]]:
    with file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        if "segment_id" not in header:
            raise InvalidInputError(
                f"{file}: the header row must name a 'segment_id' column (and any of name, "
                f"description, references); found {header}"
            )
        unknown = sorted(set(header) - set(_FIELDS))
        if unknown:
            raise InvalidInputError(f"{file}: unknown column(s) {unknown}; known: {_FIELDS}")
        rows = []
        for number, raw in enumerate(reader, start=2):
            row = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in raw.items()}
            if row.get("references"):
                row["references"] = [r for r in row["references"].split(";") if r.strip()]
            else:
                row.pop("references", None)
            for key in ("name", "description"):
                if row.get(key) == "":
                    row.pop(key)
            rows.append((f"line {number}", row))
    return rows


def _json_rows(file: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(document, list) or not all(isinstance(i, dict) for i in document):
        raise InvalidInputError(f"{file}: expected a JSON list of objects, one per segment")
    return [(f"entry {i}", item) for i, item in enumerate(document)]


def _annotation(row: Mapping[str, Any]) -> Annotation:
    unknown = sorted(set(row) - set(_FIELDS))
    if unknown:
        raise InvalidInputError(f"unknown field(s) {unknown}; known: {list(_FIELDS)}")
    if "segment_id" not in row:
        raise InvalidInputError("no segment_id")
    for key in ("name", "description"):
        if key in row and not isinstance(row[key], str):
            raise InvalidInputError(f"{key} must be text, got {row[key]!r}")
    refs = row.get("references")
    return Annotation(
        _segment_id(row["segment_id"], "segment_id"),
        row.get("name"),
        row.get("description"),
        tuple(parse_references(refs)) if refs is not None else None,
    )


def _segment_id(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise InvalidInputError(f"{what} must be an integer label ID, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if hasattr(value, "__index__"):
        return int(value.__index__())
    raise InvalidInputError(f"{what} must be an integer label ID, got {value!r}")
