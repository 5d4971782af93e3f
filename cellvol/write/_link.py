"""Writing a scene: OME-Zarr 0.6 metadata that places images in one another's space.

:func:`link` writes a group holding only a ``zarr.json``: the images stay where they are and
the scene refers to them (by a relative path when the scene and the image are both local, by
URL otherwise). Each linked image gets one transformation from its ``physical`` coordinate
system into the reference image's, given as a matrix or fitted to a file of point pairs
(:mod:`cellvol.ome._points`).

An image may have channel (and time) axes besides ``z, y, x``: the transformation acts on the
spatial axes only, written as an affine over all the image's axes whose channel and time
columns are zero (see :mod:`cellvol.ome._scene`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from cellvol._store import open_store, parse_location, read_bytes, write_bytes
from cellvol.errors import (
    CellvolError,
    InvalidInputError,
    MetadataError,
    NotOMEZarrError,
    WriteConflictError,
)
from cellvol.ome._metadata import read_multiscale
from cellvol.ome._points import AffineFit, fit_affine, read_points
from cellvol.ome._scene import (
    Place,
    group_attributes,
    scene_ome,
    spatial_embedding,
    transform_json,
)
from cellvol.units import UNIT_IN_NM, normalize_unit

__all__ = ["LinkResult", "link"]

#: A transformation as :func:`link` takes it: a matrix, or ``{"scale": ..., "translation": ...}``.
Transform = npt.ArrayLike | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class LinkResult:
    """What :func:`link` wrote.

    Attributes
    ----------
    url
        The scene group.
    reference
        The image the others are placed into.
    matrices
        For each linked image, the ``4 x 4`` ``(z, y, x)`` matrix from its physical space to
        the reference's, in the images' units, as written.
    fit
        The point-pair fit, when the transformation came from a point file.
    """

    url: str
    reference: str
    matrices: Mapping[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    fit: AffineFit | None = None


@dataclass(frozen=True, slots=True)
class _Image:
    url: str
    system: str
    unit_nm: float  # the size of the image's unit in nanometres
    axes: tuple[tuple[str, bool], ...]  # (name, is spatial), in order


def link(
    scene: str | os.PathLike[str],
    images: Mapping[str, str | os.PathLike[str]],
    transforms: Mapping[str, Transform] | None = None,
    *,
    points: str | os.PathLike[str] | None = None,
    reference: str | None = None,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> LinkResult:
    """Write an OME-Zarr 0.6 scene placing images in a reference image's physical space.

    Parameters
    ----------
    scene
        Where to write the scene group (local path or ``s3://`` URL).
    images
        The images by name, e.g. ``{"em": "em.ome.zarr", "lm": "s3://b/lm.ome.zarr"}``. Each
        must be an OME-Zarr 0.6 image (write them with ``ome_version="0.6"``).
    transforms
        For each image to place, the map from its physical coordinates to the reference's,
        ``(z, y, x)`` order, in the images' units: a ``4 x 4`` or ``3 x 4`` matrix, or
        ``{"scale": [sz, sy, sx], "translation": [tz, ty, tx]}``.
    points
        A point-pair file (see :mod:`cellvol.ome._points`; positions in nanometres) whose
        column prefixes are two of the image names: the affine is fitted to it, from the first
        image named to the second.
    reference
        The image the others are placed into; by default the one image without a
        transformation.
    overwrite
        Replace a scene already at ``scene``.
    storage_options
        For S3 locations, as :func:`cellvol.open` takes them.

    Raises
    ------
    InvalidInputError
        For fewer than two images, a transformation for an unknown image or of the wrong
        shape, a reference that cannot be told, or a point file that cannot be fitted.
    NotOMEZarrError, MetadataError
        If an image is not an OME-Zarr 0.6 image cellvol can read.
    WriteConflictError
        If a group is already at ``scene`` and ``overwrite`` is False.
    """
    if len(images) < 2:
        raise InvalidInputError(f"a scene links at least two images, got {list(images)}")
    given = {name: _matrix(value, name) for name, value in (transforms or {}).items()}
    fit = None
    if points is not None:
        fit = fit_affine(read_points(points))
        moving, fixed = fit.pairs.moving, fit.pairs.reference
        for name in (moving, fixed):
            if name not in images:
                raise InvalidInputError(
                    f"{os.fspath(points)} names the image {name!r}; the scene's images are "
                    f"{sorted(images)}"
                )
        if reference is not None and reference != fixed:
            raise InvalidInputError(
                f"{os.fspath(points)} places {moving!r} into {fixed!r}, not into the reference "
                f"{reference!r}"
            )
        reference = fixed
    for name in given:
        if name not in images:
            raise InvalidInputError(f"a transformation for {name!r}, which is not an image: "
                                    f"the scene's images are {sorted(images)}")  # fmt: skip
    reference = _reference(images, given, reference, fit)
    opened = {name: _open_image(url, storage_options) for name, url in images.items()}
    matrices = dict(given)
    if fit is not None:
        moving = fit.pairs.moving
        if moving in matrices:
            raise InvalidInputError(f"{moving!r} has a transformation and a point file: give one")
        # Nanometres to each image's own unit.
        into = np.diag([1 / opened[reference].unit_nm] * 3 + [1.0])
        out_of = np.diag([opened[moving].unit_nm] * 3 + [1.0])
        matrices[moving] = into @ fit.matrix @ out_of
    missing = sorted(set(images) - set(matrices) - {reference})
    if missing:
        raise InvalidInputError(
            f"no transformation places {missing} into {reference!r}: give transforms= or a "
            "point file"
        )
    location = parse_location(scene)
    target = Place(_relative(opened[reference].url, location.url), opened[reference].system)
    entries = []
    for name, matrix in matrices.items():
        image = opened[name]
        for each in (name, reference):
            spatial = [axis for axis, is_spatial in opened[each].axes if is_spatial]
            if spatial != ["z", "y", "x"]:
                axes = [axis for axis, _ in opened[each].axes]
                raise InvalidInputError(
                    f"{opened[each].url} has axes {axes}: a scene links images whose spatial "
                    "axes are z, y, x (channel and time axes may come before them)"
                )
        source = Place(_relative(image.url, location.url), image.system)
        full = spatial_embedding(matrix, image.axes, opened[reference].axes)
        entries.append(transform_json(full, source, target, f"{name} to {reference}"))
    # The names given here, so that open_scene calls the images the same (the scene has none).
    names = {name: _relative(opened[name].url, location.url) for name in images}
    document = {"ome": scene_ome(entries), "cellvol": {"images": names}}
    _write(location.url, document, overwrite, storage_options)
    return LinkResult(location.url, reference, matrices, fit)


def _matrix(value: Transform, name: str) -> npt.NDArray[np.float64]:
    if isinstance(value, Mapping):
        unknown = set(value) - {"scale", "translation"}
        if unknown:
            raise InvalidInputError(
                f"the transformation of {name!r} has {sorted(unknown)}; expected a matrix or "
                "'scale' and/or 'translation'"
            )
        matrix = np.eye(4)
        try:
            matrix[:3, :3] = np.diag(np.asarray(value.get("scale", [1, 1, 1]), dtype=float))
            matrix[:3, 3] = np.asarray(value.get("translation", [0, 0, 0]), dtype=float)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"the scale and translation of {name!r} must each be 3 numbers (z, y, x), got "
                f"{dict(value)}"
            ) from None
        return matrix
    try:
        rows = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"the transformation of {name!r} is not a matrix of numbers"
        ) from None
    if rows.shape == (3, 4):
        rows = np.vstack([rows, [0, 0, 0, 1]])
    if rows.shape != (4, 4) or not np.allclose(rows[3], [0, 0, 0, 1]):
        raise InvalidInputError(
            f"the transformation of {name!r} must be a 4 x 4 affine (last row 0 0 0 1) or its "
            f"3 x 4 top, got shape {rows.shape}"
        )
    if not np.all(np.isfinite(rows)) or abs(np.linalg.det(rows)) < 1e-12:
        raise InvalidInputError(f"the transformation of {name!r} is not invertible (or finite)")
    return rows


def _reference(
    images: Mapping[str, Any],
    given: Mapping[str, Any],
    reference: str | None,
    fit: AffineFit | None,
) -> str:
    if reference is not None:
        if reference not in images:
            raise InvalidInputError(f"reference {reference!r} is not one of {sorted(images)}")
        if reference in given:
            raise InvalidInputError(f"the reference {reference!r} is placed into itself")
        return reference
    moving = set(given) | ({fit.pairs.moving} if fit is not None else set())
    free = [name for name in images if name not in moving]
    if len(free) != 1:
        raise InvalidInputError(
            f"cannot tell which image is the reference among {free or sorted(images)}: give "
            "reference= (the image the others are placed into)"
        )
    return free[0]


def _open_image(url: str | os.PathLike[str], options: Mapping[str, Any] | None) -> _Image:
    location = parse_location(url)
    store = open_store(location.url, mode="r", storage_options=options)
    attributes = group_attributes(store, location.url, "an OME-Zarr 0.6 image")
    multiscale = read_multiscale(attributes, where=location.url)
    if multiscale is None:
        raise NotOMEZarrError(f"{location.url} holds no multiscale image")
    if multiscale.default_system is None:
        raise MetadataError(
            f"{location.url} is OME-Zarr {multiscale.version}: a scene can only refer to the "
            "named coordinate systems of 0.6 images; write it again as 0.6"
        )
    unit = multiscale.spatial_unit()
    try:
        unit_nm = UNIT_IN_NM[normalize_unit(unit)] if unit else 1.0
    except CellvolError:
        raise MetadataError(f"{location.url}: its unit {unit!r} is not a length unit") from None
    spatial = set(multiscale.spatial_indices())
    axes = tuple((axis.name, i in spatial) for i, axis in enumerate(multiscale.axes))
    return _Image(location.url, multiscale.default_system, unit_nm, axes)


def _relative(image: str, scene: str) -> str:
    # Both local: a path from the scene group, so the pair can move together.
    if "://" in image or "://" in scene:
        return image
    return os.path.relpath(image, scene).replace(os.sep, "/")


def _write(
    url: str, document: Mapping[str, Any], overwrite: bool, options: Mapping[str, Any] | None
) -> None:
    store = open_store(url, mode="a", storage_options=options)
    if read_bytes(store, "zarr.json") is not None and not overwrite:
        raise WriteConflictError(f"{url} already holds a zarr group", hint="{overwrite=True}")
    body = {"zarr_format": 3, "node_type": "group", "attributes": document}
    write_bytes(store, "zarr.json", json.dumps(body, indent=2).encode())
