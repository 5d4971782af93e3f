"""Turn a path or URL into a zarr store: the one place cellvol touches storage backends.

Three kinds of location are supported:

================  ==========================================  ==================================
form              examples                                    store
================  ==========================================  ==================================
local path        ``data/vol.ome.zarr``, ``~/x.zarr``,        :class:`zarr.storage.LocalStore`
                  ``file:///abs/vol.zarr``
S3                ``s3://bucket/key/vol.ome.zarr``            :class:`zarr.storage.FsspecStore`
                                                              over :class:`s3fs.S3FileSystem`
HTTP(S)           ``https://host/data/vol.ome.zarr``          read-only
                                                              :class:`zarr.storage.FsspecStore`
                                                              over fsspec's ``HTTPFileSystem``
================  ==========================================  ==================================

What :func:`open_store` guarantees before it returns, by mode (the modes are zarr's):

=========  ==================================================================================
mode       guarantee
=========  ==================================================================================
``"r"``    read-only store; something exists at the location: a local directory; for S3 the
           bucket exists and at least one object lies under the prefix (or, when listing is
           not permitted, a zarr metadata document can be read there); for HTTP one of
           ``zarr.json``, ``.zattrs``, ``.zgroup``, ``.zarray`` is served at the root
``"r+"``   as ``"r"``, but the store is writable (not possible over HTTP)
``"a"``    writable store; a local directory is created if missing; an S3 bucket must exist
``"w"``    as ``"a"``. Existing content is *not* deleted here: overwriting is decided by the
           zarr call that creates the group or array (``overwrite=True`` / ``mode="w"``)
``"w-"``   as ``"a"``, and the location must be empty (else :class:`WriteConflictError`)
=========  ==================================================================================

Whether the location holds a valid OME-Zarr image is for the reader to decide. Buckets are
never created: writing to a missing bucket is a :class:`StoreNotFoundError` in every mode.

S3 options (``storage_options``) go to :class:`s3fs.S3FileSystem`: ``endpoint_url``, ``anon``,
``key``/``secret``/``token``, ``profile``, ``client_kwargs``, ``config_kwargs``... Anything
not given there comes from the standard AWS configuration, which botocore resolves itself:
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``...,
``~/.aws/config`` and ``~/.aws/credentials``, then instance metadata. HTTP options go to
fsspec's ``HTTPFileSystem`` (``client_kwargs`` for the ``aiohttp.ClientSession``, and request
options such as ``headers``).

Event loops: the S3 and HTTP stores wrap asynchronous fsspec filesystems. fsspec shares one
filesystem among the stores opened with the same options in the same thread, and a
filesystem's network session belongs to the event loop that first uses it, which under zarr's
synchronous API is zarr's own I/O loop. Code that drives zarr's asynchronous API from an event
loop of its own (a web server, say) should pass ``skip_instance_cache=True`` in
``storage_options`` and use each such store from that one loop only.

:func:`read_bytes`, :func:`read_objects`, :func:`write_bytes`, :func:`object_size`,
:func:`list_keys` and :func:`delete_prefix` read and write plain objects (bookkeeping, not
chunks) in any such store.

Error messages name the location and what was expected; they never contain credentials. A URL
with credentials in it (``https://user:pass@host/...``) is refused for that reason: pass them
in ``storage_options`` instead. An endpoint that cannot be reached at all raises the built-in
:class:`ConnectionError`, since it says nothing about whether the data exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import importlib
import inspect
import os
import re
import urllib.parse
import urllib.request
import uuid
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

from zarr.abc.store import ByteRequest, OffsetByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore

from cellvol.errors import (
    InvalidInputError,
    ReadOnlyStoreError,
    StoreNotFoundError,
    UnsupportedURLError,
    WriteConflictError,
)

__all__ = [
    "Location",
    "Mode",
    "S3Store",
    "Scheme",
    "delete_prefix",
    "is_local_store",
    "join",
    "list_keys",
    "make_durable",
    "object_size",
    "open_store",
    "parse_location",
    "read_bytes",
    "read_objects",
    "replace_durably",
    "write_bytes",
]

Mode = Literal["r", "r+", "a", "w", "w-"]
"""Access mode, as in zarr: read, read/write existing, append/create, create, create new."""

Scheme = Literal["file", "s3", "http", "https"]
"""The kinds of location cellvol can open."""

MODES: Final[tuple[str, ...]] = get_args(Mode)
SUPPORTED: Final = "local paths, file://, s3://, http:// and https:// URLs"

#: Documents whose presence marks the root of a zarr hierarchy (v3 first, then v2).
METADATA_KEYS: Final[tuple[str, ...]] = ("zarr.json", ".zattrs", ".zgroup", ".zarray")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
_SUFFIXES: Final = (".ome.zarr", ".zarr")

# Options cellvol sets itself: every filesystem must be asynchronous for zarr's FsspecStore.
_MANAGED_OPTIONS: Final = frozenset({"asynchronous", "loop"})
# Option names whose values are credentials: scrubbed from any message, never echoed.
_SECRET_OPTIONS: Final = ("key", "secret", "token", "username", "password")
_S3_CONNECTIONS: Final = 32
"""Connections an S3 store opens at once, unless ``config_kwargs`` sets ``max_pool_connections``."""
# Codes S3 answers with when a bucket does not exist.
_NO_BUCKET: Final = frozenset({"NoSuchBucket", "404", "NotFound"})
# Codes S3 answers with when a policy or ACL forbids the request (credentials are valid).
_DENIED: Final = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled"})
_HTTP_PROBE_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Location:
    """A parsed path or URL, as returned by :func:`parse_location`.

    Attributes
    ----------
    scheme
        ``"file"`` for local paths, else ``"s3"``, ``"http"`` or ``"https"``.
    path
        The absolute local path, ``"bucket/key/prefix"`` for S3, or the full URL for HTTP(S).
    url
        The canonical form: ``"/abs/path"``, ``"s3://bucket/key"`` or ``"https://host/x.zarr"``,
        never with a trailing slash. :func:`parse_location` of it returns an equal Location.
    """

    scheme: Scheme
    path: str
    url: str

    def __str__(self) -> str:
        return self.url

    @property
    def name(self) -> str:
        """The last path component without a ``.ome.zarr`` / ``.zarr`` suffix.

        For a bucket root this is the bucket's name, for an HTTP server root its host name.
        """
        if self.scheme == "file":
            last = Path(self.path).name
        elif self.scheme == "s3":
            last = self.path.rpartition("/")[2]
        else:
            parts = urllib.parse.urlsplit(self.url)
            last = urllib.parse.unquote(parts.path.rpartition("/")[2]) or (parts.hostname or "")
        lowered = last.lower()
        for suffix in _SUFFIXES:
            if lowered.endswith(suffix) and len(last) > len(suffix):
                return last[: -len(suffix)]
        return last

    @property
    def is_remote(self) -> bool:
        """Whether the location is reached over the network (S3 or HTTP)."""
        return self.scheme != "file"


def parse_location(path_or_url: str | os.PathLike[str] | Location) -> Location:
    """Parse a local path or a URL into a :class:`Location`.

    Parameters
    ----------
    path_or_url
        A local path (relative paths are made absolute, ``~`` is expanded), a ``file://`` URL,
        ``s3://bucket[/key]`` or ``http(s)://host[/path]``. A ``Location`` is returned as is.
        A string that starts like a URL scheme without ``://`` (``s3:/bucket``, ``c:/data``
        on POSIX, ``name:thing``) is refused as ambiguous: write ``./name:thing`` for a local
        path. :class:`os.PathLike` objects are always local paths.

    Returns
    -------
    Location
        The parsed location, with its canonical ``url``.

    Raises
    ------
    UnsupportedURLError
        For any other scheme (``gs://``, ``ftp://``, ``zip::...``), or an ambiguous string.
    InvalidInputError
        For a malformed URL: empty path, no bucket or host, credentials, query string or
        fragment in the URL, ``.``/``..`` segments in an S3 key.
    """
    text = _as_text(path_or_url)
    if isinstance(text, Location):
        return text
    if not text:
        raise InvalidInputError(f"empty path: expected one of {SUPPORTED}")
    match = _SCHEME.match(text)
    if match is None or (os.name == "nt" and _WINDOWS_DRIVE.match(text)):
        return _local(text)
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    if scheme == "file" and rest.startswith("/"):
        return _file_url(text)
    if rest.startswith(":"):
        chain = text.split("://", 1)[0]
        raise UnsupportedURLError(
            f"chained fsspec URL {chain!r} in {_redact(text)!r} is not supported: "
            f"cellvol opens {SUPPORTED}"
        )
    if not rest.startswith("//"):
        raise UnsupportedURLError(
            f"{_redact(text)!r} is ambiguous: it starts like a URL with scheme {scheme!r} but "
            f"has no '://'. Supported: {SUPPORTED}; write a local path whose name contains "
            "':' as './name'"
        )
    if scheme == "s3":
        return _s3_url(text, rest[2:])
    if scheme in ("http", "https"):
        return _http_url(text)
    raise UnsupportedURLError(
        f"unsupported URL scheme {scheme!r} in {_redact(text)!r}: cellvol opens {SUPPORTED}"
    )


def join(location_or_url: str | os.PathLike[str] | Location, *parts: str) -> str:
    """Return the canonical URL of a location below ``location_or_url``.

    Parameters
    ----------
    location_or_url
        The parent, as accepted by :func:`parse_location`.
    *parts
        Relative path components; each may contain ``/``. Empty components are skipped.

    Returns
    -------
    str
        The child's canonical URL (a local path for local parents).

    Raises
    ------
    InvalidInputError
        If a component is ``.`` or ``..``: a join never leaves its parent.
    """
    location = parse_location(location_or_url)
    segments = [segment for part in parts for segment in part.split("/") if segment]
    if any(segment in (".", "..") for segment in segments):
        raise InvalidInputError(
            f"cannot join {parts!r} to {location.url}: '.' and '..' components are not allowed"
        )
    if not segments:
        return location.url
    if location.scheme == "file":
        return os.path.join(location.url, *segments)
    return "/".join([location.url, *segments])


def open_store(
    path_or_url: str | os.PathLike[str] | Location,
    *,
    mode: Mode = "r",
    storage_options: Mapping[str, Any] | None = None,
) -> Store:
    """Open the zarr store at a local path, ``s3://`` or ``http(s)://`` URL.

    Parameters
    ----------
    path_or_url
        Where the store is, as accepted by :func:`parse_location`.
    mode
        ``"r"`` (read-only, must exist), ``"r+"`` (writable, must exist), ``"a"`` or ``"w"``
        (writable, created if missing; nothing is deleted), ``"w-"`` (writable, must be empty).
        HTTP locations are read-only.
    storage_options
        For S3, keyword arguments of :class:`s3fs.S3FileSystem` (``endpoint_url``, ``anon``,
        ``key``, ``secret``, ``token``, ``profile``, ``client_kwargs``, ``config_kwargs``...);
        for HTTP, of fsspec's ``HTTPFileSystem`` (``client_kwargs``, ``headers``...). Local
        paths take none.

    Returns
    -------
    zarr.abc.store.Store
        A :class:`~zarr.storage.LocalStore` or :class:`~zarr.storage.FsspecStore`, read-only
        for mode ``"r"``. It is not opened yet; zarr opens it on first use.

    Raises
    ------
    StoreNotFoundError
        If nothing exists at the location in mode ``"r"`` or ``"r+"``, or the S3 bucket does
        not exist (any mode).
    ReadOnlyStoreError
        For an HTTP(S) location in any mode but ``"r"``.
    WriteConflictError
        In mode ``"w-"``, if the location already holds something.
    InvalidInputError
        For an unknown mode, unknown or misplaced storage options, a malformed URL, a local
        path that is a file rather than a directory, or an AWS profile that does not exist.
    UnsupportedURLError
        For a scheme cellvol cannot open.
    PermissionError
        If S3 refuses the credentials or denies access, or an HTTP server asks for
        authentication (HTTP 401).
    ConnectionError
        If the S3 endpoint or HTTP server cannot be reached.
    """
    if mode not in MODES:
        raise InvalidInputError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
    location = parse_location(path_or_url)
    options = _check_options(location, storage_options)
    if location.scheme == "file":
        return _open_local(location, mode)
    if location.scheme == "s3":
        return _open_s3(location, mode, options)
    return _open_http(location, mode, options)


# --------------------------------------------------------------------------------------------
# Plain objects in a store (blocking helpers; call them from any thread but zarr's I/O loop)
# --------------------------------------------------------------------------------------------


def read_bytes(store: Store, key: str) -> bytes | None:
    """Return the whole object at ``key``, or None if there is none.

    Parameters
    ----------
    store
        A store from :func:`open_store`.
    key
        The object's key, relative to the store's root (``"a/zarr.json"``).
    """
    return read_objects(store, [key])[0]


def read_objects(store: Store, keys: Sequence[str]) -> list[bytes | None]:
    """Return the whole objects at ``keys``, fetched concurrently; None for each missing one.

    On S3 and HTTP the requests overlap, so reading a few documents costs about one round
    trip instead of one each.
    """
    if not keys:
        return []
    prototype = default_buffer_prototype()

    async def fetch_all() -> list[Any]:
        return await asyncio.gather(*(store.get(key, prototype=prototype) for key in keys))

    return [None if buffer is None else buffer.to_bytes() for buffer in sync(fetch_all())]


def write_bytes(store: Store, key: str, data: bytes | Sequence[bytes]) -> None:
    """Write ``data`` as the whole object at ``key``, replacing any object there.

    ``data`` may be a sequence of parts, stored as their concatenation: a local store writes
    them one after the other without joining them first (an encoded shard is a hundred parts
    and most of a shard's size, so a join would copy every byte once more).

    The object appears whole or not at all: a local file is written under a temporary name
    ending in ``.<32 hex digits>.partial`` (the name zarr's own local store uses, which an
    interrupted write's clean-up looks for) and then renamed; object stores write atomically.

    Raises
    ------
    ReadOnlyStoreError
        If the store was opened read-only.
    """
    _check_writable(store, key)
    parts: Sequence[bytes] = [data] if isinstance(data, bytes) else data
    if isinstance(store, LocalStore):
        _write_local_file(Path(store.root) / key, parts)
    else:
        joined = b"".join(parts)
        sync(store.set(key, default_buffer_prototype().buffer.from_bytes(joined)))


def _write_local_file(path: Path, parts: Sequence[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with open(temporary, "wb") as stream:
            stream.writelines(parts)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def make_durable(store: Store, keys: Iterable[str]) -> None:
    """Flush the objects at ``keys`` to stable storage, so that a power cut loses none of them.

    :func:`write_bytes` leaves a local file in the kernel's page cache, which survives the
    process (a kill) but not the machine (a crash or power cut). This syncs each file, then
    every directory from the file's up to the store's parent, so that the names survive too
    (a new file or directory is an entry in its parent). An object store's write is durable
    when it returns: there is nothing to do.
    """
    if not isinstance(store, LocalStore):
        return
    root = Path(store.root)
    top = root.parent
    directories: set[Path] = set()
    for key in keys:
        path = root / key
        _fsync(path)
        directories.update(p for p in path.parents if p == top or top in p.parents)
    # Deepest first: a directory's entry is flushed after the directory's own contents.
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        _fsync(directory)


def replace_durably(finished: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename a finished local file over ``target`` so that a crash leaves the old or the new.

    The file's data is flushed before the rename and the directory after it. Without the first,
    a power cut soon after the rename can leave ``target`` naming a file whose data never
    reached the disk (empty or short) although the rename did.
    """
    _fsync(Path(finished))
    os.replace(finished, target)
    _fsync(Path(target).parent)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def is_local_store(store: Store) -> bool:
    """Whether ``store`` keeps its objects as files on this machine's file system."""
    return isinstance(store, LocalStore)


def object_size(store: Store, key: str) -> int | None:
    """Return the size in bytes of the object at ``key``, or None if there is none."""
    try:
        return sync(store.getsize(key))
    except FileNotFoundError:
        return None


def list_keys(store: Store, prefix: str = "") -> list[str]:
    """Return the sorted keys of every object under ``prefix``, relative to the store's root.

    Parameters
    ----------
    store
        A store from :func:`open_store` (not HTTP: HTTP servers cannot list reliably).
    prefix
        A "directory": ``""`` for the whole store, ``"a/b"`` (or ``"a/b/"``) for the objects
        whose keys start with ``"a/b/"``.
    """
    return sync(_list_keys(store, prefix))


def delete_prefix(store: Store, prefix: str) -> None:
    """Delete the object ``prefix`` and every object under ``prefix/``; ``""`` empties the store.

    Whole key components only: ``delete_prefix(store, "a/b")`` leaves ``"a/bc"`` alone.
    Deleting what does not exist is not an error.

    Raises
    ------
    ReadOnlyStoreError
        If the store was opened read-only.
    """
    _check_writable(store, prefix)
    sync(_delete_prefix(store, prefix.strip("/")))


def _check_writable(store: Store, key: str) -> None:
    if store.read_only:
        raise ReadOnlyStoreError(f"cannot write {key!r}: {store} was opened read-only")


async def _list_keys(store: Store, prefix: str) -> list[str]:
    directory = prefix.strip("/")
    start = f"{directory}/" if directory else ""
    keys: set[str] = set()
    try:
        async for key in store.list_prefix(start):
            if key.startswith(start):
                keys.add(key)
    except FileNotFoundError:
        pass
    return sorted(keys)


async def _delete_prefix(store: Store, prefix: str) -> None:
    if isinstance(store, LocalStore):  # removes the emptied directories too
        if not prefix:
            with contextlib.suppress(FileNotFoundError):  # a local root never created
                await store.clear()
            return
        if await store.exists(prefix):
            await store.delete(prefix)
        await store.delete_dir(prefix)
        return
    # Not FsspecStore.clear / delete_dir: in zarr 3.4 the first stops at the first key that a
    # recursive delete already removed, and either may reach for the bucket itself.
    keys = await _list_keys(store, prefix)
    if prefix and await store.exists(prefix):
        keys.append(prefix)
    if not keys:
        return
    if isinstance(store, FsspecStore):  # batched: one request per 1000 S3 objects
        root = store.path.rstrip("/")
        await store.fs._rm([f"{root}/{key}" for key in keys])
    else:
        for key in keys:
            await store.delete(key)


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _as_text(value: object) -> str | Location:
    """Return the string to parse, or the Location itself; path-likes are always local."""
    if isinstance(value, Location | str):
        return value
    if isinstance(value, os.PathLike):
        path = os.fspath(value)
        if isinstance(path, str):
            return _local(path)
    raise InvalidInputError(f"expected a path or URL string, got {type(value).__name__}")


def _local(text: str) -> Location:
    if not text:
        raise InvalidInputError(f"empty path: expected one of {SUPPORTED}")
    path = os.path.abspath(os.path.expanduser(text))
    return Location("file", path, path)


def _file_url(text: str) -> Location:
    parts = urllib.parse.urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        raise UnsupportedURLError(
            f"file URL {_redact(text)!r} names the remote host {parts.hostname!r}: only local "
            "file URLs (file:///abs/path) are supported"
        )
    if parts.query or parts.fragment:
        raise InvalidInputError(f"file URL {text!r} must not have a query string or fragment")
    path = urllib.request.url2pathname(parts.path)
    if not path:
        raise InvalidInputError(f"file URL {text!r} has no path")
    return _local(path)


def _s3_url(text: str, rest: str) -> Location:
    bucket, _, key = rest.partition("/")
    if "@" in bucket:
        raise InvalidInputError(
            "credentials in s3:// URLs are not supported (they would end up in logs and "
            "metadata): pass key/secret in storage_options or use the AWS configuration"
        )
    if "?" in rest or "#" in rest:
        raise InvalidInputError(
            f"s3 URL {text!r} has a query string or fragment: zarr appends keys to the path, "
            "so neither can be kept"
        )
    if not bucket:
        raise InvalidInputError(f"s3 URL {text!r} has no bucket: expected s3://bucket[/key]")
    if not _BUCKET.match(bucket):
        raise InvalidInputError(f"{bucket!r} in {text!r} is not a valid S3 bucket name")
    segments = [segment for segment in key.split("/") if segment]
    if any(segment in (".", "..") for segment in segments):
        raise InvalidInputError(f"s3 URL {text!r} has '.' or '..' key components")
    path = "/".join([bucket, *segments])
    return Location("s3", path, f"s3://{path}")


def _http_url(text: str) -> Location:
    parts = urllib.parse.urlsplit(text)
    if "@" in parts.netloc:
        raise InvalidInputError(
            f"credentials in the URL {_redact(text)!r} are not supported (they would end up in "
            "logs and metadata): pass them in storage_options, e.g. headers or "
            "client_kwargs={'auth': aiohttp.BasicAuth(...)}"
        )
    if parts.query or parts.fragment:
        raise InvalidInputError(
            f"URL {_redact(text)!r} has a query string or fragment: zarr appends keys to the "
            "path, so neither can be kept; pass tokens as headers in storage_options"
        )
    try:
        valid = bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:  # a port that is not a number, or out of range
        valid = False
    if not valid:
        raise InvalidInputError(f"URL {text!r} has no valid host (and port)")
    scheme = parts.scheme.lower()
    url = f"{scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"
    return Location("https" if scheme == "https" else "http", url, url)


def _redact(url: str) -> str:
    """Drop credentials, query and fragment from a URL before it goes into a message."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc.rpartition("@")[2]
    if parts.netloc != netloc:
        netloc = f"***@{netloc}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------


def _check_options(location: Location, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    if storage_options is None:
        return {}
    if not isinstance(storage_options, Mapping):
        raise InvalidInputError(
            "storage_options must be a mapping of option names to values, got "
            f"{type(storage_options).__name__}"
        )
    options = dict(storage_options)
    bad_names = [name for name in options if not isinstance(name, str)]
    if bad_names:
        raise InvalidInputError("storage_options keys must be strings")
    if location.scheme == "file":
        if options:
            raise InvalidInputError(
                f"storage_options ({', '.join(sorted(options))}) only apply to s3:// and "
                f"http(s):// URLs, not to the local path {location.url}"
            )
        return options
    managed = sorted(_MANAGED_OPTIONS.intersection(options))
    if managed:
        raise InvalidInputError(
            f"storage_options {', '.join(managed)} are set by cellvol (zarr needs an "
            "asynchronous filesystem) and cannot be given"
        )
    if location.scheme == "s3":
        known = _s3_option_names()
        unknown = sorted(set(options) - known)
        if unknown:
            hints = [
                f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)
                for name in unknown
                for close in [difflib.get_close_matches(name, known, n=1)]
            ]
            raise InvalidInputError(
                f"unknown S3 storage option {', '.join(hints)} for {location.url}: expected "
                "options of s3fs.S3FileSystem such as endpoint_url, anon, key, secret, token, "
                "profile, client_kwargs, config_kwargs"
            )
    return options


def _s3_option_names() -> frozenset[str]:
    from s3fs import S3FileSystem

    parameters = inspect.signature(S3FileSystem.__init__).parameters.values()
    names = {
        p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD or p.kind is p.KEYWORD_ONLY
    }
    # S3FileSystem passes other keywords on to aiobotocore's AioSession, or to fsspec.
    names |= {"profile", "session_vars", "event_hooks", "include_builtin_handlers"}
    names |= {"use_listings_cache", "listings_expiry_time", "max_paths", "skip_instance_cache"}
    return frozenset(names - {"self"} - _MANAGED_OPTIONS)


def _scrub(message: str, options: Mapping[str, Any]) -> str:
    """Replace any credential value from ``options`` that appears in ``message``."""
    for name in _SECRET_OPTIONS:
        value = options.get(name)
        if isinstance(value, str) and len(value) >= 4:
            message = message.replace(value, "***")
    return message


# --------------------------------------------------------------------------------------------
# Local
# --------------------------------------------------------------------------------------------


def _open_local(location: Location, mode: Mode) -> Store:
    root = Path(location.path)
    if root.exists() and not root.is_dir():
        raise InvalidInputError(
            f"{location.url} is a file, not a directory: a local zarr store is a directory"
        )
    if mode in ("r", "r+"):
        if not root.exists():
            raise StoreNotFoundError(
                f"{location.url} does not exist: mode {mode!r} opens an existing store "
                "(use mode 'a' or 'w' to create one)"
            )
        return LocalStore(root, read_only=mode == "r")
    if mode == "w-" and root.is_dir() and any(root.iterdir()):
        raise WriteConflictError(
            f"{location.url} is not empty: mode 'w-' only creates a store where there is none"
        )
    root.mkdir(parents=True, exist_ok=True)
    return LocalStore(root, read_only=False)


# --------------------------------------------------------------------------------------------
# S3
# --------------------------------------------------------------------------------------------


def _open_s3(location: Location, mode: Mode, options: dict[str, Any]) -> Store:
    from s3fs import S3FileSystem

    options = _with_connection_pool(options)
    fs = S3FileSystem(**options, asynchronous=True)
    if options.get("skip_instance_cache"):
        # A filesystem of its own, which the caller may mean to drive from its own event loop:
        # probe with a throwaway twin, in a loop of its own, so that this one stays unbound.
        twin = S3FileSystem(**options, asynchronous=True)
        _run(_probe_s3(twin, location, mode, options, close=True))
    else:
        # fsspec shares this filesystem among stores opened with the same options in this
        # thread, and zarr's synchronous API drives it from zarr's event loop: probe it there,
        # so that the client (and its connections) made for the probe are the ones zarr uses.
        sync(_probe_s3(fs, location, mode, options, close=False))
    return S3Store(fs, path=location.path, read_only=mode == "r")


class S3Store(FsspecStore):
    """zarr's fsspec store over S3, reading a whole object with one GET.

    s3fs reads a whole object by asking for its size first, so that it can fetch objects over
    its block size (50 MiB) in parallel parts: a HEAD before every GET, and for a missing
    object a listing after the HEAD. The whole objects zarr reads are metadata documents of a
    few KiB, and opening a node probes names that mostly do not exist (``zarr.json``,
    ``.zarray``, ``.zattrs``...), so that cost two or three round trips per document. Asked
    for an open-ended range (``bytes=0-``) instead, s3fs sends the GET alone, which returns
    the whole object or a 404. The one thing given up is the parallel fetch of a single object
    over 50 MiB read whole; cellvol reads chunks and shards by ranges, not whole.
    """

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Return the object at ``key`` (or the part ``byte_range`` names), None if absent."""
        return await super().get(key, prototype, byte_range or OffsetByteRequest(0))


def _with_connection_pool(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with botocore's pool of connections widened, unless the caller sized it.

    botocore keeps 10 connections per client by default; one plane of 64³ chunks asks for up
    to a hundred byte ranges at once, which would then wait their turn behind those 10.
    """
    config = options.get("config_kwargs")
    if config is not None and not isinstance(config, Mapping):
        return options  # s3fs reports the wrong type itself
    if config is not None and "max_pool_connections" in config:
        return options
    return {**options, "config_kwargs": {**(config or {}), "max_pool_connections": _S3_CONNECTIONS}}


async def _probe_s3(
    fs: Any, location: Location, mode: Mode, options: dict[str, Any], *, close: bool
) -> None:
    """Check the bucket, and what lies under the prefix, with one listing request.

    Listing works under prefix-restricted policies, where HeadBucket would be denied. The
    client is closed afterwards when ``close`` is true.
    """
    try:
        client = await fs.set_session()
    except Exception as exc:
        raise _s3_setup_error(exc, location, options) from exc
    endpoint = _redact(str(client.meta.endpoint_url))
    bucket, _, key = location.path.partition("/")
    prefix = f"{key}/" if key else ""
    try:
        try:
            listing = await client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except Exception as exc:
            code = _s3_error_code(exc)
            if code in _NO_BUCKET:
                raise StoreNotFoundError(
                    f"bucket {bucket!r} does not exist at endpoint {endpoint} (for "
                    f"{location.url}); cellvol never creates buckets"
                ) from exc
            if code not in _DENIED:
                raise _s3_request_error(exc, location, endpoint, options) from exc
            # Listing is forbidden (a policy that grants GetObject only, say).
            if mode in ("a", "w"):
                return  # nothing to verify: writes themselves will report a refusal
            if mode == "w-":
                raise PermissionError(
                    f"cannot check that {location.url} is empty for mode 'w-': listing bucket "
                    f"{bucket!r} at endpoint {endpoint} is not permitted"
                ) from exc
            await _probe_s3_metadata(client, location, endpoint, bucket, key, options)
            return
        found = int(listing.get("KeyCount", len(listing.get("Contents", [])))) > 0
        if mode == "w-" and found:
            raise WriteConflictError(
                f"{location.url} is not empty: mode 'w-' only creates a store where there is none"
            )
        if mode in ("r", "r+") and not found:
            where = f"under the prefix {prefix!r}" if prefix else "in it"
            raise StoreNotFoundError(
                f"nothing at {location.url}: bucket {bucket!r} exists at endpoint {endpoint} "
                f"but holds no object {where}"
            )
    finally:
        if close:
            await client.close()


async def _probe_s3_metadata(
    client: Any, location: Location, endpoint: str, bucket: str, key: str, options: dict[str, Any]
) -> None:
    """Without listing permission, look for a zarr metadata document at the prefix."""
    denied = False
    for name in METADATA_KEYS:
        try:
            await client.head_object(Bucket=bucket, Key=f"{key}/{name}" if key else name)
        except Exception as exc:
            code = _s3_error_code(exc)
            if code in _DENIED:
                denied = True
            elif code not in ("404", "NoSuchKey", "NotFound"):
                raise _s3_request_error(exc, location, endpoint, options) from exc
        else:
            return
    if denied:
        hint = " (anonymous access: pass credentials if the bucket is private)"
        raise PermissionError(
            f"access denied to {location.url} at endpoint {endpoint}"
            + (hint if options.get("anon") else "")
        )
    raise StoreNotFoundError(
        f"nothing at {location.url} (endpoint {endpoint}): the bucket may not be listed, and "
        f"none of {', '.join(METADATA_KEYS)} exists there"
    )


def _s3_error_code(exc: BaseException) -> str | None:
    """Return the code of a botocore ``ClientError`` (``"NoSuchBucket"``, ``"404"``...)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = (response.get("Error") or {}).get("Code")
    if code:
        return str(code)
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return str(status) if status else None


def _s3_setup_error(exc: Exception, location: Location, options: Mapping[str, Any]) -> Exception:
    """Translate a failure to create the S3 client (bad profile, bad endpoint URL)."""
    boto = importlib.import_module("botocore.exceptions")
    if isinstance(exc, boto.ProfileNotFound):
        profile = options.get("profile") or os.environ.get("AWS_PROFILE")
        return InvalidInputError(
            f"AWS profile {profile!r} was not found (for {location.url}): check the 'profile' "
            "storage option or AWS_PROFILE, and ~/.aws/config"
        )
    if isinstance(exc, ValueError) and "endpoint" in str(exc).lower():
        endpoint = options.get("endpoint_url")
        shown = _redact(endpoint) if isinstance(endpoint, str) else "from the environment"
        return InvalidInputError(f"invalid S3 endpoint URL {shown} (for {location.url})")
    if isinstance(exc, TypeError):
        return InvalidInputError(
            f"bad S3 storage options for {location.url}: {_scrub(str(exc), options)}"
        )
    return exc


def _s3_request_error(
    exc: Exception, location: Location, endpoint: str, options: Mapping[str, Any]
) -> Exception:
    """Translate a failed S3 request into the exception a caller should see."""
    boto = importlib.import_module("botocore.exceptions")
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return PermissionError(
            f"no usable AWS credentials for {location.url} at endpoint {endpoint}: pass "
            "key/secret or profile in storage_options, configure AWS credentials, or use "
            "anon=True for a public bucket"
        )
    if isinstance(exc, boto.ConnectionError | boto.HTTPClientError):
        return ConnectionError(
            f"could not reach the S3 endpoint {endpoint} for {location.url}: "
            f"{_scrub(str(exc), options)}"
        )
    code = _s3_error_code(exc)
    if code is not None:
        message = _scrub(str(exc), options)
        if code in _DENIED or code in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "InvalidToken",
            "TokenRefreshRequired",
        ):
            return PermissionError(
                f"S3 refused access to {location.url} at endpoint {endpoint}: {message}"
            )
        return OSError(f"S3 request for {location.url} at endpoint {endpoint} failed: {message}")
    return exc


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


def _open_http(location: Location, mode: Mode, options: dict[str, Any]) -> Store:
    from fsspec.implementations.http import HTTPFileSystem

    if mode != "r":
        raise ReadOnlyStoreError(
            f"{location.url} is read-only: HTTP(S) locations can only be opened with mode 'r', "
            f"not {mode!r}"
        )
    _run(_probe_http(location, options))
    fs = HTTPFileSystem(**options, asynchronous=True)
    return FsspecStore(fs, path=location.url, read_only=True)


async def _probe_http(location: Location, options: dict[str, Any]) -> None:
    """Check that the server has a zarr metadata document at the root."""
    import aiohttp
    from fsspec.implementations.http import HTTPFileSystem

    fs = HTTPFileSystem(**{**options, "skip_instance_cache": True}, asynchronous=True)
    request_options = dict(fs.kwargs)
    request_options.setdefault("timeout", aiohttp.ClientTimeout(total=_HTTP_PROBE_TIMEOUT_S))
    session = await fs.set_session()
    tried: list[str] = []
    statuses: set[int] = set()
    try:
        for name in METADATA_KEYS:
            url = f"{location.url}/{name}"
            async with session.get(fs.encode_url(url), **request_options) as response:
                if 200 <= response.status < 300:
                    return
                statuses.add(response.status)
                tried.append(f"{name} (HTTP {response.status})")
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise ConnectionError(
            f"could not reach {_redact(location.url)}: {type(exc).__name__}: "
            f"{_scrub(str(exc), options)}"
        ) from exc
    except aiohttp.InvalidURL as exc:
        raise InvalidInputError(f"invalid URL {_redact(location.url)}") from exc
    finally:
        await session.close()
    if 401 in statuses:  # 403 is no proof: S3 answers it for missing keys it may not list
        raise PermissionError(
            f"{location.url} requires authentication (HTTP 401): pass credentials in "
            "storage_options, e.g. headers={'Authorization': ...}"
        )
    raise StoreNotFoundError(
        f"no zarr store at {location.url}: none of its metadata documents could be read "
        f"(tried {', '.join(tried)})"
    )


# --------------------------------------------------------------------------------------------
# Running the probes
# --------------------------------------------------------------------------------------------


def _run[T](coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a probe to completion in a fresh event loop, even when called from inside one."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellvol-probe") as pool:
        return pool.submit(asyncio.run, coroutine).result()
