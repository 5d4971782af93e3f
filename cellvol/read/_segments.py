"""The segment table of a label image, as stored: every segment's size, extent and centre.

For each label ID other than 0 (background), the table holds its voxel count, its bounding box
(first and last voxel along each axis, inclusive) and its centroid, in voxels of level 0; the
physical values follow from the level's scale and translation. It is stored as a zarr group of
column arrays beside the label image's levels (``segments/``), which any zarr reader can open;
:mod:`cellvol.labels` computes and writes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import zarr

from cellvol.errors import IntegrityError, InvalidInputError

__all__ = ["SEGMENTS_PATH", "SEGMENT_COLUMNS", "SegmentTable", "read_segments", "segment_count"]

SEGMENTS_PATH: Final = "segments"
SEGMENT_COLUMNS: Final = ("id", "voxel_count", "bbox_min", "bbox_max", "centroid")


@dataclass(frozen=True)
class SegmentTable:
    """Per-segment statistics in column arrays, one row per label ID (sorted, 0 excluded).

    Attributes
    ----------
    ids, voxel_count
        Label IDs and their voxel counts.
    bbox_min, bbox_max
        ``(n, 3)`` first and last voxel index of each segment along z, y, x (inclusive).
    centroid
        ``(n, 3)`` mean voxel index along z, y, x.
    scale, translation
        Level 0's voxel size and origin, to express the above in physical units.
    unit
        The unit of ``scale`` and ``translation`` (nanometre for images cellvol writes).
    annotations
        Each annotated segment's properties by ID (``name``, ``description``,
        ``references``...), as the label image's ``image-label.properties`` hold them.
    """

    ids: npt.NDArray[np.int64] | npt.NDArray[np.uint64]
    voxel_count: npt.NDArray[np.int64]
    bbox_min: npt.NDArray[np.int64]
    bbox_max: npt.NDArray[np.int64]
    centroid: npt.NDArray[np.float64]
    scale: tuple[float, float, float]
    translation: tuple[float, float, float]
    unit: str | None = None
    annotations: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ids.size)

    def __contains__(self, segment_id: object) -> bool:
        return self._row(segment_id) is not None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in range(len(self)):
            yield self._record(row)

    def __getitem__(self, segment_id: int) -> dict[str, Any]:
        """The record of one segment, by its label ID."""
        row = self._row(segment_id)
        if row is None:
            raise KeyError(self.missing_message(segment_id))
        return self._record(row)

    def missing_message(self, segment_id: object) -> str:
        """Why ``segment_id`` is not a segment, for error messages."""
        if not len(self):
            return f"segment {segment_id!r} does not exist: the labels hold no segment"
        return (
            f"segment {segment_id!r} does not exist: the labels hold {len(self)} segment(s), "
            f"IDs {int(self.ids[0])} to {int(self.ids[-1])}"
        )

    def to_pandas(self) -> Any:
        """The table as a ``pandas.DataFrame`` indexed by ID (needs pandas).

        Besides the statistics, the columns ``name``, ``description`` (when any segment has
        one) and ``references`` (``"GO:0005739; UniProt:P69905"``, as annotation files spell
        them) come from the annotations, None where a segment has none, so that no join
        with :attr:`LabelImage.properties` is needed.
        """
        import pandas as pd  # type: ignore[import-untyped]

        columns: dict[str, Any] = self._annotation_columns()
        columns["voxel_count"] = self.voxel_count
        for prefix, values in (
            ("bbox_min", self.bbox_min),
            ("bbox_max", self.bbox_max),
            ("centroid", self.centroid),
        ):
            for axis, name in enumerate("zyx"):
                columns[f"{prefix}_{name}"] = values[:, axis]
        for axis, name in enumerate("zyx"):
            columns[f"centroid_{name}_{self.unit or 'physical'}"] = self._physical(
                self.centroid[:, axis], axis
            )
        return pd.DataFrame(columns, index=pd.Index(self.ids, name="id"))

    def _annotation_columns(self) -> dict[str, list[str | None]]:
        found = [self.annotations.get(int(segment_id), {}) for segment_id in self.ids]
        columns: dict[str, list[str | None]] = {
            "name": [_text(entry.get("name")) for entry in found]
        }
        if any(entry.get("description") for entry in found):
            columns["description"] = [_text(entry.get("description")) for entry in found]
        columns["references"] = [_references_text(entry.get("references")) for entry in found]
        return columns

    def _row(self, segment_id: object) -> int | None:
        if isinstance(segment_id, bool) or not isinstance(segment_id, int | np.integer):
            return None
        row = int(np.searchsorted(self.ids, segment_id))
        return row if row < len(self) and int(self.ids[row]) == int(segment_id) else None

    def _physical(self, values: npt.NDArray[Any], axis: int) -> npt.NDArray[np.float64]:
        return self.translation[axis] + np.asarray(values, dtype=np.float64) * self.scale[axis]

    def _record(self, row: int) -> dict[str, Any]:
        low, high, centre = self.bbox_min[row], self.bbox_max[row], self.centroid[row]
        return {
            "id": int(self.ids[row]),
            "voxel_count": int(self.voxel_count[row]),
            "bbox": [[int(v) for v in low], [int(v) for v in high]],
            "centroid": [float(v) for v in centre],
            "bbox_physical": [
                [float(self._physical(low[a], a)) for a in range(3)],
                [float(self._physical(high[a], a)) for a in range(3)],
            ],
            "centroid_physical": [float(self._physical(centre[a], a)) for a in range(3)],
            "unit": self.unit,
        }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _references_text(references: Any) -> str | None:
    """Stored references as annotation files write them: ``GO:0005739; UniProt:P69905``."""
    if not isinstance(references, list):
        return None
    parts = []
    for reference in references:
        if not isinstance(reference, Mapping):
            continue
        resource, accession = (
            str(reference.get("resource", "")),
            str(reference.get("accession", "")),
        )
        # Some accessions carry their resource already (GO:0005739, CHEBI:15377).
        parts.append(
            accession if accession.startswith(f"{resource}:") else f"{resource}:{accession}"
        )
    return "; ".join(parts) or None


def segment_count(group: zarr.Group) -> int | None:
    """How many segments the stored table lists, from its metadata alone (None if absent)."""
    try:
        meta: Any = dict(group[SEGMENTS_PATH].attrs)["cellvol"]
        return int(meta["rows"])
    except (KeyError, TypeError, ValueError):
        return None


def read_segments(
    group: zarr.Group, where: str, annotations: Mapping[int, Mapping[str, Any]] | None = None
) -> SegmentTable:
    """Load the segment table of a label image group, with its segments' annotations.

    Raises
    ------
    IntegrityError
        If the table is missing or its columns disagree (an interrupted labels write:
        running it again completes it).
    """
    try:
        segments: Any = group[SEGMENTS_PATH]
        meta: Any = dict(segments.attrs)["cellvol"]
        columns = {name: np.asarray(segments[name][...]) for name in SEGMENT_COLUMNS}
    except (KeyError, TypeError) as exc:
        raise IntegrityError(
            f"{where} has no complete segment table ('{SEGMENTS_PATH}/'): the labels write "
            "did not finish; run it again to complete it"
        ) from exc
    rows = {name: values.shape[0] for name, values in columns.items()}
    if len(set(rows.values())) != 1 or rows["id"] != meta.get("rows"):
        raise IntegrityError(f"{where}: the segment table's columns disagree in length: {rows}")
    if not isinstance(meta.get("scale"), list) or len(meta["scale"]) != 3:
        raise InvalidInputError(f"{where}: the segment table has no 3-D scale")
    return SegmentTable(
        columns["id"],
        columns["voxel_count"],
        columns["bbox_min"],
        columns["bbox_max"],
        columns["centroid"],
        tuple(meta["scale"]),
        tuple(meta["translation"]),
        meta.get("unit"),
        dict(annotations or {}),
    )
