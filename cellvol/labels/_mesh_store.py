"""How segment surfaces (meshes) are stored with their label image, and read back.

Layout, under the label image::

    labels/<name>/meshes/
        index.json      what was computed, from what, and each segment's mesh (see below)
        <id>.bin        one segment's surface, in the byte layout served over HTTP

A mesh object is little-endian: ``uint32`` vertex count, ``uint32`` triangle count, the
vertices as ``float32`` ``x, y, z`` triples in nanometres (physical positions, the level's
scale and translation applied), then the triangles as ``uint32`` vertex-index triples,
counter-clockwise seen from outside. Serving one is a plain read of its object.

The index records what the meshes were computed from, twice over:

``source``
    A SHA-256 over every level object of the label image as stored (its key, size and the
    SHA-256 of its bytes, read back when the meshes are computed) and the levels' placement
    (shape, scale, translation, unit). :func:`cellvol.compute_meshes` reads the objects again
    and compares: any rewrite of the labels' voxels, by cellvol or any other tool, or a new
    voxel size or origin, makes it recompute.
``listing``
    A SHA-256 over the level objects' keys and sizes (one listing, no object read) and the
    placement: what the server's and the SFF export's ``stale`` flag compares. It sees objects
    added, removed or resized; a rewrite that keeps every object's size is caught by
    ``cellvol meshes`` and ``cellvol verify``, not by this flag.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from cellvol._store import list_sizes
from cellvol.errors import IntegrityError
from cellvol.ome._digests import sha256_hex
from cellvol.read._volume import LabelImage

__all__ = [
    "INDEX_KEY",
    "MESHES_PATH",
    "MESH_UNIT",
    "Mesh",
    "MeshEntry",
    "MeshIndex",
    "level_placement",
    "level_sizes",
    "listing_fingerprint",
    "mesh_key",
    "source_fingerprint",
]

MESHES_PATH: Final = "meshes"
INDEX_KEY: Final = f"{MESHES_PATH}/index.json"
MESH_UNIT: Final = "nanometer"
INDEX_FORMAT: Final = 1
_HEADER = struct.Struct("<II")


def mesh_key(segment_id: int) -> str:
    """The key of a segment's mesh object, relative to the label image."""
    return f"{MESHES_PATH}/{int(segment_id)}.bin"


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle surface: ``vertices`` ``(n, 3)`` float32 x, y, z; ``triangles`` ``(m, 3)``."""

    vertices: npt.NDArray[np.float32]
    triangles: npt.NDArray[np.uint32]

    def encode(self) -> bytes:
        """The stored (and served) bytes: counts, vertices, triangles, little-endian."""
        vertices = np.ascontiguousarray(self.vertices, dtype="<f4")
        triangles = np.ascontiguousarray(self.triangles, dtype="<u4")
        header = _HEADER.pack(vertices.shape[0], triangles.shape[0])
        return header + vertices.tobytes() + triangles.tobytes()

    @classmethod
    def decode(cls, data: bytes, where: str) -> Mesh:
        """Read a mesh object back.

        Raises
        ------
        IntegrityError
            Naming ``where``, if the bytes are not one whole mesh object.
        """
        if len(data) < _HEADER.size:
            raise IntegrityError(f"{where}: {len(data)} bytes, too short for a mesh header")
        n_vertices, n_triangles = _HEADER.unpack_from(data)
        expected = _HEADER.size + 12 * n_vertices + 12 * n_triangles
        if len(data) != expected:
            raise IntegrityError(
                f"{where}: {len(data)} bytes, but {n_vertices} vertices and {n_triangles} "
                f"triangles take {expected}"
            )
        split = _HEADER.size + 12 * n_vertices
        vertices = np.frombuffer(data, "<f4", 3 * n_vertices, _HEADER.size).reshape(-1, 3)
        triangles = np.frombuffer(data, "<u4", 3 * n_triangles, split).reshape(-1, 3)
        if triangles.size and int(triangles.max()) >= n_vertices:
            raise IntegrityError(f"{where}: a triangle names a vertex past the {n_vertices}")
        return cls(vertices.astype(np.float32), triangles.astype(np.uint32))

    @property
    def volume(self) -> float:
        """The signed volume enclosed (positive when the triangles face outwards)."""
        v = self.vertices.astype(np.float64)
        a, b, c = (v[self.triangles[:, k]] for k in range(3))
        return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


@dataclass(frozen=True, slots=True)
class MeshEntry:
    """One segment's stored mesh: its counts, where it was computed, its object's digest."""

    id: int
    vertices: int
    triangles: int
    level: int
    step: tuple[int, int, int]
    """Level voxels between the voxels meshed, along z, y, x (1, 1, 1: all of them)."""
    nbytes: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        """The entry as the index stores it."""
        return {
            "id": self.id,
            "vertices": self.vertices,
            "triangles": self.triangles,
            "level": self.level,
            "step": list(self.step),
            "bytes": self.nbytes,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class MeshIndex:
    """What ``meshes/index.json`` holds.

    Attributes
    ----------
    source
        The fingerprint of the label levels' stored bytes and placement the meshes were
        computed from (None when the store could not be listed).
    triangle_budget
        The most triangles a segment's mesh was allowed.
    smoothing
        The smoothing applied (method and parameters).
    segments
        Each meshed segment's entry, by ID.
    skipped
        Segments with no mesh, by ID, with the reason (too thin for any level, say).
    unit
        The unit of the vertices.
    listing
        The fingerprint of the level objects' sizes and the placement (None when unknown).
    """

    source: str | None
    triangle_budget: int
    smoothing: Mapping[str, Any]
    segments: Mapping[int, MeshEntry]
    skipped: Mapping[int, str] = field(default_factory=dict)
    unit: str = MESH_UNIT
    listing: str | None = None

    def encode(self) -> bytes:
        """The index's bytes (sorted by ID, so the same meshes give the same bytes)."""
        body = {
            "cellvol": {"meshes": INDEX_FORMAT},
            "unit": self.unit,
            "axes": ["x", "y", "z"],
            "winding": "counter-clockwise seen from outside",
            "source": self.source,
            "listing": self.listing,
            "triangle_budget": self.triangle_budget,
            "smoothing": dict(self.smoothing),
            "segments": [self.segments[k].to_json() for k in sorted(self.segments)],
            "skipped": [{"id": k, "reason": self.skipped[k]} for k in sorted(self.skipped)],
        }
        return json.dumps(body, indent=1).encode()

    @classmethod
    def decode(cls, data: bytes, where: str) -> MeshIndex:
        """Parse a stored index.

        Raises
        ------
        IntegrityError
            Naming ``where``, for bytes that are not a mesh index this cellvol reads.
        """
        try:
            body = json.loads(data)
            version = body["cellvol"]["meshes"]
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{where}: not a readable mesh index ({exc!r})") from None
        # The format first: another format's fields need not parse as this one's.
        if version != INDEX_FORMAT:
            raise IntegrityError(
                f"{where}: mesh index format {version!r}; this cellvol reads {INDEX_FORMAT}",
                hint="recompute them: cellvol meshes IMAGE --labels NAME",
            )
        try:
            entries = {
                int(e["id"]): MeshEntry(
                    int(e["id"]),
                    int(e["vertices"]),
                    int(e["triangles"]),
                    int(e["level"]),
                    _step(e["step"]),
                    int(e["bytes"]),
                    str(e["sha256"]),
                )
                for e in body["segments"]
            }
            skipped = {int(e["id"]): str(e["reason"]) for e in body.get("skipped", ())}
            index = cls(
                body["source"],
                int(body["triangle_budget"]),
                dict(body["smoothing"]),
                entries,
                skipped,
                str(body["unit"]),
                _optional_text(body.get("listing")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{where}: not a readable mesh index ({exc!r})") from None
        return index


def level_placement(label_image: LabelImage) -> list[Any]:
    """Where the label levels' voxels lie: unit, and each level's path, shape, scale, offset."""
    voxel = label_image.voxel_size
    return [
        voxel.unit if voxel is not None else None,
        [
            [level.path, list(level.shape), list(level.scale), list(level.translation)]
            for level in label_image.levels
        ],
    ]


def level_sizes(label_image: LabelImage) -> dict[str, int] | None:
    """The size of every object under the label levels (None: the store cannot list).

    Keys are relative to the label image (``0/c/0/0/0``), whichever store the levels were
    opened from (the label image's own, or the whole image's a server opened). Only the
    levels' own objects count: annotating segments (the label image's ``zarr.json``), its
    segment table and its meshes are not what the meshes show.
    """
    sizes: dict[str, int] = {}
    for level in label_image.levels:
        full = level.array.store_path.path.strip("/")
        above = full[: len(full) - len(level.path.strip("/"))]
        found = list_sizes(level.array.store, full)
        if found is None:
            return None
        sizes.update({key[len(above) :]: size for key, size in found.items()})
    return sizes


def source_fingerprint(objects: Iterable[tuple[str, int, str]], placement: Any) -> str:
    """SHA-256 of the level objects' keys, sizes and SHA-256 digests, and their placement."""
    chosen = sorted([key, size, digest] for key, size, digest in objects)
    return sha256_hex(json.dumps({"objects": chosen, "placement": placement}).encode())


def listing_fingerprint(sizes: Mapping[str, int], placement: Any) -> str:
    """SHA-256 of the level objects' keys and sizes (one listing), and their placement."""
    listed = sorted([key, size] for key, size in sizes.items())
    return sha256_hex(json.dumps({"objects": listed, "placement": placement}).encode())


def _optional_text(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"expected text or null, got {value!r}")
    return value


def _step(value: Any) -> tuple[int, int, int]:
    z, y, x = (int(v) for v in value)
    return z, y, x
