"""Validate what a path names: a zarr group's OME-NGFF metadata, or one attributes document.

:func:`validate` reads the group's ``zarr.json`` (or a 0.4 group's ``.zattrs``) from a local
directory, an ``s3://`` or ``http(s)://`` URL or a ``.ozx`` archive, checks it with
:mod:`cellvol.ome._validation`, and for 0.6 follows the ``path`` of each reference to another
group (a scene's images, an image's labels) to check that the coordinate system it names is
there. A path to a ``.json`` file is checked as one document: the attributes themselves, or a
``zarr.json`` whose ``attributes`` are read.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellvol._store import open_store, read_bytes
from cellvol.errors import CellvolError, MetadataError
from cellvol.ome._metadata import read_multiscale
from cellvol.ome._rules import Problem
from cellvol.ome._validation import detect
from cellvol.ome._validation import validate as validate_document
from cellvol.ome._validation06 import VERSIONS, validate06

__all__ = ["Validation", "validate"]


@dataclass(frozen=True, slots=True)
class Validation:
    """The verdict on one OME-Zarr group or attributes document.

    Attributes
    ----------
    target
        What was checked, as given.
    valid
        True when no problem was found (notes do not count).
    kind, version
        What the metadata is (``image``, ``scene``, ...; ``0.4`` to ``0.6``), when known.
    problems
        Every problem, as a JSON pointer into the document and a message.
    notes
        Rules of the specification's text that its conformance documents break; they do not
        make the document invalid.
    """

    target: str
    valid: bool
    kind: str | None = None
    version: str | None = None
    problems: tuple[Problem, ...] = ()
    notes: tuple[Problem, ...] = ()

    @property
    def message(self) -> str | None:
        """One line saying why the target is invalid; None when it is valid."""
        if self.valid:
            return None
        first = str(self.problems[0]) if self.problems else "invalid"
        more = len(self.problems) - 1
        return first + (f" (and {more} more problem{'s' * (more > 1)})" if more > 0 else "")

    def as_json(self) -> dict[str, Any]:
        """The verdict as ``{"valid", "message", "problems", ...}``, for ``--json``."""
        return {
            "valid": self.valid,
            "message": self.message,
            "problems": [_problem_json(p) for p in self.problems],
            "notes": [_problem_json(p) for p in self.notes],
            "kind": self.kind,
            "version": self.version,
            "target": self.target,
        }


def _problem_json(problem: Problem) -> dict[str, Any]:
    return {"path": problem.path, "message": problem.message, "strict": problem.strict}


def validate(
    path_or_url: str | os.PathLike[str],
    *,
    strict: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> Validation:
    """Check the OME-NGFF metadata of a zarr group, or of one attributes JSON document.

    Parameters
    ----------
    path_or_url
        A zarr group (local directory, ``s3://``, ``http(s)://``, ``.ozx``), or a local
        ``.json`` file: an attributes document or a ``zarr.json``.
    strict
        Also count the specification's recommendations (names, units, axis types...).
    storage_options
        For S3 and HTTP, as :func:`cellvol.open` takes them.

    Returns
    -------
    Validation
        The verdict; a group that cannot be read as JSON, or holds no OME-NGFF metadata, is
        invalid.

    Raises
    ------
    StoreNotFoundError
        If nothing is at ``path_or_url``.
    InvalidInputError, UnsupportedURLError, AccessDeniedError
        If the location cannot be opened at all.
    """
    target = os.fspath(path_or_url)
    local = Path(target) if "://" not in target else None
    if local is not None and local.is_file() and not target.endswith(".ozx"):
        if local.name != "zarr.json":
            return _judge(target, _read_json(local.read_bytes(), target), strict, None)
        target, local = os.fspath(local.parent), local.parent
    group = _Group(target, storage_options)
    attributes = group.attributes("")
    found = _judge(target, attributes, strict, group.coordinate_systems)
    if found.valid and found.kind in ("image", "label") and not isinstance(attributes, Problem):
        mismatched = tuple(group.array_dimensions(attributes))
        if mismatched:
            return Validation(target, False, found.kind, found.version, mismatched, found.notes)
    return found


def _read_json(data: bytes, where: str) -> Mapping[str, Any] | Problem:
    try:
        document = json.loads(data)
    except ValueError as exc:
        return Problem("", f"{where} is not JSON: {exc}")
    if not isinstance(document, Mapping):
        return Problem("", f"{where} holds {type(document).__name__}, not a JSON object")
    # A zarr.json document: the attributes are what OME-NGFF defines.
    if "zarr_format" in document and "node_type" in document:
        if document["node_type"] != "group":
            return Problem("/node_type", f"{where} is a zarr {document['node_type']}, not a group")
        attributes = document.get("attributes", {})
        if not isinstance(attributes, Mapping):
            return Problem("/attributes", f"{where}: the attributes must be a JSON object")
        return attributes
    return document


def _judge(
    target: str,
    attributes: Mapping[str, Any] | Problem,
    strict: bool,
    resolve: Any,
) -> Validation:
    if isinstance(attributes, Problem):
        return Validation(target, False, problems=(attributes,))
    document = {k: v for k, v in attributes.items() if k != "_conformance"}
    found = detect(document)
    if found is None:
        ome = document.get("ome")
        if isinstance(ome, Mapping) and ome.get("version") in VERSIONS:
            # A 0.6 'ome' object with nothing known in it: its rules say what is missing.
            return Validation(target, False, None, "0.6", tuple(validate06(document)))
        problem = Problem(
            "/ome",
            "no OME-NGFF metadata: no image, label, plate, well, scene or series, under 'ome' "
            "(0.5, 0.6) or at the top level (0.4)",
        )
        return Validation(target, False, problems=(problem,))
    kind, version = found
    if version == "0.6":
        everything = validate06(document, strict=strict, notes=True, resolve=resolve)
        problems = tuple(p for p in everything if not p.note)
        notes = tuple(p for p in everything if p.note)
    else:
        problems, notes = tuple(validate_document(document, strict=strict)), ()
    return Validation(target, not problems, kind, version, problems, notes)


class _Group:
    """A zarr hierarchy opened once; its groups' attributes read by relative path."""

    def __init__(self, target: str, storage_options: Mapping[str, Any] | None) -> None:
        self.target = target
        self.options = storage_options
        self.store = open_store(target, mode="r", storage_options=storage_options)

    def attributes(self, relative: str) -> Mapping[str, Any] | Problem:
        key = posixpath.normpath(posixpath.join(relative, "zarr.json")) if relative else "zarr.json"
        if key.startswith("../"):
            return self._outside(relative)
        data = read_bytes(self.store, key)
        where = f"{self.target}/{key}"
        if data is None:
            older = read_bytes(self.store, key.removesuffix("zarr.json") + ".zattrs")
            if older is not None:
                return _read_json(older, where.removesuffix("zarr.json") + ".zattrs")
            return Problem("", f"no zarr.json at {where}: not a zarr group")
        return _read_json(data, where)

    def _outside(self, relative: str) -> Mapping[str, Any] | Problem:
        # A scene may reference images beside it; only local hierarchies are followed there.
        if "://" in self.target:
            raise LookupError(relative)
        place = os.path.normpath(os.path.join(self.target, relative))
        try:
            store = open_store(place, mode="r")
        except (CellvolError, OSError):
            return Problem("", f"no zarr group at {place}")
        data = read_bytes(store, "zarr.json")
        if data is None:
            return Problem("", f"no zarr.json at {place}")
        return _read_json(data, place)

    def array_dimensions(self, attributes: Mapping[str, Any]) -> Iterator[Problem]:
        """A problem for each level array whose dimensions are not the image's axes.

        Levels that are not there are not reported: the specification's test hierarchies hold
        metadata only, and whether every array is whole is ``cellvol verify``'s question.
        """
        try:
            multiscale = read_multiscale(attributes, where=self.target)
        except MetadataError:  # a valid document cellvol cannot read as an image: not judged
            return
        if multiscale is None:
            return
        base = "/ome" if isinstance(attributes.get("ome"), Mapping) else ""
        for i, dataset in enumerate(multiscale.datasets):
            data = read_bytes(self.store, posixpath.join(dataset.path, "zarr.json"))
            data = data or read_bytes(self.store, posixpath.join(dataset.path, ".zarray"))
            try:
                document = json.loads(data) if data is not None else None
            except ValueError:
                document = None  # a damaged array document: verify's to report
            shape = document.get("shape") if isinstance(document, Mapping) else None
            if isinstance(shape, list) and len(shape) != len(multiscale.axes):
                yield Problem(
                    f"{base}/multiscales/0/datasets/{i}/path",
                    f"the array {dataset.path!r} has {len(shape)} dimensions; the axes "
                    f"{list(multiscale.axis_names)} name {len(multiscale.axes)}",
                )

    def coordinate_systems(self, relative: str) -> Mapping[str, int] | None:
        """The coordinate systems a group defines (name to axis count); None if not OME-Zarr."""
        if "://" in relative:
            raise LookupError(relative)  # another location altogether: not followed
        attributes = self.attributes(relative)
        if isinstance(attributes, Problem):
            return None
        ome = attributes.get("ome")
        if not isinstance(ome, Mapping):
            return None
        lists: list[Any] = []
        for multiscale in ome.get("multiscales", []) or []:
            if isinstance(multiscale, Mapping):
                lists.append(multiscale.get("coordinateSystems"))
        scene = ome.get("scene")
        if isinstance(scene, Mapping):
            lists.append(scene.get("coordinateSystems"))
        found: dict[str, int] = {}
        for systems in lists:
            for system in systems if isinstance(systems, list) else []:
                if isinstance(system, Mapping) and isinstance(system.get("name"), str):
                    axes = system.get("axes")
                    found[system["name"]] = len(axes) if isinstance(axes, list) else 0
        return found
