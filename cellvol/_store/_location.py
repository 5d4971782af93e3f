"""Paths and URLs: what cellvol can open, parsed into a canonical :class:`Location`.

Local paths (made absolute), ``file://``, ``s3://bucket/key`` and ``http(s)://host/path``;
anything else, and anything ambiguous, is refused with a message naming what is supported.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from cellvol.errors import InvalidInputError, UnsupportedURLError

__all__ = ["METADATA_KEYS", "SUPPORTED", "Location", "Scheme", "join", "parse_location", "redact"]

Scheme = Literal["file", "s3", "http", "https"]
"""The kinds of location cellvol can open."""

SUPPORTED: Final = "local paths, file://, s3://, http:// and https:// URLs"

#: Documents whose presence marks the root of a zarr hierarchy (v3 first, then v2).
METADATA_KEYS: Final[tuple[str, ...]] = ("zarr.json", ".zattrs", ".zgroup", ".zarray")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
_SUFFIXES: Final = (".ome.zarr", ".zarr", ".ozx")


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
        """The last path component without a ``.ome.zarr`` / ``.zarr`` / ``.ozx`` suffix.

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
    def is_archive(self) -> bool:
        """Whether the location is a zipped OME-Zarr file (``.ozx``, RFC-9): read-only."""
        return self.url.lower().endswith(".ozx")

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
            f"chained fsspec URL {chain!r} in {redact(text)!r} is not supported: "
            f"cellvol opens {SUPPORTED}"
        )
    if not rest.startswith("//"):
        raise UnsupportedURLError(
            f"{redact(text)!r} is ambiguous: it starts like a URL with scheme {scheme!r} but "
            f"has no '://'. Supported: {SUPPORTED}; write a local path whose name contains "
            "':' as './name'"
        )
    if scheme == "s3":
        return _s3_url(text, rest[2:])
    if scheme in ("http", "https"):
        return _http_url(text)
    raise UnsupportedURLError(
        f"unsupported URL scheme {scheme!r} in {redact(text)!r}: cellvol opens {SUPPORTED}"
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
            f"file URL {redact(text)!r} names the remote host {parts.hostname!r}: only local "
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
            f"credentials in the URL {redact(text)!r} are not supported (they would end up in "
            "logs and metadata): pass them in storage_options, e.g. headers or "
            "client_kwargs={'auth': aiohttp.BasicAuth(...)}"
        )
    if parts.query or parts.fragment:
        raise InvalidInputError(
            f"URL {redact(text)!r} has a query string or fragment: zarr appends keys to the "
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


def redact(url: str) -> str:
    """Drop credentials, query and fragment from a URL before it goes into a message."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc.rpartition("@")[2]
    if parts.netloc != netloc:
        netloc = f"***@{netloc}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
