"""Reading OME-NGFF 0.6 placements: coordinate systems and transformations as matrices.

0.6 places each pyramid level in the multiscale's default coordinate system by a scale, an
identity, or a sequence of a scale and a translation; a multiscale may add transformations to
other coordinate systems (an affine into an EM volume's space, say). A reader needs each level
as a scale and a translation, and the rest as an affine matrix: :func:`level_placement` and
:func:`affine_matrix` give them, for every linear transformation type (scale, translation,
identity, affine, rotation, mapAxis, and sequences of these). Matrices are homogeneous, of
shape ``(n_out + 1, n_in + 1)``, as nested tuples.

Reading is lenient where it costs nothing: ``input``/``output`` written as bare strings (as
drafts of RFC-5 did) are read as names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from cellvol.errors import MetadataError

__all__ = ["Matrix", "affine_matrix", "is_axis_aligned", "level_placement", "reference_name"]

#: A homogeneous affine matrix, rows of floats.
Matrix = tuple[tuple[float, ...], ...]

_LINEAR: Final = ("identity", "scale", "translation", "affine", "rotation", "mapAxis", "sequence")


def reference_name(reference: object) -> str | None:
    """The coordinate system an ``input``/``output`` names (an object, or a draft's string)."""
    if isinstance(reference, str):
        return reference
    if isinstance(reference, Mapping) and isinstance(reference.get("name"), str):
        return str(reference["name"])
    return None


def affine_matrix(transform: Mapping[str, Any], n_in: int, n_out: int, label: str) -> Matrix:
    """The homogeneous matrix of a linear transformation from ``n_in`` to ``n_out`` axes.

    Raises
    ------
    MetadataError
        For a transformation that is not linear (displacements, coordinates, byDimension,
        bijection, projectAxis), one whose parameters are stored in an array (``path``), or
        parameters that do not fit the axes.
    """
    matrix = _matrix(transform, n_in, n_out, label)
    return tuple(tuple(float(v) for v in row) for row in matrix)


def is_axis_aligned(matrix: Matrix) -> bool:
    """True when a square matrix only scales and translates: nothing off its diagonal."""
    linear = np.asarray(matrix, dtype=float)[:-1, :-1]
    return bool(np.all(linear == np.diag(np.diag(linear))))


def level_placement(
    transforms: object, ndim: int, label: str
) -> tuple[tuple[float, ...], tuple[float, ...], Matrix | None]:
    """A 0.6 dataset's scale, translation and (when it rotates or shears) full affine.

    Parameters
    ----------
    transforms
        The dataset's ``coordinateTransformations`` (one transformation, by the specification).
    ndim
        The number of axes of the level's array and of the default coordinate system.
    label
        Where the dataset is, for errors.

    Returns
    -------
    scale, translation, affine
        The voxel size along each array axis and the position of the first voxel's centre;
        ``affine`` is None for a scale-and-translation placement, else the whole matrix, and
        then ``scale`` holds the length of one step along each array axis.
    """
    if not isinstance(transforms, Sequence) or isinstance(transforms, str) or not transforms:
        raise MetadataError(f"{label} has no coordinateTransformations")
    matrix = np.eye(ndim + 1)
    for transform in transforms:
        if not isinstance(transform, Mapping):
            raise MetadataError(f"{label}: a coordinate transformation must be an object")
        matrix = _matrix(transform, ndim, ndim, label) @ matrix
    linear = matrix[:-1, :-1]
    translation = tuple(float(v) for v in matrix[:-1, -1])
    aligned = is_axis_aligned(tuple(map(tuple, matrix)))
    if aligned:
        scale = tuple(float(v) for v in np.diag(linear))
        if any(s <= 0 for s in scale):
            raise MetadataError(f"{label}: scale {scale} must be positive along every axis")
        return scale, translation, None
    steps = tuple(float(v) for v in np.linalg.norm(linear, axis=0))
    return steps, translation, tuple(tuple(float(v) for v in row) for row in matrix)


def _matrix(transform: Mapping[str, Any], n_in: int, n_out: int, label: str) -> np.ndarray:
    kind = transform.get("type")
    if kind not in _LINEAR:
        raise MetadataError(
            f"{label}: a {kind!r} transformation is not linear; cellvol reads {', '.join(_LINEAR)}"
        )
    if kind in ("scale", "translation", "affine", "rotation") and kind not in transform:
        where = transform.get("path")
        raise MetadataError(
            f"{label}: the {kind} is stored in the array {where!r}; cellvol reads parameters "
            "written in the metadata only"
        )
    if kind == "sequence":
        steps = transform.get("transformations")
        if not isinstance(steps, Sequence) or isinstance(steps, str):
            raise MetadataError(f"{label}: a sequence needs a list of 'transformations'")
        if n_in != n_out:
            raise MetadataError(f"{label}: cellvol reads sequences that keep the axis count")
        matrix = np.eye(n_in + 1)
        for step in steps:
            if not isinstance(step, Mapping):
                raise MetadataError(f"{label}: a sequence's steps must be objects")
            matrix = _matrix(step, n_in, n_out, label) @ matrix
        return matrix
    if kind in ("identity", "scale", "translation", "rotation") and n_in != n_out:
        raise MetadataError(f"{label}: a {kind} maps {n_in} axes to {n_in}, not {n_out}")
    matrix = np.eye(n_out + 1, n_in + 1)
    # The homogeneous row is 0, ..., 0, 1 even when the counts differ (eye puts a 1 elsewhere).
    matrix[-1, :] = 0.0
    matrix[-1, -1] = 1.0
    if kind == "identity":
        return matrix
    if kind in ("scale", "translation"):
        values = _numbers(transform[kind], n_in, f"{label}: {kind}")
        if kind == "scale":
            matrix[:-1, :-1] = np.diag(values)
        else:
            matrix[:-1, -1] = values
        return matrix
    if kind == "mapAxis":
        order = transform.get("mapAxis")
        if not isinstance(order, Sequence) or len(order) != n_out:
            raise MetadataError(f"{label}: mapAxis {order!r} must name {n_out} input axes")
        matrix[:-1, :-1] = 0.0
        for row, axis in enumerate(order):
            if not isinstance(axis, int) or not 0 <= axis < n_in:
                raise MetadataError(f"{label}: mapAxis {order!r} names no input axis {axis!r}")
            matrix[row, axis] = 1.0
        return matrix
    rows = _rows(transform[kind], f"{label}: {kind}")
    if kind == "rotation":
        if rows.shape != (n_in, n_in):
            raise MetadataError(f"{label}: a rotation for {n_in} axes is {n_in}x{n_in}")
        matrix[:-1, :-1] = rows
        return matrix
    if rows.shape == (n_out + 1, n_in + 1):
        # The homogeneous form: its last row must be 0, ..., 0, 1, or it is no affine map.
        if not np.array_equal(rows[-1], matrix[-1]):
            raise MetadataError(
                f"{label}: an affine's last row must be {matrix[-1].tolist()}, got "
                f"{rows[-1].tolist()}"
            )
        return rows
    if rows.shape != (n_out, n_in + 1):
        raise MetadataError(
            f"{label}: an affine from {n_in} to {n_out} axes has {n_out} rows of {n_in + 1} "
            f"values, got shape {rows.shape}"
        )
    matrix[:-1, :] = rows
    return matrix


def _numbers(values: object, n: int, label: str) -> np.ndarray:
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != n:
        raise MetadataError(f"{label} {values!r} must have one number per axis ({n})")
    try:
        return np.asarray([float(v) for v in values])
    except (TypeError, ValueError):
        raise MetadataError(f"{label} {values!r} must hold numbers") from None


def _rows(values: object, label: str) -> np.ndarray:
    try:
        rows = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise MetadataError(f"{label} {values!r} must be rows of numbers") from None
    if rows.ndim != 2:
        raise MetadataError(f"{label} {values!r} must be rows of numbers")
    return rows
