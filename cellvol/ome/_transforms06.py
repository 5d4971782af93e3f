"""OME-NGFF 0.6 coordinate transformations (RFC-5), as rules: each type's parameters.

A transformation is checked on its own here; where it sits (a dataset's, a multiscale's, a
scene's) decides which ``input`` and ``output`` it needs, and that is for
:mod:`cellvol.ome._validation06`. When the caller knows how many axes the input and output
coordinate systems have, the parameters are checked against them too: a scale has one value
per axis, an affine has one row per output axis and one column per input axis plus one, a
``mapAxis`` names input axes that exist. JSON Schema cannot say these; the specification does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from cellvol.ome._rules import Collector, array, is_integer, is_number, obj

__all__ = ["TYPES", "check_transformation"]

#: Every transformation type 0.6 defines.
TYPES: Final = (
    "identity",
    "mapAxis",
    "projectAxis",
    "scale",
    "translation",
    "affine",
    "rotation",
    "bijection",
    "sequence",
    "byDimension",
    "displacements",
    "coordinates",
)
_INTERPOLATIONS: Final = ("nearest", "linear", "cubic")
# The schema's bound on axis indices: a coordinate system has at most five axes.
_MAX_INDEX: Final = 4


def check_transformation(
    value: object,
    path: str,
    out: Collector,
    *,
    n_in: int | None = None,
    n_out: int | None = None,
    in_sequence: bool = False,
) -> str | None:
    """Check one transformation's type and parameters; return its type when it has a known one.

    Parameters
    ----------
    value
        The transformation object.
    path
        Its JSON pointer, for problems.
    out
        Where problems go.
    n_in, n_out
        How many axes its input and output coordinate systems have, when known.
    in_sequence
        True inside a ``sequence``, which may not hold another sequence.
    """
    transform = obj(value, path, out)
    if transform is None:
        return None
    kind = transform.get("type")
    if "type" not in transform:
        out.add(f"{path}/type", "'type' is required")
        return None
    if kind not in TYPES:
        out.add(f"{path}/type", f"unknown transformation type {kind!r}; expected one of {TYPES}")
        return None
    if "name" in transform and not isinstance(transform["name"], str):
        out.add(f"{path}/name", f"must be a string, got {transform['name']!r}")
    if kind == "sequence" and in_sequence:
        out.add(f"{path}/type", "a sequence may not be part of another sequence")
    _CHECKS[kind](transform, path, out, n_in, n_out)
    return str(kind)


def _equal_dims(n_in: int | None, n_out: int | None) -> int | None:
    return n_in if n_out is None else n_out


def _identity(t: Mapping[str, Any], path: str, out: Collector, n_in: Any, n_out: Any) -> None:
    if n_in is not None and n_out is not None and n_in != n_out:
        out.add(path, f"an identity maps {n_in} input axes to {n_out} output axes; they must match")


def _vector(t: Mapping[str, Any], key: str, path: str, out: Collector, n: int | None) -> None:
    if key not in t:
        hint = " (a path to an array is not allowed here)" if "path" in t else ""
        out.add(f"{path}/{key}", f"'{key}' is required{hint}")
        return
    values = t[key]
    if not isinstance(values, list) or not all(is_number(v) for v in values):
        out.add(f"{path}/{key}", f"a {key} needs an array of numbers, got {values!r}")
        return
    if key == "scale" and any(v <= 0 for v in values):
        out.add(f"{path}/{key}", f"scale values must be greater than 0, got {values!r}")
    if n is not None and len(values) != n:
        out.add(f"{path}/{key}", f"{key} has {len(values)} values for {n} axes")


def _scale(t: Mapping[str, Any], path: str, out: Collector, n_in: Any, n_out: Any) -> None:
    _vector(t, "scale", path, out, _equal_dims(n_in, n_out))


def _translation(t: Mapping[str, Any], path: str, out: Collector, n_in: Any, n_out: Any) -> None:
    _vector(t, "translation", path, out, _equal_dims(n_in, n_out))


def _indices(
    value: object, path: str, out: Collector, *, min_items: int, max_items: int, bound: int | None
) -> list[int] | None:
    """An array of distinct axis indices, each below ``bound`` (when known) and the schema's 4."""
    items = array(value, path, out, min_items=min_items, unique=True)
    if items is None:
        return None
    if len(items) > max_items:
        out.add(path, f"must have at most {max_items} items, got {len(items)}")
    limit = _MAX_INDEX if bound is None else min(_MAX_INDEX, bound - 1)
    good: list[int] = []
    for i, item in enumerate(items):
        if not (is_integer(item) and 0 <= item <= limit):
            out.add(f"{path}/{i}", f"must be an axis index from 0 to {limit}, got {item!r}")
        else:
            good.append(int(item))
    return good


