"""OME-NGFF attributes: written as 0.5 (0.6 on request), read from 0.4 to 0.6, with provenance.

Writing goes through ``ome-zarr-models`` so that what cellvol stores is checked by the field's
reference models; reading is lenient and builds cellvol's own small frozen records, because
other writers produce documents the models would refuse for reasons that do not matter to a
reader (for example a missing optional ``type``). Whether a document conforms to the
specification is a separate question, answered by :mod:`cellvol.ome`.

This module never touches array bytes.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from cellvol._version import __version__
from cellvol.errors import MetadataError
from cellvol.ome._coords06 import Matrix, affine_matrix, level_placement, reference_name
from cellvol.ome._write06 import axis_fields, image_ome_06
from cellvol.units import SPATIAL_AXES, VoxelSize, normalize_unit

__all__ = [
    "PROVENANCE_KEY",
    "Axis",
    "CoordinateSystem",
    "Dataset",
    "Multiscale",
    "image_attributes",
    "ome_namespace",
    "json_safe",
    "provenance",
    "read_multiscale",
    "stored_attributes",
]

#: Top-level attribute key (beside ``ome``) under which cellvol keeps its provenance record.
PROVENANCE_KEY: Final = "cellvol"

# Libraries whose versions decide the bytes a write produces; recorded with every write.
_RECORDED_PACKAGES: Final = (
    "cellvol", "zarr", "numcodecs", "numpy", "dask", "ome-zarr-models",
    "mrcfile", "tifffile", "h5py",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Axis:
    """One axis of a multiscale image as the metadata names it."""

    name: str
    type: str | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class CoordinateSystem:
    """A named coordinate system of OME-NGFF 0.6: its axes, in order."""

    name: str
    axes: tuple[Axis, ...]


#: The version strings of OME-NGFF 0.6 documents (its release candidate's too).
_VERSIONS_06: Final = ("0.6", "0.6rc0")


@dataclass(frozen=True, slots=True)
class Dataset:
    """One dataset (pyramid level) of a multiscale: its array path and its placement.

    ``affine`` is None when the level is placed by a scale and a translation (always, in a
    conforming document); a level placed by a matrix that rotates or shears keeps it here, as
    a homogeneous ``(n + 1, n + 1)`` matrix, and ``scale`` is then the length of one step
    along each array axis.
    """

    path: str
    scale: tuple[float, ...]
    translation: tuple[float, ...]
    affine: Matrix | None = None


@dataclass(frozen=True, slots=True)
class Multiscale:
    """What a reader needs from a multiscales entry, whatever version wrote it.

    Scales and translations of each level already include the multiscale-wide
    ``coordinateTransformations``, so ``level.scale`` is the voxel size of that level.
    """

    version: str
    axes: tuple[Axis, ...]
    datasets: tuple[Dataset, ...]
    name: str | None = None
    method: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: 0.6: every coordinate system the multiscale names; the levels are in ``default_system``.
    coordinate_systems: tuple[CoordinateSystem, ...] = ()
    default_system: str | None = None
    #: 0.6: the multiscale's own transformations, from its default system to others, as stored.
    transformations: tuple[Mapping[str, Any], ...] = ()

    @property
    def axis_names(self) -> tuple[str, ...]:
        """The axis names in array order."""
        return tuple(axis.name for axis in self.axes)

    def spatial_indices(self) -> tuple[int, ...]:
        """Array indices of the spatial axes, in array order."""
        return tuple(i for i, axis in enumerate(self.axes) if _is_spatial(axis))

    def spatial_unit(self) -> str | None:
        """The unit the spatial axes share, as stored; None when they have none or differ.

        Unlike :meth:`voxel_size`, this holds for any number of spatial axes (a 2-D image's
        ``y, x`` too) and does not assume nanometres for axes without a unit.
        """
        units = {self.axes[i].unit for i in self.spatial_indices()}
        return units.pop() if len(units) == 1 else None

    def spacing(self, level: int = 0) -> tuple[float, ...]:
        """A level's element size along each spatial axis, in array order (any number)."""
        scale = self.datasets[level].scale
        return tuple(float(scale[i]) for i in self.spatial_indices())

    def affine(self, output: str | None = None) -> Matrix | None:
        """The affine from the levels' coordinate system to another (0.6), or None if none.

        Parameters
        ----------
        output
            The target coordinate system's name; the first the multiscale transforms into
            when None.

        Returns
        -------
        tuple of tuple of float or None
            The homogeneous ``(n_out + 1, n + 1)`` matrix of the multiscale's transformation
            (scale, translation, affine, rotation, mapAxis, or a sequence of these).

        Raises
        ------
        MetadataError
            If that transformation is not linear or keeps its parameters in an array.
        """
        dims = {system.name: len(system.axes) for system in self.coordinate_systems}
        for transform in self.transformations:
            source = reference_name(transform.get("input"))
            target = reference_name(transform.get("output"))
            if source != self.default_system or (output is not None and target != output):
                continue
            n_out = dims.get(target or "", len(self.axes))
            label = f"multiscale transformation to {target!r}"
            return affine_matrix(transform, len(self.axes), n_out, label)
        return None

    def voxel_size(self, level: int = 0) -> VoxelSize | None:
        """The ``z, y, x`` voxel size of a level, or None when the image is not 3-D spatial.

        Units missing from the metadata are taken as nanometres, the unit of EM.

        Raises
        ------
        MetadataError
            If the level is placed by a matrix that rotates or shears (see
            :attr:`Dataset.affine`): it has no voxel size along the axes.
        """
        if self.datasets[level].affine is not None:
            raise MetadataError(
                f"level {level} is placed by an affine that rotates or shears its axes, so it "
                "has no voxel size along z, y and x; its matrix is the Multiscale's "
                f"datasets[{level}].affine (step lengths: {self.datasets[level].scale})"
            )
        spatial = self.spatial_indices()
        if len(spatial) != 3:
            return None
        units = {self.axes[i].unit for i in spatial}
        if len(units) != 1:
            raise MetadataError(
                f"spatial axes use different units {sorted(map(str, units))}; cellvol expects "
                "one length unit for z, y and x"
            )
        unit = units.pop() or "nanometer"
        scale = self.datasets[level].scale
        return VoxelSize(scale[spatial[0]], scale[spatial[1]], scale[spatial[2]], unit)


