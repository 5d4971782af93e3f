"""Raw ``.npy`` arrays, memory-mapped so that no more than a region is ever read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellvol.errors import InvalidInputError, StoreNotFoundError
from cellvol.formats._channels import reorder_axes
from cellvol.formats._source import Source
from cellvol.units import SPATIAL_AXES
from cellvol.write._channels import AXES_BY_NDIM

__all__ = ["open_npy"]


def open_npy(path: str, axes: str | None = None) -> Source:
    """Memory-map a ``.npy`` file (no voxel size: the format records none).

    ``axes`` are its stored axes (e.g. ``"zcyx"``); by default ``zyx``, ``czyx`` or ``tczyx``
    by its number of dimensions.

    Raises
    ------
    StoreNotFoundError
        If the file does not exist.
    InvalidInputError
        If it is not a readable ``.npy`` array (naming the file and numpy's complaint).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise StoreNotFoundError(f"{path}: no such file")
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidInputError(f"{path}: not a readable .npy array ({exc})") from exc
    size = file.stat().st_size
    letters = axes or "".join(AXES_BY_NDIM.get(array.ndim, SPATIAL_AXES))
    image, names = reorder_axes(array, letters, path)
    return Source(
        array=image,
        voxel_size=None,
        description=f"{file.name}: .npy array {array.shape} {array.dtype}, {size} bytes",
        details={"file": str(file.resolve()), "bytes": size},
        axes=names,
    )
