"""Ingest: convert a file (MRC, TIFF, HDF5, .npy, zarr) into a multiscale OME-Zarr, with provenance.

:func:`convert` is what ``cellvol convert`` runs: it opens the input with ``open_source``
(which checks headers and refuses bad files before anything is written), takes the voxel
size and origin the file records unless told otherwise, and hands the lazy array to
:func:`cellvol.write_pyramid`. Meanwhile a background thread streams
every input file through SHA-256, so the provenance record names each file with its size and
digest without a second pass over the data after the write.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from cellvol.errors import InvalidInputError, SourceChangedError
from cellvol.formats._channels import stack_channels
from cellvol.formats._open import open_source
from cellvol.formats._source import Source
from cellvol.progress import ProgressCallback
from cellvol.units import VoxelSize, convert_lengths
from cellvol.write._downsample import Method
from cellvol.write._plan import DEFAULT_MEMORY_LIMIT
from cellvol.write._pyramid import WriteResult, supported_dtype, write_pyramid

if TYPE_CHECKING:
    from distributed import Client


__all__ = ["convert", "open_input", "sha256_file"]

_DIGEST_BLOCK: Final = 8 * 2**20  # hashlib releases the GIL on blocks this large


def convert(
    src: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    *,
    voxel_size: VoxelSize | float | Sequence[float] | None = None,
    unit: str = "nanometer",
    dataset: str | None = None,
    int8: Literal["auto", "signed", "unsigned"] = "auto",
    method: Method = "mean",
    chunks: Sequence[int] | None = None,
    shards: Sequence[int] | None = None,
    n_levels: int | None = None,
    compression_level: int = 3,
    uncompressed_fraction: float | None = None,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    workers: int | None = None,
    client: Client | None = None,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = True,
    break_lease: bool = False,
    digest: bool = True,
    progress: ProgressCallback | None = None,
    opened: Source | None = None,
    ome_version: str = "0.5",
    axes: str | None = None,
    channel_names: Sequence[str] | None = None,
    channel_colors: Sequence[str] | None = None,
) -> WriteResult:
    """Convert an input file into a multiscale OME-Zarr 0.5 image, or resume that conversion.

    Parameters
    ----------
    src
        The input: see :func:`cellvol.formats._open.open_source` for the formats. Or one
        volume per channel, ``{name: input}`` (a TIFF stack per channel, say), which become
        the channels of one ``(c, z, y, x)`` image, in the mapping's order.
    dest
        Local path, ``file://`` or ``s3://`` URL of the image to write.
    voxel_size, unit
        Overrides the voxel size the file records (required when it records none).
    dataset
        The HDF5 dataset to read.
    int8
        How MRC mode 0 bytes are read (see :mod:`cellvol.formats._mrc`).
    method, chunks, shards, n_levels, compression_level, uncompressed_fraction
        As for :func:`cellvol.write_pyramid`.
    memory_limit, workers, client
        As for :func:`cellvol.write_pyramid`.
    storage_options, overwrite, resume, break_lease, progress, ome_version
        As for :func:`cellvol.write_pyramid`.
    axes
        The stored axes of an HDF5 dataset or ``.npy`` array with channels, e.g. ``"czyx"``.
    channel_names, channel_colors
        Override the channels' names and ``RRGGBB`` colours the input records (or lacks).
    opened
        ``src`` as ``open_source`` already opened it (with ``dataset`` and ``int8``), so its
        headers are not read twice; a slice stack can be thousands of files.
    digest
        Stream each input file through SHA-256 for the provenance record (on by default; the
        files are read once more, alongside the write).

    Returns
    -------
    WriteResult

    Raises
    ------
    InvalidInputError
        If the input cannot be read or converted, or records no voxel size and none is given.
    SourceChangedError
        If an input file changed while it was converted.
    """
    source = (
        opened if opened is not None else open_input(src, dataset=dataset, int8=int8, axes=axes)
    )
    name = f"channels {', '.join(src)}" if isinstance(src, Mapping) else os.fspath(src)
    _check_element_type(source, name)
    _check_blocks(source, name, memory_limit)
    voxel = _voxel_size(source, name, voxel_size, unit)
    origin = _origin_in(source, voxel.unit)
    digests = _Digests(source.files) if digest else None
    if digests is not None:
        digests.start()

    def record() -> dict[str, Any]:
        files = digests.result() if digests is not None else _file_sizes(source.files)
        return {"files": files, "details": source.details}

    try:
        return write_pyramid(
            source.array,
            dest,
            voxel,
            method=method,
            chunks=chunks,
            shards=shards,
            n_levels=n_levels,
            origin=origin,
            downsample_z=not source.image_stack,
            compression_level=compression_level,
            uncompressed_fraction=uncompressed_fraction,
            memory_limit=memory_limit,
            workers=workers,
            client=client,
            source_description=source.description,
            source_record=record,
            storage_options=storage_options,
            overwrite=overwrite,
            resume=resume,
            break_lease=break_lease,
            progress=progress,
            ome_version=ome_version,
            axes=source.axes,
            channel_names=channel_names if channel_names is not None else source.channel_names,
            channel_colors=channel_colors if channel_colors is not None else source.channel_colors,
        )
    finally:
        if digests is not None:
            digests.cancel()


def open_input(
    src: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
    *,
    dataset: str | None = None,
    int8: Literal["auto", "signed", "unsigned"] = "auto",
    axes: str | None = None,
) -> Source:
    """Open what :func:`convert` converts: one input, or one volume per channel by name."""
    if isinstance(src, Mapping):
        return stack_channels(
            src, lambda path: open_source(path, dataset=dataset, int8=int8, axes=axes)
        )
    return open_source(src, dataset=dataset, int8=int8, axes=axes)


def sha256_file(path: str | os.PathLike[str], cancelled: threading.Event | None = None) -> str:
    """The SHA-256 of a file, streamed in 8 MiB blocks (constant memory).

    Returns an empty string if ``cancelled`` is set before the end.
    """
    digest = hashlib.sha256()
    buffer = bytearray(_DIGEST_BLOCK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as stream:
        while n := stream.readinto(view):
            if cancelled is not None and cancelled.is_set():
                return ""
            digest.update(view[:n])
    return digest.hexdigest()


class _Digests(threading.Thread):
    """Hashes the input files in the background while the pyramid is written."""

    def __init__(self, files: Sequence[str]) -> None:
        super().__init__(name="cellvol-digest", daemon=True)
        self._files = list(files)
        self._before = [_signature(name) for name in self._files]
        self._cancelled = threading.Event()
        self._digests: list[str] = []
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            for name in self._files:
                self._digests.append(sha256_file(name, self._cancelled))
        except BaseException as exc:  # reported by result() in the calling thread
            self._error = exc

    def cancel(self) -> None:
        self._cancelled.set()

    def result(self) -> list[dict[str, Any]]:
        """Wait for the digests; check no file changed since the conversion began."""
        self.join()
        if self._error is not None:
            raise InvalidInputError(f"cannot read an input file: {self._error}") from self._error
        for name, before in zip(self._files, self._before, strict=True):
            if _signature(name) != before:
                raise SourceChangedError(
                    f"{name}: changed while it was converted (size or modification time); "
                    "convert it again once it is complete"
                )
        return [
            entry | {"sha256": digest}
            for entry, digest in zip(_file_sizes(self._files), self._digests, strict=True)
        ]


def _signature(name: str) -> tuple[int, int]:
    """Size and modification time: what changes when a file is rewritten or appended to."""
    stat = os.stat(name)
    return (stat.st_size, stat.st_mtime_ns)


def _file_sizes(files: Sequence[str]) -> list[dict[str, Any]]:
    return [{"name": Path(name).name, "bytes": os.stat(name).st_size} for name in files]


def _check_element_type(source: Source, src: str | os.PathLike[str]) -> None:
    dtype = np.dtype(source.array.dtype)
    if not supported_dtype(dtype):
        raise InvalidInputError(
            f"{os.fspath(src)}: holds {dtype} voxels; cellvol stores integer and float volumes"
        )


def _check_blocks(source: Source, src: str | os.PathLike[str], memory_limit: int) -> None:
    """Refuse inputs whose every read decodes more than the memory limit allows.

    A reader keeps two decoded strips or tiles and decodes a third, beside the write's own
    buffers: a block may take a quarter of the limit.
    """
    if source.block_bytes * 4 <= memory_limit:
        return
    mib = 2**20
    raise InvalidInputError(
        f"{os.fspath(src)}: each of its compressed strips or tiles decodes to "
        f"{source.block_bytes / mib:,.0f} MiB, and every read decodes at least one whole; that "
        f"is over a quarter of the memory limit ({memory_limit / mib:,.0f} MiB)",
        hint=f"allow {4 * source.block_bytes / mib:,.0f} MiB or more ({{memory_limit=...}}), or "
        "save the file again with smaller strips or tiles",
    )


def _voxel_size(
    source: Source,
    src: str | os.PathLike[str],
    voxel_size: VoxelSize | float | Sequence[float] | None,
    unit: str,
) -> VoxelSize:
    if voxel_size is not None:
        return VoxelSize.of(voxel_size, unit)
    if source.voxel_size is not None:
        return source.voxel_size
    raise InvalidInputError(
        f"{os.fspath(src)}: records no complete voxel size",
        hint="give one with {voxel_size=(z, y, x)}",
    )


def _origin_in(source: Source, unit: str) -> tuple[float, float, float] | None:
    """The source's origin (nanometres) in the unit of the voxel size actually used."""
    if source.origin is None:
        return None
    z, y, x = convert_lengths(source.origin, "nanometer", unit)
    return (z, y, x)
