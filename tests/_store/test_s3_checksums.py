"""What each S3 upload carries for the server to check its body against.

A body sent with its SHA-256 (a shard's, which the writer computes for its record) goes with
``x-amz-checksum-sha256`` and an unsigned payload; every other body keeps botocore's signed
payload and CRC32. (moto checks neither: real S3 refuses a body that matches neither.)
Bodies go as the bytes they are, without botocore's wait for ``100 Continue``.

moto echoes ``x-amz-checksum-sha256`` in its PutObject reply (given the algorithm's name,
which cellvol sends), as S3 does, but it does not check the body against it: the unsigned
payload is kept against it, as against S3. A reply without the echo (a server that ignores
the header) is made here by patching the reply.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from typing import Any

import numpy as np
import pytest
from support import S3Bucket, S3Server

from cellvol import write_pyramid
from cellvol._store import _s3fs, open_store, read_bytes, write_bytes
from cellvol._store._multipart import MULTIPART_THRESHOLD
from cellvol.errors import StoreUnavailableError

pytestmark = pytest.mark.s3

# Per request: method, URL, checksum headers, and "authorization" and "body" (its type's name).
Sent = list[tuple[str, str, dict[str, str], dict[str, str]]]
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
        extra = {
            "authorization": _text(headers.get("authorization", "")),
            "body": type(request.body).__name__,
        }
        requests.append((request.method, request.url, kept, extra))
        return await send(self, request)

    monkeypatch.setattr(AioEndpoint, "_send", recorded)
    return requests


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _puts(sent: Sent) -> list[tuple[str, dict[str, str]]]:
    return [(url, headers) for method, url, headers, _ in sent if method == "PUT"]


def _signed_headers(authorization: str) -> list[str]:
    match = re.search(r"SignedHeaders=([^,\s]+)", authorization)
    assert match, authorization
    return match.group(1).split(";")


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


def test_the_checksum_is_signed_and_the_body_goes_as_bytes(s3_bucket: S3Bucket, sent: Sent) -> None:
    # Both pin botocore internals this module relies on: the checksum header must be under
    # the signature when the payload is not, and the unregistered handler must be the one
    # that wraps bodies in a BytesIO (a rename would cost a copy of every body, silently).
    store = open_store(s3_bucket.url("v"), mode="a", storage_options=s3_bucket.storage_options)
    sent.clear()
    write_bytes(store, "shard", b"abc" * 1000, hashlib.sha256(b"abc" * 1000).hexdigest())
    [(_method, _, headers, extra)] = [r for r in sent if r[0] == "PUT"]
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert "x-amz-checksum-sha256" in _signed_headers(extra["authorization"])
    assert extra["body"] == "bytes"


def test_a_reply_without_the_checksum_echo_means_signed_payloads_from_then_on(
    s3_bucket: S3Bucket,
    sent: Sent,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    put_object = _s3fs.put_object

    async def without_echo(*args: Any, **kwargs: Any) -> Any:
        reply = await put_object(*args, **kwargs)
        reply.pop("ChecksumSHA256", None)  # as a server that ignores the header answers
        return reply

    monkeypatch.setattr(_s3fs, "put_object", without_echo)
    options = {**s3_bucket.storage_options, "skip_instance_cache": True}
    store = open_store(s3_bucket.url("v"), mode="a", storage_options=options)
    first, second = b"first" * 1000, b"second" * 1000
    sent.clear()
    with caplog.at_level(logging.WARNING, logger=_s3fs.__name__):
        write_bytes(store, "a", first, hashlib.sha256(first).hexdigest())
        write_bytes(store, "b", second, hashlib.sha256(second).hexdigest())
    puts = _puts(sent)
    assert [url.rsplit("/", 1)[1] for url, _ in puts] == ["a", "a", "b"]
    assert puts[0][1]["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert puts[1][1]["x-amz-content-sha256"] == hashlib.sha256(first).hexdigest()
    assert puts[2][1]["x-amz-content-sha256"] == hashlib.sha256(second).hexdigest()
    assert puts[2][1]["x-amz-checksum-sha256"] == _b64(hashlib.sha256(second).digest())
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "did not confirm the SHA-256" in caplog.text
    assert read_bytes(store, "a") == first
    assert read_bytes(store, "b") == second


def test_only_plain_http_needs_the_echo() -> None:
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config

    for url, over_http in (("http://127.0.0.1:9000/b/k", True), ("https://s3.example/b/k", False)):
        request = AWSRequest("PUT", url, headers={"x-amz-checksum-sha256": "x"})
        request.context["client_config"] = Config()
        unsigned = _s3fs._Unsigned()
        token = _s3fs._UNSIGNED.set(unsigned)
        try:
            _s3fs._unsigned_if_checksummed(request)
        finally:
            _s3fs._UNSIGNED.reset(token)
        assert request.context["client_config"].s3 == {"payload_signing_enabled": False}
        assert unsigned.over_http is over_http


def test_a_body_changed_in_transit_is_sent_again(
    fault_proxy: Any, s3_bucket: S3Bucket, s3_server: S3Server
) -> None:
    options = {
        **s3_bucket.storage_options,
        "endpoint_url": fault_proxy.url,
        "skip_instance_cache": True,
        "retry": {"attempts": 3, "first_delay": 0.001},
    }
    store = open_store(s3_bucket.url("v"), mode="a", storage_options=options)
    data = b"shard" * 1000
    # Half the PUTs meet a BadDigest: each is sent again and stored whole.
    fault_proxy.configure(rate=0.5, seed=3, kinds=("bad-digest",))
    for i in range(8):
        write_bytes(store, f"ok{i}", data, hashlib.sha256(data).hexdigest())
    assert fault_proxy.take_counts().get("bad-digest", 0) > 0
    assert all(s3_server.objects(s3_bucket.name)[f"v/ok{i}"] == data for i in range(8))
    # One that meets it every time is named once the budget is spent.
    fault_proxy.configure(rate=0.0, fail_keys=r"/v/bad$", fail_kinds=("bad-digest",))
    with pytest.raises(StoreUnavailableError, match=r"S3 PutObject of s3://[^ ]+/v/bad\b") as put:
        write_bytes(store, "bad", data, hashlib.sha256(data).hexdigest())
    assert "3 tries" in str(put.value)
    assert "BadDigest" in str(put.value)
    assert fault_proxy.take_counts().get("bad-digest", 0) == 3
