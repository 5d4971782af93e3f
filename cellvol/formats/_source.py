"""What every input format yields: a :class:`Source` (a lazy array, voxel size, provenance)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cellvol.units import VoxelSize

__all__ = ["HDF5_SUFFIXES", "MRC_SUFFIXES", "TIFF_SUFFIXES", "Source"]

MRC_SUFFIXES = (".mrc", ".mrcs", ".map", ".rec", ".st", ".ali", ".preali")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")


@dataclass(frozen=True)
class Source:
    """An input opened for conversion.

    Attributes
    ----------
    array
        A 3-D ``(z, y, x)`` lazy array: ``shape``, ``dtype`` and numpy-style slicing.
    voxel_size
        The voxel size the file records, or None when it records none (or only part of it).
    description
        What the input is, in one line, for messages and the provenance record.
    files
        The files the data comes from, in order (their digests go into the provenance).
    origin
        Physical position of the first voxel's centre along ``z, y, x``, in nanometres, when
        the file records one.
    image_stack
        True when ``z`` indexes separate images rather than a spatial axis (an MRC image stack):
        the pyramid then never downsamples along ``z``.
    details
        Format-specific facts worth keeping (header fields, extended header...), JSON-ready.
    block_bytes
        Bytes a read decodes at the least, whatever region it asks for: a compressed strip or
        tile decoded whole. 0 where a region is read alone (raw or memory-mapped data).
    """

    array: Any
    voxel_size: VoxelSize | None
    description: str
    files: tuple[str, ...] = ()
    origin: tuple[float, float, float] | None = None
    image_stack: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    block_bytes: int = 0
