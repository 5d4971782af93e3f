"""Raw store keys over HTTP: what neuroglancer, vizarr and napari fetch from a served image.

Only names a zarr store can hold are served: path segments of letters, digits, ``_ - .``, none
starting with a dot except zarr v2's metadata files (``.zarray``, ``.zattrs``, ``.zgroup``,
``.zmetadata``). Everything else (``..``, percent-encoded or double-encoded escapes,
backslashes, NUL and other control characters, hidden files) is refused before any file system
call, and a local key must resolve, symlinks followed, to a regular file inside the store's
directory. Objects are read from local disk directly, from S3 through the store's own
fsspec filesystem, and from a zipped image (``.ozx``, local or remote) by ranges of the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
import urllib.parse
import zipfile
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import FsspecStore, LocalStore

from cellvol._store._location import Location
from cellvol._store._loop import on_zarr_loop
from cellvol._store._zip import Archive, open_archive

__all__ = ["KeyInfo", "KeyReader", "is_safe_key", "key_reader", "raw_key"]

_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_ZARR_V2_NAMES: Final = frozenset({".zarray", ".zattrs", ".zgroup", ".zmetadata"})
_STREAM_BLOCK: Final = 1 << 20
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def is_safe_key(key: str) -> bool:
    """Whether ``key`` (already URL-decoded once) is a plain zarr key with no escape."""
    if not key or len(key) > 1024:
        return False
    return all(
        _SEGMENT.fullmatch(part) is not None or part in _ZARR_V2_NAMES for part in key.split("/")
    )


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What HTTP needs to know of one stored object."""

    size: int
    etag: str
    last_modified: str | None
    """An HTTP date, or None when the store does not say."""
    modified_seconds: float | None


