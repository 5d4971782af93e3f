"""Inputs cellvol can convert: each returns a lazy array, its voxel size if known, provenance.

One module per format. :func:`open_source` picks one from the path; every source is read region
by region by the pyramid writer and pickles small, so dask workers in other processes can read
it too. MRC, TIFF and HDF5 readers join here (see the ingest issue).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellvol.errors import InvalidInputError
from cellvol.spec import VoxelSize

__all__ = ["Source", "open_source"]


@dataclass(frozen=True)
class Source:
    """An input opened for conversion.

    Attributes
    ----------
    array
        A 3-D lazy array: ``shape``, ``dtype`` and numpy-style slicing.
    voxel_size
        The voxel size the file records, or None when it records none.
    description
        What the input is, for the provenance record.
    details
        Format-specific facts worth keeping (header fields, file size...).
    """

    array: Any
    voxel_size: VoxelSize | None
    description: str
    details: dict[str, Any] = field(default_factory=dict)


def open_source(path_or_url: str | os.PathLike[str]) -> Source:
    """Open an input for conversion, choosing the reader from its name.

    Raises
    ------
    InvalidInputError
        For a format cellvol cannot read, naming the path and the formats it can.
    StoreNotFoundError
        If the input does not exist.
    """
    text = str(path_or_url)
    suffix = Path(text.rstrip("/")).suffix.lower()
    if suffix == ".npy":
        from cellvol.sources.npy import open_npy

        return open_npy(text)
    if suffix == ".zarr" or text.rstrip("/").endswith(".ome.zarr") or "://" in text:
        from cellvol.sources.ome_zarr import open_zarr

        return open_zarr(text)
    raise InvalidInputError(
        f"{text}: cannot tell its format from the name; cellvol converts .npy arrays and "
        "zarr / OME-Zarr (.zarr) inputs"
    )
