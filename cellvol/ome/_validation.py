"""OME-NGFF metadata rules, as code: 0.4 and 0.5 images, labels, plates and wells here; 0.6.

0.6 documents (coordinate systems, transformations, scenes) are checked by
:mod:`cellvol.ome._validation06`, which :func:`detect` and :func:`validate` hand them to.

cellvol checks OME-Zarr attributes itself rather than loading the specification's JSON schemas
at run time (they are not shipped with the package), and it adds rules that a schema cannot
express but the specification states: a scale comes first among a dataset's transformations;
and, from 0.5 on, transformations have one value per axis and a well's path is its row name
then its column name (the 0.4 conformance suite accepts documents that break these two, so
they are not applied to 0.4). The test suite runs this module over the specification's
conformance suites, valid and invalid, and checks that it agrees with every case.

Problems come back as :class:`Problem` records whose ``path`` is a JSON pointer into the
document. ``strict`` marks rules the specification only recommends (the ``strict_*`` schemas:
names, versions, colours; and the UDUNITS-2 unit names).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, Literal

from cellvol.errors import MetadataError
from cellvol.ome._rules import SPACE_UNITS as _SPACE_UNITS
from cellvol.ome._rules import TIME_UNITS as _TIME_UNITS
from cellvol.ome._rules import Collector as _Collector
from cellvol.ome._rules import Problem
from cellvol.ome._rules import array as _array
from cellvol.ome._rules import is_integer as _is_integer
from cellvol.ome._rules import is_number as _is_number
from cellvol.ome._rules import obj as _object
from cellvol.ome._rules import required as _required
from cellvol.ome._rules import typed as _typed

__all__ = ["Kind", "Problem", "Version", "check", "detect", "validate"]

Kind = Literal["image", "label", "plate", "well", "scene", "bioformats2raw", "series"]
Version = Literal["0.4", "0.5", "0.6"]

# Read as 0.6 (the release candidate's documents too); kept in step with _validation06.VERSIONS.
_VERSIONS_06: Final = ("0.6", "0.6rc0")
_NAME: Final = re.compile(r"^[A-Za-z0-9]+$")
_WELL_PATH: Final = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9]+$")


def detect(attributes: Mapping[str, Any]) -> tuple[Kind, Version] | None:
    """The kind and version of the OME-NGFF metadata in a document, or None if it has none."""
    ome = attributes.get("ome")
    if isinstance(ome, Mapping) and ome.get("version") in _VERSIONS_06:
        from cellvol.ome._validation06 import detect06

        found = detect06(ome)
        return None if found is None else (found, "0.6")  # type: ignore[return-value]
    if isinstance(ome, Mapping):
        namespace: Mapping[str, Any] = ome
        version: Version = "0.5"
    else:
        namespace, version = attributes, "0.4"
    for key, kind in (("image-label", "label"), ("plate", "plate"), ("well", "well")):
        if key in namespace:
            return kind, version  # type: ignore[return-value]
    if "multiscales" in namespace:
        return "image", version
    return None


def validate(
    attributes: Mapping[str, Any],
    *,
    kind: Kind | None = None,
    version: Version | None = None,
    strict: bool = False,
) -> list[Problem]:
    """Every problem of an OME-NGFF attributes document.

    Parameters
    ----------
    attributes
        The zarr attributes: ``{"ome": {...}}`` for 0.5 and 0.6, the top-level keys for 0.4.
    kind, version
        What the document should be; detected from it when None. A 0.6 document with no
        kind given is checked as every kind it holds.
    strict
        Also report broken recommendations.
    """
    found = detect(attributes) if kind is None or version is None else None
    version = version or (found[1] if found else "0.5")
    if version == "0.6":
        from cellvol.ome._validation06 import validate06

        return validate06(attributes, kind=kind, strict=strict)
    kind = kind or (found[0] if found else "image")
    if kind not in ("image", "label", "plate", "well"):
        raise MetadataError(
            f"OME-NGFF {version} has no {kind!r} documents; cellvol checks "
            "images, labels, plates and wells there"
        )
    out = _Collector()
    if version == "0.5":
        ome = attributes.get("ome")
        if not isinstance(ome, Mapping):
            out.add("/ome", "an OME-Zarr 0.5 document keeps its metadata under an 'ome' object")
            return out.problems
        if ome.get("version") != "0.5":
            out.add("/ome/version", f"version must be '0.5', got {ome.get('version')!r}")
        namespace, base = ome, "/ome"
    else:
        namespace, base = attributes, ""
    {"image": _image, "label": _label, "plate": _plate, "well": _well}[kind](
        namespace, base, version, out
    )
    return [p for p in out.problems if strict or not p.strict]


def check(
    attributes: Mapping[str, Any],
    *,
    kind: Kind | None = None,
    version: Version | None = None,
    strict: bool = False,
) -> None:
    """Raise :class:`~cellvol.errors.MetadataError` listing every problem, if there are any."""
    problems = validate(attributes, kind=kind, version=version, strict=strict)
    if problems:
        raise MetadataError(
            "OME-NGFF metadata is invalid:\n" + "\n".join(f"  {p}" for p in problems)
        )


def _version_04(obj: Mapping[str, Any], path: str, out: _Collector, *, required: bool) -> None:
    if "version" in obj:
        if obj["version"] != "0.4":
            out.add(f"{path}/version", f"version must be '0.4', got {obj['version']!r}")
    elif required:
        out.add(f"{path}/version", "'version' is recommended", strict=True)


# -- images ------------------------------------------------------------------------------------


def _image(ns: Mapping[str, Any], base: str, version: Version, out: _Collector) -> None:
    if "multiscales" not in ns:
        out.add(f"{base}/multiscales", "'multiscales' is required for an image")
        return
    multiscales = _array(ns["multiscales"], f"{base}/multiscales", out, min_items=1, unique=True)
    for i, entry in enumerate(multiscales or []):
        path = f"{base}/multiscales/{i}"
        multiscale = _object(entry, path, out)
        if multiscale is not None:
            _multiscale(multiscale, path, version, out)
    if "omero" in ns:
        _omero(ns["omero"], f"{base}/omero", out)


def _multiscale(ms: Mapping[str, Any], path: str, version: Version, out: _Collector) -> None:
    _required(ms, ("datasets", "axes"), path, out)
    _required(ms, ("name",), path, out, strict=True)
    if version == "0.5":
        _required(ms, ("metadata", "type"), path, out, strict=True)
    else:
        _version_04(ms, path, out, required=False)
    _typed(ms, "name", path, out, "string")
    n_axes = _axes(ms["axes"], f"{path}/axes", out) if "axes" in ms else None
    if version == "0.4":
        n_axes = None  # see the module notes: 0.4 documents may disagree here
    if "coordinateTransformations" in ms:
        _transformations(
            ms["coordinateTransformations"], f"{path}/coordinateTransformations", n_axes, out
        )
    if "datasets" not in ms:
        return
    datasets = _array(ms["datasets"], f"{path}/datasets", out, min_items=1)
    for j, entry in enumerate(datasets or []):
        dpath = f"{path}/datasets/{j}"
        dataset = _object(entry, dpath, out)
        if dataset is None:
            continue
        _required(dataset, ("path", "coordinateTransformations"), dpath, out)
        _typed(dataset, "path", dpath, out, "string")
        if "coordinateTransformations" in dataset:
            _transformations(
                dataset["coordinateTransformations"],
                f"{dpath}/coordinateTransformations",
                n_axes,
                out,
            )


def _axes(value: object, path: str, out: _Collector) -> int | None:
    axes = _array(value, path, out, unique=True)
    if axes is None:
        return None
    if not 2 <= len(axes) <= 5:
        out.add(path, f"an image has 2 to 5 axes, got {len(axes)}")
    names: set[str] = set()
    space = 0
    for i, entry in enumerate(axes):
        apath = f"{path}/{i}"
        axis = _object(entry, apath, out)
        if axis is None:
            continue
        name, kind, unit = axis.get("name"), axis.get("type"), axis.get("unit")
        if not isinstance(name, str):
            out.add(f"{apath}/name", "every axis needs a string 'name'")
        elif name in names:
            out.add(f"{apath}/name", f"axis name {name!r} is used twice; names must be unique")
        else:
            names.add(name)
        if kind is not None and not isinstance(kind, str):
            out.add(f"{apath}/type", f"axis type must be a string, got {kind!r}")
        if unit is not None and not isinstance(unit, str):
            out.add(f"{apath}/unit", f"unit must be a string, got {unit!r}")
        elif isinstance(unit, str):
            known = _SPACE_UNITS if kind == "space" else _TIME_UNITS if kind == "time" else None
            if known is not None and unit not in known:
                out.add(
                    f"{apath}/unit",
                    f"{unit!r} is not a UDUNITS-2 {kind} unit the specification lists",
                    strict=True,
                )
        # The schema counts an axis as spatial unless it says otherwise.
        if kind in (None, "space"):
            space += 1
    if not 2 <= space <= 3:
        out.add(path, f"an image has 2 or 3 space axes, got {space}")
    return len(axes)


def _transformations(value: object, path: str, n_axes: int | None, out: _Collector) -> None:
    """Check a list of transformations; ``n_axes`` None skips the per-axis length rule."""
    transforms = _array(value, path, out, min_items=1)
    if not transforms:
        return
    kinds: list[str] = []
    for i, entry in enumerate(transforms):
        tpath = f"{path}/{i}"
        transform = _object(entry, tpath, out)
        if transform is None:
            continue
        kind = transform.get("type")
        if kind not in ("scale", "translation"):
            out.add(f"{tpath}/type", f"expected 'scale' or 'translation', got {kind!r}")
            continue
        kinds.append(kind)
        values = transform.get(kind)
        if not isinstance(values, list) or not all(_is_number(v) for v in values):
            out.add(f"{tpath}/{kind}", f"a {kind} needs an array of numbers, got {values!r}")
        elif len(values) < 2:
            out.add(f"{tpath}/{kind}", f"a {kind} needs at least 2 values, got {len(values)}")
        elif n_axes is not None and len(values) != n_axes:
            out.add(f"{tpath}/{kind}", f"{kind} has {len(values)} values for {n_axes} axes")
    if kinds.count("scale") != 1:
        out.add(path, f"exactly one 'scale' is required, got {kinds.count('scale')}")
    elif kinds[0] != "scale":
        out.add(path, "the 'scale' must come first")
    if kinds.count("translation") > 1:
        out.add(path, "at most one 'translation' is allowed")


def _omero(value: object, path: str, out: _Collector) -> None:
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


def _section(
    ns: Mapping[str, Any], key: str, base: str, version: Version, out: _Collector
) -> Mapping[str, Any] | None:
    """The object under ``key`` (image-label, plate, well), with its 0.4 version checked."""
    path = f"{base}/{key}"
    if key not in ns:
        out.add(path, f"'{key}' is required for this kind of document")
        return None
    section = _object(ns[key], path, out)
    if section is not None and version == "0.4":
        _version_04(section, path, out, required=True)
    return section


def _label(ns: Mapping[str, Any], base: str, version: Version, out: _Collector) -> None:
    path = f"{base}/image-label"
    label = _section(ns, "image-label", base, version, out)
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
    if "multiscales" in ns:  # a label image is an image too
        _image(ns, base, version, out)


# -- plates and wells --------------------------------------------------------------------------


def _plate(ns: Mapping[str, Any], base: str, version: Version, out: _Collector) -> None:
    path = f"{base}/plate"
    plate = _section(ns, "plate", base, version, out)
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
            if "name" in item and not (isinstance(name, str) and _NAME.match(name)):
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
    entry: object, path: str, names: Mapping[str, list[str]], version: Version, out: _Collector
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


def _well(ns: Mapping[str, Any], base: str, version: Version, out: _Collector) -> None:
    path = f"{base}/well"
    well = _section(ns, "well", base, version, out)
    if well is None:
        return
    _required(well, ("images",), path, out)
    for i, entry in enumerate(
        _array(well.get("images", []), f"{path}/images", out, min_items=1, unique=True) or []
    ):
        ipath = f"{path}/images/{i}"
        image = _object(entry, ipath, out)
        if image is None:
            continue
        _required(image, ("path",), ipath, out)
        image_path = image.get("path")
        if "path" in image and not (isinstance(image_path, str) and _NAME.match(image_path)):
            out.add(f"{ipath}/path", f"must be letters and digits only, got {image_path!r}")
        _typed(image, "acquisition", ipath, out, "integer")
