"""OME-NGFF 0.6 metadata rules, as code: coordinate systems, images, scenes, and the rest.

0.6 (RFC-5) names coordinate systems and links them with transformations. Beyond what the
specification's JSON schemas check, these rules follow its text where a schema cannot: the
names transformations refer to exist (in the same document, or, through a ``path``, in another
group when the caller can look there), a dataset's transformation ends in the multiscale's
default coordinate system (its last), the multiscale's own transformations start there, and
parameters have one value per axis of the systems they join (see
:mod:`cellvol.ome._transforms06`). Labels and plates follow 0.5's rules, which 0.6 keeps.

A document of the release candidate (``"version": "0.6rc0"``) is read as 0.6, as the released
schemas do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from cellvol.ome._rules import (
    SPACE_UNITS,
    TIME_UNITS,
    Collector,
    Problem,
    array,
    obj,
    required,
    typed,
)
from cellvol.ome._sections import check_label, check_omero, check_plate
from cellvol.ome._transforms06 import check_transformation

__all__ = ["VERSIONS", "Resolver", "detect06", "validate06"]

#: The version strings read as 0.6.
VERSIONS: Final = ("0.6", "0.6rc0")

#: Given a group path relative to the document's group, the coordinate systems found there
#: (name to number of axes), or None when there is no such OME-Zarr group; it raises
#: LookupError for a place it does not follow.
Resolver = Callable[[str], Mapping[str, int] | None]

# Keys of the ``ome`` object and the kind of document each makes, most specific first.
_KINDS: Final = (
    ("image-label", "label"),
    ("plate", "plate"),
    ("well", "well"),
    ("scene", "scene"),
    ("multiscales", "image"),
    ("bioformats2raw.layout", "bioformats2raw"),
    ("series", "series"),
)
_AXIS_TYPES: Final = (
    "array",
    "channel",
    "time",
    "space",
    "displacement",
    "coordinate",
    "frequency",
)
_FIELD_PATH: Final = re.compile(r"^[A-Za-z0-9_.-]+$")


def detect06(ome: Mapping[str, Any]) -> str | None:
    """The kind of a 0.6 ``ome`` object (``image``, ``scene``, ...), or None if it has none."""
    for key, kind in _KINDS:
        if key in ome:
            return kind
    return None


def validate06(
    attributes: Mapping[str, Any],
    *,
    kind: str | None = None,
    strict: bool = False,
    notes: bool = False,
    resolve: Resolver | None = None,
) -> list[Problem]:
    """Every problem of an OME-NGFF 0.6 attributes document.

    Parameters
    ----------
    attributes
        The group's zarr attributes, holding ``{"ome": {...}}``.
    kind
        What the document should be (``image``, ``label``, ``plate``, ``well``, ``scene``,
        ``bioformats2raw``, ``series``); every kind it holds when None.
    strict
        Also report broken recommendations.
    notes
        Also report the rules of the specification's text that its conformance documents
        break (see :attr:`Problem.note`); they never make a document invalid.
    resolve
        Looks up the coordinate systems of another group, for references through a ``path``;
        without it those references are not followed.
    """
    out = Collector()
    ome = attributes.get("ome")
    if not isinstance(ome, Mapping):
        out.add("/ome", "an OME-Zarr 0.6 document keeps its metadata under an 'ome' object")
        return out.problems
    if ome.get("version") not in VERSIONS:
        out.add("/ome/version", f"version must be '0.6', got {ome.get('version')!r}")
    kinds = [kind] if kind else [k for key, k in _KINDS if key in ome]
    if not kinds:
        keys = ", ".join(repr(key) for key, _ in _KINDS)
        out.add("/ome", f"no OME-Zarr content: expected one of {keys}")
    for found in kinds:
        _CHECKS[found](ome, out, resolve)
    return [p for p in out.problems if (strict or not p.strict) and (notes or not p.note)]


# -- coordinate systems ------------------------------------------------------------------------


def _coordinate_systems(
    value: object, path: str, out: Collector, *, min_items: int
) -> dict[str, int]:
    """Check a list of coordinate systems; return each valid name's number of axes, in order."""
    systems = array(value, path, out, min_items=min_items, unique=True)
    found: dict[str, int] = {}
    for i, entry in enumerate(systems or []):
        spath = f"{path}/{i}"
        system = obj(entry, spath, out)
        if system is None:
            continue
        required(system, ("name", "axes"), spath, out)
        name = system.get("name")
        if "name" in system and not (isinstance(name, str) and name):
            out.add(f"{spath}/name", f"must be a non-empty string, got {name!r}")
            name = None
        elif isinstance(name, str) and name in found:
            out.add(f"{spath}/name", f"coordinate system {name!r} is defined twice")
        n_axes = _axes(system["axes"], f"{spath}/axes", out) if "axes" in system else None
        if isinstance(name, str) and n_axes is not None:
            found.setdefault(name, n_axes)
    return found


