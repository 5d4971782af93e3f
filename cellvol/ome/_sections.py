"""OME-NGFF rules every version since 0.4 shares: ``omero`` channels, labels, plates.

:mod:`cellvol.ome._validation` (0.4, 0.5) and :mod:`cellvol.ome._validation06` (0.6) check
these parts of a document with the same functions; ``version`` says which version's details
apply (0.4 keeps a ``version`` inside each section; from 0.5 a well's path is its row name,
then its column name, which 0.6's own conformance documents break, so there it is a note).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from cellvol.ome._rules import Collector as _Collector
from cellvol.ome._rules import array as _array
from cellvol.ome._rules import is_integer as _is_integer
from cellvol.ome._rules import is_number as _is_number
from cellvol.ome._rules import obj as _object
from cellvol.ome._rules import required as _required
from cellvol.ome._rules import typed as _typed

__all__ = ["NAME", "check_label", "check_omero", "check_plate", "section", "version_04"]

NAME: Final = re.compile(r"^[A-Za-z0-9]+$")
_WELL_PATH: Final = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9]+$")


def version_04(obj: Mapping[str, Any], path: str, out: _Collector, *, required: bool) -> None:
    if "version" in obj:
        if obj["version"] != "0.4":
            out.add(f"{path}/version", f"version must be '0.4', got {obj['version']!r}")
    elif required:
        out.add(f"{path}/version", "'version' is recommended", strict=True)


def check_omero(value: object, path: str, out: _Collector) -> None:
    omero = _object(value, path, out)
    if omero is None:
        return
    _required(omero, ("channels",), path, out)
    for i, entry in enumerate(_array(omero.get("channels", []), f"{path}/channels", out) or []):
        cpath = f"{path}/channels/{i}"
        channel = _object(entry, cpath, out)
        if channel is None:
            continue
        for key, kind in (
            ("label", "string"),
            ("family", "string"),
            ("color", "string"),
            ("active", "boolean"),
        ):
            _typed(channel, key, cpath, out, kind)
        if "window" in channel:
            window = _object(channel["window"], f"{cpath}/window", out)
            if window is not None:
                _required(window, ("start", "min", "end", "max"), f"{cpath}/window", out)
                for key in ("start", "min", "end", "max"):
                    _typed(window, key, f"{cpath}/window", out, "number")


# -- labels ------------------------------------------------------------------------------------


def section(
    ns: Mapping[str, Any], key: str, base: str, version: str, out: _Collector
) -> Mapping[str, Any] | None:
    """The object under ``key`` (image-label, plate, well), with its 0.4 version checked."""
    path = f"{base}/{key}"
    if key not in ns:
        out.add(path, f"'{key}' is required for this kind of document")
        return None
    section = _object(ns[key], path, out)
    if section is not None and version == "0.4":
        version_04(section, path, out, required=True)
    return section


def check_label(ns: Mapping[str, Any], base: str, version: str, out: _Collector) -> None:
    path = f"{base}/image-label"
    label = section(ns, "image-label", base, version, out)
    if label is None:
        return
    _required(label, ("colors",), path, out, strict=True)
    if "colors" in label:
        colors = _array(label["colors"], f"{path}/colors", out, min_items=1, unique=True)
        values: set[float] = set()
        for i, entry in enumerate(colors or []):
            cpath = f"{path}/colors/{i}"
            color = _object(entry, cpath, out)
            if color is None:
                continue
            _required(color, ("label-value",), cpath, out)
            _typed(color, "label-value", cpath, out, "number")
            value: Any = color.get("label-value")
            if _is_number(value):
                if value in values:
                    out.add(f"{cpath}/label-value", f"label-value {value} has two colours")
                values.add(value)
            if "rgba" in color:
                rgba = color["rgba"]
                if not (
                    isinstance(rgba, list)
                    and len(rgba) == 4
                    and all(_is_integer(c) and 0 <= c <= 255 for c in rgba)
                ):
                    out.add(
                        f"{cpath}/rgba", f"rgba must be four integers from 0 to 255, got {rgba!r}"
                    )
    if "properties" in label:
        properties = _array(
            label["properties"], f"{path}/properties", out, min_items=1, unique=True
        )
        for i, entry in enumerate(properties or []):
            ppath = f"{path}/properties/{i}"
            prop = _object(entry, ppath, out)
            if prop is not None:
                _required(prop, ("label-value",), ppath, out)
                _typed(prop, "label-value", ppath, out, "integer")
    if "source" in label:
        source = _object(label["source"], f"{path}/source", out)
        if source is not None:
            _typed(source, "image", f"{path}/source", out, "string")


# -- plates and wells --------------------------------------------------------------------------


def check_plate(ns: Mapping[str, Any], base: str, version: str, out: _Collector) -> None:
    path = f"{base}/plate"
    plate = section(ns, "plate", base, version, out)
    if plate is None:
        return
    _required(plate, ("columns", "rows", "wells"), path, out)
    _required(plate, ("name",), path, out, strict=True)
    _typed(plate, "name", path, out, "string")
    if "field_count" in plate and not (
        _is_integer(plate["field_count"]) and plate["field_count"] > 0
    ):
        out.add(f"{path}/field_count", f"must be a positive integer, got {plate['field_count']!r}")
    names: dict[str, list[str]] = {}
    for key in ("rows", "columns"):
        names[key] = []
        if key not in plate:
            continue
        for i, entry in enumerate(
            _array(plate[key], f"{path}/{key}", out, min_items=1, unique=True) or []
        ):
            epath = f"{path}/{key}/{i}"
            item = _object(entry, epath, out)
            if item is None:
                continue
            _required(item, ("name",), epath, out)
            name = item.get("name")
            if "name" in item and not (isinstance(name, str) and NAME.match(name)):
                out.add(f"{epath}/name", f"must be letters and digits only, got {name!r}")
            if isinstance(name, str):
                if name in names[key]:
                    out.add(f"{epath}/name", f"{key[:-1]} name {name!r} is used twice")
                names[key].append(name)
    if "wells" in plate:
        for i, entry in enumerate(
            _array(plate["wells"], f"{path}/wells", out, min_items=1, unique=True) or []
        ):
            _plate_well(entry, f"{path}/wells/{i}", names, version, out)
    if "acquisitions" in plate:
        for i, entry in enumerate(_array(plate["acquisitions"], f"{path}/acquisitions", out) or []):
            _acquisition(entry, f"{path}/acquisitions/{i}", out)


def _plate_well(
    entry: object, path: str, names: Mapping[str, list[str]], version: str, out: _Collector
) -> None:
    well = _object(entry, path, out)
    if well is None:
        return
    _required(well, ("path", "rowIndex", "columnIndex"), path, out)
    well_path = well.get("path")
    if "path" in well and not (isinstance(well_path, str) and _WELL_PATH.match(well_path)):
        out.add(f"{path}/path", f"must be '<row>/<column>', got {well_path!r}")
    indices = {}
    for key, axis in (("rowIndex", "rows"), ("columnIndex", "columns")):
        value: Any = well.get(key)
        if key in well and not (_is_integer(value) and value >= 0):
            out.add(f"{path}/{key}", f"must be a non-negative integer, got {value!r}")
        elif key in well and int(value) < len(names[axis]):
            indices[axis] = names[axis][int(value)]
    if version != "0.4" and isinstance(well_path, str) and len(indices) == 2:
        expected = f"{indices['rows']}/{indices['columns']}"
        if well_path != expected:
            # 0.6's conformance documents put the column first: a note there, not an error.
            out.add(
                f"{path}/path",
                f"path {well_path!r} does not name its row and column; expected {expected!r}",
                note=version == "0.6",
            )


def _acquisition(entry: object, path: str, out: _Collector) -> None:
    acquisition = _object(entry, path, out)
    if acquisition is None:
        return
    _required(acquisition, ("id",), path, out)
    _required(acquisition, ("name", "maximumfieldcount"), path, out, strict=True)
    for key, minimum in (("id", 0), ("starttime", 0), ("endtime", 0), ("maximumfieldcount", 1)):
        value: Any = acquisition.get(key)
        if key in acquisition and not (_is_integer(value) and value >= minimum):
            out.add(f"{path}/{key}", f"must be an integer of at least {minimum}, got {value!r}")
    _typed(acquisition, "name", path, out, "string")
    _typed(acquisition, "description", path, out, "string")
