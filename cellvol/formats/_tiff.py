"""TIFF volumes: one multi-page (Big)TIFF, OME-TIFF or ImageJ file, or a stack of slice files.

Read lazily with tifffile. Uncompressed, contiguous image data is memory-mapped; anything else
is read through tifffile's zarr view of the file, which decodes only the strips or tiles a
region touches. Per-slice stacks (FIB-SEM, serial block-face and serial-section exports) are
sorted naturally (``slice_2`` before ``slice_10``) and every slice's header is checked before
anything is written: a slice whose shape, type or page count differs is reported by name.

Voxel sizes come from OME-XML (``PhysicalSizeX/Y/Z`` with their units) or ImageJ tags
(``unit``, ``spacing`` and the X/Y resolution); plain TIFF resolution tags (usually a 72 dpi
default) are not trusted. Slice stacks rarely record the slice thickness: give it then.
"""

from __future__ import annotations

import collections
import functools
import glob
import itertools
import logging
import math
import os
import re
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt
import tifffile

from cellvol.errors import InvalidInputError, StoreNotFoundError
from cellvol.formats._channels import SeriesView, from_series
from cellvol.formats._source import TIFF_SUFFIXES, Source
from cellvol.formats._tiff_channels import image_axes_of, tiff_channels
from cellvol.formats._tiff_voxel import voxel_size_of
from cellvol.units import VoxelSize
from cellvol.write._inputs import MemmapSource, OpenedPerProcess, region_of