class KeyReader:
    """Stat and read the objects of one store (the base class serves nothing)."""

    async def info(self, key: str) -> KeyInfo | None:
        """The object's size and validators, or None when it does not exist."""
        raise NotImplementedError

    def stream(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """The object's bytes ``[start, end)``, in blocks."""
        raise NotImplementedError

    def escaping(self, store: Store, keys: Iterable[str]) -> list[str]:
        """Those of ``store``'s ``keys`` that exist but lead outside the served store.

        ``store`` is the served store or one opened inside it (a label image's); object stores
        have no links, so none escapes.
        """
        return []


class LocalKeys(KeyReader):
    """Objects of a directory store, read with plain file calls in worker threads."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path | None:
        path = (self.root / key).resolve()
        # Symlinks may point anywhere; only targets inside the store are served.
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path

    def escaping(self, store: Store, keys: Iterable[str]) -> list[str]:
        """Those of ``keys`` that exist but resolve, symlinks followed, outside the store.

        A missing object does not escape: zarr reads it as the fill value, as it should.
        """
        base = Path(store.root) if isinstance(store, LocalStore) else self.root
        return [
            key
            for key in keys
            if os.path.lexists(base / key) and not (base / key).resolve().is_relative_to(self.root)
        ]

    async def info(self, key: str) -> KeyInfo | None:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self._info, key)

    def _info(self, key: str) -> KeyInfo | None:
        path = self._path(key)
        if path is None:
            return None
        stat = path.stat()
        tag = hashlib.blake2b(
            f"{stat.st_ino}-{stat.st_size}-{stat.st_mtime_ns}".encode(), digest_size=12
        ).hexdigest()
        return KeyInfo(
            stat.st_size, f'"{tag}"', formatdate(stat.st_mtime, usegmt=True), stat.st_mtime
        )

    async def stream(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        import anyio.to_thread

        path = self._path(key)
        if path is None:
            return
        handle = await anyio.to_thread.run_sync(path.open, "rb")
        try:
            position = start
            while position < end:
                size = min(_STREAM_BLOCK, end - position)
                block = await anyio.to_thread.run_sync(os.pread, handle.fileno(), size, position)
                if not block:
                    break
                position += len(block)
                yield block
        finally:
            handle.close()


class FsspecKeys(KeyReader):
    """Objects of an S3 (or other fsspec) store, read through the store's filesystem."""

    def __init__(self, store: FsspecStore) -> None:
        self.fs: Any = store.fs
        self.prefix = store.path.rstrip("/")

    async def info(self, key: str) -> KeyInfo | None:
        return await on_zarr_loop(self._info(key))

    async def _info(self, key: str) -> KeyInfo | None:
        try:
            found = await self.fs._info(f"{self.prefix}/{key}")
        except (FileNotFoundError, OSError):
            return None
        if found.get("type") != "file":
            return None
        size = int(found.get("size") or 0)
        tag = str(found.get("ETag") or found.get("etag") or "").strip('"')
        modified = found.get("LastModified")
        seconds = modified.timestamp() if hasattr(modified, "timestamp") else None
        when = formatdate(seconds, usegmt=True) if seconds is not None else None
        if not tag:
            tag = hashlib.blake2b(f"{size}-{seconds}".encode(), digest_size=12).hexdigest()
        return KeyInfo(size, f'"{tag}"', when, seconds)

    async def stream(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        position = start
        while position < end:
            stop = min(end, position + 8 * _STREAM_BLOCK)
            block = await on_zarr_loop(
                self.fs._cat_file(f"{self.prefix}/{key}", start=position, end=stop)
            )
            if not block:
                break
            position += len(block)
            yield bytes(block)


class ArchiveKeys(KeyReader):
    """Entries of a zipped image (``.ozx``), local, on S3 or over HTTP, by ranges of the file.

    The central directory, read once, says what exists; an entry's stored bytes are located
    through its local header on first use, then served by byte ranges of the archive, so a
    range of a shard costs one range read whatever the archive's size. An entry stored
    compressed (RFC-9 forbids it; other packers may) is read whole through the zarr store.
    A zip has no links: none escapes.
    """

    def __init__(self, archive: Archive, store: Store) -> None:
        self.archive = archive
        self.store = store
        self.entries = {e.filename: e for e in archive.entries if not e.is_dir()}
        self._data_start: dict[str, int | None] = {}

    async def info(self, key: str) -> KeyInfo | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.compress_type == zipfile.ZIP_STORED and key not in self._data_start:
            # Located before the reply starts, so that a damaged entry gets a status of its own.
            self._data_start[key] = await asyncio.to_thread(self.archive.data_offset, entry)
        if self._data_start.get(key, 0) is None:
            raise HTTPException(502, f"{key}: the archive holds no local entry where it says")
        seconds = time.mktime((*entry.date_time, 0, 0, -1))
        tag = f"{entry.CRC:08x}-{entry.file_size:x}"  # the entry's own checksum
        return KeyInfo(entry.file_size, f'"{tag}"', formatdate(seconds, usegmt=True), seconds)

    async def stream(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        entry = self.entries[key]
        base = self._data_start.get(key)
        if entry.compress_type != zipfile.ZIP_STORED or base is None:
            got = await on_zarr_loop(self.store.get(key, default_buffer_prototype()))
            yield b"" if got is None else got.to_bytes()[start:end]
            return
        position = start
        while position < end:
            stop = min(end, position + 8 * _STREAM_BLOCK)
            read = self.archive.read_range
            block = await asyncio.to_thread(read, base + position, base + stop)
            if not block:
                break
            position += len(block)
            yield block


def key_reader(
    store: Store, location: Location, storage_options: Mapping[str, Any] | None = None
) -> KeyReader:
    """The reader for the zarr store cellvol opened at ``location`` (local, fsspec, .ozx)."""
    if location.is_archive:
        return ArchiveKeys(open_archive(location, storage_options), store)
    if isinstance(store, LocalStore):
        return LocalKeys(Path(store.root))
    if isinstance(store, FsspecStore):
        return FsspecKeys(store)
    raise TypeError(f"cannot serve raw keys of a {type(store).__name__}")


# -- raw keys over HTTP ----------------------------------------------------------------------


async def raw_key(request: Request, keys: KeyReader, key: str) -> Response:
    """Serve one stored object: ranges, validators, conditional requests, cache headers."""
    if not is_safe_key(key) or not is_safe_key(urllib.parse.unquote(key)):
        raise HTTPException(404, "no such key")
    info = await keys.info(key)
    if info is None:
        raise HTTPException(404, "no such key")
    headers = _validators(info, key)
    if _not_modified(request, info):
        return Response(status_code=304, headers=headers)
    start, end = 0, info.size
    status = 200
    wanted = request.headers.get("range")
    if wanted and _if_range_holds(request, info):
        parsed = _parse_range(wanted, info.size)
        if isinstance(parsed, str):  # unsatisfiable
            return Response(
                status_code=416, headers={**headers, "Content-Range": f"bytes */{info.size}"}
            )
        if parsed is not None:
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
    headers["Content-Length"] = str(end - start)
    media = (
        "application/json"
        if key.endswith((".json", ".zattrs", ".zarray", ".zgroup"))
        else ("application/octet-stream")
    )
    if request.method == "HEAD" or end == start:
        return Response(status_code=status, headers=headers, media_type=media)
    return StreamingResponse(
        keys.stream(key, start, end), status_code=status, headers=headers, media_type=media
    )


def _validators(info: KeyInfo, key: str) -> dict[str, str]:
    metadata = key.rsplit("/", 1)[-1] in ("zarr.json", ".zattrs", ".zarray", ".zgroup")
    headers = {
        "ETag": info.etag,
        "Accept-Ranges": "bytes",
        # Metadata may be rewritten (a resumed write, an annotation); data objects rarely.
        "Cache-Control": "public, max-age=60" if metadata else "public, max-age=3600",
    }
    if info.last_modified:
        headers["Last-Modified"] = info.last_modified
    return headers


def _not_modified(request: Request, info: KeyInfo) -> bool:
    tags = request.headers.get("if-none-match")
    if tags is not None:
        listed = {t.strip().removeprefix("W/") for t in tags.split(",")}
        return "*" in listed or info.etag in listed
    since = request.headers.get("if-modified-since")
    if since and info.modified_seconds is not None:
        from email.utils import parsedate_to_datetime

        try:
            return int(info.modified_seconds) <= int(parsedate_to_datetime(since).timestamp())
        except (TypeError, ValueError, OverflowError):
            return False
    return False


def _if_range_holds(request: Request, info: KeyInfo) -> bool:
    """An ``If-Range`` whose validator no longer matches asks for the whole object."""
    condition = request.headers.get("if-range")
    if condition is None:
        return True
    return condition.strip() in (info.etag, info.last_modified)


def _parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """``[start, end)`` of a single byte range; "unsatisfiable"; None to send it all.

    Multiple ranges, or a malformed header, are answered with the whole object, which HTTP
    allows; a range starting beyond the end is unsatisfiable (416).
    """
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last n bytes
        count = _position(last, size)
        if count == 0:
            return "unsatisfiable"
        return max(0, size - count), size
    start = _position(first, size)
    if start >= size:
        return "unsatisfiable"
    end = size if not last else min(_position(last, size) + 1, size)
    if end <= start:
        return None
    return start, end


def _position(digits: str, size: int) -> int:
    """A byte position of a Range header; any number longer than ``size``'s is past the end.

    Checked by length first: ``int()`` of thousands of digits is slow, and Python refuses more
    than 4300.
    """
    if len(digits.lstrip("0")) > len(str(size)):
        return size + 1
    return int(digits)
