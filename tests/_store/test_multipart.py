"""Multipart uploads: large objects in parallel parts, aborted on failure; a complete whose
answer was lost is still a success."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import numpy as np
import pytest
from support import S3Bucket, S3Server
from zarr.core.sync import sync

from cellvol._store import object_size, open_store, read_bytes, write_bytes
from cellvol._store._multipart import (
    MAX_PARTS_IN_FLIGHT,
    MULTIPART_THRESHOLD,
    PART_SIZE,
    part_ranges,
)
from cellvol._store._s3fs import multipart_etag
from cellvol.errors import StoreUnavailableError


def _upload(fs: Any, bucket: str, key: str, parts: list[bytes]) -> dict[str, Any]:
    """Upload ``parts`` and return the CompleteMultipartUpload parameters (not yet sent)."""

    async def run() -> dict[str, Any]:
        made = await fs._call_s3("create_multipart_upload", Bucket=bucket, Key=key)
        done = []
        for number, body in enumerate(parts, start=1):
            reply = await fs._call_s3(
                "upload_part",
                Bucket=bucket,
                Key=key,
                UploadId=made["UploadId"],
                PartNumber=number,
                Body=body,
            )
            done.append({"PartNumber": number, "ETag": reply["ETag"]})
        return {
            "Bucket": bucket,
            "Key": key,
            "UploadId": made["UploadId"],
            "MultipartUpload": {"Parts": done},
        }

    return sync(run())


def test_a_completed_upload_is_recognised_by_its_parts_etag(s3_bucket: S3Bucket) -> None:
    """The check a retried complete makes when it meets ``NoSuchUpload`` (real S3's answer
    once the lost first try completed it; moto completes it again instead)."""
    store = open_store(s3_bucket.url(), mode="a", storage_options=s3_bucket.storage_options)
    fs = store.fs  # type: ignore[attr-defined]
    parts = [b"a" * (5 * 2**20), b"b" * 1000]
    complete = _upload(fs, s3_bucket.name, "shard", parts)
    first = sync(fs._call_s3("complete_multipart_upload", **complete))
    etags = [p["ETag"] for p in complete["MultipartUpload"]["Parts"]]
    head = sync(fs._call_s3("head_object", Bucket=s3_bucket.name, Key="shard"))
    assert multipart_etag(etags) == head["ETag"] == first["ETag"]
    assert multipart_etag(etags[:1]) != head["ETag"]  # other parts: not this object
    assert read_bytes(store, "shard") == b"".join(parts)


# Large objects in parallel parts, small ones in one PUT (cellvol/_store/_multipart.py).


def _through(bucket: S3Bucket, proxy: Any, **extra: Any) -> dict[str, Any]:
    return {**bucket.storage_options, "endpoint_url": proxy.url, **extra}


def _open_uploads(server: S3Server, bucket: str) -> list[dict[str, Any]]:
    """The multipart uploads begun and neither completed nor aborted (orphans)."""
    listed = server.client().list_multipart_uploads(Bucket=bucket)
    return list(listed.get("Uploads", []))


@pytest.mark.s3
def test_a_large_object_goes_up_in_parallel_parts(
    fault_proxy: Any, s3_server: S3Server, s3_bucket: S3Bucket
) -> None:
    store = open_store(
        s3_bucket.url("img"), mode="a", storage_options=_through(s3_bucket, fault_proxy)
    )
    size = MULTIPART_THRESHOLD + 3 * PART_SIZE + 12345
    data = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    # Each part answered late: parts that overlap are seen in flight together.
    fault_proxy.configure(fail_requests=r"^PUT .*[?&]partNumber=", fail_kinds=("delay",))
    fault_proxy.take_traffic()
    write_bytes(store, "shard", [data[:1000], data[1000:]])
    counts = fault_proxy.take_traffic()
    fault_proxy.configure(fail_requests=None)
    parts = len(part_ranges(size))
    assert parts == MULTIPART_THRESHOLD // PART_SIZE + 4
    assert counts["PUT requests"] == parts  # the parts, and no whole-object PUT
    assert counts["POST requests"] == 2  # CreateMultipartUpload, CompleteMultipartUpload
    assert counts["PUT bytes up"] == size
    assert 2 <= counts["in-flight peak"] <= MAX_PARTS_IN_FLIGHT
    head = s3_server.client().head_object(Bucket=s3_bucket.name, Key="img/shard")
    assert head["ETag"].endswith(f'-{parts}"')
    assert read_bytes(store, "shard") == data
    assert _open_uploads(s3_server, s3_bucket.name) == []


@pytest.mark.s3
def test_a_small_object_goes_up_in_one_put(
    fault_proxy: Any, s3_server: S3Server, s3_bucket: S3Bucket
) -> None:
    store = open_store(
        s3_bucket.url("img"), mode="a", storage_options=_through(s3_bucket, fault_proxy)
    )
    data = b"x" * (MULTIPART_THRESHOLD - 1)
    fault_proxy.take_traffic()
    write_bytes(store, "shard", data)
    counts = fault_proxy.take_traffic()
    assert counts["PUT requests"] == 1
    assert "POST requests" not in counts
    head = s3_server.client().head_object(Bucket=s3_bucket.name, Key="img/shard")
    assert "-" not in head["ETag"]
    assert read_bytes(store, "shard") == data


@pytest.mark.s3
def test_parts_survive_faults_each_within_its_budget(
    fault_proxy: Any, s3_server: S3Server, s3_bucket: S3Bucket
) -> None:
    store = open_store(
        s3_bucket.url("img"), mode="a", storage_options=_through(s3_bucket, fault_proxy)
    )
    data = np.random.default_rng(1).integers(0, 256, 5 * PART_SIZE, dtype=np.uint8).tobytes()
    fault_proxy.configure(rate=0.3, seed=3, kinds=("500", "503", "reset", "lost-answer"))
    fault_proxy.take_counts()
    write_bytes(store, "shard", data)
    injected = fault_proxy.take_counts()
    fault_proxy.configure(rate=0.0)
    assert sum(injected.get(kind, 0) for kind in ("500", "503", "reset", "lost-answer")) > 0
    assert read_bytes(store, "shard") == data
    assert _open_uploads(s3_server, s3_bucket.name) == []


@pytest.mark.s3
def test_parts_that_keep_failing_abort_the_upload(
    fault_proxy: Any, s3_server: S3Server, s3_bucket: S3Bucket
) -> None:
    options = _through(s3_bucket, fault_proxy, retry={"attempts": 2, "first_delay": 0.001})
    store = open_store(s3_bucket.url("img"), mode="a", storage_options=options)
    fault_proxy.configure(fail_requests=r"^PUT .*[?&]partNumber=", fail_kinds=("503", "500"))
    with pytest.raises(StoreUnavailableError, match=r"S3 UploadPart of s3://[^ ]+/img/shard"):
        write_bytes(store, "shard", b"y" * MULTIPART_THRESHOLD)
    fault_proxy.configure(fail_requests=None)
    assert _open_uploads(s3_server, s3_bucket.name) == []  # aborted: no parts left behind
    assert object_size(store, "shard") is None
    write_bytes(store, "shard", b"y" * MULTIPART_THRESHOLD)  # once faults stop, it goes up
    assert object_size(store, "shard") == MULTIPART_THRESHOLD


@pytest.mark.s3
def test_an_upload_aborted_by_someone_else_fails_and_leaves_nothing(
    fault_proxy: Any, s3_server: S3Server, s3_bucket: S3Bucket
) -> None:
    """The upload vanishes mid-way: the write fails, and the abort meeting ``NoSuchUpload``
    is no second error.

    Real S3 answers the later parts ``NoSuchUpload`` (the message then says the upload was
    aborted by someone else); moto answers them 500, a transient error, until the budget
    is spent. A complete that meets it is reported the same way.
    """
    options = _through(s3_bucket, fault_proxy, retry={"attempts": 2, "first_delay": 0.001})
    store = open_store(s3_bucket.url("img"), mode="a", storage_options=options)
    client = s3_server.client()
    # Parts answered late, and the upload aborted behind the writer's back meanwhile.
    fault_proxy.configure(fail_requests=r"^PUT .*[?&]partNumber=", fail_kinds=("delay",))
    aborted = threading.Event()

    def abort_when_begun() -> None:
        for _ in range(500):
            for upload in _open_uploads(s3_server, s3_bucket.name):
                client.abort_multipart_upload(
                    Bucket=s3_bucket.name, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                aborted.set()
                return
            time.sleep(0.01)

    aborter = threading.Thread(target=abort_when_begun)
    aborter.start()
    try:
        with pytest.raises(OSError, match=r"s3://[^ ]+/img/shard") as failure:
            write_bytes(store, "shard", b"z" * (MULTIPART_THRESHOLD + 16 * PART_SIZE))
    finally:
        aborter.join()
        fault_proxy.configure(fail_requests=None)
    assert aborted.is_set()
    notes = getattr(failure.value, "__notes__", [])
    assert not any("could not be aborted" in note for note in notes)
    assert _open_uploads(s3_server, s3_bucket.name) == []
    assert object_size(store, "shard") is None


def test_parts_cover_the_object_within_s3s_limits() -> None:
    for size in (MULTIPART_THRESHOLD, 10 * 2**30, 200 * 2**30 + 7):
        ranges = part_ranges(size)
        assert ranges[0][0] == 0
        assert ranges[-1][1] == size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert len(ranges) <= 10_000
        assert all(stop - start >= 5 * 2**20 for start, stop in ranges[:-1])
