"""Stored (uncompressed) zip entries written at the speed of a file copy.

:mod:`zipfile` writes an entry's data through Python, computing its CRC-32 on the way: two
copies and a CRC on one core, a third of what ``cp`` manages on a large image. Here the data of
a local object is copied by the kernel (``os.copy_file_range``) while another thread computes
its CRC-32 (:class:`FileHasher`), reading the file a piece at a time into one reused buffer:
memory held is one piece, whatever the object's size. No source is memory-mapped, so a file
that shrinks or a disk error while it is copied is an exception naming it
(:class:`~cellvol.errors.SourceChangedError` or :class:`OSError`), not a ``SIGBUS``. An
object elsewhere (S3) is streamed in pieces. Each entry's local header is written first with
the CRC left at zero and rewritten once it is known, exactly as :mod:`zipfile` does on a
seekable file, and the entry is then handed to the :class:`zipfile.ZipFile`, which writes the
central directory when it closes: the archive is the one
``ZipFile.open(info, "w", force_zip64=True)`` would have written.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
import zipfile
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

from cellvol._store import start_writeback, will_read
from cellvol._store._zip import zip_crc32
from cellvol.errors import SourceChangedError

__all__ = ["EntryWriter", "FileHasher"]

# Bytes read and hashed at a time: small enough to stay in a core's cache between the two.
_PIECE_BYTES: Final = 1 << 20
# Bytes at a file's start the kernel is asked to read in when it is opened for its CRC: the
# rest is read ahead by the kernel as the reads go on, so a multi-GiB file is not queued whole.
_HEAD_BYTES: Final = 16 << 20
# Bytes per copy_file_range call: large enough to cost nothing, small enough to stay
# interruptible.
_COPY_BYTES: Final = 256 << 20
# copy_file_range is refused between some file systems and by some kernels: copy through
# Python instead.
_NO_KERNEL_COPY: Final = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
# The archive's finished bytes are sent to the disk in runs of at least this many, so that the
# disk writes while the next entries are copied; small enough that the disk starts early.
_WRITEBACK_BYTES = 16 << 20


class FileHasher:
    """Computes local files' zip CRC-32, one file at a time, through one reused buffer.

    Meant for one thread, beside the copies; :meth:`stop` makes a CRC under way end at its
    next piece (with :class:`InterruptedError`), once the pack it was for has failed.
    """

    def __init__(self) -> None:
        self._buffer = bytearray(_PIECE_BYTES)
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def crc(self, path: Path) -> tuple[int, int]:
        """The file's zip CRC-32 and its size when opened.

        Raises
        ------
        SourceChangedError
            If the file ends before that size.
        OSError
            If it cannot be opened or read, naming it.
        """
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            size = os.fstat(descriptor).st_size
            will_read(descriptor, 0, _HEAD_BYTES)
            crc = 0
            at = 0
            with memoryview(self._buffer) as buffer:
                while at < size:
                    if self._stopped.is_set():
                        raise InterruptedError(f"{path}: its pack stopped")
                    with buffer[: min(len(buffer), size - at)] as room:
                        got = os.preadv(descriptor, [room], at)
                        if got == 0:
                            raise SourceChangedError(
                                f"{path} ended early while it was packed: {at} of {size} bytes"
                            )
                        with room[:got] as piece:
                            crc = zip_crc32(piece, crc)  # releases the GIL: beside the copy
                    at += got
            return crc, size
        except OSError as exc:
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror, str(path)) from exc
            raise
        finally:
            os.close(descriptor)


class EntryWriter:
    """Adds stored entries to a :class:`zipfile.ZipFile` opened for writing on ``stream``.

    ``stream`` must be an unbuffered, seekable file (``open(path, "wb", buffering=0)``), so
    that the kernel's copies and Python's writes see one file position. Each finished run of
    entries is sent to the disk as the archive grows (:func:`start_writeback`), so the final
    sync waits for the last run alone. Use as a context manager, left before ``archive`` is
    closed: leaving waits for the runs still being sent, and raises their errors.
    """

    def __init__(self, archive: zipfile.ZipFile, stream: BinaryIO) -> None:
        self.archive = archive
        self.stream = stream
        self._written_back = stream.tell()  # bytes before this were sent to the disk
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
        if error is None:
            self._check_runs(every=True)

    def add_file(self, info: zipfile.ZipInfo, path: Path, crc: Future[tuple[int, int]]) -> None:
        """Copy the local file at ``path`` in as ``info``; ``crc`` is :meth:`FileHasher.crc`'s.

        Raises
        ------
        SourceChangedError
            If the file ends early or changes size while it is copied.
        OSError
            If the file cannot be read, naming it.
        """
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            data_start = self._begin(info, size)
            _copy(source, path, self.stream, size)
            grown = os.fstat(source.fileno()).st_size != size
        found, hashed = crc.result()
        if grown or hashed != size:
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


def _copy(source: BinaryIO, path: Path, target: BinaryIO, size: int) -> None:
    """``size`` bytes from ``source``'s start to ``target``'s position, by the kernel if it can."""
    copied = 0
    try:
        try:
            while copied < size:
                done = os.copy_file_range(
                    source.fileno(), target.fileno(), min(_COPY_BYTES, size - copied), copied
                )
                if done == 0:
                    break
                copied += done
        except OSError as exc:
            if exc.errno not in _NO_KERNEL_COPY or copied:
                raise
            source.seek(0)
            while copied < size:
                piece = source.read(min(_COPY_BYTES, size - copied))
                if not piece:
                    break
                target.write(piece)
                copied += len(piece)
    except OSError as exc:
        if exc.filename is None:  # the source's or the archive's: named as the copy's file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    if copied < size:
        raise SourceChangedError(
            f"{path} ended early while it was packed: {copied} of {size} bytes"
        )