def _map_axis(t: Mapping[str, Any], path: str, out: Collector, n_in: Any, n_out: Any) -> None:
    if "mapAxis" not in t:
        out.add(f"{path}/mapAxis", "'mapAxis' is required")
        return
    indices = _indices(t["mapAxis"], f"{path}/mapAxis", out, min_items=2, max_items=5, bound=n_in)
    if indices is not None and n_out is not None and len(t["mapAxis"]) != n_out:
        out.add(f"{path}/mapAxis", f"names {len(t['mapAxis'])} axes for {n_out} output axes")


def _project_axis(t: Mapping[str, Any], path: str, out: Collector, n_in: Any, n_out: Any) -> None:
    if "droppedInputs" not in t and "createdOutputs" not in t:
        out.add(path, "a projectAxis needs 'droppedInputs', 'createdOutputs' or both")
        return
    dropped = created = 0
    if "droppedInputs" in t:
        found = _indices(
            t["droppedInputs"], f"{path}/droppedInputs", out, min_items=1, max_items=3, bound=n_in
        )
        dropped = len(found or [])
    if "createdOutputs" in t:
        found = _indices(
            t["createdOutputs"],
            f"{path}/createdOutputs",
            out,
            min_items=1,
            max_items=3,
            bound=n_out,
        )
        created = len(found or [])
    if n_in is not None and n_out is not None and n_in - dropped + created != n_out:
        out.add(path, f"{n_in} input axes, less {dropped} dropped and plus {created} created, "
                f"are not the {n_out} output axes")  # fmt: skip


def _matrix(value: object, path: str, out: Collector) -> list[list[float]] | None:
    if not (
        isinstance(value, list)
        and value
        and all(isinstance(row, list) and all(is_number(v) for v in row) for row in value)
    ):
        out.add(path, f"must be an array of arrays of numbers, got {value!r}")
        return None
    return value


def _path_or_matrix(t: Mapping[str, Any], key: str, path: str, out: Collector) -> list[Any] | None:
    if ("path" in t) == (key in t):
        out.add(path, f"a {key} needs exactly one of '{key}' (the matrix) or 'path' (an array)")
        return None
    if "path" in t:
        if not isinstance(t["path"], str):
            out.add(f"{path}/path", f"must be a string, got {t['path']!r}")
        return None
    return _matrix(t[key], f"{path}/{key}", out)


def _affine(t: Mapping[str, Any], path: str, out: Collector, n_in: Any, n_out: Any) -> None:
    matrix = _path_or_matrix(t, "affine", path, out)
    if matrix is None:
        return
    widths = {len(row) for row in matrix}
    if len(widths) != 1:
        out.add(f"{path}/affine", "every row of an affine must have the same length")
        return
    width = widths.pop()
    if n_in is not None and width != n_in + 1:
        out.add(f"{path}/affine", f"rows have {width} values; {n_in} input axes need {n_in + 1}")
    if n_out is not None and len(matrix) not in (n_out, n_out + 1):
        out.add(f"{path}/affine", f"{len(matrix)} rows for {n_out} output axes")
    if n_out is not None and len(matrix) == n_out + 1 and matrix[-1] != [0] * (width - 1) + [1]:
        out.add(f"{path}/affine", "an extra last row must be [0, ..., 0, 1]")


def _rotation(t: Mapping[str, Any], path: str, out: Collector, n_in: Any, n_out: Any) -> None:
    matrix = _path_or_matrix(t, "rotation", path, out)
    if matrix is None:
        return
    n = len(matrix)
    if not 2 <= n <= 5 or any(len(row) != n for row in matrix):
        out.add(f"{path}/rotation", f"must be a square matrix of 2 to 5 rows, got {matrix!r}")
    elif _equal_dims(n_in, n_out) not in (None, n):
        out.add(f"{path}/rotation", f"a {n}x{n} rotation for {_equal_dims(n_in, n_out)} axes")