def _is_spatial(axis: Axis) -> bool:
    if axis.type is not None:
        return axis.type == "space"
    return axis.name in SPATIAL_AXES


def image_attributes(
    datasets: Sequence[Dataset],
    unit: str,
    *,
    name: str,
    method: str,
    provenance_record: Mapping[str, Any],
    ome_version: str = "0.5",
    axes: Sequence[str] = SPATIAL_AXES,
) -> dict[str, Any]:
    """Build the zarr attributes of an OME-Zarr 0.5 (or 0.6) image group for a planned pyramid.

    Parameters
    ----------
    datasets
        The pyramid's levels, finest first: each array's path, scale and translation.
    unit
        The length unit of the ``z, y, x`` axes.
    name
        The multiscale's name.
    method
        The downsampling method, recorded as the multiscale ``type``.
    provenance_record
        Stored under the top-level :data:`PROVENANCE_KEY` attribute.
    ome_version
        ``"0.5"`` (the default) or ``"0.6"``: named coordinate systems (see
        :mod:`cellvol.ome._write06`).
    axes
        The arrays' axis names: ``z, y, x`` preceded by ``c`` (channel) and ``t`` (time) when
        the image has them; those are typed ``channel`` and ``time``, without a unit.

    Raises
    ------
    MetadataError
        If ome-zarr-models rejects the document (a bug in cellvol, reported loudly), or for
        another ``ome_version``.
    """
    # A stable name of the method, as every cellvol release records it (not a module path: the
    # kernels live in cellvol.write).
    method_record: dict[str, Any] = {
        "method": f"cellvol.downsample.{method}",
        "version": __version__,
    }
    if ome_version == "0.6":
        levels = [(d.path, d.scale, d.translation) for d in datasets]
        ome_06 = image_ome_06(
            levels, tuple(axes), normalize_unit(unit), name=name, method=method,
            metadata=method_record,
        )  # fmt: skip
        return {"ome": ome_06, PROVENANCE_KEY: dict(provenance_record)}
    if ome_version != "0.5":
        raise MetadataError(f"cellvol writes OME-Zarr 0.5 or 0.6, not {ome_version!r}")
    # Imported here: ome-zarr-models (with pydantic) takes a third of a second to import, and
    # only writers need it, not the readers of `import cellvol`.
    from ome_zarr_models.v05.axes import Axis as AxisModel
    from ome_zarr_models.v05.image import ImageAttrs
    from ome_zarr_models.v05.multiscales import Dataset as DatasetModel
    from ome_zarr_models.v05.multiscales import Multiscale as MultiscaleModel
    from pydantic import ValidationError

    unit = normalize_unit(unit)
    try:
        model = ImageAttrs(
            version="0.5",
            multiscales=[
                MultiscaleModel(
                    name=name,
                    type=method,
                    axes=tuple(AxisModel.model_validate(axis_fields(axis, unit)) for axis in axes),
                    datasets=tuple(
                        DatasetModel.build(
                            path=dataset.path,
                            scale=list(dataset.scale),
                            translation=list(dataset.translation),
                        )
                        for dataset in datasets
                    ),
                    metadata=method_record,
                )
            ],
        )
    except ValidationError as exc:
        raise MetadataError(f"cellvol built invalid OME-Zarr 0.5 metadata: {exc}") from exc
    ome = model.model_dump(mode="json", exclude_none=True, by_alias=True)
    return {"ome": ome, PROVENANCE_KEY: dict(provenance_record)}


