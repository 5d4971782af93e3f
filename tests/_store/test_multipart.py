"""A multipart upload whose CompleteMultipartUpload answer was lost is still a success."""

from __future__ import annotations

from typing import Any

from support import S3Bucket
from zarr.core.sync import sync

from cellvol._store import open_store, read_bytes
from cellvol._store._s3fs import multipart_etag


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
