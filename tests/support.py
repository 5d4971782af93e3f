"""Values and small classes the tests share (fixtures live in the conftest.py files)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

#: Where the real (large) test files live, beside the project checkout.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: A loopback port nothing listens on (the "discard" port): the S3 endpoint of last resort.
DEAD_ENDPOINT = "http://127.0.0.1:9"

FAKE_KEY = "testing"
FAKE_SECRET = "testing"
FAKE_REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 server on 127.0.0.1."""

    endpoint_url: str
    key: str = FAKE_KEY
    secret: str = FAKE_SECRET
    region: str = FAKE_REGION
    _clients: list[Any] = field(default_factory=list, repr=False, compare=False)

    def storage_options(self, **extra: Any) -> dict[str, Any]:
        """Return s3fs / cellvol ``storage_options`` for this server, plus ``extra``."""
        return {"endpoint_url": self.endpoint_url, "key": self.key, "secret": self.secret, **extra}

    def client(self) -> Any:
        """Return a boto3 S3 client for this server (for setting up and inspecting buckets).

        The client is made once (that takes a tenth of a second) and shared: boto3 clients
        are thread-safe.
        """
        if not self._clients:
            import boto3

            self._clients.append(
                boto3.client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id=self.key,
                    aws_secret_access_key=self.secret,
                    region_name=self.region,
                )
            )
        return self._clients[0]

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object of ``bucket``, straight from the server: key -> bytes.

        ``prefix`` is taken off the keys, so that images under different prefixes compare.
        """
        client = self.client()
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
                found[entry["Key"].removeprefix(prefix)] = body
        return found


class S3Bucket(NamedTuple):
    """A bucket made for one test; unpacks as ``name, storage_options``."""

    name: str
    storage_options: dict[str, Any]

    def url(self, *parts: str) -> str:
        """Return ``s3://name/part/...``."""
        return "/".join([f"s3://{self.name}", *(p.strip("/") for p in parts if p.strip("/"))])


def forget_cached_filesystems() -> None:
    """Close the sessions of fsspec's cached S3 and HTTP filesystems, then forget them.

    Best effort: a session is closed on zarr's event loop, where zarr's synchronous API opened
    it; one that belongs to another (finished) loop is just dropped.
    """
    try:
        from fsspec.implementations.http import HTTPFileSystem
        from s3fs import S3FileSystem
        from zarr.core.sync import sync

        from cellvol._store._s3fs import RetryingS3FileSystem
    except ImportError:
        return
    # Each class keeps a cache of its own: cellvol's S3 filesystem, and plain s3fs's.
    kinds = ((RetryingS3FileSystem, "_s3"), (S3FileSystem, "_s3"), (HTTPFileSystem, "_session"))
    for cls, attribute in kinds:
        for fs in list(cls._cache.values()):
            session = getattr(fs, attribute, None)
            if session is not None and getattr(fs, "asynchronous", False):
                with contextlib.suppress(Exception):
                    sync(session.close(), timeout=5)
        cls.clear_instance_cache()


def write_ome_zarr_04(path: Path, data: Any, scale: list[float]) -> None:
    """An OME-Zarr 0.4 image on zarr v2, as other tools write it: two levels, in micrometres."""
    import zarr

    group = zarr.open_group(path, mode="w", zarr_format=2)
    group.create_array("s0", data=data, chunks=(8, 8, 8))
    group.create_array("s1", data=data[::2, ::2, ::2], chunks=(8, 8, 8))
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "name": "v04",
            "axes": [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"],
            "datasets": [
                {"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": scale}]},
                {
                    "path": "s1",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [2 * s for s in scale]},
                        {"type": "translation", "translation": [s / 2 for s in scale]},
                    ],
                },
            ],
            "coordinateTransformations": [{"type": "scale", "scale": [1.0, 2.0, 2.0]}],
        }
    ]
