"""Raw ``.npy`` arrays, memory-mapped so that no more than a region is ever read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellvol.errors import InvalidInputError, StoreNotFoundError
from cellvol.formats._source import Source

__all__ = ["open_npy"]


def open_npy(path: str) -> Source:
    """Memory-map a ``.npy`` file (no voxel size: the format records none).

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
    return Source(
        array=array,
        voxel_size=None,
        description=f"{file.name}: .npy array {array.shape} {array.dtype}, {size} bytes",
        details={"file": str(file.resolve()), "bytes": size},
    )
