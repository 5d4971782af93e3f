"""Lazy arrays that sources hand to the writer: small to pickle, read region by region.

A source must travel to dask workers in other processes without its data, so each class here
holds only what is needed to reopen the file (name, offset, layout) and opens it again on first
use in the process that reads it.
"""

from __future__ import annotations

import math
import mmap
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from numpy.lib.array_utils import byte_bounds

from cellvol.errors import InvalidInputError
from cellvol.write._mapped import MappedPages
from cellvol.write._plan import Region

__all__ = [
    "MemmapSource",
    "OpenedPerProcess",
    "Transposed",
    "portable",
    "read_source",
    "region_of",
]

_CAN_RELEASE = hasattr(mmap, "MADV_DONTNEED")  # Linux and macOS
_OPENING = threading.Lock()
_FOLIO_ALIGNMENT = 2 * 2**20  # the largest page-cache folio (a PMD) on common 4 KiB-page systems
_RELEASE_BATCH_BYTES = 16 * 2**20  # mapped file pages per reading thread, at most about this


class OpenedPerProcess:
    """Pickles without the open handles it caches: each process reopens the file on first use.

    Subclasses cache their handle in ``__dict__`` under a name listed in ``_HANDLES``.
    """

    _HANDLES: ClassVar[tuple[str, ...]] = ()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._HANDLES}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