def _axes(value: object, path: str, out: Collector) -> int | None:
    axes = array(value, path, out, min_items=1, unique=True)
    if axes is None:
        return None
    if len(axes) > 5:
        out.add(path, f"a coordinate system has at most 5 axes, got {len(axes)}")
    names: set[str] = set()
    types: list[object] = []
    for i, entry in enumerate(axes):
        apath = f"{path}/{i}"
        axis = obj(entry, apath, out)
        if axis is None:
            continue
        name, kind, unit = axis.get("name"), axis.get("type"), axis.get("unit")
        if not (isinstance(name, str) and name):
            out.add(f"{apath}/name", "every axis needs a non-empty string 'name'")
        elif name in names:
            out.add(f"{apath}/name", f"axis name {name!r} is used twice; names must be unique")
        else:
            names.add(name)
        for key, json_type in (
            ("type", "string"),
            ("unit", "string"),
            ("longName", "string"),
            ("discrete", "boolean"),
        ):
            typed(axis, key, apath, out, json_type)
        types.append(kind)
        if isinstance(kind, str) and kind not in _AXIS_TYPES:
            out.add(f"{apath}/type", f"{kind!r} is not an axis type of the specification",
                    strict=True)  # fmt: skip
        known = SPACE_UNITS if kind == "space" else TIME_UNITS if kind == "time" else None
        if isinstance(unit, str) and known is not None and unit not in known:
            out.add(f"{apath}/unit", f"{unit!r} is not a UDUNITS-2 {kind} unit the specification "
                    "lists", strict=True)  # fmt: skip
    # Either 2 or 3 space axes (an image's space), or an array's own axes: never both.
    space_ok = 2 <= types.count("space") <= 3
    array_ok = types.count("array") >= 2
    if space_ok == array_ok:
        out.add(
            path,
            "a coordinate system has 2 or 3 axes of type 'space', or at least 2 of type "
            f"'array' (not both); got {types.count('space')} and {types.count('array')}",
        )
    return len(axes)


def _reference(
    value: object, path: str, out: Collector, *, needs: str, only_name_path: bool = False
) -> Mapping[str, Any] | None:
    """An ``input`` or ``output``: an object naming a coordinate system and/or an array path."""
    if not isinstance(value, Mapping):
        out.add(path, f'must be an object such as {{"{needs}": ...}}, got {value!r}')
        return None
    required(value, (needs,), path, out)
    for key in ("name", "path"):
        if key in value and not isinstance(value[key], str):
            out.add(f"{path}/{key}", f"must be a string, got {value[key]!r}")
    if only_name_path:
        for key in value:
            if key not in ("name", "path"):
                out.add(f"{path}/{key}", "only 'name' and 'path' are allowed here")
    return value


