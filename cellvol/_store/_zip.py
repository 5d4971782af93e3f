"""Zipped OME-Zarr (``.ozx``, RFC-9): one file holding a whole zarr hierarchy, read-only.

A ``.ozx`` location is a single file, local, on S3 or on an HTTP(S) server, whose zip root is
the hierarchy's root. It is opened as a read-only :class:`zarr.storage.ZipStore` over the
file: a local path directly, a remote file through an fsspec file object that reads byte
ranges, so only the central directory and the entries asked for are fetched. Writing into
an archive is refused; ``cellvol.pack`` makes one from a directory store.

:class:`Archive` (:func:`open_archive`) is the archive as a zip file rather than a store: its
central directory and comment, and each entry's stored bytes located through its local
header, read concurrently by positional reads or range requests. Verification checks the
zip itself with it.
"""

from __future__ import annotations

import functools
import os
import struct
import zipfile
import zlib
from collections.abc import Buffer, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from zarr.abc.store import Store
from zarr.storage import ZipStore

from cellvol._store._location import Location, parse_location, redact
from cellvol._store._options import check_options, scrub
from cellvol._store._readahead import will_read
from cellvol.errors import (
    AccessDeniedError,
    EndpointUnreachableError,
    InvalidInputError,
    ReadOnlyStoreError,
    StoreNotFoundError,
)

if TYPE_CHECKING:
    from cellvol._store._open import Mode

__all__ = ["ZIP_SUFFIX", "Archive", "open_archive", "open_zip", "zip_crc32"]

ZIP_SUFFIX: Final = ".ozx"
"""The file extension RFC-9 gives zipped OME-Zarr; a location ending in it is an archive."""

# What zipfile raises on a damaged directory: its own error, and on garbage in a field
# (a name that is not UTF-8, a short record, a version it does not know) plain Python ones.
_UNREADABLE: Final = (zipfile.BadZipFile, ValueError, struct.error, EOFError, NotImplementedError)
# A local file header: signature, versions, flags, method, time, date, CRC, sizes, lengths.
_LOCAL_HEADER: Final = struct.Struct("<4s5H3L2H")
_LOCAL_SIGNATURE: Final = b"PK\x03\x04"
# The end of central directory record: signature, disk numbers, counts, size, offset, comment.
_END_RECORD: Final = struct.Struct("<4s4H2LH")
_END_SIGNATURE: Final = b"PK\x05\x06"
# Bytes read beyond an entry's name in the same request, for its local extra field (ZIP64's
# is 20 bytes); a longer one costs a second request.
_EXTRA_ALLOWANCE: Final = 256
# Local entries larger than this are read in two: header, then data.
_SPLIT_READ_BYTES: Final = 1 << 20

# Remote reads: the central directory and each local header are small reads; a block this
# size serves a header and its entry's first bytes in one request without fetching megabytes.
_REMOTE_BLOCK_BYTES: Final = 1 << 18


def zip_crc32(data: Buffer, value: int = 0) -> int:
    """The CRC-32 a zip entry records, of ``data``, continued from ``value`` (zlib's CRC-32).

    ISA-L's implementation, which gives zlib's values several times faster (it folds with
    carry-less multiplication); both release the GIL over large buffers. A packed or verified
    archive computes one over every byte it holds. Where ``isal`` is not installed (no wheel
    for the platform), zlib's own, with the same values.
    """
    return _crc32()(data, value)


@functools.cache
def _crc32() -> Callable[[Buffer, int], int]:
    # Imported here, not with the module: a platform without isal's wheel still imports cellvol.
    try:
        from isal import isal_zlib
    except ImportError:
        return zlib.crc32
    return isal_zlib.crc32


def open_zip(location: Location, mode: Mode, options: dict[str, Any]) -> Store:
    """Open the archive at ``location`` as a read-only zarr store (only mode ``"r"``)."""
    if mode != "r":
        raise ReadOnlyStoreError(
            f"{location.url} is a zipped OME-Zarr (.ozx), which is read-only: it cannot be "
            f"opened with mode {mode!r}",
            hint="write a directory store (.ome.zarr), then pack it into a .ozx with "
            "cellvol.pack or `cellvol pack`",
        )
    if location.scheme == "file":
        with _open_local(location) as handle:
            try:
                zipfile.ZipFile(handle).close()  # reads the central directory: a check
            except _UNREADABLE as exc:
                raise _not_a_zip(location, exc) from None
        return ZipStore(location.path, mode="r")
    return ZipStore(_remote_file(location, options)[0], mode="r")


