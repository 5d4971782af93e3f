"""A zipped OME-Zarr (.ozx) on S3 takes the same storage options, and retries, as a store."""

from __future__ import annotations

import io
import zipfile

import pytest
from support import S3Bucket

from cellvol._store import open_store, read_bytes, write_bytes
from cellvol.errors import CellvolError, EndpointUnreachableError


def _archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("zarr.json", b'{"zarr_format": 3, "node_type": "group"}')
    return buffer.getvalue()


def test_retry_option_is_accepted_for_an_archive_on_s3(s3_bucket: S3Bucket) -> None:
    remote = open_store(s3_bucket.url(), mode="a", storage_options=s3_bucket.storage_options)
    write_bytes(remote, "a.ozx", _archive())
    options = {**s3_bucket.storage_options, "retry": {"attempts": 3, "first_delay": 0.01}}
    store = open_store(s3_bucket.url("a.ozx"), storage_options=options)
    assert read_bytes(store, "zarr.json") == b'{"zarr_format": 3, "node_type": "group"}'


def test_a_bad_retry_option_for_an_archive_is_a_clear_error(s3_bucket: S3Bucket) -> None:
    options = {**s3_bucket.storage_options, "retry": {"tries": 3}}
    with pytest.raises(CellvolError, match="storage option 'retry'"):
        open_store(s3_bucket.url("a.ozx"), storage_options=options)


def test_an_unreachable_endpoint_for_an_archive_is_a_connection_error(
    s3_bucket: S3Bucket,
) -> None:
    options = {
        **s3_bucket.storage_options,
        "endpoint_url": "http://127.0.0.1:9",
        "retry": {"attempts": 2, "first_delay": 0.01},
    }
    with pytest.raises(EndpointUnreachableError, match=r"a\.ozx"):
        open_store(s3_bucket.url("a.ozx"), storage_options=options)
