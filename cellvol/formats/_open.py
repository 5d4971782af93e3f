"""Pick the reader of an input from its name: :func:`open_source`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from cellvol.errors import InvalidInputError, StoreNotFoundError
from cellvol.formats._source import HDF5_SUFFIXES, MRC_SUFFIXES, TIFF_SUFFIXES, Source

__all__ = ["open_source"]

_GLOB_CHARACTERS = frozenset("*?[")


def open_source(
    path_or_url: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    int8: Literal["auto", "signed", "unsigned"] = "auto",
    axes: str | None = None,
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
        How to read MRC mode 0 bytes, see :func:`cellvol.formats._mrc.open_mrc`.
    axes
        The stored axes of an HDF5 dataset or ``.npy`` array with channels or time points,
        e.g. ``"czyx"``, ``"zcyx"``, ``"tczyx"`` (default: ``zyx`` for HDF5; by the number of
        dimensions for ``.npy``). TIFF and OME-Zarr inputs record their own.

    Raises
    ------
    InvalidInputError
        For a format cellvol cannot read, or a file it can read but not convert (each naming
        the file and the problem).
    StoreNotFoundError
        If the input does not exist.
    """
    # Each format's module is imported when a file of that format is opened: their libraries
    # (mrcfile, tifffile, h5py) come with the optional ``convert`` extra.
    text = os.fspath(path_or_url)
    if "://" in text:
        from cellvol.formats._zarr import open_zarr

        return open_zarr(text)
    hdf5_path, hdf5_dataset = _split_hdf5(text)
    if hdf5_path is not None:
        from cellvol.formats._hdf5 import open_hdf5

        if dataset is not None and hdf5_dataset is not None and dataset != hdf5_dataset:
            raise InvalidInputError(
                f"{text}: names dataset {hdf5_dataset!r} but dataset={dataset!r} was also given"
            )
        return open_hdf5(hdf5_path, dataset or hdf5_dataset, axes)
    if axes is not None and not text.lower().endswith(".npy"):
        raise InvalidInputError(
            f"{text}: axes only apply to HDF5 datasets and .npy arrays (the others record theirs)"
        )
    if dataset is not None:
        raise InvalidInputError(f"{text}: a dataset name only applies to HDF5 files")
    if _GLOB_CHARACTERS & set(Path(text).name) and not Path(text).exists():
        from cellvol.formats._tiff import open_tiff_stack

        return open_tiff_stack(text)
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".zarr" or text.rstrip("/").endswith(".ome.zarr"):
        from cellvol.formats._zarr import open_zarr

        return open_zarr(text)
    if not path.exists():
        raise StoreNotFoundError(f"{text}: no such file or directory")
    if path.is_dir():
        from cellvol.formats._tiff import open_tiff_stack

        return open_tiff_stack(text)
    if suffix in MRC_SUFFIXES:
        from cellvol.formats._mrc import open_mrc

        return open_mrc(path, int8=int8)
    if suffix in TIFF_SUFFIXES:
        from cellvol.formats._tiff import open_tiff

        return open_tiff(path)
    if suffix == ".npy":
        from cellvol.formats._npy import open_npy

        return open_npy(text, axes)
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