@dataclass(frozen=True)  # not slotted: the opened map is cached on the instance
class MemmapSource(OpenedPerProcess):
    """A memory-mapped array by file name, so it pickles as a reference, not as its data.

    Each read returns a copy of the region and then tells the kernel this process no longer
    needs the file pages it touched (``MADV_DONTNEED``). They stay in the page cache, but no
    longer count in the process's resident memory, which therefore does not grow with the
    file's size even though every byte of a multi-terabyte file passes through the map. A
    write's tasks keep some of the pages mapped for their next reads, within a budget taken
    from the write's memory limit (:mod:`cellvol.write._mapped`).
    """

    filename: str
    dtype_str: str
    shape: tuple[int, ...]
    offset: int
    order: Literal["C", "F"] = "C"
    _HANDLES: ClassVar[tuple[str, ...]] = ("_opened",)

    @property
    def dtype(self) -> np.dtype[Any]:
        """Element type (with its byte order)."""
        return np.dtype(self.dtype_str)

    @property
    def _mapped(self) -> tuple[MappedPages, npt.NDArray[Any]]:
        """The file's map and the array over it, made once per process (writer threads race)."""
        opened = self.__dict__.get("_opened")
        if opened is None:
            with _OPENING:
                opened = self.__dict__.get("_opened")
                if opened is None:
                    with open(self.filename, "rb") as stream:
                        file_map = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
                    array = np.ndarray(
                        self.shape, self.dtype, buffer=file_map, offset=self.offset,
                        order=self.order,
                    )  # fmt: skip
                    opened = self.__dict__["_opened"] = (MappedPages(file_map), array)
        return opened

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        pages, array = self._mapped
        selected = array[key]
        if not (_CAN_RELEASE and selected.size and np.may_share_memory(selected, array)):
            return np.array(selected)
        # Leading axes of length one (one channel of one time point) set aside: the batches
        # below then run along z.
        lead = 0
        while lead < selected.ndim - 1 and selected.shape[lead] == 1:
            lead += 1
        if not lead:
            return self._copied(pages, array, selected)
        view = selected.reshape(selected.shape[lead:])
        return self._copied(pages, array, view).reshape(selected.shape)

    def _copied(
        self, pages: MappedPages, array: npt.NDArray[Any], view: npt.NDArray[Any]
    ) -> npt.NDArray[Any]:
        """A copy of ``view`` of the map, releasing the pages it read as it goes."""
        block: npt.NDArray[Any] = np.empty_like(view, order="C")
        if view.ndim == 1:
            self._copy(pages, array, view, block)
            return block
        # Copy a few outer indices (z planes) at a time and release their pages, so the pages
        # mapped at any moment are a batch's span, not the whole region's. Each release costs
        # a TLB flush on every core running this process, so batches are about
        # _RELEASE_BATCH_BYTES rather than a plane (a release per plane slowed builds).
        _, plane_span = self._span(pages, array, view[0])
        planes = max(1, _RELEASE_BATCH_BYTES // plane_span)
        for start in range(0, len(view), planes):
            part = slice(start, start + planes)
            self._copy(pages, array, view[part], block[part])
        return block

    def _copy(
        self,
        pages: MappedPages,
        array: npt.NDArray[Any],
        view: npt.NDArray[Any],
        out: npt.NDArray[Any],
    ) -> None:
        """Copy ``view`` into ``out``; hand the pages it reads to ``pages``, to release or keep.

        Room for kept pages is made before the copy, so that the older spans released for
        them go first: a span runs from a batch's first byte to its last, across the rows of
        its planes that the next shard along y reads, and released after the copy it would take
        the rows just read with it, for the shard beside along x to fault in again. The span
        itself is noted after the copy, so that no other thread releases it mid-copy.
        """
        span = self._span(pages, array, view)
        if self.order != "C" or array.ndim < 2 or view.ndim < 2:
            out[...] = view
            pages.release_span(span)  # no rows to tell reads apart by: released at once
            return
        # The file's rows (its last axis) that the view crosses; every page of them may be
        # mapped. Shards side by side along the last axis cross the same rows.
        row = array.strides[-2]
        low, high = (a - array.ctypes.data for a in byte_bounds(view))
        count = math.prod(view.shape[:-1])
        rows = (low // row, (high - 1) // row, count)
        kept = pages.make_room(rows, count * row)
        out[...] = view
        if kept:
            pages.note(rows, count * row, span)
        else:  # more than the thread's budget: released at once
            pages.release_span(span)

    def _span(
        self, pages: MappedPages, array: npt.NDArray[Any], view: npt.NDArray[Any]
    ) -> tuple[int, int]:
        """(start, length) in the file of the pages ``view`` spans, for ``madvise``.

        The kernel maps a whole large folio (up to 2 MiB) on a fault, so the span is widened to
        that alignment, or the folios at its ends would stay mapped.
        """
        low, high = (a - array.ctypes.data + self.offset for a in byte_bounds(view))
        first = low - low % _FOLIO_ALIGNMENT
        end = min(pages.size, -(-high // _FOLIO_ALIGNMENT) * _FOLIO_ALIGNMENT)
        return first, end - first


@dataclass(frozen=True)
class Transposed:
    """A lazy array seen with its axes permuted, as ``numpy.transpose`` would (no data read).

    Attributes
    ----------
    base
        Any array with ``shape``, ``dtype`` and numpy-style slicing.
    axes
        ``axes[i]`` is the axis of ``base`` that becomes axis ``i``.
    """

    base: Any
    axes: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape after the permutation."""
        return tuple(int(self.base.shape[a]) for a in self.axes)

    @property
    def dtype(self) -> np.dtype[Any]:
        """Element type of the base array."""
        dtype: np.dtype[Any] = np.dtype(self.base.dtype)
        return dtype

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        region = region_of(key, self.shape)
        inner: list[slice] = [slice(None)] * len(self.axes)
        for out_axis, base_axis in enumerate(self.axes):
            inner[base_axis] = region[out_axis]
        block = np.asarray(self.base[tuple(inner)])
        return np.ascontiguousarray(block.transpose(self.axes))


def region_of(key: Any, shape: Sequence[int]) -> tuple[slice, ...]:
    """Turn a key of slices with unit steps (what the writer asks for) into explicit slices.

    Raises
    ------
    IndexError
        For anything but a tuple of slices with unit step (integers, steps, fancy indexing):
        the lazy sources answer region reads, not general indexing.
    """
    parts = key if isinstance(key, tuple) else (key,)
    if len(parts) < len(shape):
        parts = (*parts, *([slice(None)] * (len(shape) - len(parts))))
    if len(parts) != len(shape) or not all(isinstance(p, slice) for p in parts):
        raise IndexError(f"expected {len(shape)} slices, got {key!r}")
    region = tuple(p.indices(n) for p, n in zip(parts, shape, strict=True))
    if any(step != 1 for _, _, step in region):
        raise IndexError(f"only unit-step slices are supported, got {key!r}")
    return tuple(slice(start, max(start, stop)) for start, stop, _ in region)


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


def _is_dask_array(source: Any) -> bool:
    # Without importing dask (about a second): whoever made a dask array imported it first.
    dask_array = sys.modules.get("dask.array")
    return dask_array is not None and isinstance(source, dask_array.Array)


def read_source(source: Any, region: Region) -> npt.NDArray[Any]:
    """Read one region of a source as numpy, checking it has the shape asked for."""
    if _is_dask_array(source):
        # Synchronously in this task's thread: the tasks themselves are the parallelism.
        block = source[region].compute(scheduler="synchronous")
    else:
        block = source[region]
    data = np.asarray(block)
    expected = tuple(r.stop - r.start for r in region)
    if data.shape != expected:
        raise InvalidInputError(
            f"source returned shape {data.shape} for region {region}; expected {expected}"
        )
    return data
