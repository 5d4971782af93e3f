"""Inputs cellvol can convert: each returns a lazy array, its voxel size if known, provenance.

One module per format (:mod:`~cellvol.sources.mrc`, :mod:`~cellvol.sources.tiff`,
:mod:`~cellvol.sources.hdf5`, :mod:`~cellvol.sources.npy`, :mod:`~cellvol.sources.ome_zarr`);
:func:`open_source` picks one from the path. Every source is read region by region by the
pyramid writer and pickles small, so dask workers in other processes can read it too. Opening a
source reads headers only, and checks them: a file that cannot be converted whole is refused
before anything is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cellvol.errors import InvalidInputError, StoreNotFoundError
from cellvol.spec import VoxelSize

__all__ = ["MRC_SUFFIXES", "Source", "open_source"]

MRC_SUFFIXES = (".mrc", ".mrcs", ".map", ".rec", ".st", ".ali", ".preali")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
_GLOB_CHARACTERS = frozenset("*?[")


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
    """

    array: Any
    voxel_size: VoxelSize | None
    description: str
    files: tuple[str, ...] = ()
    origin: tuple[float, float, float] | None = None
    image_stack: bool = False
    details: dict[str, Any] = field(default_factory=dict)


def open_source(
    path_or_url: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    int8: Literal["auto", "signed", "unsigned"] = "auto",
) -> Source:
    """Open an input for conversion, choosing the reader from its name.

    Parameters
    ----------
    path_or_url
        One of:

        - an MRC file (``.mrc .mrcs .map .rec .st .ali``);
        - one TIFF file (multi-page, BigTIFF, OME-TIFF, ImageJ), or a directory of per-slice
          TIFF files, or a glob pattern matching them (sorted naturally);
        - an HDF5 file (``.h5 .hdf5 .hdf``), with ``dataset`` or written ``file.h5:/path``;
        - a ``.npy`` array;
        - a zarr array or OME-Zarr image (``.zarr``, or any URL).
    dataset
        The HDF5 dataset to read (default: the only 3-D dataset in the file).
    int8
        How to read MRC mode 0 bytes, see :func:`cellvol.sources.mrc.open_mrc`.

    Raises
    ------
    InvalidInputError
        For a format cellvol cannot read, or a file it can read but not convert (each naming
        the file and the problem).
    StoreNotFoundError
        If the input does not exist.
    """
    text = os.fspath(path_or_url)
    if "://" in text:
        from cellvol.sources.ome_zarr import open_zarr

        return open_zarr(text)
    hdf5_path, hdf5_dataset = _split_hdf5(text)
    if hdf5_path is not None:
        from cellvol.sources.hdf5 import open_hdf5

        if dataset is not None and hdf5_dataset is not None and dataset != hdf5_dataset:
            raise InvalidInputError(
                f"{text}: names dataset {hdf5_dataset!r} but dataset={dataset!r} was also given"
            )
        return open_hdf5(hdf5_path, dataset or hdf5_dataset)
    if dataset is not None:
        raise InvalidInputError(f"{text}: a dataset name only applies to HDF5 files")
    if _GLOB_CHARACTERS & set(Path(text).name) and not Path(text).exists():
        from cellvol.sources.tiff import open_tiff_stack

        return open_tiff_stack(text)
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".zarr" or text.rstrip("/").endswith(".ome.zarr"):
        from cellvol.sources.ome_zarr import open_zarr

        return open_zarr(text)
    if not path.exists():
        raise StoreNotFoundError(f"{text}: no such file or directory")
    if path.is_dir():
        from cellvol.sources.tiff import open_tiff_stack

        return open_tiff_stack(text)
    if suffix in MRC_SUFFIXES:
        from cellvol.sources.mrc import open_mrc

        return open_mrc(path, int8=int8)
    if suffix in TIFF_SUFFIXES:
        from cellvol.sources.tiff import open_tiff

        return open_tiff(path)
    if suffix == ".npy":
        from cellvol.sources.npy import open_npy

        return open_npy(text)
    raise InvalidInputError(
        f"{text}: cannot tell its format from the name; cellvol converts MRC "
        f"({' '.join(MRC_SUFFIXES)}), TIFF ({' '.join(TIFF_SUFFIXES)}, or a directory or glob "
        f"of slices), HDF5 ({' '.join(HDF5_SUFFIXES)}), .npy arrays and zarr / OME-Zarr (.zarr)"
    )


def _split_hdf5(text: str) -> tuple[str | None, str | None]:
    """``file.h5`` or ``file.h5:/group/dataset`` -> (file, dataset); (None, None) otherwise."""
    lowered = text.lower()
    for suffix in HDF5_SUFFIXES:
        if lowered.endswith(suffix):
            return text, None
        marker = f"{suffix}:"
        at = lowered.find(marker)
        if at >= 0:
            return text[: at + len(suffix)], text[at + len(marker) :] or None
    return None, None
