"""The ``ome`` object of an OME-Zarr 0.6 scene: images placed in each other's space.

A scene group holds no arrays of its own. Its ``scene.coordinateTransformations`` each map one
image's coordinate system (``{"path": ..., "name": ...}``) into another's, or into a
coordinate system the scene defines. cellvol writes one transformation per linked image, from
that image's ``physical`` system into the reference image's, as an affine, or as a scale then
a translation when nothing rotates or shears. ``path`` is relative to the scene group when
both are local (``../em.ome.zarr``), else the image's URL.

An image with a channel (or time) axis is placed by an affine over all its axes whose
columns for those axes are zero: one row per output axis, one column per input axis plus one,
as 0.6 writes a map between systems with different axis counts. Every channel lands in the
same place; nothing but space moves. (``byDimension`` could say the same, but it is not a
linear type a reader can compose, so readers would have to special-case it.)

Reading is the other half: :func:`read_scene` lists the transformations with their ends, and
:func:`chain` composes the matrices' spatial parts (inverting where the path goes against an
arrow) from any coordinate system to any other the scene connects.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from cellvol._store import read_bytes
from cellvol.errors import MetadataError, NotOMEZarrError
from cellvol.ome._coords06 import affine_matrix, is_axis_aligned

__all__ = [
    "group_attributes",
    "Edge",
    "Place",
    "chain",
    "read_scene",
    "scene_ome",
    "spatial_embedding",
    "transform_json",
]

#: The version cellvol writes scenes as.
SCENE_VERSION: Final = "0.6"


@dataclass(frozen=True, slots=True)
class Place:
    """A coordinate system: ``name`` in the group at ``path`` (None: the scene's own)."""

    path: str | None
    name: str

    def json(self) -> dict[str, str]:
        """As an ``input``/``output`` object."""
        return {"name": self.name} if self.path is None else {"path": self.path, "name": self.name}

    def __str__(self) -> str:
        return self.name if self.path is None else f"{self.path}#{self.name}"


@dataclass(frozen=True, slots=True)
class Edge:
    """One of the scene's transformations: from ``source`` to ``target``, as stored."""

    source: Place
    target: Place
    transform: Mapping[str, Any]
    index: int


def transform_json(
    matrix: npt.ArrayLike, source: Place, target: Place, name: str
) -> dict[str, Any]:
    """One scene transformation for a homogeneous ``(n + 1) x (n + 1)`` matrix.

    An axis-aligned square matrix is written as a scale then a translation (the translation
    left out when it is zero), which every 0.6 reader handles; any other (a rotation, or one
    between systems with different axis counts, ``(n_out + 1) x (n_in + 1)``) as an
    ``affine``.
    """
    m = np.asarray(matrix, dtype=float)
    ends = {"input": source.json(), "output": target.json(), "name": name}
    if m.shape[0] == m.shape[1] and is_axis_aligned(tuple(map(tuple, m))):
        scale = {"type": "scale", "scale": np.diag(m)[:-1].tolist()}
        if not np.any(m[:-1, -1]):
            return {**scale, **ends}
        translation = {"type": "translation", "translation": m[:-1, -1].tolist()}
        return {"type": "sequence", "transformations": [scale, translation], **ends}
    return {"type": "affine", "affine": m[:-1, :].tolist(), **ends}


def spatial_embedding(
    matrix: npt.ArrayLike, inputs: Sequence[tuple[str, bool]], outputs: Sequence[tuple[str, bool]]
) -> npt.NDArray[np.float64]:
    """A spatial ``4 x 4`` matrix as the ``(n_out + 1) x (n_in + 1)`` one between two systems.

    ``inputs`` and ``outputs`` are each system's axes as ``(name, is_spatial)``, in order; the
    spatial ones are ``z, y, x`` in that order. A non-spatial output axis takes the input axis
    of the same name unchanged (a channel stays that channel), else is 0; non-spatial input
    axes move nothing in space.
    """
    spatial = np.asarray(matrix, dtype=float)
    rows = [i for i, (_, s) in enumerate(outputs) if s] + [len(outputs)]
    cols = [i for i, (_, s) in enumerate(inputs) if s] + [len(inputs)]
    full = np.zeros((len(outputs) + 1, len(inputs) + 1))
    full[np.ix_(rows, cols)] = spatial
    names = [name for name, s in inputs]
    for row, (name, is_spatial) in enumerate(outputs):
        if not is_spatial and name in names and not inputs[names.index(name)][1]:
            full[row, names.index(name)] = 1.0
    return full


def scene_ome(transforms: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``ome`` object of a scene holding ``transforms`` (from :func:`transform_json`)."""
    if not transforms:
        raise MetadataError("a scene needs at least one coordinate transformation")
    return {"version": SCENE_VERSION, "scene": {"coordinateTransformations": list(transforms)}}


def read_scene(attributes: Mapping[str, Any], *, where: str) -> tuple[Edge, ...]:
    """The transformations of a scene group's attributes, with the systems they join.

    Raises
    ------
    MetadataError
        If the attributes hold no 0.6 scene, or a transformation lacks its ends.
    """
    ome = attributes.get("ome")
    scene = ome.get("scene") if isinstance(ome, Mapping) else None
    if not isinstance(scene, Mapping):
        raise MetadataError(f"{where} is not an OME-Zarr 0.6 scene: no 'ome' object with 'scene'")
    transforms = scene.get("coordinateTransformations")
    if not isinstance(transforms, Sequence) or isinstance(transforms, str) or not transforms:
        raise MetadataError(f"{where}: the scene has no coordinateTransformations")
    edges = []
    for i, transform in enumerate(transforms):
        label = f"{where}: scene transformation {i}"
        if not isinstance(transform, Mapping):
            raise MetadataError(f"{label} must be an object")
        ends = [_place(transform.get(key), f"{label} {key}") for key in ("input", "output")]
        edges.append(Edge(ends[0], ends[1], transform, i))
    return tuple(edges)


def _place(value: object, label: str) -> Place:
    if isinstance(value, str):  # drafts of RFC-5 named the system alone
        return Place(None, value)
    if not isinstance(value, Mapping) or not isinstance(value.get("name"), str):
        raise MetadataError(f"{label} must name a coordinate system, got {value!r}")
    path = value.get("path")
    return Place(str(path) if path else None, str(value["name"]))


def chain(
    edges: Sequence[Edge],
    source: Place,
    target: Place,
    spatial: Callable[[Place], tuple[bool, ...]],
    where: str,
) -> npt.NDArray[np.float64]:
    """The spatial matrix from ``source`` to ``target`` through the scene's transformations.

    The shortest path is taken; an edge walked against its direction is inverted. Only the
    spatial axes are composed: each transformation's rows and columns for its systems'
    spatial axes (channel and time axes ride along unmoved), so the result is
    ``(s + 1) x (s + 1)`` for ``s`` spatial axes.

    Parameters
    ----------
    spatial
        For a coordinate system, whether each of its axes is spatial, in order.

    Raises
    ------
    MetadataError
        If no path joins the two, or a transformation on it is not linear, not invertible, or
        moves a point in space by its channel or time.
    """
    if source == target:
        return np.eye(sum(spatial(source)) + 1)
    steps: dict[Place, list[tuple[Place, Edge, bool]]] = {}
    for edge in edges:
        steps.setdefault(edge.source, []).append((edge.target, edge, True))
        steps.setdefault(edge.target, []).append((edge.source, edge, False))
    came: dict[Place, tuple[Place, Edge, bool] | None] = {source: None}
    queue = deque([source])
    while queue and target not in came:
        here = queue.popleft()
        for there, edge, forward in steps.get(here, []):
            if there not in came:
                came[there] = (here, edge, forward)
                queue.append(there)
    if target not in came:
        raise MetadataError(f"{where}: no transformation leads from {source} to {target}")
    matrix = np.eye(sum(spatial(target)) + 1)
    place = target
    while (step := came[place]) is not None:
        previous, edge, forward = step
        label = f"{where}: scene transformation {edge.index}"
        m = _spatial_part(edge, spatial(edge.source), spatial(edge.target), label)
        if not forward:
            if m.shape[0] != m.shape[1] or abs(np.linalg.det(m)) < 1e-12:
                raise MetadataError(f"{label} cannot be inverted, so it leads one way only")
            m = np.linalg.inv(m)
        matrix = matrix @ m
        place = previous
    return matrix


def _spatial_part(
    edge: Edge, inputs: tuple[bool, ...], outputs: tuple[bool, ...], label: str
) -> npt.NDArray[np.float64]:
    """An edge's matrix on its systems' spatial axes alone."""
    m = np.asarray(affine_matrix(edge.transform, len(inputs), len(outputs), label))
    rows = [i for i, s in enumerate(outputs) if s] + [len(outputs)]
    cols = [i for i, s in enumerate(inputs) if s] + [len(inputs)]
    others = [i for i, s in enumerate(inputs) if not s]
    if others and np.any(m[np.ix_(rows[:-1], others)]):
        raise MetadataError(
            f"{label} moves points in space by a non-spatial axis (channel or time); cellvol "
            "reads placements that act on the spatial axes only"
        )
    return np.asarray(m[np.ix_(rows, cols)], dtype=np.float64)


def group_attributes(store: Any, url: str, what: str) -> Any:
    """The ``attributes`` of the zarr group at the root of ``store`` (at ``url``).

    Raises
    ------
    NotOMEZarrError
        If there is no ``zarr.json``: not ``what`` (a scene, an image).
    MetadataError
        If ``zarr.json`` is not a JSON object.
    """
    data = read_bytes(store, "zarr.json")
    if data is None:
        raise NotOMEZarrError(f"{url}: no zarr.json, so not {what}")
    try:
        return json.loads(data).get("attributes", {})
    except (ValueError, AttributeError):
        raise MetadataError(f"{url}/zarr.json is not a JSON object") from None
