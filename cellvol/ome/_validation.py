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

from collections.abc import Mapping
from typing import Any, Literal

from cellvol.errors import MetadataError
from cellvol.ome._rules import SPACE_UNITS as _SPACE_UNITS
from cellvol.ome._rules import TIME_UNITS as _TIME_UNITS
from cellvol.ome._rules import Collector as _Collector
from cellvol.ome._rules import Problem
from cellvol.ome._rules import array as _array
from cellvol.ome._rules import is_number as _is_number
from cellvol.ome._rules import obj as _object
from cellvol.ome._rules import required as _required
from cellvol.ome._rules import typed as _typed
from cellvol.ome._sections import NAME, check_label, check_omero, check_plate, section, version_04
from cellvol.ome._validation06 import VERSIONS as _VERSIONS_06
from cellvol.ome._validation06 import detect06, validate06

__all__ = ["Kind", "Problem", "Version", "check", "detect", "validate"]

Kind = Literal["image", "label", "plate", "well", "scene", "bioformats2raw", "series"]
Version = Literal["0.4", "0.5", "0.6"]


def detect(attributes: Mapping[str, Any]) -> tuple[Kind, Version] | None:
    """The kind and version of the OME-NGFF metadata in a document, or None if it has none."""
    ome = attributes.get("ome")
    if isinstance(ome, Mapping) and ome.get("version") in _VERSIONS_06:
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
    notes: bool = False,
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
    notes
        Also report the 0.6 rules that only make notes (see :attr:`Problem.note`).
    """
    found = detect(attributes) if kind is None or version is None else None
    version = version or (found[1] if found else "0.5")
    if version == "0.6":
        return validate06(attributes, kind=kind, strict=strict, notes=notes)
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
    if kind == "label":
        check_label(namespace, base, version, out)
        if "multiscales" in namespace:  # a label image is an image too
            _image(namespace, base, version, out)
    elif kind == "plate":
        check_plate(namespace, base, version, out)
    else:
        {"image": _image, "well": _well}[kind](namespace, base, version, out)
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
        check_omero(ns["omero"], f"{base}/omero", out)


def _multiscale(ms: Mapping[str, Any], path: str, version: Version, out: _Collector) -> None:
    _required(ms, ("datasets", "axes"), path, out)
    _required(ms, ("name",), path, out, strict=True)
    if version == "0.5":
        _required(ms, ("metadata", "type"), path, out, strict=True)
    else:
        version_04(ms, path, out, required=False)
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


def _well(ns: Mapping[str, Any], base: str, version: Version, out: _Collector) -> None:
    path = f"{base}/well"
    well = section(ns, "well", base, version, out)
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
        if "path" in image and not (isinstance(image_path, str) and NAME.match(image_path)):
            out.add(f"{ipath}/path", f"must be letters and digits only, got {image_path!r}")
        _typed(image, "acquisition", ipath, out, "integer")