__all__ = ["TiffSeries", "TiffSlices", "natural_key", "open_tiff", "open_tiff_stack"]


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders digit runs by value: ``slice_2`` before ``slice_10``.

    Letters compare without case; the name itself breaks remaining ties.
    """
    parts = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part.lower())
        for part in re.split(r"(\d+)", name)
        if part
    )
    return (parts, name)


def open_tiff(path: str | Path) -> Source:
    """Open one TIFF file (multi-page, BigTIFF, OME-TIFF, ImageJ) as a ``(z, y, x)`` volume.

    A single page is a volume of depth 1. A series with channels (``C``) and time points
    (``T``), as OME-TIFF and ImageJ hyperstacks hold, is a ``(c, z, y, x)`` or
    ``(t, c, z, y, x)`` image, with the channel names and colours the file records.

    Raises
    ------
    StoreNotFoundError
        If the file does not exist.
    InvalidInputError
        If it is not a TIFF file, holds colour (multi-sample) data, axes other than t, c, z,
        y, x, more than three spatial ones, or pages that differ in shape or type.
    """
    file = Path(path).expanduser()
    name = str(path)
    if not file.is_file():
        raise StoreNotFoundError(f"{name}: no such file")
    with _tiff_file(file, name) as tif:
        series = tif.series[0]
        if len(tif.series) > 1 and not (tif.is_ome or tif.is_imagej):
            _report_differing_pages(tif, name)
        _check_extent(tif, name)
        axes, shape = series.axes, tuple(int(n) for n in series.shape)
        order, names = image_axes_of(axes, shape, name)
        out_shape = tuple(1 if i is None else shape[i] for i in order)
        zyx = out_shape[-3:]
        dtype = np.dtype(series.dtype)
        voxel = voxel_size_of(tif, zyx[0], name)
        lead = names[:-3]
        channel_names, channel_colors = (
            tiff_channels(tif, out_shape[lead.index("c")], name) if lead else (None, None)
        )
        offset = series.dataoffset
        kind = "OME-TIFF" if tif.is_ome else "ImageJ TIFF" if tif.is_imagej else "TIFF"
        compression = _compression(tif)
        pages = len(tif.pages)
        block = _decoded_block_bytes(tif.pages.first, dtype)
    array: Any
    # Per series axis: the image axis it becomes, or None for one of length one left out.
    view_axes = tuple(order.index(i) if i in order else None for i in range(len(shape)))
    used = [a for a in view_axes if a is not None]
    if offset is not None and used == sorted(used):
        # In the file's own order (axes of length one aside): mapped as the image's shape.
        array = MemmapSource(str(file.resolve()), dtype.str, out_shape, int(offset))
    elif offset is not None:  # channels stored inside z (ImageJ's z, c order): reordered
        mapped = MemmapSource(str(file.resolve()), dtype.str, shape, int(offset))
        array = SeriesView(mapped, out_shape, view_axes)
    else:
        array = TiffSeries(str(file.resolve()), out_shape, dtype.str, view_axes)
    shown = " × ".join(map(str, out_shape))
    size = file.stat().st_size
    return Source(
        array=array,
        voxel_size=voxel,
        description=(
            f"{file.name}: {kind} {shown} ({', '.join(names)}) {dtype.name}, "
            f"{pages} pages, {compression}, {size:,} bytes"
        ),
        files=(str(file.resolve()),),
        details={
            "format": kind,
            "file": file.name,
            "bytes": size,
            "axes": axes,
            "shape": list(shape),
            "compression": compression,
            "memory_mapped": offset is not None,
        },
        block_bytes=0 if offset is not None else block,
        axes=names,
        channel_names=channel_names,
        channel_colors=channel_colors,
    )


def open_tiff_stack(directory_or_pattern: str | Path) -> Source:
    """Open a directory of per-slice TIFF files, or a glob pattern matching them, as a volume.

    Slices are sorted naturally by file name. Hidden files and files without a TIFF suffix
    in a directory are ignored.

    Raises
    ------
    StoreNotFoundError
        If the directory does not exist, or nothing matches.
    InvalidInputError
        If a slice is not a readable single-image TIFF, or differs from the first in shape or
        type (naming the slice and both shapes).
    """
    files = _stack_files(str(directory_or_pattern))
    first = _slice_header(files[0], len(files))
    shape, dtype = first.shape, first.dtype
    layouts: list[int | None] = [first.offset]
    blocks = [first.block_bytes]
    for file in files[1:]:
        header = _slice_header(file, len(files))
        blocks.append(header.block_bytes)
        if header.shape != shape or header.dtype != dtype:
            raise InvalidInputError(
                f"{file}: slice is {header.shape[0]} × {header.shape[1]} {header.dtype}, but "
                f"{files[0].name} (the first slice) is {shape[0]} × {shape[1]} {dtype}; "
                "every slice of a stack must match"
            )
        layouts.append(header.offset)
    voxel, compression = first.voxel_size, first.compression
    zyx = (len(files), shape[0], shape[1])
    total = sum(f.stat().st_size for f in files)
    return Source(
        array=TiffSlices(tuple(str(f.resolve()) for f in files), zyx, dtype.str, tuple(layouts)),
        voxel_size=voxel if voxel is not None and len(files) > 1 else None,
        description=(
            f"{files[0].parent}: stack of {len(files)} TIFF slices {files[0].name} .. "
            f"{files[-1].name}, {zyx[0]} × {zyx[1]} × {zyx[2]} (z, y, x) {dtype.name}, "
            f"{compression}, {total:,} bytes"
        ),
        files=tuple(str(f.resolve()) for f in files),
        details={
            "format": "TIFF slice stack",
            "directory": str(files[0].parent),
            "slices": len(files),
            "first": files[0].name,
            "last": files[-1].name,
            "bytes": total,
            "compression": compression,
            "memory_mapped": all(layout is not None for layout in layouts),
        },
        block_bytes=max(blocks),
    )


# A strip or tile this large is decoded once and kept while the regions inside it are read:
# decoding it again for every region a write asks for is the cost that grows with its size.
LARGE_BLOCK_BYTES: Final = 16 * 2**20


@dataclass(frozen=True)  # not slotted: the opened view is cached on the instance
class TiffSeries(OpenedPerProcess):
    """The first image series of a compressed or non-contiguous TIFF file, read by region.

    Strips or tiles of at least ``LARGE_BLOCK_BYTES`` decoded are decoded once each and kept
    (the last two) while regions inside them are read.
    """

    filename: str
    shape: tuple[int, ...]
    dtype_str: str
    view_axes: tuple[int | None, ...]
    """Per axis of the series: the image axis it is, or None for a length-one axis."""
    _HANDLES: ClassVar[tuple[str, ...]] = ("_view", "_blocks")

    @property
    def dtype(self) -> np.dtype[Any]:
        """Element type."""
        return np.dtype(self.dtype_str)

    @functools.cached_property
    def _view(self) -> Any:
        import zarr

        store = tifffile.TiffFile(self.filename).series[0].aszarr()
        return zarr.open_array(store, mode="r")

    @functools.cached_property
    def _blocks(self) -> DecodedBlocks | None:
        view = self._view
        block_bytes = math.prod(view.chunks) * view.dtype.itemsize
        return DecodedBlocks(view, keep=2) if block_bytes >= LARGE_BLOCK_BYTES else None

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        region = region_of(key, self.shape)

        def read(inner: tuple[slice, ...]) -> npt.NDArray[Any]:
            blocks = self._blocks
            return np.asarray(self._view[inner]) if blocks is None else blocks.read(inner)

        try:
            return from_series(read, region, self.view_axes)
        except Exception as exc:  # any decoder's error (zlib.error, ...): the file is damaged
            raise InvalidInputError(
                f"{self.filename}: cannot read region {region} ({exc})"
            ) from exc


class DecodedBlocks:
    """Regions of a chunked array read through its decoded chunks, the last ``keep`` kept.

    For arrays whose chunks (a TIFF's strips or tiles) are much larger than the regions read:
    each chunk is decoded once while reads stay inside it, not once per read. Safe across
    threads; a chunk is decoded by one of them while the others wanting it wait. A block
    evicted while another thread still copies from it lives until that copy ends.
    """

    def __init__(self, array: Any, keep: int) -> None:
        self._array = array
        self._keep = keep
        self._decoded: collections.OrderedDict[tuple[int, ...], npt.NDArray[Any]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()
        self._decoding: dict[tuple[int, ...], threading.Lock] = {}

    def read(self, region: tuple[slice, ...]) -> npt.NDArray[Any]:
        """The array's values in ``region`` (slices with steps of 1 and known bounds)."""
        chunks, shape = self._array.chunks, self._array.shape
        out = np.empty(tuple(r.stop - r.start for r in region), self._array.dtype)
        spans = [
            range(r.start // c, (r.stop - 1) // c + 1) if r.stop > r.start else range(0)
            for r, c in zip(region, chunks, strict=True)
        ]
        for index in itertools.product(*spans):
            block = self._block(index, chunks, shape)
            starts = [i * c for i, c in zip(index, chunks, strict=True)]
            source, target = [], []
            for r, start, n in zip(region, starts, block.shape, strict=True):
                low, high = max(r.start, start), min(r.stop, start + n)
                source.append(slice(low - start, high - start))
                target.append(slice(low - r.start, high - r.start))
            out[tuple(target)] = block[tuple(source)]
        return out

    def _block(
        self, index: tuple[int, ...], chunks: Sequence[int], shape: Sequence[int]
    ) -> npt.NDArray[Any]:
        with self._lock:
            block = self._decoded.get(index)
            if block is not None:
                self._decoded.move_to_end(index)
                return block
            decoding = self._decoding.setdefault(index, threading.Lock())
        # One thread decodes a block while the others wanting it wait; other blocks decode
        # meanwhile on other threads.
        with decoding:
            with self._lock:
                block = self._decoded.get(index)
            if block is None:
                whole = tuple(
                    slice(i * c, min((i + 1) * c, n))
                    for i, c, n in zip(index, chunks, shape, strict=True)
                )
                block = np.asarray(self._array[whole])
                with self._lock:
                    self._decoded[index] = block
                    while len(self._decoded) > self._keep:
                        self._decoded.popitem(last=False)
                    self._decoding.pop(index, None)
            return block


@dataclass(frozen=True)
class TiffSlices:
    """A stack of single-image TIFF files as one ``(z, y, x)`` array, read slice by slice.

    Attributes
    ----------
    filenames
        One file per z index.
    shape, dtype_str
        The stack's shape and element type (checked when it was opened).
    offsets
        Per file, where its uncompressed contiguous pixels start (memory-mapped), or None to
        read through tifffile (compressed, striped or tiled data).
    """

    filenames: tuple[str, ...]
    shape: tuple[int, int, int]
    dtype_str: str
    offsets: tuple[int | None, ...]

    @property
    def dtype(self) -> np.dtype[Any]:
        """Element type."""
        return np.dtype(self.dtype_str)

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        zs, ys, xs = region_of(key, self.shape)
        out = np.empty((zs.stop - zs.start, ys.stop - ys.start, xs.stop - xs.start), self.dtype)
        for i, z in enumerate(range(zs.start, zs.stop)):
            out[i] = self._slice(z, ys, xs)
        return out

    def _slice(self, z: int, ys: slice, xs: slice) -> npt.NDArray[Any]:
        filename, offset = self.filenames[z], self.offsets[z]
        if offset is not None:
            mapped = np.memmap(
                filename, dtype=self.dtype, mode="r", offset=offset, shape=self.shape[1:]
            )
            try:
                return np.array(mapped[ys, xs])
            finally:
                mapped._mmap.close()  # type: ignore[attr-defined]  # free the map now, not at GC
        try:
            data = tifffile.imread(filename, selection=(ys, xs))
        except Exception as exc:  # any decoder's error (zlib.error, ...): the slice is damaged
            raise InvalidInputError(f"{filename}: cannot read slice {z} ({exc})") from exc
        return np.asarray(data).reshape(ys.stop - ys.start, xs.stop - xs.start)


# -- helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SliceHeader:
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    offset: int | None  # where contiguous uncompressed pixels start, else None
    voxel_size: VoxelSize | None
    compression: str
    block_bytes: int  # decoded size of one strip or tile; 0 when memory-mapped


def _slice_header(file: Path, depth: int) -> _SliceHeader:
    """What one file of a slice stack holds, checked to be a single 2-D image."""
    with _tiff_file(file, str(file)) as tif:
        if len(tif.pages) != 1:
            raise InvalidInputError(
                f"{file}: holds {len(tif.pages)} pages; every file of a slice stack must hold "
                "one image"
            )
        series = tif.series[0]
        _check_extent(tif, str(file))
        order, names = image_axes_of(series.axes, tuple(series.shape), str(file))
        shape = tuple(int(series.shape[i]) for i in order if i is not None)
        if len(shape) != 2 or len(names) != 3:
            raise InvalidInputError(
                f"{file}: a slice must be a 2-D image; it is {tuple(series.shape)} ({series.axes})"
            )
        offset = series.dataoffset
        dtype = np.dtype(series.dtype)
        return _SliceHeader(
            shape=shape,
            dtype=dtype,
            offset=None if offset is None else int(offset),
            voxel_size=voxel_size_of(tif, depth, str(file)),
            compression=_compression(tif),
            block_bytes=0 if offset is not None else _decoded_block_bytes(tif.pages.first, dtype),
        )


def _decoded_block_bytes(page: Any, dtype: np.dtype[Any]) -> int:
    """Bytes one strip or tile of ``page`` decodes to: what a reader decodes at the least."""
    return math.prod(int(n) for n in page.chunks) * dtype.itemsize


class _tiff_file:
    """``tifffile.TiffFile``, with every page header read, as a context manager.

    An unreadable file is an InvalidInputError; so is anything tifffile would only log and
    skip (a page offset past the end of a truncated file would otherwise lose those pages).
    """

    def __init__(self, file: Path, name: str) -> None:
        self._file, self._name = file, name

    def __enter__(self) -> tifffile.TiffFile:
        complaints = _Complaints()
        logger = logging.getLogger("tifffile")
        logger.addHandler(complaints)
        try:
            self._tif = tifffile.TiffFile(self._file)
            pages = len(self._tif.pages)  # reads every page header
            if not pages or not self._tif.series:
                raise ValueError("no image data")
        except (
            tifffile.TiffFileError,
            ValueError,
            OSError,
            IndexError,
            KeyError,
            struct.error,
        ) as exc:
            raise InvalidInputError(f"{self._name}: not a readable TIFF file ({exc})") from exc
        finally:
            logger.removeHandler(complaints)
        if complaints.messages:
            self._tif.close()
            raise InvalidInputError(
                f"{self._name}: damaged TIFF file ({'; '.join(complaints.messages[:3])})"
            )
        return self._tif

    def __exit__(self, *exc: object) -> None:
        self._tif.close()


class _Complaints(logging.Handler):
    """Collects what tifffile logs at warning level or above while a file is opened."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _stack_files(text: str) -> list[Path]:
    path = Path(text).expanduser()
    if path.is_dir():
        files = [
            p
            for p in path.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in TIFF_SUFFIXES
        ]
        if not files:
            raise StoreNotFoundError(
                f"{text}: directory holds no TIFF files ({', '.join(TIFF_SUFFIXES)})"
            )
    elif set("*?[") & set(path.name):
        files = [Path(p) for p in glob.glob(os.path.expanduser(text)) if Path(p).is_file()]
        if not files:
            raise StoreNotFoundError(f"{text}: no file matches this pattern")
    else:
        raise StoreNotFoundError(f"{text}: no such directory")
    return sorted(files, key=lambda p: natural_key(p.name))


def _check_extent(tif: tifffile.TiffFile, name: str) -> None:
    """Refuse a file whose image data would run past its end (a truncated file)."""
    size = tif.filehandle.size
    for index, page in enumerate(tif.pages):
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)]
        if ends and max(ends) > size:
            raise InvalidInputError(
                f"{name}: truncated: page {index}'s image data ends at byte {max(ends):,} but "
                f"the file has {size:,} bytes"
            )


def _compression(tif: tifffile.TiffFile) -> str:
    code = tif.pages.first.compression
    return str(getattr(code, "name", code)).lower()


def _report_differing_pages(tif: tifffile.TiffFile, name: str) -> None:
    first = tif.pages.first
    for index, page in enumerate(tif.pages):
        if page.shape != first.shape or page.dtype != first.dtype:
            raise InvalidInputError(
                f"{name}: page {index} is {page.shape} {page.dtype}, but page 0 is "
                f"{first.shape} {first.dtype}; every page of a volume must match"
            )