def _remote_file(
    location: Location, options: dict[str, Any]
) -> tuple[Any, list[zipfile.ZipInfo], bytes]:
    """A seekable file object reading the remote archive by byte ranges, and its directory.

    Its central directory is read here, once: that checks that it is a zip, and gives the
    entries and the comment to a caller that needs them rather than fetching it again.
    """
    import fsspec

    # A synchronous filesystem of its own: the store's reads run on fsspec's I/O thread, not
    # on zarr's loop, which calls the store's blocking get. On S3, with cellvol's retries.
    if location.scheme == "s3":
        from cellvol._store._s3 import blocking_filesystem

        fs = blocking_filesystem(location, options)
    else:
        fs = fsspec.filesystem("http", **options, skip_instance_cache=True)
    target = location.path if location.scheme == "s3" else location.url
    try:
        handle = fs.open(target, "rb", block_size=_REMOTE_BLOCK_BYTES, cache_type="readahead")
        with zipfile.ZipFile(handle) as archive:
            entries, comment = archive.infolist(), archive.comment
    except FileNotFoundError:
        raise StoreNotFoundError(f"{location.url} does not exist") from None
    except PermissionError as exc:
        raise AccessDeniedError(
            f"access to {redact(location.url)} was refused: {scrub(str(exc), options)}"
        ) from None
    except _UNREADABLE as exc:
        raise _not_a_zip(location, exc) from None
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise EndpointUnreachableError(
            f"could not read {redact(location.url)}: {type(exc).__name__}: "
            f"{scrub(str(exc), options)}"
        ) from exc
    return handle, entries, comment


def _not_a_zip(location: Location, exc: Exception) -> InvalidInputError:
    return InvalidInputError(
        f"{location.url} is not a readable zip archive: {exc}",
        hint="a zip file's directory of entries is at its end: a truncated or incomplete "
        "copy has lost it; copy the archive again from its source",
    )


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """An entry's data as its local file header places it.

    Attributes
    ----------
    data
        The stored (possibly compressed) bytes, as many as the central directory records;
        fewer if the archive ends first.
    name
        The name in the local header, which should be the central directory's.
    method
        The compression method in the local header.
    """

    data: bytes
    name: str
    method: int


