"""Stored (uncompressed) zip entries written at the speed of a file copy.

:mod:`zipfile` writes an entry's data through Python, computing its CRC-32 on the way: two
copies and a CRC on one core, a third of what ``cp`` manages on a large image. Here the data of
a local object is copied by the kernel (``os.copy_file_range``) while another thread computes
its CRC-32 from a read-only memory map (no copy); an object elsewhere (S3) is streamed in
pieces. Each entry's local header is written first with the CRC left at zero and rewritten
once it is known, exactly as :mod:`zipfile` does on a seekable file, and the entry is then
handed to the :class:`zipfile.ZipFile`, which writes the central directory when it closes: the
archive is the one ``ZipFile.open(info, "w", force_zip64=True)`` would have written.
"""

from __future__ import annotations

import errno
import mmap
import os
import zipfile
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import BinaryIO

from cellvol._store import start_writeback, will_read
from cellvol._store._zip import zip_crc32
from cellvol.errors import SourceChangedError

__all__ = ["EntryWriter", "file_crc"]

# Bytes per copy_file_range call: large enough to cost nothing, small enough to stay
# interruptible.
_COPY_BYTES = 256 << 20
# copy_file_range is refused between some file systems and by some kernels: copy through
# Python instead.
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
# The archive's finished bytes are sent to the disk in runs of at least this many, so that the
# disk writes while the next entries are copied; small enough that the disk starts early.
_WRITEBACK_BYTES = 16 << 20


def file_crc(path: Path) -> tuple[int, int]:
    """A local file's zip CRC-32 and size, read through a memory map (no copy)."""
    with open(path, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        if size == 0:
            return 0, 0
        # Queued whole before the mapping is populated: a cold file is then read in large
        # requests in the background, not a read-around window at a time.
        will_read(source.fileno())
        # Populated at once: faulting the pages in one by one costs more than the CRC.
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        with mmap.mmap(source.fileno(), 0, flags=flags, prot=mmap.PROT_READ) as mapped:
            return zip_crc32(mapped), size  # released the GIL: computed beside the copy


class EntryWriter:
    """Adds stored entries to a :class:`zipfile.ZipFile` opened for writing on ``stream``.

    ``stream`` must be an unbuffered, seekable file (``open(path, "wb", buffering=0)``), so
    that the kernel's copies and Python's writes see one file position. Each finished run of
    entries is sent to the disk as the archive grows (:func:`start_writeback`), so the final
    sync waits for the last run alone.
    """

    def __init__(self, archive: zipfile.ZipFile, stream: BinaryIO) -> None:
        self.archive = archive
        self.stream = stream
        self._written_back = stream.tell()  # bytes before this were sent to the disk

    def add_file(self, info: zipfile.ZipInfo, path: Path, crc: Future[tuple[int, int]]) -> None:
        """Copy the local file at ``path`` in as ``info``; ``crc`` is :func:`file_crc`'s."""
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            data_start = self._begin(info, size)
            _copy(source, self.stream, size)
        found, crc_size = crc.result()
        if crc_size != size:
            raise SourceChangedError(f"{path} changed size while it was packed")
        self._finish(info, data_start, found)

    def add_pieces(self, info: zipfile.ZipInfo, size: int, pieces: Iterable[bytes]) -> None:
        """Write ``pieces`` (``size`` bytes in all) in as ``info``."""
        data_start = self._begin(info, size)
        crc = 0
        for piece in pieces:
            crc = zip_crc32(piece, crc)
            self.stream.write(piece)
        self._finish(info, data_start, crc)

    def _begin(self, info: zipfile.ZipInfo, size: int) -> int:
        """Write the entry's header with its CRC left at zero; where its data starts."""
        info.compress_type = zipfile.ZIP_STORED
        info.file_size = info.compress_size = size
        info.CRC = 0
        info.header_offset = self.stream.tell()
        # ZIP64 fields on every entry, as force_zip64 writes them: sizes past 4 GiB need nothing.
        self.stream.write(info.FileHeader(zip64=True))
        return self.stream.tell()

    def _finish(self, info: zipfile.ZipInfo, data_start: int, crc: int) -> None:
        end = self.stream.tell()
        if end - data_start != info.file_size:
            raise SourceChangedError(f"{info.filename} changed size while it was packed")
        info.CRC = crc
        self.stream.seek(info.header_offset)
        self.stream.write(info.FileHeader(zip64=True))
        self.stream.seek(end)
        # What ZipFile's own entry writer records when an entry closes: the central directory
        # is written from these when the archive closes.
        self.archive.filelist.append(info)
        self.archive.NameToInfo[info.filename] = info
        self.archive.start_dir = end
        self.archive._didModify = True  # type: ignore[attr-defined]
        # Only once its header is final: a page rewritten under writeback is written twice.
        # For the same reason the run stops at the last whole page: the next entry's header
        # goes into the page ``end`` falls in.
        if end - self._written_back >= _WRITEBACK_BYTES:
            stop = end - end % mmap.PAGESIZE
            start_writeback(self.stream.fileno(), self._written_back, stop)
            self._written_back = stop


def _copy(source: BinaryIO, target: BinaryIO, size: int) -> None:
    """``size`` bytes from ``source``'s start to ``target``'s position, by the kernel if it can."""
    copied = 0
    try:
        while copied < size:
            done = os.copy_file_range(
                source.fileno(), target.fileno(), min(_COPY_BYTES, size - copied), copied
            )
            if done == 0:
                raise SourceChangedError(f"{source.name} ended early while it was packed")
            copied += done
    except OSError as exc:
        if exc.errno not in _NO_KERNEL_COPY or copied:
            raise
        source.seek(0)
        while copied < size:
            piece = source.read(min(_COPY_BYTES, size - copied))
            if not piece:
                raise SourceChangedError(f"{source.name} ended early while it was packed") from None
            target.write(piece)
            copied += len(piece)