def _dims(
    ref: Mapping[str, Any] | None, local: Mapping[str, int], path: str, out: Collector,
    resolve: Resolver | None, *, note: bool = False,
) -> int | None:  # fmt: skip
    """The number of axes of the coordinate system ``ref`` names, reporting one that is absent."""
    if ref is None or not isinstance(ref.get("name"), str):
        return None
    name = ref["name"]
    where = ref.get("path")
    if not where:
        if name not in local:
            known = ", ".join(repr(n) for n in local) or "none"
            out.add(f"{path}/name", f"no coordinate system {name!r} here (defined: {known})",
                    note=note)  # fmt: skip
            return None
        return local[name]
    if resolve is None or not isinstance(where, str):
        return None
    try:
        systems = resolve(where)
    except LookupError:  # a place the resolver does not follow (another store altogether)
        return None
    if systems is None:
        out.add(f"{path}/path", f"no OME-Zarr group at {where!r} to hold coordinate system "
                f"{name!r}")  # fmt: skip
        return None
    if name not in systems:
        out.add(f"{path}/name", f"the group at {where!r} has no coordinate system {name!r}")
        return None
    return systems[name]


# -- images ------------------------------------------------------------------------------------


def _image(ome: Mapping[str, Any], out: Collector, resolve: Resolver | None) -> None:
    if "multiscales" not in ome:
        out.add("/ome/multiscales", "'multiscales' is required for an image")
        return
    entries = array(ome["multiscales"], "/ome/multiscales", out, min_items=1, unique=True)
    for i, entry in enumerate(entries or []):
        path = f"/ome/multiscales/{i}"
        multiscale = obj(entry, path, out)
        if multiscale is not None:
            _multiscale(multiscale, path, out, resolve)
    if "omero" in ome:
        check_omero(ome["omero"], "/ome/omero", out)


def _multiscale(ms: Mapping[str, Any], path: str, out: Collector, resolve: Resolver | None) -> None:
    required(ms, ("datasets", "coordinateSystems"), path, out)
    required(ms, ("name", "type", "metadata"), path, out, strict=True)
    typed(ms, "name", path, out, "string")
    systems: dict[str, int] = {}
    default: str | None = None
    if "coordinateSystems" in ms:
        systems = _coordinate_systems(
            ms["coordinateSystems"], f"{path}/coordinateSystems", out, min_items=1
        )
        listed = ms["coordinateSystems"]
        if isinstance(listed, list) and listed and isinstance(listed[-1], Mapping):
            last = listed[-1].get("name")
            default = last if isinstance(last, str) and last in systems else None
    if "datasets" in ms:
        datasets = array(ms["datasets"], f"{path}/datasets", out, min_items=1)
        for j, entry in enumerate(datasets or []):
            _dataset(entry, f"{path}/datasets/{j}", out, systems, default)
    if "coordinateTransformations" in ms:
        tpath = f"{path}/coordinateTransformations"
        transforms = array(ms["coordinateTransformations"], tpath, out, min_items=1)
        for k, entry in enumerate(transforms or []):
            _multiscale_transform(entry, f"{tpath}/{k}", out, systems, default, resolve)


