"""Point pairs to an affine: the way correlative (LM to EM) registrations are made in practice.

A point file matches positions of the same features (fiducial beads, landmarks) in two images,
in nanometres. As CSV, with a header naming each column ``<image>_<axis>``::

    lm_x,lm_y,lm_z,em_x,em_y,em_z
    1520.0,830.5,400.0,2210.3,1190.8,655.0
    ...

or as JSON, a list of objects with the same keys (``[{"lm_x": ..., ...}, ...]``) or
``{"points": [...]}``. The image whose columns come first is the *moving* one; the other is
the *reference*. :func:`fit_affine` finds, by linear least squares, the affine that maps the
moving positions onto the reference positions, and reports how far each pair stays apart.

Matrices here are homogeneous ``4 x 4``, in ``(z, y, x)`` order as cellvol's coordinate
systems are, although the files give ``x, y, z`` (the order people write points in).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from cellvol.errors import InvalidInputError

__all__ = ["AffineFit", "PointPairs", "fit_affine", "read_points"]

_AXES: Final = ("z", "y", "x")
#: Fewer points leave a 3-D affine (12 unknowns) undetermined; 4 fit it exactly.
MIN_POINTS: Final = 4
# A set whose thinnest extent is below this fraction of its widest is taken as coplanar (or
# collinear): the affine across that direction would be a guess.
_FLATNESS: Final = 1e-3


@dataclass(frozen=True, slots=True)
class PointPairs:
    """Matched positions of one set of features in two images, in nanometres, ``(z, y, x)``.

    Attributes
    ----------
    moving, reference
        The two images' names, as the file's columns give them.
    moving_nm, reference_nm
        ``(n, 3)`` arrays of positions, row ``i`` of each being the same feature.
    source
        Where the pairs were read from, for messages.
    """

    moving: str
    reference: str
    moving_nm: npt.NDArray[np.float64]
    reference_nm: npt.NDArray[np.float64]
    source: str = "<points>"


@dataclass(frozen=True, slots=True)
class AffineFit:
    """A least-squares affine and how well it explains the point pairs.

    Attributes
    ----------
    matrix
        The homogeneous ``4 x 4`` matrix, ``(z, y, x)`` order, from the moving image's
        positions to the reference image's (nanometres to nanometres).
    residuals_nm
        For each pair, the distance between the mapped moving point and its reference point.
    """

    matrix: npt.NDArray[np.float64]
    residuals_nm: npt.NDArray[np.float64]
    pairs: PointPairs

    @property
    def rms_nm(self) -> float:
        """Root mean square of the residuals."""
        return float(np.sqrt(np.mean(self.residuals_nm**2)))

    @property
    def max_nm(self) -> float:
        """The largest residual."""
        return float(np.max(self.residuals_nm))

    def summary(self) -> dict[str, Any]:
        """The fit as JSON-ready values: the matrix, RMS, max and every residual (nm)."""
        return {
            "moving": self.pairs.moving,
            "reference": self.pairs.reference,
            "points": len(self.residuals_nm),
            "matrix": self.matrix.tolist(),
            "rms_nm": self.rms_nm,
            "max_nm": self.max_nm,
            "residuals_nm": self.residuals_nm.tolist(),
        }


def read_points(path: str | os.PathLike[str]) -> PointPairs:
    """Read a point-pair file (CSV with a header, or JSON; see the module notes).

    Raises
    ------
    InvalidInputError
        If the file is missing, does not parse, or its columns are not ``<a>_x, <a>_y,
        <a>_z, <b>_x, <b>_y, <b>_z`` for two image names, or a value is not a number.
    """
    where = os.fspath(path)
    try:
        text = Path(where).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read the point file {where}: {exc.strerror}") from None
    rows = _json_rows(text, where) if text.lstrip()[:1] in ("[", "{") else _csv_rows(text, where)
    if not rows:
        raise InvalidInputError(f"{where} holds no point pairs")
    names = _image_names(list(rows[0]), where)
    arrays = []
    for name in names:
        values = np.empty((len(rows), 3))
        for i, row in enumerate(rows):
            for j, axis in enumerate(_AXES):
                key = f"{name}_{axis}"
                try:
                    values[i, j] = float(row[key])
                except (KeyError, TypeError, ValueError):
                    raise InvalidInputError(
                        f"{where}: point {i + 1} has no number for {key!r} (got {row.get(key)!r})"
                    ) from None
        if not np.all(np.isfinite(values)):
            raise InvalidInputError(f"{where}: the {name!r} positions must be finite numbers")
        arrays.append(values)
    return PointPairs(names[0], names[1], arrays[0], arrays[1], where)


def _csv_rows(text: str, where: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        raise InvalidInputError(f"{where} is empty: expected a CSV header such as lm_x,...,em_z")
    return [{k.strip(): v for k, v in row.items() if k is not None} for row in reader if row]


def _json_rows(text: str, where: str) -> list[dict[str, Any]]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"{where} is not valid JSON: {exc}") from None
    if isinstance(document, dict):
        document = document.get("points")
    if not isinstance(document, list) or not all(isinstance(r, dict) for r in document):
        raise InvalidInputError(
            f'{where}: expected a list of point objects ({{"lm_x": ..., "em_z": ...}}), or '
            '{"points": [...]}'
        )
    return document


def _image_names(columns: list[str], where: str) -> tuple[str, str]:
    names: list[str] = []
    for column in columns:
        name, _, axis = column.strip().rpartition("_")
        if not name or axis not in _AXES:
            raise InvalidInputError(
                f"{where}: column {column!r} is not <image>_x, <image>_y or <image>_z "
                "(expected e.g. lm_x,lm_y,lm_z,em_x,em_y,em_z)"
            )
        if name not in names:
            names.append(name)
    found = set(c.strip() for c in columns)
    if len(names) != 2 or any(f"{n}_{a}" not in found for n in names for a in _AXES):
        raise InvalidInputError(
            f"{where}: expected the x, y and z of exactly two images (e.g. lm_x,lm_y,lm_z,"
            f"em_x,em_y,em_z), got columns {columns}"
        )
    return names[0], names[1]


def fit_affine(pairs: PointPairs) -> AffineFit:
    """The affine mapping ``pairs.moving_nm`` onto ``pairs.reference_nm``, by least squares.

    Raises
    ------
    InvalidInputError
        With fewer than 4 pairs, or when either set of points is (nearly) coplanar, so that
        the affine is not determined.
    """
    moving, reference = pairs.moving_nm, pairs.reference_nm
    n = len(moving)
    if n < MIN_POINTS:
        raise InvalidInputError(
            f"{pairs.source}: {n} point pair{'s' * (n != 1)}; a 3-D affine needs at least "
            f"{MIN_POINTS} that are not coplanar"
        )
    for name, points in ((pairs.moving, moving), (pairs.reference, reference)):
        spread = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
        if spread[0] == 0 or spread[-1] < _FLATNESS * spread[0]:
            raise InvalidInputError(
                f"{pairs.source}: the {name!r} points are coplanar (or collinear), so the "
                "affine across their plane is not determined; add points off that plane"
            )
    design = np.hstack([moving, np.ones((n, 1))])
    solution, *_ = np.linalg.lstsq(design, reference, rcond=None)
    matrix = np.eye(4)
    matrix[:3, :] = solution.T
    mapped = design @ solution
    residuals = np.linalg.norm(mapped - reference, axis=1)
    return AffineFit(matrix, residuals, pairs)