def provenance(
    source: str,
    parameters: Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
    date: str | None = None,
) -> dict[str, Any]:
    """A provenance record: what was written from what, with which software.

    Parameters
    ----------
    source
        A human-readable description of the input (file name, array type and shape, ...).
    parameters
        The write's parameters, JSON-serialisable.
    inputs
        What is known of the input beyond its description (files with sizes and digests,
        header fields), JSON-serialisable; recorded under ``input``.
    date
        The UTC day (``YYYY-MM-DD``) the write began, recorded under ``date``: what an archive
        gives as the image's publication date (see :mod:`cellvol.ome._crate`).
    """
    record: dict[str, Any] = {"source": source}
    if date is not None:
        record["date"] = date
    if inputs:
        # A file's header may hold NaN or infinity (an unset MRC origin, a float attribute):
        # kept as what it says, in words, since JSON has no such numbers.
        record["input"] = json_safe(dict(inputs))
    return record | {
        "parameters": dict(parameters),
        "software": {name: _package_version(name) for name in _RECORDED_PACKAGES},
        "python": platform.python_version(),
    }


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its name: ``"nan"``, ``"inf"``, ``"-inf"``.

    Mappings, lists and tuples are copied (tuples become lists); anything else is returned as
    it is.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def stored_attributes(attributes: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``attributes`` as a zarr document will hold them: strict JSON, tuples as lists.

    Python's ``json`` writes NaN and infinity as the bare words ``NaN`` and ``Infinity``, which
    are not JSON: a browser's ``JSON.parse`` refuses the whole document, so web viewers could
    not open the image. Every attribute cellvol stores passes through here first.

    Raises
    ------
    MetadataError
        If a value is not finite or not JSON at all (a bug in cellvol: inputs are checked or
        made safe before this).
    """
    try:
        text = json.dumps(dict(attributes), allow_nan=False)
    except (ValueError, TypeError) as exc:
        raise MetadataError(f"{where}: cellvol built attributes that are not JSON ({exc})") from exc
    document: dict[str, Any] = json.loads(text)
    return document


def _package_version(name: str) -> str:
    if name == "cellvol":
        return __version__
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def ome_namespace(attributes: Mapping[str, Any]) -> Mapping[str, Any]:
    """Where a group's OME metadata sits: under ``ome`` in 0.5, at the top level in 0.4."""
    ome = attributes.get("ome")
    return ome if isinstance(ome, Mapping) else attributes


def read_multiscale(attributes: Mapping[str, Any], *, where: str) -> Multiscale | None:
    """Read the first multiscales entry of OME-Zarr 0.5 or 0.4 group attributes.

    Parameters
    ----------
    attributes
        The group's attributes (``zarr.json`` ``attributes`` for 0.5, ``.zattrs`` for 0.4).
    where
        The group's location, used in error messages.

    Returns
    -------
    Multiscale or None
        None when the attributes hold no ``multiscales`` at all.

    Raises
    ------
    MetadataError
        When ``multiscales`` is present but unusable: no datasets, a dataset without a path,
        or transformations whose length does not match the axes.
    """
    ome = ome_namespace(attributes)
    document_version = str(ome.get("version", "0.5")) if ome is not attributes else ""
    entries = ome.get("multiscales")
    if entries is None:
        return None
    if not isinstance(entries, Sequence) or not entries or not isinstance(entries[0], Mapping):
        raise MetadataError(f"{where}: 'multiscales' must be a non-empty list of objects")
    entry: Mapping[str, Any] = entries[0]
    if document_version in _VERSIONS_06:
        return _read_multiscale_06(entry, where)
    document_version = document_version or str(entry.get("version", "0.4"))
    axes = _read_axes(entry.get("axes"), where)
    ndim = len(axes)
    global_scale, global_translation = _read_transforms(
        entry.get("coordinateTransformations"), ndim, f"{where}: multiscales[0]", required=False
    )
    datasets = entry.get("datasets")
    if not isinstance(datasets, Sequence) or not datasets:
        raise MetadataError(f"{where}: multiscales[0] has no datasets")
    datasets_read: list[Dataset] = []
    for i, dataset in enumerate(datasets):
        label = f"{where}: multiscales[0].datasets[{i}]"
        if not isinstance(dataset, Mapping) or not isinstance(dataset.get("path"), str):
            raise MetadataError(f"{label} has no 'path'")
        scale, translation = _read_transforms(
            dataset.get("coordinateTransformations"), ndim, label, required=True
        )
        datasets_read.append(
            Dataset(
                path=dataset["path"],
                scale=tuple(s * g for s, g in zip(scale, global_scale, strict=True)),
                translation=tuple(
                    t * g + gt
                    for t, g, gt in zip(translation, global_scale, global_translation, strict=True)
                ),
            )
        )
    method = entry.get("type")
    known = {"axes", "datasets", "coordinateTransformations", "name", "type", "version"}
    return Multiscale(
        version=document_version,
        axes=axes,
        datasets=tuple(datasets_read),
        name=entry.get("name") if isinstance(entry.get("name"), str) else None,
        method=method if isinstance(method, str) else None,
        extra={k: v for k, v in entry.items() if k not in known},
    )


def _read_multiscale_06(entry: Mapping[str, Any], where: str) -> Multiscale:
    """A 0.6 multiscale: the levels' axes are those of the system their transformations name."""
    raw_systems = entry.get("coordinateSystems")
    if not isinstance(raw_systems, Sequence) or not raw_systems:
        raise MetadataError(f"{where}: multiscales[0] has no 'coordinateSystems' (OME-Zarr 0.6)")
    systems = []
    for i, system in enumerate(raw_systems):
        if not isinstance(system, Mapping) or not isinstance(system.get("name"), str):
            raise MetadataError(f"{where}: coordinateSystems[{i}] has no name")
        systems.append(CoordinateSystem(system["name"], _read_axes(system.get("axes"), where)))
    datasets = entry.get("datasets")
    if not isinstance(datasets, Sequence) or not datasets:
        raise MetadataError(f"{where}: multiscales[0] has no datasets")
    by_name = {system.name: system for system in systems}
    default = systems[-1].name  # the specification's default: the last one
    first = (
        datasets[0].get("coordinateTransformations") if isinstance(datasets[0], Mapping) else None
    )
    if isinstance(first, Sequence) and first and isinstance(first[0], Mapping):
        default = reference_name(first[0].get("output")) or default
    if default not in by_name:
        raise MetadataError(f"{where}: the levels' coordinate system {default!r} is not defined")
    axes = by_name[default].axes
    levels: list[Dataset] = []
    for i, dataset in enumerate(datasets):
        label = f"{where}: multiscales[0].datasets[{i}]"
        if not isinstance(dataset, Mapping) or not isinstance(dataset.get("path"), str):
            raise MetadataError(f"{label} has no 'path'")
        scale, translation, affine = level_placement(
            dataset.get("coordinateTransformations"), len(axes), label
        )
        levels.append(Dataset(dataset["path"], scale, translation, affine))
    transforms = entry.get("coordinateTransformations") or ()
    if not isinstance(transforms, Sequence) or isinstance(transforms, str):
        raise MetadataError(
            f"{where}: multiscales[0].coordinateTransformations must be a list, got {transforms!r}"
        )
    known = {"coordinateSystems", "datasets", "coordinateTransformations", "name", "type"}
    return Multiscale(
        version="0.6",
        axes=axes,
        datasets=tuple(levels),
        name=entry.get("name") if isinstance(entry.get("name"), str) else None,
        method=entry.get("type") if isinstance(entry.get("type"), str) else None,
        extra={k: v for k, v in entry.items() if k not in known},
        coordinate_systems=tuple(systems),
        default_system=default,
        transformations=tuple(t for t in transforms if isinstance(t, Mapping)),
    )


def _read_axes(raw: object, where: str) -> tuple[Axis, ...]:
    if raw is None:
        # OME-Zarr 0.1-0.3 had no axes; such images are 5-D t, c, z, y, x.
        raise MetadataError(f"{where}: multiscales[0] has no 'axes' (OME-Zarr before 0.4?)")
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise MetadataError(f"{where}: 'axes' must be a list")
    axes: list[Axis] = []
    for i, item in enumerate(raw):
        if isinstance(item, str):  # 0.3 style: bare names
            axes.append(Axis(name=item))
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            unit = item.get("unit")
            axes.append(
                Axis(
                    name=item["name"],
                    type=item.get("type") if isinstance(item.get("type"), str) else None,
                    unit=unit if isinstance(unit, str) else None,
                )
            )
        else:
            raise MetadataError(f"{where}: axes[{i}] has no name: {item!r}")
    return tuple(axes)


def _read_transforms(
    raw: object, ndim: int, label: str, *, required: bool
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    scale = tuple(1.0 for _ in range(ndim))
    translation = tuple(0.0 for _ in range(ndim))
    if raw is None:
        if required:
            raise MetadataError(f"{label} has no coordinateTransformations")
        return scale, translation
    if not isinstance(raw, Sequence):
        raise MetadataError(f"{label}: coordinateTransformations must be a list")
    for transform in raw:
        if not isinstance(transform, Mapping):
            raise MetadataError(f"{label}: a coordinate transformation must be an object")
        kind = transform.get("type")
        if kind == "identity":
            continue
        if kind not in ("scale", "translation"):
            raise MetadataError(f"{label}: unsupported coordinate transformation {kind!r}")
        values = transform.get(kind)
        if values is None and "path" in transform:
            raise MetadataError(
                f"{label}: {kind} stored in a separate array ({transform['path']!r}) is not "
                "supported"
            )
        if not isinstance(values, Sequence) or len(values) != ndim:
            raise MetadataError(
                f"{label}: {kind} {values!r} must have one number per axis ({ndim})"
            )
        try:
            numbers = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            raise MetadataError(f"{label}: {kind} {values!r} must hold numbers") from None
        if kind == "scale":
            scale = numbers
        else:
            translation = numbers
    return scale, translation
