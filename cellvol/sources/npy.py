"""Raw ``.npy`` arrays, memory-mapped so that no more than a region is ever read."""

from __future__ import annotations

import functools
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from cellvol.errors import InvalidInputError, StoreNotFoundError
from cellvol.sources import Source

__all__ = ["MemmapSource", "open_npy", "portable"]


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


@dataclass(frozen=True)  # not slotted: the opened map is cached on the instance
class MemmapSource:
    """A memory-mapped array by file name, so it pickles as a reference, not as its data."""

    filename: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    order: Literal["C", "F"]

    @functools.cached_property
    def _array(self) -> npt.NDArray[Any]:
        return np.memmap(
            self.filename,
            dtype=np.dtype(self.dtype),
            mode="r",
            shape=self.shape,
            offset=self.offset,
            order=self.order,
        )

    def __getitem__(self, key: Any) -> Any:
        return self._array[key]


def portable(source: Any) -> Any:
    """Replace a memory-mapped array by a reference that workers reopen.

    Only the mapping itself qualifies (its ``base`` is the ``mmap`` object): numpy views of a
    memmap are memmaps too and keep the parent's file name and offset, so they travel as
    ordinary arrays rather than be reopened as the wrong region.
    """
    if (
        isinstance(source, np.memmap)
        and isinstance(getattr(source, "base", None), mmap.mmap)
        and source.filename
        and (source.flags.c_contiguous or source.flags.f_contiguous)
    ):
        return MemmapSource(
            str(source.filename),
            str(source.dtype),
            tuple(source.shape),
            int(source.offset),
            "C" if source.flags.c_contiguous else "F",
        )
    return source