def _bijection(t: Mapping[str, Any], path: str, out: Collector, n_in: Any, n_out: Any) -> None:
    for key, dims in (("forward", (n_in, n_out)), ("inverse", (n_out, n_in))):
        if key not in t:
            out.add(f"{path}/{key}", f"'{key}' is required")
        else:
            check_transformation(t[key], f"{path}/{key}", out, n_in=dims[0], n_out=dims[1])


def _sequence(t: Mapping[str, Any], path: str, out: Collector, n_in: Any, n_out: Any) -> None:
    if "transformations" not in t:
        out.add(f"{path}/transformations", "'transformations' is required")
        return
    items = array(t["transformations"], f"{path}/transformations", out)
    # Axis counts between the steps are unknown unless every step keeps them.
    for i, item in enumerate(items or []):
        dims = _equal_dims(n_in, n_out) if n_in == n_out else None
        check_transformation(
            item, f"{path}/transformations/{i}", out, n_in=dims, n_out=dims, in_sequence=True
        )


def _by_dimension(t: Mapping[str, Any], path: str, out: Collector, n_in: Any, n_out: Any) -> None:
    if "transformations" not in t:
        out.add(f"{path}/transformations", "'transformations' is required")
        return
    items = array(t["transformations"], f"{path}/transformations", out)
    covered: list[int] = []
    for i, item in enumerate(items or []):
        ipath = f"{path}/transformations/{i}"
        child = obj(item, ipath, out)
        if child is None:
            continue
        axes: dict[str, Sequence[Any]] = {}
        for key, bound in (("inputAxes", n_in), ("outputAxes", n_out)):
            if key not in child:
                out.add(f"{ipath}/{key}", f"'{key}' is required")
                continue
            found = _axis_numbers(child[key], f"{ipath}/{key}", out, bound)
            if found is not None:
                axes[key] = found
        covered.extend(int(a) for a in axes.get("outputAxes", []))
        if "transformation" not in child:
            out.add(f"{ipath}/transformation", "'transformation' is required")
        else:
            check_transformation(
                child["transformation"],
                f"{ipath}/transformation",
                out,
                n_in=len(axes["inputAxes"]) if "inputAxes" in axes else None,
                n_out=len(axes["outputAxes"]) if "outputAxes" in axes else None,
            )
    if n_out is not None and items:
        for axis in range(n_out):
            if covered.count(axis) != 1:
                # A rule of the text that a 0.6 conformance document breaks: a note.
                out.add(
                    f"{path}/transformations",
                    f"output axis {axis} must be in exactly one child's outputAxes, "
                    f"found in {covered.count(axis)}",
                    note=True,
                )


def _axis_numbers(value: object, path: str, out: Collector, bound: int | None) -> list[Any] | None:
    items = array(value, path, out)
    if items is None:
        return None
    if not all(is_integer(v) and v >= 0 for v in items):
        out.add(path, f"must be an array of axis indices, got {items!r}")
        return None
    if bound is not None and any(v >= bound for v in items):
        out.add(path, f"axis indices must be below {bound}, got {items!r}")
    return list(items)


def _field(t: Mapping[str, Any], path: str, out: Collector, n_in: Any, n_out: Any) -> None:
    if not isinstance(t.get("path"), str):
        out.add(f"{path}/path", f"a {t['type']} needs the 'path' of its array, as a string")
    if "interpolation" in t and t["interpolation"] not in _INTERPOLATIONS:
        out.add(
            f"{path}/interpolation",
            f"must be one of {_INTERPOLATIONS}, got {t['interpolation']!r}",
        )


_CHECKS: Final = {
    "identity": _identity,
    "mapAxis": _map_axis,
    "projectAxis": _project_axis,
    "scale": _scale,
    "translation": _translation,
    "affine": _affine,
    "rotation": _rotation,
    "bijection": _bijection,
    "sequence": _sequence,
    "byDimension": _by_dimension,
    "displacements": _field,
    "coordinates": _field,
}