def _dataset(
    entry: object, path: str, out: Collector, systems: Mapping[str, int], default: str | None
) -> None:
    dataset = obj(entry, path, out)
    if dataset is None:
        return
    required(dataset, ("path", "coordinateTransformations"), path, out)
    typed(dataset, "path", path, out, "string")
    if "coordinateTransformations" not in dataset:
        return
    tpath = f"{path}/coordinateTransformations"
    transforms = array(dataset["coordinateTransformations"], tpath, out, unique=True)
    if transforms is None:
        return
    if len(transforms) != 1:
        out.add(tpath, f"a dataset has exactly one transformation, got {len(transforms)}")
    for k, item in enumerate(transforms):
        ipath = f"{tpath}/{k}"
        kind = check_transformation(item, ipath, out)
        if kind is None or not isinstance(item, Mapping):
            continue
        if kind == "sequence":
            _scale_then_translation(item, ipath, out)
        elif kind not in ("scale", "identity"):
            out.add(f"{ipath}/type", "a dataset's transformation is a scale, an identity, or a "
                    f"sequence of one scale and one translation; got {kind!r}")  # fmt: skip
        required(item, ("input", "output"), ipath, out)
        if "input" in item:
            source = _reference(item["input"], f"{ipath}/input", out, needs="path")
            array_path = dataset.get("path")
            if (
                source is not None
                and isinstance(source.get("path"), str)
                and (source["path"] != array_path)
            ):
                out.add(f"{ipath}/input/path", f"should be the dataset's path {array_path!r}, "
                        f"got {source['path']!r}", note=True)  # fmt: skip
        if "output" in item:
            target = _reference(item["output"], f"{ipath}/output", out, needs="name")
            name = target.get("name") if target is not None else None
            if isinstance(name, str) and name not in systems:
                out.add(f"{ipath}/output/name", f"no coordinate system {name!r} here")
            elif isinstance(name, str) and default is not None and name != default:
                out.add(f"{ipath}/output/name", f"must be the default (last) coordinate system "
                        f"{default!r}, got {name!r}", note=True)  # fmt: skip
            if isinstance(name, str) and name in systems:
                _per_axis(item, ipath, out, systems[name])


def _per_axis(item: Mapping[str, Any], path: str, out: Collector, n: int) -> None:
    """A dataset's scale and translation have one value per axis of its coordinate system."""
    steps = item.get("transformations") if item.get("type") == "sequence" else [item]
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        kind = step.get("type") if isinstance(step, Mapping) else None
        values = step.get(kind) if isinstance(step, Mapping) and isinstance(kind, str) else None
        spath = f"{path}/transformations/{i}" if step is not item else path
        if kind in ("scale", "translation") and isinstance(values, list) and len(values) != n:
            # The 0.6 conformance documents hold one such (mismatch_axes_units): a note.
            out.add(f"{spath}/{kind}", f"{kind} has {len(values)} values for {n} axes", note=True)


def _scale_then_translation(item: Mapping[str, Any], path: str, out: Collector) -> None:
    steps = item.get("transformations")
    kinds = [s.get("type") for s in steps if isinstance(s, Mapping)] if isinstance(
        steps, list
    ) else []  # fmt: skip
    if sorted(map(str, kinds)) != ["scale", "translation"] or len(kinds) != len(steps or []):
        out.add(f"{path}/transformations", "a dataset's sequence is one scale and one "
                f"translation, got {kinds!r}")  # fmt: skip


def _multiscale_transform(
    entry: object, path: str, out: Collector, systems: Mapping[str, int], default: str | None,
    resolve: Resolver | None,
) -> None:  # fmt: skip
    transform = obj(entry, path, out)
    if transform is None:
        return
    required(transform, ("input", "output"), path, out)
    source = target = None
    if "input" in transform:
        source = _reference(transform["input"], f"{path}/input", out, needs="name")
    if "output" in transform:
        target = _reference(transform["output"], f"{path}/output", out, needs="name")
    # The conformance documents break each of these rules of the text once: notes, not errors.
    n_in = _dims(source, systems, f"{path}/input", out, resolve, note=True)
    n_out = _dims(target, systems, f"{path}/output", out, resolve, note=True)
    check_transformation(transform, path, out, n_in=n_in, n_out=n_out)
    if source is not None and default is not None and source.get("name") != default:
        out.add(f"{path}/input/name", f"must be the default (last) coordinate system "
                f"{default!r}, got {source.get('name')!r}", note=True)  # fmt: skip
    if target is not None and not target.get("path") and target.get("name") == default:
        out.add(f"{path}/output/name", "must differ from the default coordinate system",
                note=True)  # fmt: skip


# -- scenes ------------------------------------------------------------------------------------


