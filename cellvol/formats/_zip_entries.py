"""Stored (uncompressed) zip entries written at the speed of a file copy.

:mod:`zipfile` writes an entry's data through Python, computing its CRC-32 on the way: two
copies and a CRC on one core, a third of what ``cp`` manages on a large image. Here a local
object is read a piece at a time into one reused buffer (``os.preadv``), each piece's CRC-32
computed just after the read, while the piece is still in the processor's cache, and then
written: memory held is one piece, whatever the object's size. No source is memory-mapped, so
a file that shrinks or a disk error while it is copied is an exception naming it
(:class:`~cellvol.errors.SourceChangedError` or :class:`OSError`), not a ``SIGBUS``. An
object elsewhere (S3) is streamed in pieces. Each entry's local header is written first with
the CRC left at zero and rewritten once it is known, exactly as :mod:`zipfile` does on a
seekable file, and the entry is then handed to the :class:`zipfile.ZipFile`, which writes the
central directory when it closes: the archive is the one
``ZipFile.open(info, "w", force_zip64=True)`` would have written.
"""

from __future__ import annotations

import mmap
import os
import zipfile
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

from cellvol._store import start_writeback, will_read
from cellvol._store._zip import zip_crc32
from cellvol.errors import SourceChangedError

__all__ = ["EntryWriter", "OpenedFile", "open_file"]

# Bytes read, hashed then written at a time: small enough to stay in a core's cache between
# the three, large enough that the calls cost little.
_PIECE_BYTES: Final = 1 << 20
# Bytes at a file's start the kernel is asked to read in when it is opened: the rest is read
# ahead by the kernel as the reads go on, so a multi-GiB file is not queued whole.
_HEAD_BYTES: Final = 16 << 20
# The archive's finished bytes are sent to the disk in runs of at least this many, so that the
# disk writes while the next entries are copied; small enough that the disk starts early.
_WRITEBACK_BYTES = 16 << 20


@dataclass
class OpenedFile:
    """A local file opened for :meth:`EntryWriter.add_file`, and its size when opened.

    A context manager: leaving it closes the file.
    """

    path: Path
    descriptor: int
    size: int

    def __enter__(self) -> OpenedFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self.descriptor >= 0:
            os.close(self.descriptor)
            self.descriptor = -1


def open_file(path: Path) -> OpenedFile:
    """Open a local file and ask the kernel to start reading its head.

    Called for the next file while the current one is written, so that a cold file's first
    reads go on beside the writing, not before it.
    """
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(descriptor).st_size
        will_read(descriptor, 0, _HEAD_BYTES)
    except BaseException:
        os.close(descriptor)
        raise
    return OpenedFile(path, descriptor, size)


class EntryWriter:
    """Adds stored entries to a :class:`zipfile.ZipFile` opened for writing on ``stream``.

    ``stream`` must be an unbuffered, seekable file (``open(path, "wb", buffering=0)``), so
    that writes to its descriptor and to the stream see one file position. Each finished run
    of entries is sent to the disk as the archive grows (:func:`start_writeback`), so the final
    sync waits for the last run alone. Use as a context manager, left before ``archive`` is
    closed: leaving waits for the runs still being sent, and raises their errors.
    """

    def __init__(self, archive: zipfile.ZipFile, stream: BinaryIO) -> None:
        self.archive = archive
        self.stream = stream
        self._written_back = stream.tell()  # bytes before this were sent to the disk
        # One buffer for every piece of every file: memory stays one piece.
        self._buffer = memoryview(bytearray(_PIECE_BYTES))
        # Starting a run can block while the disk's queue is full: on a thread of its own, so
        # that the next entries are copied meanwhile.
        self._writeback = ThreadPoolExecutor(1, thread_name_prefix="cellvol-pack-writeback")
        self._runs: list[Future[None]] = []

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
        self._buffer.release()
        if error is None:
            self._check_runs(every=True)

    def add_file(self, info: zipfile.ZipInfo, opened: OpenedFile) -> None:
        """Copy a local file in as ``info``, from :func:`open_file`; closes ``opened``.

        Raises
        ------
        SourceChangedError
            If the file ends early or changes size while it is copied.
        OSError
            If the file cannot be read, naming it.
        """
        with opened:
            data_start = self._begin(info, opened.size)
            crc = self._copy(opened, info.filename)
            try:
                size = os.fstat(opened.descriptor).st_size
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(opened.path)) from exc
            if size != opened.size:
                raise SourceChangedError(f"{opened.path} changed size while it was packed")
        self._finish(info, data_start, crc)

    def add_pieces(self, info: zipfile.ZipInfo, size: int, pieces: Iterable[bytes]) -> None:
        """Write ``pieces`` (``size`` bytes in all) in as ``info``."""
        data_start = self._begin(info, size)
        crc = 0
        for piece in pieces:
            crc = zip_crc32(piece, crc)
            self.stream.write(piece)
        self._finish(info, data_start, crc)

    def _copy(self, opened: OpenedFile, key: str) -> int:
        """Read, hash and write ``opened``'s ``size`` bytes a piece at a time; their CRC-32."""
        target = self.stream.fileno()
        buffer = self._buffer
        crc = 0
        at = 0
        while at < opened.size:
            with buffer[: min(_PIECE_BYTES, opened.size - at)] as room:
                try:
                    got = os.preadv(opened.descriptor, [room], at)
                except OSError as exc:
                    raise OSError(exc.errno, exc.strerror, str(opened.path)) from exc
                if got == 0:
                    raise SourceChangedError(
                        f"{key} ({opened.path}) ended early while it was packed: "
                        f"{at} of {opened.size} bytes"
                    )
                with room[:got] as piece:
                    crc = zip_crc32(piece, crc)  # releases the GIL
                    written = os.write(target, piece)
                    while written < got:
                        with piece[written:] as rest:
                            written += os.write(target, rest)
            at += got
        return crc

    def _check_runs(self, *, every: bool) -> None:
        """Raise the error of a run sent to the disk; ``every`` waits for those not done."""
        pending = []
        for run in self._runs:
            if every or run.done():
                run.result()
            else:
                pending.append(run)
        self._runs = pending

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
            self._check_runs(every=False)
            self._runs.append(
                self._writeback.submit(
                    start_writeback, self.stream.fileno(), self._written_back, stop
                )
            )
            self._written_back = stop
