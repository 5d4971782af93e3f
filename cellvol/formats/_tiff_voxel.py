"""A TIFF file's voxel size: from its OME-XML or its ImageJ tags, checked field by field.

OME-XML gives ``PhysicalSizeX/Y/Z`` with their units; ImageJ a ``unit``, a z ``spacing`` and
the X/Y resolution rationals (pixels per unit). Plain TIFF resolution tags (usually a 72 dpi
default) are not trusted. A size recorded in a unit cellvol does not know is unrecorded; a
size that is there but unusable is refused, naming the file and the field.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from typing import Any

import tifffile

from cellvol.errors import InvalidInputError
from cellvol.formats._source import metadata_field, metadata_number, rational_meant
from cellvol.units import VoxelSize, check_placement, normalize_unit

__all__ = ["voxel_size_of"]


def voxel_size_of(tif: tifffile.TiffFile, depth: int, name: str) -> VoxelSize | None:
    """The voxel size the file's OME-XML or ImageJ tags record, in nanometres, or None.

    None too when the file gives sizes in a unit cellvol does not know (inches, pixels): the
    size is then unrecorded. Values that are there but unusable (not numbers, not finite, not
    positive, or beyond :data:`~cellvol.units.VOXEL_SIZE_RANGE_NM`) are refused.
    """
    if tif.is_ome and tif.ome_metadata:
        return _ome_voxel_size(tif.ome_metadata, depth, name)
    if tif.is_imagej and tif.imagej_metadata:
        return _imagej_voxel_size(tif, tif.imagej_metadata, depth, name)
    return None


def _known_unit(unit: str) -> str | None:
    """The OME-NGFF name of a length unit, or None for one cellvol does not know."""
    try:
        return normalize_unit(unit)
    except InvalidInputError:
        return None


def _positive(value: object, name: str, field: str) -> float:
    number = metadata_number(value, name, field)
    if number <= 0:
        raise InvalidInputError(f"{name}: {field} is {value!r}; a voxel size must be positive")
    return number


def _ome_voxel_size(xml: str, depth: int, name: str) -> VoxelSize | None:
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    sizes: dict[str, VoxelSize] = {}
    for axis in ("X", "Y", "Z"):
        field = f"PhysicalSize{axis}"
        value = pixels.get(field)
        if value is None:
            continue
        unit = _known_unit(pixels.get(f"{field}Unit", "µm"))
        if unit is None:
            return None
        size = _positive(value, name, f"OME-XML {field}")
        sizes[axis] = VoxelSize.of(size, unit).to("nanometer")
    if "X" not in sizes or "Y" not in sizes:
        return None
    z = sizes["Z"].z if "Z" in sizes else sizes["X"].x if depth == 1 else None
    if z is None:
        return None
    voxel = VoxelSize(z, sizes["Y"].y, sizes["X"].x, "nanometer")
    check_placement(voxel, where=f"{name}: OME-XML PhysicalSizeX/Y/Z")
    return voxel


def _imagej_voxel_size(
    tif: tifffile.TiffFile, meta: dict[str, Any], depth: int, name: str
) -> VoxelSize | None:
    # ImageJ writes non-ASCII units as escapes ("\\u00B5m"); a broken escape is a broken file.
    with metadata_field(name, "ImageJ unit"):
        text = str(meta.get("unit", "")).encode().decode("unicode_escape").strip()
    if not text or text.lower() in ("pixel", "pixels", "none"):
        return None
    unit = _known_unit(text)
    if unit is None:
        return None
    page = tif.pages.first
    sizes = []
    for tag in ("YResolution", "XResolution"):
        resolution = page.tags.get(tag)
        if resolution is None:
            return None
        with metadata_field(name, tag):
            numerator, denominator = (int(n) for n in resolution.value)
        if not numerator or not denominator:
            return None  # no resolution recorded
        if numerator < 0 or denominator < 0:
            raise InvalidInputError(
                f"{name}: {tag} is {numerator}/{denominator}; a resolution must be positive"
            )
        sizes.append(rational_meant(numerator, denominator))  # pixels/unit -> unit/pixel
    spacing = meta.get("spacing")
    if spacing is not None and spacing != "":
        number = metadata_number(spacing, name, "ImageJ spacing")
        if number < 0:
            raise InvalidInputError(
                f"{name}: ImageJ spacing is {spacing!r}; a voxel size must be positive"
            )
        z: float | None = number or None  # 0: not recorded
    else:
        z = None
    if z is None and depth == 1:
        z = sizes[1]
    if z is None:
        return None
    voxel = VoxelSize(z, sizes[0], sizes[1], unit).to("nanometer")
    check_placement(voxel, where=f"{name}: ImageJ resolution, spacing and unit")
    return voxel
