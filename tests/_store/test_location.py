"""Paths and URLs parsed into locations: what cellvol opens, and what it refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cellvol._store import Location, join, open_store, parse_location
from cellvol.errors import InvalidInputError, UnsupportedURLError

HOME = os.path.expanduser("~")


@pytest.mark.parametrize(
    ("given", "scheme", "path", "url", "name"),
    [
        ("/data/vol.ome.zarr", "file", "/data/vol.ome.zarr", "/data/vol.ome.zarr", "vol"),
        ("/data/vol.ome.zarr/", "file", "/data/vol.ome.zarr", "/data/vol.ome.zarr", "vol"),
        ("/data/x/../vol.zarr", "file", "/data/vol.zarr", "/data/vol.zarr", "vol"),
        ("~/v.zarr", "file", f"{HOME}/v.zarr", f"{HOME}/v.zarr", "v"),
        ("file:///data/vol.zarr", "file", "/data/vol.zarr", "/data/vol.zarr", "vol"),
        ("file://localhost/data/v.zarr", "file", "/data/v.zarr", "/data/v.zarr", "v"),
        ("file:/data/v.zarr", "file", "/data/v.zarr", "/data/v.zarr", "v"),
        ("file:///data/my%20vol.zarr", "file", "/data/my vol.zarr", "/data/my vol.zarr", "my vol"),
        ("/data/plain", "file", "/data/plain", "/data/plain", "plain"),
        ("/data/.zarr", "file", "/data/.zarr", "/data/.zarr", ".zarr"),
        ("/data/UPPER.OME.ZARR", "file", "/data/UPPER.OME.ZARR", "/data/UPPER.OME.ZARR", "UPPER"),
        ("s3://bucket", "s3", "bucket", "s3://bucket", "bucket"),
        ("s3://bucket/", "s3", "bucket", "s3://bucket", "bucket"),
        ("S3://bucket/k", "s3", "bucket/k", "s3://bucket/k", "k"),
        (
            "s3://bucket/deep/key.zarr/",
            "s3",
            "bucket/deep/key.zarr",
            "s3://bucket/deep/key.zarr",
            "key",
        ),
        (
            "s3://bucket//a//b.ome.zarr",
            "s3",
            "bucket/a/b.ome.zarr",
            "s3://bucket/a/b.ome.zarr",
            "b",
        ),
        (
            "s3://my.bucket-1/t.ome.zarr",
            "s3",
            "my.bucket-1/t.ome.zarr",
            "s3://my.bucket-1/t.ome.zarr",
            "t",
        ),
        ("http://host/x.zarr", "http", "http://host/x.zarr", "http://host/x.zarr", "x"),
        (
            "HTTPS://Host.ORG:8443/a/x.ome.zarr/",
            "https",
            "https://host.org:8443/a/x.ome.zarr",
            "https://host.org:8443/a/x.ome.zarr",
            "x",
        ),
        (
            "https://h.org/my%20vol.zarr",
            "https",
            "https://h.org/my%20vol.zarr",
            "https://h.org/my%20vol.zarr",
            "my vol",
        ),
        (
            "https://data.example.org",
            "https",
            "https://data.example.org",
            "https://data.example.org",
            "data.example.org",
        ),
        (
            "http://[::1]:8000/v.zarr",
            "http",
            "http://[::1]:8000/v.zarr",
            "http://[::1]:8000/v.zarr",
            "v",
        ),
    ],
)
def test_parse_location(given: str, scheme: str, path: str, url: str, name: str) -> None:
    location = parse_location(given)
    assert (location.scheme, location.path, location.url, location.name) == (
        scheme,
        path,
        url,
        name,
    )
    assert parse_location(location.url) == location  # canonical forms round-trip
    assert parse_location(location) is location
    assert str(location) == url
    assert location.is_remote is (scheme != "file")


def test_relative_paths_are_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_location("vol.zarr").path == str(tmp_path / "vol.zarr")
    assert parse_location("./a/../b.ome.zarr").url == str(tmp_path / "b.ome.zarr")
    assert parse_location(Path("v.zarr")).url == str(tmp_path / "v.zarr")
    # a path object is always local, even when its name looks like a URL
    assert parse_location(Path("s3:odd")).url == str(tmp_path / "s3:odd")
    assert parse_location("./scan:001.zarr").url == str(tmp_path / "scan:001.zarr")
    assert parse_location("2024-01-01T10:00.zarr").name == "2024-01-01T10:00"


def test_location_is_frozen_and_slotted() -> None:
    location = parse_location("s3://bucket/key")
    with pytest.raises(AttributeError):
        location.url = "elsewhere"
    assert not hasattr(location, "__dict__")
    assert Location("s3", "bucket/key", "s3://bucket/key") == location


@pytest.mark.parametrize(
    ("given", "scheme"),
    [
        ("gs://bucket/x.zarr", "'gs'"),
        ("gcs://bucket/x.zarr", "'gcs'"),
        ("ftp://host/x.zarr", "'ftp'"),
        ("zip:///data/x.zip", "'zip'"),
        ("az://container/x", "'az'"),
        ("memory://x", "'memory'"),
        ("s3a://bucket/x", "'s3a'"),
        ("zip::s3://bucket/x.zip", "'zip::s3'"),
        ("simplecache::https://h/x.zarr", "'simplecache::https'"),
        ("s3:/bucket/x", "'s3'"),
        ("s3:bucket/x", "'s3'"),
        ("http:/host/x", "'http'"),
        ("c:/data/x.zarr" if os.name != "nt" else "c:data", "'c'"),
        ("C:\\data\\x.zarr" if os.name != "nt" else "C:data", "'c'"),
        ("scan:001.zarr", "'scan'"),
    ],
)
def test_unsupported_schemes(given: str, scheme: str) -> None:
    with pytest.raises(UnsupportedURLError, match=scheme) as info:
        parse_location(given)
    message = str(info.value)
    assert "s3://" in message
    assert "http" in message
    assert "file://" in message
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnsupportedURLError):
        open_store(given)


def test_remote_file_url_is_unsupported() -> None:
    with pytest.raises(UnsupportedURLError, match="remote host 'server'"):
        parse_location("file://server/share/x.zarr")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "empty path"),
        ("s3://", "has no bucket"),
        ("s3:///key", "has no bucket"),
        ("s3://bucket/a/../b", r"'\.' or '\.\.'"),
        ("s3://bucket/x?versionId=3", "query string"),
        ("s3://bu cket/x", "not a valid S3 bucket name"),
        ("https://host/x.zarr?token=abc", "query string"),
        ("https://host/x.zarr#frag", "query string or fragment"),
        ("https:///x.zarr", "no valid host"),
        ("http://host:notaport/x", "no valid host"),
        ("https://user:pw@host/x.zarr", "credentials in the URL"),
    ],
)
def test_malformed_urls(given: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        parse_location(given)
    assert "pw@" not in str(info.value)
    assert "token=abc" not in str(info.value)


def test_non_string_input() -> None:
    with pytest.raises(InvalidInputError, match="expected a path or URL string, got int"):
        parse_location(3)


@pytest.mark.parametrize(
    ("parent", "parts", "expected"),
    [
        ("s3://bucket", ("vol.zarr",), "s3://bucket/vol.zarr"),
        ("s3://bucket/a/", ("b/", "/c"), "s3://bucket/a/b/c"),
        ("https://h/x.zarr", ("0",), "https://h/x.zarr/0"),
        ("/data", ("a", "b.zarr"), "/data/a/b.zarr"),
        ("/data", (), "/data"),
        ("s3://bucket/a", ("", "/"), "s3://bucket/a"),
    ],
)
def test_join(parent: str, parts: tuple[str, ...], expected: str) -> None:
    assert join(parent, *parts) == expected
    assert join(parse_location(parent), *parts) == expected


def test_join_never_leaves_the_parent() -> None:
    with pytest.raises(InvalidInputError, match=r"'\.' and '\.\.'"):
        join("s3://bucket/a", "../b")
