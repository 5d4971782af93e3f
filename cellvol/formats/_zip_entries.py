"""Stored (uncompressed) zip entries written at the speed of a file copy.

:mod:`zipfile` writes an entry's data through Python, computing its CRC-32 on the way: two
copies and a CRC on one core, a third of what ``cp`` manages on a large image. Here a local
object is memory-mapped (no copy into Python) and written a piece at a time, each piece's
CRC-32 computed just before the write, while the piece is still in the processor's cache:
the bytes are read from memory once and copied once, as ``cp`` copies them. An object
elsewhere (S3) is streamed in pieces. Each entry's local header is written first with the CRC
left at zero and rewritten once it is known, exactly as :mod:`zipfile` does on a seekable
file, and the entry is then handed to the :class:`zipfile.ZipFile`, which writes the central
directory when it closes: the archive is the one ``ZipFile.open(info, "w", force_zip64=True)``
would have written.
"""

from __future__ import annotations

import mmap
import os
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

from cellvol._store import start_writeback, will_read
from cellvol._store._zip import zip_crc32
from cellvol.errors import SourceChangedError

__all__ = ["EntryWriter", "OpenedFile", "open_file"]

# Bytes of a local object mapped at once: the most of it held in memory at a time.
_MAP_BYTES: Final = 64 << 20
# Bytes hashed then written at a time: small enough to stay in a core's cache between the two.
_PIECE_BYTES: Final = 1 << 20
# The archive's finished bytes are sent to the disk in runs of at least this many, so that the
# disk writes while the next entries are copied; small enough that the disk starts early.
_WRITEBACK_BYTES = 16 << 20


@dataclass
class OpenedFile:
    """A local file opened for :meth:`EntryWriter.add_file`: its size and first window mapped.

    A context manager: leaving it closes the mapping and the file.
    """

    source: BinaryIO
    size: int
    first: mmap.mmap | None  # None for an empty file

    def __enter__(self) -> OpenedFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self.first is not None:
            self.first.close()
        self.source.close()


def open_file(path: Path) -> OpenedFile:
    """Open a local file and map its first window, reading it in (from the disk if cold).

    Called for the next file while the current one is written, so that a cold file's read
    goes on beside the writing, not before it.
    """
    source = open(path, "rb")  # noqa: SIM115 (closed by the OpenedFile, or here on an error)
    try:
        size = os.fstat(source.fileno()).st_size
        if size == 0:
            return OpenedFile(source, 0, None)
        # Queued whole before the first window is populated: a cold file is then read in large
        # requests in the background, not a read-around window at a time.
        will_read(source.fileno())
        return OpenedFile(source, size, _map(source.fileno(), 0, min(size, _MAP_BYTES)))
    except BaseException:
        source.close()
        raise


def _map(descriptor: int, start: int, length: int) -> mmap.mmap:
    """``length`` bytes of a file from ``start`` (a multiple of the page size), read in."""
    # Populated at once: faulting the pages in one by one costs more than the CRC.
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(descriptor, length, flags=flags, prot=mmap.PROT_READ, offset=start)


class EntryWriter:
    """Adds stored entries to a :class:`zipfile.ZipFile` opened for writing on ``stream``.

    ``stream`` must be an unbuffered, seekable file (``open(path, "wb", buffering=0)``), so
    that writes to its descriptor and to the stream see one file position. Each finished run
    of entries is sent to the disk as the archive grows (:func:`start_writeback`), so the final
    sync waits for the last run alone. Use as a context manager, left before ``archive`` is
    closed: leaving waits for the runs still being sent.
    """

    def __init__(self, archive: zipfile.ZipFile, stream: BinaryIO) -> None:
        self.archive = archive
        self.stream = stream
        self._written_back = stream.tell()  # bytes before this were sent to the disk
        # Starting a run can block while the disk's queue is full: on a thread of its own, so
        # that the next entries are copied meanwhile.
        self._writeback = ThreadPoolExecutor(1, thread_name_prefix="cellvol-pack-writeback")

    def __enter__(self) -> EntryWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        # On an error the runs not begun are of an archive about to be deleted: not sent.
        self._writeback.shutdown(wait=True, cancel_futures=error is not None)

    def add_file(self, info: zipfile.ZipInfo, opened: OpenedFile) -> None:
        """Copy a local file in as ``info``, from :func:`open_file`; closes ``opened``."""
        with opened:
            data_start = self._begin(info, opened.size)
            crc = 0
            if opened.first is not None:
                crc = self._write_window(opened.first, crc)
            for start in range(_MAP_BYTES, opened.size, _MAP_BYTES):
                length = min(_MAP_BYTES, opened.size - start)
                with _map(opened.source.fileno(), start, length) as window:
                    crc = self._write_window(window, crc)
            if os.fstat(opened.source.fileno()).st_size != opened.size:
                raise SourceChangedError(f"{opened.source.name} changed size while it was packed")
        self._finish(info, data_start, crc)

    def add_pieces(self, info: zipfile.ZipInfo, size: int, pieces: Iterable[bytes]) -> None:
        """Write ``pieces`` (``size`` bytes in all) in as ``info``."""
        data_start = self._begin(info, size)
        crc = 0
        for piece in pieces:
            crc = zip_crc32(piece, crc)
            self.stream.write(piece)
        self._finish(info, data_start, crc)

    def _write_window(self, mapped: mmap.mmap, crc: int) -> int:
        """Write a mapped window of a file; ``crc`` continued over it."""
        target = self.stream.fileno()
        with memoryview(mapped) as window:
            for at in range(0, len(mapped), _PIECE_BYTES):
                with window[at : at + _PIECE_BYTES] as piece:
                    crc = zip_crc32(piece, crc)
                    written = os.write(target, piece)
                    while written < len(piece):
                        with piece[written:] as rest:
                            written += os.write(target, rest)
        return crc

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
            self._writeback.submit(start_writeback, self.stream.fileno(), self._written_back, stop)
            self._written_back = stop
