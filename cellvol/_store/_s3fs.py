"""s3fs with cellvol's retries: every request, and every body read, within one budget.

s3fs retries on its own (five tries of some errors, sleeping 0.1 s to 0.8 s between them)
around botocore, which retries on its own too (up to seconds between tries): two loops that
multiply, and waits far longer than a failed request on S3 calls for. Here botocore's own
retries are off and s3fs's loop is replaced: :mod:`cellvol._store._retry` decides, once, for
every request and for the reading of each downloaded body.

A body whose SHA-256 the caller has already (a shard's, computed for its record) goes up
with it in ``x-amz-checksum-sha256``, which the server checks the body against, and with
the payload left out of the signature (``UNSIGNED-PAYLOAD``). botocore would otherwise hash
every body twice more over plain HTTP: SHA-256 for the signature, CRC32 for a checksum
header. Every other body keeps botocore's signed payload and checksum.

Over HTTPS, TLS guards the unsigned body in transit (botocore's own default for S3 with a
checksum). Over plain HTTP the body is checked only if the server checks the header, which
S3 does and says so by echoing the checksum in its reply; some S3-compatible servers ignore
the header. The first reply without the echo has its object sent again with a signed
payload, which every SigV4 server checks, and so is every later body of that filesystem.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore import handlers as botocore_handlers
from s3fs import S3FileSystem
from s3fs.core import version_id_kw
from s3fs.errors import translate_boto_error

from cellvol._store._location import redact
from cellvol._store._multipart import put_object
from cellvol._store._retry import (
    RetryPolicy,
    ShortBodyError,
    describe_failure,
    install,
    is_transient,
    retry_reads,
)
from cellvol.errors import StoreUnavailableError

__all__ = ["RetryingS3FileSystem", "multipart_etag", "retrying_filesystem"]

_UNSIGNED_ID = "cellvol-unsigned-if-checksummed"
# The header of a body's SHA-256 that S3 checks the body against (base64 of the digest).
_SHA256_HEADER = "x-amz-checksum-sha256"

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Unsigned:
    """A PutObject that may go unsigned; whether it went so over plain HTTP."""

    over_http: bool = False


# Set by put_verified around its request: the before-sign handler runs in the same task.
_UNSIGNED: contextvars.ContextVar[_Unsigned | None] = contextvars.ContextVar(
    "cellvol_unsigned", default=None
)
# Clients that have cellvol's handlers already (s3fs hands the same client out on every call).
_INSTALLED: weakref.WeakSet[Any] = weakref.WeakSet()


def retrying_filesystem(
    policy: RetryPolicy, options: Mapping[str, Any], connect_attempts: int | None = None
) -> RetryingS3FileSystem:
    """An asynchronous :class:`RetryingS3FileSystem` with ``options`` (s3fs's keywords)."""
    return RetryingS3FileSystem(
        **options, asynchronous=True, retry=policy, connect_attempts=connect_attempts
    )


class RetryingS3FileSystem(S3FileSystem):  # type: ignore[misc]
    """:class:`s3fs.S3FileSystem` whose requests are retried by a :class:`RetryPolicy`.

    Parameters
    ----------
    retry
        The budget of each request.
    connect_attempts
        Tries when no connection can be made at all (see :func:`install`).
    **kwargs
        As for :class:`s3fs.S3FileSystem`.
    """

    def __init__(
        self, *args: Any, retry: RetryPolicy, connect_attempts: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.retry_policy = retry
        self.connect_attempts = connect_attempts
        # Set once a server over plain HTTP did not echo a body's checksum (see put_verified).
        self.signed_payloads = False

    async def set_session(self, refresh: bool = False, kwargs: Any = None) -> Any:
        client = await super().set_session(refresh=refresh, kwargs=kwargs or {})
        _install(client, self.retry_policy, self.connect_attempts)
        return client

    async def get_s3(self, bucket: str | None = None) -> Any:
        # Clients made per bucket region, if s3fs was asked to, get the same retries.
        client = await super().get_s3(bucket)
        _install(client, self.retry_policy, self.connect_attempts)
        return client

    async def put_verified(self, path: str, data: bytes, sha256: str) -> Any:
        """Store ``data`` at ``path``, with its SHA-256 (hex) for the server to check.

        A single PUT carries the SHA-256 in ``x-amz-checksum-sha256`` and leaves the body
        out of the signature, unless the caller asked for signed payloads or this filesystem
        fell back to them: over plain HTTP, a reply that does not echo the checksum means the
        server may not have checked the body, and the object is sent again, signed. An object
        sent in parts (from :data:`~cellvol._store._multipart.MULTIPART_THRESHOLD` up) does
        not carry the whole object's SHA-256: each part has botocore's own checksum and
        signed payload.
        """
        # The algorithm is named too (x-amz-sdk-checksum-algorithm), as AWS's SDKs do: some
        # servers (moto, for one) echo the checksum only then.
        checksum = {
            "ChecksumSHA256": base64.b64encode(bytes.fromhex(sha256)).decode(),
            "ChecksumAlgorithm": "SHA256",
        }
        if self.signed_payloads:
            return await self._pipe_file(path, data, **checksum)
        unsigned = _Unsigned()
        token = _UNSIGNED.set(unsigned)
        try:
            reply = await self._pipe_file(path, data, **checksum)
        finally:
            _UNSIGNED.reset(token)
        echo = (reply or {}).get("ChecksumSHA256")
        if not unsigned.over_http or echo == checksum["ChecksumSHA256"]:
            return reply
        if not self.signed_payloads:
            self.signed_payloads = True
            endpoint = redact(str(self.endpoint_url or self._s3.meta.endpoint_url))
            _log.warning(
                "the S3 server at %s did not confirm the SHA-256 of %s: it may not check "
                "x-amz-checksum-sha256, so bodies go with signed payloads from now on",
                endpoint,
                path,
            )
        return await self._pipe_file(path, data, **checksum)

    async def _call_s3(self, method: str, *akwarglist: Any, **kwargs: Any) -> Any:
        """One S3 request (``"put_object"``...), retried; s3fs's errors when it fails."""
        await self.set_session()
        client = await self.get_s3(kwargs.get("Bucket"))
        call = getattr(client, method)
        parameters = self._get_s3_method_kwargs(call, *akwarglist, **kwargs)
        if method == "complete_multipart_upload":
            return await self._retrying(lambda: _complete(client, parameters), method, parameters)
        return await self._retrying(lambda: call(**parameters), method, parameters)

    async def get_object(self, **parameters: Any) -> tuple[dict[str, Any], bytes]:
        """GetObject, and its body read whole: tried again until it arrives whole.

        A body shorter than the answer's ``Content-Length`` (a connection that dropped
        mid-body) is never returned: it is fetched again, within the budget.
        """
        await self.set_session()
        client = await self.get_s3(parameters.get("Bucket"))
        request = self._get_s3_method_kwargs(client.get_object, **parameters)

        async def fetch() -> tuple[dict[str, Any], bytes]:
            reply = await client.get_object(**request)
            body = reply["Body"]
            try:
                data: bytes = await body.read()
            except Exception as exc:
                # botocore's retries end when the answer's headers arrive: whatever breaks the
                # body afterwards (a reset, a read timeout) is this loop's to retry.
                if not is_transient(exc):
                    raise
                raise ShortBodyError(f"the body broke off: {describe_failure(exc)}") from exc
            finally:
                body.close()
            expected = reply.get("ContentLength")
            if isinstance(expected, int) and len(data) != expected:
                raise ShortBodyError(f"{len(data)} bytes of the {expected} announced arrived")
            return reply, data

        return await self._retrying(fetch, "get_object", parameters)

    async def _pipe_file(
        self, path: str, data: bytes, mode: str = "overwrite", **kwargs: Any
    ) -> Any:
        """Store ``data`` at ``path``: one PUT, or parts in parallel for a large object.

        s3fs's own sends objects below 100 MiB whole and larger ones ten 50 MiB parts at a
        time; see :mod:`cellvol._store._multipart` for the split used instead.
        """
        bucket, key, _ = self.split_path(path)
        kwargs.pop("chunksize", None)  # s3fs's part size and concurrency: replaced
        kwargs.pop("max_concurrency", None)
        if mode == "create":
            kwargs["IfNoneMatch"] = "*"
        reply = await put_object(self, bucket, key, data, **kwargs)
        self.invalidate_cache(path)
        return reply

    async def _cat_file(
        self,
        path: str,
        version_id: str | None = None,
        start: int | None = None,
        end: int | None = None,
        **_: Any,
    ) -> bytes:
        """An object's bytes (``start`` to ``end``), as one GET, whole or not at all."""
        bucket, key, path_version = self.split_path(path)
        parameters = {"Bucket": bucket, "Key": key, **version_id_kw(version_id or path_version)}
        if start is not None or end is not None:
            parameters["Range"] = await self._process_limits(path, start, end)
        _, data = await self.get_object(**parameters)
        return data

    async def _retrying[T](
        self, call: Callable[[], Awaitable[T]], method: str, parameters: Mapping[str, Any]
    ) -> T:
        try:
            return await retry_reads(
                call, self.retry_policy, lambda: self._describe(method, parameters)
            )
        except StoreUnavailableError:
            raise
        except Exception as exc:
            # As s3fs reports them: FileNotFoundError for a missing key, and so on.
            raise translate_boto_error(exc) from exc

    def _describe(self, method: str, parameters: Mapping[str, Any]) -> str:
        """``S3 PutObject of s3://bucket/key at http://endpoint``, for messages."""
        operation = re.sub(r"(?:^|_)([a-z])", lambda m: m.group(1).upper(), method)
        where = "/".join(
            str(part)
            for part in (parameters.get("Bucket"), parameters.get("Key", parameters.get("Prefix")))
            if part
        )
        objects = (parameters.get("Delete") or {}).get("Objects") or []
        if objects:  # DeleteObjects: its first key, and how many
            where = f"{where}/{objects[0].get('Key')} (and {len(objects) - 1} more)"
        endpoint = self.endpoint_url or (self._s3.meta.endpoint_url if self._s3 else None)
        at = f" at {redact(str(endpoint))}" if endpoint else ""
        return f"S3 {operation} of s3://{where}{at}"


def _install(client: Any, policy: RetryPolicy, connect_attempts: int | None) -> None:
    """Give ``client`` cellvol's retries, and unsigned payloads for bodies with their SHA-256."""
    if client in _INSTALLED:
        return
    install(client, policy, connect_attempts)
    client.meta.events.register(
        "before-sign.s3.PutObject", _unsigned_if_checksummed, unique_id=_UNSIGNED_ID
    )
    # botocore wraps a body given as bytes in a BytesIO, which aiohttp then copies whole
    # (BytesIO.getbuffer unshares it) and sends in chunks, each copied again; and botocore
    # asks a file-like body's server for "100 Continue" first, a wait per object. Given as
    # bytes, the body goes to the socket as it is. Retries need no rewinding of bytes.
    for operation in ("PutObject", "UploadPart"):
        client.meta.events.unregister(
            f"before-parameter-build.s3.{operation}",
            botocore_handlers.convert_body_to_file_like_object,
        )
    _INSTALLED.add(client)


def _unsigned_if_checksummed(request: Any, **_: Any) -> None:
    """Leave a body out of the signature when it carries its SHA-256 for the server to check.

    S3 refuses a body that does not match its ``x-amz-checksum-sha256`` (``BadDigest``), as
    it refuses one that does not match a signed payload hash: the body is checked end to end
    either way, and hashed once (by the caller) instead of three times. botocore decides on
    signing the payload from the client's configuration alone, so this request is given a
    copy of it that says not to. Only a request of :meth:`RetryingS3FileSystem.put_verified`
    is, which learns whether it went over plain HTTP (then the reply must echo the checksum).
    """
    unsigned = _UNSIGNED.get()
    if unsigned is None or _SHA256_HEADER not in request.headers:
        return
    config = request.context.get("client_config")
    if config is None:
        return
    s3 = dict(config.s3 or {})
    if s3.get("payload_signing_enabled") is True:
        return  # the caller asked for signed payloads: kept
    s3["payload_signing_enabled"] = False
    request.context["client_config"] = config.merge(type(config)(s3=s3))  # a botocore Config
    if not request.url.startswith("https:"):
        unsigned.over_http = True


async def _complete(client: Any, parameters: Mapping[str, Any]) -> Any:
    """CompleteMultipartUpload, safe to retry after its answer was lost.

    The store may have completed the upload and lost the answer; the retry then meets
    ``NoSuchUpload``. The object is then looked at: if its ETag is the one these parts make
    (the MD5 of their MD5s, ``-`` their count), the upload is done and this is its answer.
    """
    try:
        return await client.complete_multipart_upload(**parameters)
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") != "NoSuchUpload":
            raise
        parts = parameters.get("MultipartUpload", {}).get("Parts", [])
        expected = multipart_etag([str(p["ETag"]) for p in parts])
        try:
            head = await client.head_object(Bucket=parameters["Bucket"], Key=parameters["Key"])
        except Exception:
            raise exc from None
        if not parts or head.get("ETag") != expected:
            raise
        return {"Bucket": parameters["Bucket"], "Key": parameters["Key"], "ETag": expected}


def multipart_etag(part_etags: list[str]) -> str:
    """The ETag S3 gives an object completed from parts with these ETags (quoted)."""
    digests = b"".join(bytes.fromhex(etag.strip('"')) for etag in part_etags)
    return f'"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(part_etags)}"'