class Archive:
    """A zip archive's central directory, and its entries read by byte ranges.

    Thread-safe: each read is one positional read of a local file, or one or two range
    requests to S3 or the HTTP server, so entries may be read concurrently. Nothing is
    checked here beyond what it takes to locate an entry; checking is for the caller.

    Attributes
    ----------
    url
        The archive's location.
    size
        Its size in bytes.
    entries
        The central directory's records, in its order (duplicates included).
    comment
        The archive comment.
    missing_tail
        Bytes the archive lacks at its end, by the comment length its end record gives:
        non-zero for a file cut short within its comment, which zipfile reads anyway.
    """

    def __init__(self, location: Location, options: dict[str, Any]) -> None:
        self.url = location.url
        self._fd: int | None = None
        if location.scheme == "file":
            with _open_local(location) as handle:
                self._fd = os.dup(handle.fileno())  # for positional reads from any thread
                self.size = os.fstat(self._fd).st_size
                try:
                    with zipfile.ZipFile(handle) as archive:
                        self.entries, self.comment = archive.infolist(), archive.comment
                except _UNREADABLE as exc:
                    self.close()
                    raise _not_a_zip(location, exc) from None
        else:
            handle, self.entries, self.comment = _remote_file(location, options)
            self._fs, self._target = handle.fs, handle.path
            self.size = int(handle.size)
            handle.close()
        self.missing_tail = self._missing_tail()

    def _missing_tail(self) -> int:
        """How many bytes of its comment the archive lacks: zipfile accepts a cut comment."""
        # The end record precedes the comment, of which zipfile kept what the file holds.
        start = self.size - _END_RECORD.size - len(self.comment)
        record = self.read_range(max(0, start), start + _END_RECORD.size)
        if start < 0 or not record.startswith(_END_SIGNATURE):
            return 0
        recorded: int = _END_RECORD.unpack(record)[-1]
        return max(0, recorded - len(self.comment))

    def read_range(self, start: int, stop: int) -> bytes:
        """Bytes ``start`` to ``stop`` of the archive (fewer past its end, none before it)."""
        stop = min(stop, self.size)
        if stop <= start or start < 0:  # a damaged directory can point before the archive
            return b""
        if self._fd is not None:
            return os.pread(self._fd, stop - start, start)
        return bytes(self._fs.cat_file(self._target, start=start, end=stop))

    def extent(self, info: zipfile.ZipInfo) -> tuple[int, int]:
        """The bytes one read of the entry covers: header, room for its extra field, data."""
        name_nbytes = len(info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437"))
        start = info.header_offset
        header = _LOCAL_HEADER.size + name_nbytes + _EXTRA_ALLOWANCE
        return start, start + header + info.compress_size

    def prefetch(self, info: zipfile.ZipInfo, limit: int | None = None) -> int:
        """Ask the kernel to start reading the bytes :meth:`read_entry` will read for ``info``.

        Entries lie one after the other, and a reader checking them in that order gives each
        hint a few entries ahead: the disk then streams the archive while the entries already
        read are hashed. Only for a local archive; remote reads are not hinted. At most
        ``limit`` bytes (None: the whole extent); returns the bytes hinted.
        """
        if self._fd is None:
            return 0
        start, stop = self.extent(info)
        length = stop - start if limit is None else min(limit, stop - start)
        return will_read(self._fd, start, length)

    def read_entries(self, infos: Sequence[zipfile.ZipInfo]) -> list[LocalEntry | None]:
        """Entries stored near each other, in one read of the bytes they span.

        Over a network one request costs about what a few hundred kilobytes do, so small
        entries stored together (cellvol's records) are best read as one range.
        """
        extents = [self.extent(info) for info in infos]
        start = min(first for first, _ in extents)
        block = (start, self.read_range(start, max(last for _, last in extents)))
        return [self.read_entry(info, block) for info in infos]

    def read_entry(
        self, info: zipfile.ZipInfo, block: tuple[int, bytes] | None = None
    ) -> LocalEntry | None:
        """The entry's stored bytes, found through its local header; None if there is none.

        ``block`` is ``(offset, bytes)`` of the archive already read, used where it covers
        what is needed.
        """
        start, stop = self.extent(info)
        if block is None and self._fd is not None and info.compress_size > _SPLIT_READ_BYTES:
            # Locally a second read costs nothing, and spares copying a shard out of the first.
            stop -= info.compress_size
        head = self._bytes(start, stop, block)
        if len(head) < _LOCAL_HEADER.size:
            return None
        fields = _LOCAL_HEADER.unpack_from(head)
        if fields[0] != _LOCAL_SIGNATURE:
            return None
        method, name_length, extra_length = fields[3], fields[9], fields[10]
        data_start = _LOCAL_HEADER.size + name_length + extra_length
        raw_name = head[_LOCAL_HEADER.size : _LOCAL_HEADER.size + name_length]
        name = raw_name.decode("utf-8" if fields[2] & 0x800 else "cp437", errors="replace")
        end = data_start + info.compress_size
        if end <= len(head) or start + len(head) >= self.size:
            data = head[data_start:end]
        else:  # not all read yet: a large local entry, or a long local extra field
            data = self.read_range(start + data_start, start + end)
        return LocalEntry(data, name, method)

    def data_offset(self, info: zipfile.ZipInfo) -> int | None:
        """Where the entry's stored bytes begin, from its local header; None if it has none."""
        head = self.read_range(info.header_offset, info.header_offset + _LOCAL_HEADER.size)
        if len(head) < _LOCAL_HEADER.size:
            return None
        fields = _LOCAL_HEADER.unpack(head)
        if fields[0] != _LOCAL_SIGNATURE:
            return None
        return int(info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10])

    def _bytes(self, start: int, stop: int, block: tuple[int, bytes] | None) -> bytes:
        if block is not None:
            offset, held = block
            stop = min(stop, self.size)
            if offset <= start and stop <= offset + len(held):
                return held[start - offset : stop - offset]
        return self.read_range(start, stop)

    def close(self) -> None:
        """Release the local file (remote archives hold nothing open)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _open_local(location: Location) -> Any:
    """The local archive's file, opened for reading; the caller closes it."""
    try:
        return open(location.path, "rb")
    except FileNotFoundError:
        raise StoreNotFoundError(f"{location.url} does not exist") from None
    except IsADirectoryError:
        raise InvalidInputError(
            f"{location.url} is a directory: a .ozx is a single zip file"
        ) from None


def open_archive(
    path_or_url: str | os.PathLike[str] | Location, storage_options: Mapping[str, Any] | None
) -> Archive:
    """Open the ``.ozx`` at a local path, ``s3://`` or ``http(s)://`` URL for reading entries.

    Raises
    ------
    StoreNotFoundError
        If nothing exists there.
    InvalidInputError
        If it is not a readable zip archive (truncated, its central directory damaged).
    AccessDeniedError, EndpointUnreachableError
        When a remote archive cannot be reached.
    """
    location = parse_location(path_or_url)
    return Archive(location, check_options(location, storage_options))
