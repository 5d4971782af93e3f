"""S3 requests through the fault proxy: each kind of fault is real, and each is survived.

The proxy (``fault_proxy``, benchmarks/_fault_proxy.py) stands between the client and the
session's moto server on 127.0.0.1; a fault drawn for a request is a real failure on the
wire (a 5xx answer, a TCP reset, a body cut short), not a mock.
"""

from __future__ import annotations

import http.client
import os
from typing import Any
from urllib.parse import urlsplit

import pytest
from support import S3Bucket, S3Server

from cellvol._store import open_store, read_bytes, write_bytes
from cellvol._store._retry import RetryPolicy
from cellvol.errors import InvalidInputError, StoreUnavailableError

pytestmark = pytest.mark.s3


def _options(bucket: S3Bucket, proxy: Any, **extra: Any) -> dict[str, Any]:
    return {**bucket.storage_options, "endpoint_url": proxy.url, **extra}


def _signed_get(server: S3Server, proxy: Any, bucket: str, key: str) -> tuple[int, bytes]:
    """A GET of ``key`` through the proxy by a plain HTTP client (a presigned URL)."""
    import boto3

    signer = boto3.client(
        "s3",
        endpoint_url=proxy.url,
        aws_access_key_id=server.key,
        aws_secret_access_key=server.secret,
        region_name=server.region,
    )
    url = signer.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
    parts = urlsplit(url)
    return _raw_request(proxy.url, "GET", f"{parts.path}?{parts.query}")


def _raw_request(url: str, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request, its status and its body (moto takes unsigned PUTs and error requests)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, body=body or None)
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


# The proxy itself: each fault kind does to a plain HTTP client what it says.


def test_error_answers_are_s3_errors(fault_proxy: Any, s3_bucket: S3Bucket) -> None:
    fault_proxy.configure(rate=1.0, kinds=("503",))
    status, body = _raw_request(fault_proxy.url, "GET", f"/{s3_bucket.name}/missing")
    assert status == 503
    assert b"<Code>SlowDown</Code>" in body
    fault_proxy.configure(kinds=("500",))
    status, body = _raw_request(fault_proxy.url, "GET", f"/{s3_bucket.name}/missing")
    assert status == 500
    assert b"<Code>InternalError</Code>" in body
    assert fault_proxy.take_counts() == {"requests": 2, "503": 1, "500": 1}


@pytest.mark.parametrize("kind", ["reset", "lost-answer"])
def test_resets_leave_no_answer(fault_proxy: Any, s3_bucket: S3Bucket, kind: str) -> None:
    fault_proxy.configure(rate=1.0, kinds=(kind,))
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        _raw_request(fault_proxy.url, "PUT", f"/{s3_bucket.name}/k", b"payload")
    stored = _keys(s3_bucket)
    # A lost answer is lost after moto stored the object; a reset never reached moto.
    assert stored == (["k"] if kind == "lost-answer" else [])


