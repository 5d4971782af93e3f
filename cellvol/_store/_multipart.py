"""Large objects to S3 as multipart uploads with their parts in parallel; small ones in one PUT.

One PUT carries an object over one connection, and a connection to S3 carries far less than
a client can send (tens of MB/s per connection on AWS); parts sent at once over several
connections add up. s3fs sends an object whole up to 100 MiB, which every default shard is
below, and larger ones in 50 MiB parts ten at a time. Here an object from
:data:`MULTIPART_THRESHOLD` up goes in parts of :data:`PART_SIZE`, at most
:data:`MAX_PARTS_IN_FLIGHT` at once. A part is copied out of the object only once its turn
comes (botocore takes bytes, not views), so memory holds the object and at most
``MAX_PARTS_IN_FLIGHT * PART_SIZE`` bytes more, whatever the object's size.

Each part is one request with the retry budget of its own (see :mod:`cellvol._store._retry`).
An upload that fails, or is cancelled, is aborted, so that the bucket keeps no parts nobody
will complete (S3 bills them until a lifecycle rule removes them); so are the uploads a
retried CreateMultipartUpload began (:func:`_abort_strays`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from cellvol._store._s3fs import RetryingS3FileSystem

__all__ = ["MAX_PARTS_IN_FLIGHT", "MULTIPART_THRESHOLD", "PART_SIZE", "part_ranges", "put_object"]

MULTIPART_THRESHOLD: Final = 32 * 2**20
"""Objects of at least this many bytes go up in parts."""
PART_SIZE: Final = 8 * 2**20
"""Bytes of each part but the last (S3 takes 5 MiB to 5 GiB)."""
MAX_PARTS_IN_FLIGHT: Final = 8
"""Parts sent at once by one upload."""
# S3's limit on the parts of one upload: larger objects get larger parts.
_MAX_PARTS: Final = 10_000


def part_ranges(size: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` byte ranges of the parts of an object of ``size`` bytes."""
    part = max(PART_SIZE, -(-size // _MAX_PARTS))
    return [(start, min(start + part, size)) for start in range(0, size, part)]


async def put_object(
    fs: RetryingS3FileSystem, bucket: str, key: str, data: bytes, **extra: Any
) -> Any:
    """Store ``data`` at ``key``: one PUT below :data:`MULTIPART_THRESHOLD`, parts above.

    ``extra``: further parameters of PutObject / CreateMultipartUpload (``ContentType``...);
    ``IfNoneMatch`` goes to the request that makes the object appear.
    """
    if len(data) < MULTIPART_THRESHOLD:
        return await fs._call_s3("put_object", Bucket=bucket, Key=key, Body=data, **extra)
    match = {name: extra.pop(name) for name in ("IfNoneMatch",) if name in extra}
    # The whole object's SHA-256 has no place in a multipart upload (S3 keeps a digest of the
    # parts' digests instead): each part goes up with botocore's own checksum.
    extra.pop("ChecksumSHA256", None)
    extra.pop("ChecksumAlgorithm", None)
    upload = await fs._call_s3("create_multipart_upload", Bucket=bucket, Key=key, **extra)
    upload_id = upload["UploadId"]
    try:
        parts = await _send_parts(fs, bucket, key, upload_id, memoryview(data))
        reply = await fs._call_s3(
            "complete_multipart_upload",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            **match,
        )
        await _abort_strays(fs, bucket, key, upload_id)
        return reply
    except FileNotFoundError as exc:
        # NoSuchUpload: something else (another writer, a lifecycle rule) aborted it.
        await _abort(fs, bucket, key, upload_id, exc)
        raise OSError(
            f"the multipart upload {upload_id} of s3://{bucket}/{key} ({len(data)} bytes) "
            "was aborted by someone else while its parts were sent (S3 NoSuchUpload): "
            "nothing was stored; write it again"
        ) from exc
    except BaseException as exc:
        await _abort(fs, bucket, key, upload_id, exc)
        with contextlib.suppress(Exception):  # the error raised is the one that matters
            await _abort_strays(fs, bucket, key, upload_id)
        raise


async def _send_parts(
    fs: RetryingS3FileSystem, bucket: str, key: str, upload_id: str, data: memoryview
) -> list[dict[str, Any]]:
    """Upload every part, :data:`MAX_PARTS_IN_FLIGHT` at a time; their numbers and ETags."""
    slots = asyncio.Semaphore(MAX_PARTS_IN_FLIGHT)

    async def send(number: int, start: int, stop: int) -> dict[str, Any]:
        async with slots:
            reply = await fs._call_s3(
                "upload_part",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=bytes(data[start:stop]),
            )
        return {"PartNumber": number, "ETag": reply["ETag"]}

    tasks = [
        asyncio.ensure_future(send(number, start, stop))
        for number, (start, stop) in enumerate(part_ranges(len(data)), start=1)
    ]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        # One part failed for good: the others are of no use, and the abort must not race
        # parts still being sent (S3 may keep a part that lands after the abort).
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _abort(
    fs: RetryingS3FileSystem, bucket: str, key: str, upload_id: str, cause: BaseException
) -> None:
    """Abort the upload; an upload S3 no longer knows (``NoSuchUpload``) is gone already.

    When the abort fails too, ``cause`` (the error the caller sees) is given a note naming
    the upload, which a bucket lifecycle rule or ``AbortMultipartUpload`` then removes.
    """
    try:
        await fs._call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
    except FileNotFoundError:
        pass  # s3fs's translation of NoSuchUpload: nothing left to remove
    except Exception as exc:
        cause.add_note(
            f"the multipart upload {upload_id} of s3://{bucket}/{key} could not be aborted "
            f"({exc}); its parts stay in the bucket until it is aborted"
        )


async def _abort_strays(fs: RetryingS3FileSystem, bucket: str, key: str, upload_id: str) -> None:
    """Abort the other open uploads of ``key``: those of a retried CreateMultipartUpload.

    A create whose answer was lost on the way back (a reset, a timeout) began an upload
    that its retry cannot know of, and that nobody would ever complete or abort. One
    listing of ``key``'s open uploads finds them. A store has one writer (its lease), so an
    open upload of the same key is this write's own.
    """
    listed = await fs._call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key)
    strays = [
        upload["UploadId"]
        for upload in listed.get("Uploads", [])
        if upload.get("Key") == key and upload.get("UploadId") != upload_id
    ]
    for stray in strays:
        with contextlib.suppress(FileNotFoundError):  # gone meanwhile
            await fs._call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=stray)
