"""EMDB-SFF segmentations in and out: 3-D volume (lattice) segments and their annotations.

EMDB-SFF is the EMDB's segmentation format (XML ``.sff`` or HDF5 ``.hff``/``.h5``). Its 3-D
volume segments live in lattices: integer arrays, each segment naming a lattice and the value
its voxels hold there, with a biological annotation (name, description, external references).
Files are read and written with ``sfftk-rw``, the format's reference library (the ``sff``
extra), so lattice encodings and the schema's details stay the library's job.

Into cellvol, every segment becomes the label ID of its SFF ``id``, its name and description
the segment's annotation, and each external reference whose resource cellvol checks (see
:mod:`cellvol.labels._references`) a reference; references to other resources are left out
and listed in the result. Lattices must have the image's full-resolution shape: the labels take
the image's grid, and SFF transforms are not applied.

Out of cellvol, a label image's level 0 becomes one lattice whose values are the label IDs,
with one segment per listed ID, its annotation and colour. Segment colours are read too.
When the labels have up-to-date meshes (:mod:`cellvol.labels._meshes`), each segment also
carries its surface as a one-mesh ``mesh_list``: vertices x, y, z in angstrom (physical
positions, so the mesh names transform 1, the identity), triangles counter-clockwise seen from
outside. Stale meshes (labels rewritten since) are left out with a warning.

Segments an SFF file describes only by meshes or shape primitives cannot become labels
(cellvol labels are voxels): they are skipped with a warning naming them and listed in the
result; a file with no 3-D volume segment at all is refused.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from cellvol._store import replace_durably
from cellvol.errors import CellvolError, CellvolWarning, InvalidInputError, WriteConflictError
from cellvol.labels._annotate import Annotation, apply_annotations
from cellvol.labels._lookup import open_labels
from cellvol.labels._mesh_store import Mesh
from cellvol.labels._meshes import stored_meshes
from cellvol.labels._references import Reference
from cellvol.labels._write import write_labels
from cellvol.progress import ProgressCallback
from cellvol.read._open import open as open_volume
from cellvol.read._volume import LabelImage
from cellvol.units import convert_lengths

__all__ = ["SFF_SUFFIXES", "SffImport", "export_sff", "import_sff", "is_sff"]

#: File names sfftk-rw reads and writes as EMDB-SFF: XML, then HDF5.
SFF_SUFFIXES: Final = (".sff", ".hff", ".h5", ".hdf5")
_XML_SUFFIXES: Final = (".sff",)
# Lattice element types of the schema, by numpy name.
_MODES: Final = frozenset(
    ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")
)


@dataclass(frozen=True, slots=True)
class SffImport:
    """What :func:`import_sff` did.

    Attributes
    ----------
    labels
        The label image written.
    annotated
        IDs of the segments given a name, description or references.
    skipped_references
        ``(segment id, resource, accession)`` of references cellvol does not check, left out.
    empty_segments
        IDs of SFF segments with no voxel in their lattice (no label, so no annotation).
    surface_only_segments
        IDs of SFF segments described only by meshes or shape primitives, which labels
        cannot hold: skipped (with a :class:`~cellvol.errors.CellvolWarning`).
    """

    labels: LabelImage
    annotated: tuple[int, ...]
    skipped_references: tuple[tuple[int, str, str], ...] = field(default=())
    empty_segments: tuple[int, ...] = field(default=())
    surface_only_segments: tuple[int, ...] = field(default=())


def is_sff(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an EMDB-SFF file: ``.sff``/``.hff``, or HDF5 with SFF's groups."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix in (".sff", ".hff"):
        return True
    if suffix in (".h5", ".hdf5") and file.is_file():
        import h5py

        try:
            with h5py.File(file, "r") as handle:
                return "segment_list" in handle and "primary_descriptor" in handle
        except OSError:
            return False
    return False


def import_sff(
    image: str | os.PathLike[str],
    path: str | os.PathLike[str],
    name: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> SffImport:
    """Add an EMDB-SFF file's 3-D volume segmentation to ``image`` as labels ``name``.

    Raises
    ------
    InvalidInputError
        Naming the file, for a file that is not SFF, has no lattice, a lattice that is not of
        integers or not of the image's shape, a segment naming a missing lattice, or segments
        that overlap (cellvol labels hold one ID per voxel).
    """
    file = Path(path)
    segmentation = _read(file)
    options = dict(storage_options or {})
    shape = open_volume(image, options).levels[0].shape
    labels, empty = _compose(file, segmentation, shape)
    entries, skipped = _annotations(file, segmentation, empty)
    surface_only = sorted(
        int(s.id) for s in segmentation.segment_list or () if s.three_d_volume is None
    )
    if surface_only:
        shown = ", ".join(map(str, surface_only[:20])) + (", ..." if len(surface_only) > 20 else "")
        warnings.warn(
            f"{file}: {len(surface_only)} segment(s) described only by meshes or shape "
            f"primitives skipped (labels hold voxels): {shown}",
            CellvolWarning,
            stacklevel=2,
        )
    written = write_labels(
        image,
        labels,
        name,
        colors=_colors(segmentation, empty),
        storage_options=options,
        overwrite=overwrite,
        progress=progress,
    )
    if entries:
        apply_annotations(image, name, entries, options, where=str(file))
        written = open_labels(image, name, options)
    return SffImport(
        written,
        tuple(e.segment_id for e in entries),
        tuple(skipped),
        tuple(sorted(empty)),
        tuple(surface_only),
    )


def export_sff(
    image: str | os.PathLike[str],
    labels: str,
    out: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write labels ``labels`` of ``image`` as an EMDB-SFF file (``.sff`` XML, ``.hff``/``.h5``).

    The file is written under a temporary name beside ``out`` and renamed into place when
    complete. Returns the path written.

    Raises
    ------
    InvalidInputError
        For an unknown suffix or labels of a type SFF lattices cannot hold.
    WriteConflictError
        If ``out`` exists and ``overwrite`` is false.
    """
    target = Path(out)
    suffix = target.suffix.lower()
    if suffix not in SFF_SUFFIXES:
        raise InvalidInputError(
            f"{target}: EMDB-SFF files end in {', '.join(SFF_SUFFIXES)}, not '{suffix}'"
        )
    if target.exists() and not overwrite:
        raise WriteConflictError(f"{target} exists", hint="pass overwrite=True (--overwrite)")
    options = dict(storage_options or {})
    label_image = open_labels(image, labels, options)
    level = label_image.levels[0]
    data = np.asarray(level[:])
    if data.dtype.name not in _MODES:
        raise InvalidInputError(
            f"labels {labels!r} of {image} are {data.dtype}; SFF lattices hold integers of "
            "8 to 64 bits"
        )
    adapter = _adapter()
    segmentation = _segmentation(adapter, label_image, data, labels)
    _add_meshes(adapter, segmentation, label_image, options)
    partial = target.with_name(f".{target.stem}.{uuid.uuid4().hex}.partial{suffix}")
    try:
        status = segmentation.export(str(partial))
        if status:  # sfftk-rw reports a refused file name by status, not by exception
            raise InvalidInputError(f"sfftk-rw could not write {target} (status {status})")
        replace_durably(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _adapter() -> Any:
    try:
        from sfftkrw.schema import adapter_v0_8_0_dev1 as adapter
    except ImportError:
        raise CellvolError(
            "reading and writing EMDB-SFF needs sfftk-rw", hint="pip install 'cellvol[sff]'"
        ) from None
    return adapter


def _read(file: Path) -> Any:
    if not file.is_file():
        raise InvalidInputError(f"EMDB-SFF file {file} does not exist")
    if not is_sff(file):
        raise InvalidInputError(
            f"{file} is not an EMDB-SFF file: expected .sff (XML) or .hff/.h5 (HDF5) with a "
            "segment_list"
        )
    adapter = _adapter()
    try:
        return adapter.SFFSegmentation.from_file(str(file))
    except SystemExit:  # sfftk-rw exits on some unreadable files
        raise InvalidInputError(f"{file}: sfftk-rw could not read it as EMDB-SFF") from None
    except Exception as exc:  # the library's parsers raise many types; each is bad input
        raise InvalidInputError(f"{file}: not a readable EMDB-SFF file ({exc})") from None


def _compose(
    file: Path, segmentation: Any, shape: tuple[int, ...]
) -> tuple[npt.NDArray[Any], set[int]]:
    """The label array: each segment's lattice voxels of its value set to the segment's ID."""
    lattices = {int(lat.id): lat for lat in segmentation.lattice_list or ()}
    segments = [s for s in segmentation.segment_list or () if s.three_d_volume is not None]
    if not lattices or not segments:
        raise InvalidInputError(
            f"{file} has no 3-D volume segmentation: expected a lattice_list with at least one "
            "lattice and segments with a three_d_volume (mesh and shape segments are not read)"
        )
    members: dict[int, dict[int, int]] = {}  # lattice ID -> {value: segment ID}
    for segment in segments:
        key, value = int(segment.three_d_volume.lattice_id), _value(file, segment)
        if key not in lattices:
            raise InvalidInputError(
                f"{file}: segment {segment.id} names lattice {key}, but the file's lattices "
                f"are {sorted(lattices)}"
            )
        taken = members.setdefault(key, {})
        if value in taken:
            raise InvalidInputError(
                f"{file}: segments {taken[value]} and {segment.id} both claim value {value} of "
                f"lattice {key}; cellvol labels hold one segment per voxel"
            )
        taken[value] = int(segment.id)
    top = max(int(s.id) for s in segments)
    labels = np.zeros(shape, dtype=np.result_type(np.min_scalar_type(top), np.uint8))
    empty: set[int] = set()
    for key, by_value in members.items():
        lattice = _lattice(file, key, lattices[key], shape)
        # One sorted lookup per lattice, not one pass over the volume per segment.
        values = np.array(sorted(by_value), dtype=np.int64)
        ids = np.array([by_value[v] for v in values.tolist()], dtype=labels.dtype)
        where = np.minimum(np.searchsorted(values, lattice), len(values) - 1)
        hit = values[where] == lattice
        found = np.bincount(where[hit], minlength=len(values))
        empty.update(int(i) for i in ids[found == 0])
        clash = np.unique(labels[hit])
        if clash.any():
            raise InvalidInputError(
                f"{file}: segments of lattice {key} overlap segment(s) "
                f"{clash[clash != 0].tolist()} of another lattice; cellvol labels hold one "
                "segment per voxel"
            )
        labels[hit] = ids[where[hit]]
    return labels, empty


def _value(file: Path, segment: Any) -> int:
    value = float(segment.three_d_volume.value)
    if not value.is_integer():
        raise InvalidInputError(
            f"{file}: segment {segment.id} has value {value} in lattice "
            f"{segment.three_d_volume.lattice_id}; expected an integer"
        )
    return int(value)


def _lattice(file: Path, key: int, lattice: Any, shape: tuple[int, ...]) -> npt.NDArray[Any]:
    size = lattice.size
    # SFF sizes count columns (x), rows (y) and sections (z); cellvol's arrays are (z, y, x).
    found = (int(size.sections), int(size.rows), int(size.cols))
    if found != tuple(shape):
        raise InvalidInputError(
            f"{file}: lattice {key} is {found} voxels (z, y, x); expected the image's "
            f"full-resolution shape {tuple(shape)}"
        )
    if str(lattice.mode) not in _MODES:
        raise InvalidInputError(
            f"{file}: lattice {key} holds {lattice.mode}; labels need integer lattices"
        )
    try:
        array = np.asarray(lattice.data_array)
    except Exception as exc:  # undecodable data: bad base64, unknown compression...
        raise InvalidInputError(
            f"{file}: lattice {key}'s data could not be decoded as a compressed "
            f"{lattice.mode} array ({exc})"
        ) from None
    if array.shape != found:
        raise InvalidInputError(
            f"{file}: lattice {key} holds {array.size} values in shape {array.shape}; its "
            f"size says {found}"
        )
    return array


def _annotations(
    file: Path, segmentation: Any, empty: set[int]
) -> tuple[list[Annotation], list[tuple[int, str, str]]]:
    entries = []
    skipped = []
    for segment in segmentation.segment_list or ():
        if segment.three_d_volume is None or int(segment.id) in empty:
            continue
        note = segment.biological_annotation
        if note is None:
            continue
        references = []
        for ref in note.external_references or ():
            resource, accession = str(ref.resource or ""), str(ref.accession or "")
            reference = _reference(resource, accession)
            if reference is None:
                skipped.append((int(segment.id), resource, accession))
            else:
                references.append(reference)
        name = note.name or None
        description = note.description or None
        if name is None and description is None and not references:
            continue
        entries.append(
            Annotation(
                int(segment.id), name, description, tuple(references) if references else None
            )
        )
    return entries, skipped


def _colors(segmentation: Any, empty: set[int]) -> dict[int, tuple[int, int, int, int]]:
    """Each segment's SFF colour (0 to 1 per channel) as RGBA bytes; XML may omit alpha."""
    colors = {}
    for segment in segmentation.segment_list or ():
        colour = segment.colour
        if segment.three_d_volume is None or int(segment.id) in empty or colour is None:
            continue
        channels = (colour.red, colour.green, colour.blue, colour.alpha)
        if any(c is None for c in channels[:3]):
            continue
        red, green, blue, alpha = (
            round(min(max(1.0 if c is None else float(c), 0.0), 1.0) * 255) for c in channels
        )
        colors[int(segment.id)] = (red, green, blue, alpha)
    return colors


def _reference(resource: str, accession: str) -> Reference | None:
    """The checked reference, or None for a resource or accession cellvol cannot check."""
    # Ontology lookups write term IDs as OBO PURLs do (GO_0005739); cellvol stores GO:0005739.
    for candidate in (accession, accession.replace("_", ":", 1)):
        try:
            return Reference.of(resource, candidate)
        except InvalidInputError:
            continue
    return None


def _segmentation(adapter: Any, label_image: LabelImage, data: npt.NDArray[Any], name: str) -> Any:
    segmentation = adapter.SFFSegmentation(name=name, primary_descriptor="three_d_volume")
    segmentation.software_list = adapter.SFFSoftwareList()
    segmentation.transform_list = adapter.SFFTransformList()
    level = label_image.levels[0]
    # Voxel (column, row, section) to physical position in angstrom, as EMDB maps use.
    voxel = label_image.voxel_size
    unit = voxel.unit if voxel is not None else "nanometer"
    z, y, x = convert_lengths(level.scale, unit, "angstrom")
    oz, oy, ox = convert_lengths(level.translation, unit, "angstrom")
    matrix = np.array([[x, 0, 0, ox], [0, y, 0, oy], [0, 0, z, oz]], dtype=np.float64)
    segmentation.transform_list.append(adapter.SFFTransformationMatrix(rows=3, cols=4, data=matrix))
    segmentation.lattice_list = adapter.SFFLatticeList()
    segmentation.lattice_list.append(
        adapter.SFFLattice(
            mode=data.dtype.name,
            endianness="little",
            size=adapter.SFFVolumeStructure(
                cols=data.shape[2], rows=data.shape[1], sections=data.shape[0]
            ),
            start=adapter.SFFVolumeIndex(cols=0, rows=0, sections=0),
            data=np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")),
        )
    )
    segmentation.segment_list = adapter.SFFSegmentList()
    properties = label_image.properties
    colors = label_image.colors
    for row in label_image.segments:
        segment_id = int(row["id"])
        props = properties.get(segment_id, {})
        refs = adapter.SFFExternalReferenceList()
        for ref in props.get("references") or ():
            refs.append(
                adapter.SFFExternalReference(
                    resource=ref["resource"], accession=ref["accession"], url=ref.get("url")
                )
            )
        note = adapter.SFFBiologicalAnnotation(
            name=props.get("name"),
            description=props.get("description"),
            external_references=refs,
            number_of_instances=1,
        )
        rgba = colors.get(segment_id)
        colour = (
            adapter.SFFRGBA(
                red=rgba[0] / 255, green=rgba[1] / 255, blue=rgba[2] / 255, alpha=rgba[3] / 255
            )
            if rgba is not None
            else None
        )
        segmentation.segment_list.append(
            adapter.SFFSegment(
                id=segment_id,
                parent_id=0,
                biological_annotation=note,
                colour=colour,
                three_d_volume=adapter.SFFThreeDVolume(lattice_id=0, value=segment_id),
            )
        )
    return segmentation


def _add_meshes(
    adapter: Any, segmentation: Any, label_image: LabelImage, options: Mapping[str, Any]
) -> None:
    """Give each segment with a stored, up-to-date mesh a ``mesh_list`` (in angstrom)."""
    # Thorough: the export reads every voxel anyway, and a stale mesh would be shipped.
    index, stale, load = stored_meshes(label_image, options, thorough=True)
    if index is None:
        return
    if stale:
        warnings.warn(
            f"{label_image.url}: the meshes predate the labels' last change; exported without "
            "them (recompute them with: cellvol meshes IMAGE --labels NAME)",
            CellvolWarning,
            stacklevel=3,
        )
        return
    # Vertices are physical positions already: transform 1 is the identity.
    identity = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float64)
    segmentation.transform_list.append(
        adapter.SFFTransformationMatrix(id=1, rows=3, cols=4, data=identity)
    )
    # SFF's lengths are ångström; the index says the meshes' unit (from cellvol.units).
    to_angstrom = convert_lengths([1.0], index.unit, "angstrom")[0]
    for segment in segmentation.segment_list:
        if int(segment.id) not in index.segments:
            continue
        segment.mesh_list = adapter.SFFMeshList()
        segment.mesh_list.append(
            _sff_mesh(adapter, load(int(segment.id)), int(segment.id), to_angstrom)
        )


def _sff_mesh(adapter: Any, mesh: Mesh, segment_id: int, to_angstrom: float) -> Any:
    angstrom = np.ascontiguousarray(mesh.vertices.astype(np.float64) * to_angstrom, dtype="<f4")
    return adapter.SFFMesh(
        id=segment_id,
        vertices=adapter.SFFVertices(
            num_vertices=angstrom.shape[0], mode="float32", endianness="little", data=angstrom
        ),
        triangles=adapter.SFFTriangles(
            num_triangles=mesh.triangles.shape[0],
            mode="uint32",
            endianness="little",
            data=np.ascontiguousarray(mesh.triangles, dtype="<u4"),
        ),
        transform_id=1,
    )