def test_a_short_body_announces_more_than_it_sends(
    fault_proxy: Any, s3_server: S3Server, s3_bucket: S3Bucket
) -> None:
    payload = os.urandom(10_000)
    s3_server.client().put_object(Bucket=s3_bucket.name, Key="k", Body=payload)
    fault_proxy.configure(rate=1.0, kinds=("short-body",))
    with pytest.raises(http.client.IncompleteRead) as caught:
        _signed_get(s3_server, fault_proxy, s3_bucket.name, "k")
    # The headers announce the whole object; half of it arrives, then the connection ends.
    assert caught.value.partial == payload[: len(payload) // 2]
    assert caught.value.expected == len(payload) - len(payload) // 2


def test_a_reset_mid_body_breaks_the_answer_off(
    fault_proxy: Any, s3_server: S3Server, s3_bucket: S3Bucket
) -> None:
    payload = os.urandom(10_000)
    s3_server.client().put_object(Bucket=s3_bucket.name, Key="k", Body=payload)
    fault_proxy.configure(rate=1.0, kinds=("reset-body",))
    # Whether the first half is read before the reset arrives is the kernel's affair.
    with pytest.raises((http.client.IncompleteRead, ConnectionResetError)) as caught:
        _signed_get(s3_server, fault_proxy, s3_bucket.name, "k")
    if isinstance(caught.value, http.client.IncompleteRead):
        assert payload.startswith(caught.value.partial)
        assert len(caught.value.partial) < len(payload)


def test_delays_answer_in_full(fault_proxy: Any, s3_server: S3Server, s3_bucket: S3Bucket) -> None:
    s3_server.client().put_object(Bucket=s3_bucket.name, Key="k", Body=b"whole")
    fault_proxy.configure(rate=1.0, kinds=("delay",))
    assert _signed_get(s3_server, fault_proxy, s3_bucket.name, "k") == (200, b"whole")
    assert fault_proxy.take_counts() == {"requests": 1, "delay": 1}


def test_the_same_requests_meet_the_same_faults(fault_proxy: Any, s3_bucket: S3Bucket) -> None:
    def run(seed: int) -> list[int]:
        fault_proxy.configure(rate=0.5, seed=seed, kinds=("500", "503"))
        fault_proxy._seen.clear()  # a new run: every request seen for the first time
        return [
            _raw_request(fault_proxy.url, "GET", f"/{s3_bucket.name}/k{i}")[0] for i in range(40)
        ]

    first = run(7)
    assert run(7) == first
    assert {500, 503, 404} <= set(first)  # mixed, and most requests pass (missing keys)
    assert run(8) != first


# cellvol through the proxy.


def test_every_fault_kind_is_survived(fault_proxy: Any, s3_bucket: S3Bucket) -> None:
    fault_proxy.configure(rate=0.5, seed=3)
    store = open_store(
        s3_bucket.url("img"), mode="a", storage_options=_options(s3_bucket, fault_proxy)
    )
    payloads = {f"obj/{i}": os.urandom(1000 + 997 * i) for i in range(40)}
    for key, data in payloads.items():
        write_bytes(store, key, data)
    for key, data in payloads.items():
        assert read_bytes(store, key) == data
    counts = fault_proxy.take_counts()
    assert set(counts) >= {"500", "503", "reset", "reset-body", "short-body", "lost-answer"}
    fault_proxy.configure(rate=0.0)
    assert _keys(s3_bucket) == sorted(f"img/{key}" for key in payloads)


def test_a_short_body_is_fetched_again_never_returned(
    fault_proxy: Any, s3_server: S3Server, s3_bucket: S3Bucket
) -> None:
    payload = os.urandom(200_000)
    s3_server.client().put_object(Bucket=s3_bucket.name, Key="img/k", Body=payload)
    store = open_store(s3_bucket.url("img"), storage_options=_options(s3_bucket, fault_proxy))
    fault_proxy.configure(rate=0.4, seed=1, kinds=("short-body", "reset-body"))
    for _ in range(10):
        assert read_bytes(store, "k") == payload
    assert fault_proxy.take_counts().get("short-body", 0) > 0


def test_a_key_that_always_fails_is_named(fault_proxy: Any, s3_bucket: S3Bucket) -> None:
    options = _options(s3_bucket, fault_proxy, retry={"attempts": 3, "first_delay": 0.001})
    store = open_store(s3_bucket.url("img"), mode="a", storage_options=options)
    # Answers only: aiohttp itself sends a request again once when a kept-alive connection
    # is reset, so resets would not count tries one for one.
    fault_proxy.configure(fail_keys=r"/img/doomed$", fail_kinds=("503", "500"))
    with pytest.raises(
        StoreUnavailableError, match=r"S3 PutObject of s3://[^ ]+/img/doomed"
    ) as put:
        write_bytes(store, "doomed", b"data")
    put_counts = fault_proxy.take_counts()
    assert "3 tries" in str(put.value)
    assert "resume=True" in str(put.value)
    with pytest.raises(StoreUnavailableError, match=r"S3 GetObject of s3://[^ ]+/img/doomed"):
        read_bytes(store, "doomed")
    get_counts = fault_proxy.take_counts()
    write_bytes(store, "fine", b"data")  # other keys are unaffected
    assert read_bytes(store, "fine") == b"data"
    assert put_counts.get("503", 0) + put_counts.get("500", 0) == 3
    assert get_counts.get("503", 0) + get_counts.get("500", 0) == 3


def test_a_short_body_that_keeps_coming_short_is_an_error(
    fault_proxy: Any, s3_server: S3Server, s3_bucket: S3Bucket
) -> None:
    s3_server.client().put_object(Bucket=s3_bucket.name, Key="img/k", Body=os.urandom(5000))
    options = _options(s3_bucket, fault_proxy, retry={"attempts": 2, "first_delay": 0.001})
    store = open_store(s3_bucket.url("img"), storage_options=options)
    fault_proxy.configure(fail_keys=r"/img/k$", fail_kinds=("short-body",))
    with pytest.raises(StoreUnavailableError, match=r"GetObject of s3://[^ ]+/img/k .*2 tries"):
        read_bytes(store, "k")


def test_listing_and_deleting_survive_faults(fault_proxy: Any, s3_bucket: S3Bucket) -> None:
    from cellvol._store import delete_prefix, list_keys

    store = open_store(
        s3_bucket.url("img"), mode="a", storage_options=_options(s3_bucket, fault_proxy)
    )
    for i in range(30):
        write_bytes(store, f"a/{i:02d}", b"x")
    fault_proxy.configure(rate=0.5, seed=5)
    assert list_keys(store, "a") == [f"a/{i:02d}" for i in range(30)]
    delete_prefix(store, "a")
    assert list_keys(store, "a") == []


def test_an_endpoint_that_is_not_there_fails_fast(s3_bucket: S3Bucket) -> None:
    from support import DEAD_ENDPOINT

    from cellvol.errors import EndpointUnreachableError

    options = {**s3_bucket.storage_options, "endpoint_url": DEAD_ENDPOINT}
    with pytest.raises(EndpointUnreachableError, match="could not reach"):
        open_store(s3_bucket.url("img"), storage_options=options)


@pytest.mark.parametrize(
    ("retry", "message"),
    [
        ({"attempts": 0}, "at least 1"),
        ({"attempts": 2.5}, "whole number"),
        ({"first_delay": -1}, "at least 0"),
        ({"tries": 3}, "unknown key 'tries'"),
        (5, "must be a mapping"),
    ],
)
def test_a_bad_retry_option_is_refused(s3_bucket: S3Bucket, retry: Any, message: str) -> None:
    options = {**s3_bucket.storage_options, "retry": retry}
    with pytest.raises(InvalidInputError, match=message):
        open_store(s3_bucket.url("img"), storage_options=options)


def test_waits_grow_and_stay_bounded() -> None:
    policy = RetryPolicy(attempts=10, first_delay=0.1, max_delay=1.0)
    for retry, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        waits = [policy.delay(retry) for _ in range(200)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert len(set(waits)) > 100  # jittered
    # A request that got no answer is retried at once, then waits one step behind.
    assert policy.delay(1, answered=False) == 0.0
    assert all(0.05 <= policy.delay(2, answered=False) <= 0.1 for _ in range(50))


def _keys(bucket: S3Bucket) -> list[str]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=bucket.storage_options["endpoint_url"],
        aws_access_key_id=bucket.storage_options["key"],
        aws_secret_access_key=bucket.storage_options["secret"],
        region_name="us-east-1",
    )
    listing = client.list_objects_v2(Bucket=bucket.name)
    return sorted(entry["Key"] for entry in listing.get("Contents", []))


def test_a_hung_connection_ends_at_the_read_timeout_and_is_retried(
    fault_proxy: Any, s3_server: S3Server, s3_bucket: S3Bucket
) -> None:
    payload = os.urandom(50_000)
    s3_server.client().put_object(Bucket=s3_bucket.name, Key="img/k", Body=payload)
    options = _options(s3_bucket, fault_proxy, config_kwargs={"read_timeout": 0.5})
    store = open_store(s3_bucket.url("img"), mode="a", storage_options=options)
    # Half the body, then silence: only the read timeout ends the wait.
    fault_proxy.configure(rate=0.5, seed=2, kinds=("stall",), stall=5.0)
    for i in range(6):
        assert read_bytes(store, "k") == payload
        write_bytes(store, f"w{i}", payload)
    fault_proxy.configure(rate=0.0)
    assert all(read_bytes(store, f"w{i}") == payload for i in range(6))
    assert fault_proxy.take_counts().get("stall", 0) > 0


def test_error_answers_and_short_bodies_share_one_budget(
    fault_proxy: Any, s3_server: S3Server, s3_bucket: S3Bucket
) -> None:
    s3_server.client().put_object(Bucket=s3_bucket.name, Key="img/k", Body=os.urandom(5000))
    options = _options(s3_bucket, fault_proxy, retry={"attempts": 4, "first_delay": 0.001})
    store = open_store(s3_bucket.url("img"), storage_options=options)
    fault_proxy.take_counts()
    # Every GET fails: some with an error answer (botocore's retries), some with a body cut
    # short (retried around botocore). Together they may try the request 4 times, not 4 x 4.
    fault_proxy.configure(fail_keys=r"/img/k$", fail_kinds=("500", "short-body"))
    with pytest.raises(StoreUnavailableError, match="4 tries"):
        read_bytes(store, "k")
    counts = fault_proxy.take_counts()
    assert counts.get("500", 0) + counts.get("short-body", 0) == 4, counts


def test_a_failed_batch_delete_names_its_keys(s3_bucket: S3Bucket) -> None:
    store = open_store(s3_bucket.url("img"), mode="a", storage_options=s3_bucket.storage_options)
    keys = [{"Key": f"img/gone/{i}"} for i in range(3)]
    described = store.fs._describe(  # type: ignore[attr-defined]
        "delete_objects", {"Bucket": s3_bucket.name, "Delete": {"Objects": keys}}
    )
    assert described.startswith(
        f"S3 DeleteObjects of s3://{s3_bucket.name}/img/gone/0 (and 2 more)"
    )