def _scene(ome: Mapping[str, Any], out: Collector, resolve: Resolver | None) -> None:
    path = "/ome/scene"
    scene = obj(ome.get("scene"), path, out) if "scene" in ome else None
    if scene is None:
        if "scene" not in ome:
            out.add(path, "'scene' is required for a scene")
        return
    systems: dict[str, int] = {}
    if "coordinateSystems" in scene:
        systems = _coordinate_systems(
            scene["coordinateSystems"], f"{path}/coordinateSystems", out, min_items=0
        )
    required(scene, ("coordinateTransformations",), path, out)
    tpath = f"{path}/coordinateTransformations"
    transforms = array(scene.get("coordinateTransformations", []), tpath, out, min_items=1)
    for k, entry in enumerate(transforms or []):
        ipath = f"{tpath}/{k}"
        transform = obj(entry, ipath, out)
        if transform is None:
            continue
        required(transform, ("input", "output"), ipath, out)
        refs = [
            _reference(transform[key], f"{ipath}/{key}", out, needs="name", only_name_path=True)
            if key in transform
            else None
            for key in ("input", "output")
        ]
        n_in = _dims(refs[0], systems, f"{ipath}/input", out, resolve)
        n_out = _dims(refs[1], systems, f"{ipath}/output", out, resolve)
        check_transformation(transform, ipath, out, n_in=n_in, n_out=n_out)


# -- labels, plates, wells, collections --------------------------------------------------------


def _label(ome: Mapping[str, Any], out: Collector, resolve: Resolver | None) -> None:
    # The image-label object is as in 0.5; the multiscales beside it are checked as 0.6.
    check_label({k: v for k, v in ome.items() if k != "multiscales"}, "/ome", "0.5", out)
    if "multiscales" in ome:
        _image(ome, out, resolve)


def _plate(ome: Mapping[str, Any], out: Collector, resolve: Resolver | None) -> None:
    check_plate(ome, "/ome", "0.6", out)


def _well(ome: Mapping[str, Any], out: Collector, resolve: Resolver | None) -> None:
    path = "/ome/well"
    well = obj(ome.get("well"), path, out)
    if well is None:
        return
    required(well, ("images",), path, out)
    images = array(well.get("images", []), f"{path}/images", out, min_items=1, unique=True)
    seen: set[str] = set()
    for i, entry in enumerate(images or []):
        ipath = f"{path}/images/{i}"
        image = obj(entry, ipath, out)
        if image is None:
            continue
        required(image, ("path",), ipath, out)
        typed(image, "acquisition", ipath, out, "integer")
        field = image.get("path")
        if "path" not in image:
            continue
        # Letters, digits, '_', '.', '-'; not only dots, not starting '__' (zarr's reserved).
        if not (
            isinstance(field, str)
            and _FIELD_PATH.match(field)
            and field.strip(".")
            and not field.startswith("__")
        ):
            out.add(f"{ipath}/path", "must be letters, digits, '_', '.' or '-', not only dots "
                    f"and not starting '__'; got {field!r}")  # fmt: skip
        elif field in seen:
            out.add(f"{ipath}/path", f"field path {field!r} is listed twice")
        else:
            seen.add(field)


def _bioformats2raw(ome: Mapping[str, Any], out: Collector, resolve: Resolver | None) -> None:
    layout = ome.get("bioformats2raw.layout")
    if layout != 3 or isinstance(layout, bool):
        out.add("/ome/bioformats2raw.layout", f"must be 3, got {layout!r}")


def _series(ome: Mapping[str, Any], out: Collector, resolve: Resolver | None) -> None:
    series = array(ome.get("series"), "/ome/series", out)
    for i, item in enumerate(series or []):
        if not isinstance(item, str):
            out.add(f"/ome/series/{i}", f"must be a string (an image's path), got {item!r}")


_CHECKS: Final[dict[str, Callable[[Mapping[str, Any], Collector, Resolver | None], None]]] = {
    "image": _image,
    "label": _label,
    "plate": _plate,
    "well": _well,
    "scene": _scene,
    "bioformats2raw": _bioformats2raw,
    "series": _series,
}
