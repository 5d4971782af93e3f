"""What each S3 upload carries for the server to check its body against.

A body sent with its SHA-256 (a shard's, which the writer computes for its record) goes with
``x-amz-checksum-sha256`` and an unsigned payload; every other body keeps botocore's signed
payload and CRC32. (moto checks neither: real S3 refuses a body that matches neither.)
Bodies go as the bytes they are, without botocore's wait for ``100 Continue``.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import numpy as np
import pytest
from support import S3Bucket, S3Server

from cellvol import write_pyramid
from cellvol._store import open_store, read_bytes, write_bytes
from cellvol._store._multipart import MULTIPART_THRESHOLD

pytestmark = pytest.mark.s3

Sent = list[tuple[str, str, dict[str, str]]]
_HEADERS = ("x-amz-content-sha256", "x-amz-checksum-sha256", "x-amz-checksum-crc32", "expect")


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    """Every request any aiobotocore client sends from now on: method, URL, checksum headers."""
    from aiobotocore.endpoint import AioEndpoint

    requests: Sent = []
    send = AioEndpoint._send

    async def recorded(self: Any, request: Any) -> Any:
        headers = {k.lower(): v for k, v in request.headers.items()}
        kept = {h: _text(headers[h]) for h in _HEADERS if h in headers}
        requests.append((request.method, request.url, kept))
        return await send(self, request)

    monkeypatch.setattr(AioEndpoint, "_send", recorded)
    return requests


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _puts(sent: Sent) -> list[tuple[str, dict[str, str]]]:
    return [(url, headers) for method, url, headers in sent if method == "PUT"]


def test_a_body_with_its_sha256_is_checked_by_it_and_not_signed(
    s3_bucket: S3Bucket, sent: Sent
) -> None:
    store = open_store(s3_bucket.url("v"), mode="a", storage_options=s3_bucket.storage_options)
    data = bytes(range(256)) * 1000
    sent.clear()
    write_bytes(store, "shard", [data[:1000], data[1000:]], hashlib.sha256(data).hexdigest())
    [(_, headers)] = _puts(sent)
    assert headers == {
        "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
        "x-amz-checksum-sha256": _b64(hashlib.sha256(data).digest()),
    }
    assert read_bytes(store, "shard") == data


def test_a_body_without_it_keeps_the_signed_payload_and_crc32(
    s3_bucket: S3Bucket, sent: Sent
) -> None:
    store = open_store(s3_bucket.url("v"), mode="a", storage_options=s3_bucket.storage_options)
    sent.clear()
    write_bytes(store, "zarr.json", b"{}")
    [(_, headers)] = _puts(sent)
    assert headers["x-amz-content-sha256"] == hashlib.sha256(b"{}").hexdigest()
    assert "x-amz-checksum-crc32" in headers
    assert "x-amz-checksum-sha256" not in headers


def test_signed_payloads_asked_for_are_kept(s3_bucket: S3Bucket, sent: Sent) -> None:
    options = {
        **s3_bucket.storage_options,
        "config_kwargs": {"s3": {"payload_signing_enabled": True}},
    }
    store = open_store(s3_bucket.url("v"), mode="a", storage_options=options)
    sent.clear()
    write_bytes(store, "shard", b"abc", hashlib.sha256(b"abc").hexdigest())
    [(_, headers)] = _puts(sent)
    assert headers["x-amz-content-sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert headers["x-amz-checksum-sha256"] == _b64(hashlib.sha256(b"abc").digest())


def test_parts_of_a_large_object_keep_their_own_checks(s3_bucket: S3Bucket, sent: Sent) -> None:
    store = open_store(s3_bucket.url("v"), mode="a", storage_options=s3_bucket.storage_options)
    data = np.random.default_rng(0).integers(0, 256, MULTIPART_THRESHOLD, np.uint8).tobytes()
    sent.clear()
    write_bytes(store, "big", data, hashlib.sha256(data).hexdigest())
    parts = _puts(sent)
    assert len(parts) > 1
    assert all("partNumber=" in url for url, _ in parts)
    for _, headers in parts:
        assert headers["x-amz-content-sha256"] != "UNSIGNED-PAYLOAD"
        assert "x-amz-checksum-crc32" in headers
        assert "expect" not in headers
    assert read_bytes(store, "big") == data


def test_every_shard_of_a_pyramid_goes_up_with_its_own_sha256(
    s3_bucket: S3Bucket, s3_server: S3Server, sent: Sent
) -> None:
    volume = np.random.default_rng(1).integers(0, 200, (64, 96, 80), dtype=np.uint8)
    write_pyramid(
        volume,
        s3_bucket.url("img.ome.zarr"),
        (1.0, 1.0, 1.0),
        chunks=(16, 16, 16),
        shards=(32, 32, 32),
        n_levels=2,
        storage_options=s3_bucket.storage_options,
    )
    stored = s3_server.objects(s3_bucket.name)
    shards = [key for key in stored if "/c/" in key]
    assert shards
    checked = {
        url.split(f"/{s3_bucket.name}/", 1)[1]: headers["x-amz-checksum-sha256"]
        for url, headers in _puts(sent)
        if "x-amz-checksum-sha256" in headers
    }
    for key in shards:
        assert checked[key] == _b64(hashlib.sha256(stored[key]).digest()), key
