"""S3 buckets as zarr stores, through s3fs: opening, probing, and errors a person can act on."""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from zarr.abc.store import ByteRequest, OffsetByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import FsspecStore

from cellvol._store._location import METADATA_KEYS, Location, redact
from cellvol._store._loop import run_in_fresh_loop
from cellvol._store._options import scrub
from cellvol._store._retry import RetryPolicy, describe_failure, is_transient
from cellvol._store._sessions import track
from cellvol.errors import (
    AccessDeniedError,
    EndpointUnreachableError,
    InvalidInputError,
    StoreNotFoundError,
    StoreUnavailableError,
    WriteConflictError,
)

if TYPE_CHECKING:
    from cellvol._store._open import Mode

__all__ = ["S3Store", "open_s3"]

_S3_CONNECTIONS: Final = 32
"""Connections an S3 store opens at once, unless ``config_kwargs`` sets ``max_pool_connections``."""
# The probe is a store's first request, made by a client of its own with these timeouts
# (unless config_kwargs sets them) and fewer tries: an endpoint that cannot be reached then
# fails in about a second, not after the whole retry budget. Later requests keep botocore's
# timeouts and the budget.
_PROBE_LIMITS: Final = {"connect_timeout": 5, "read_timeout": 15}
# Tries of the probe when no connection can be made at all.
_PROBE_CONNECT_ATTEMPTS: Final = 2
# Tries of the probe at most, whatever the budget: an endpoint that answers every request with
# an error (a wrong service, a broken proxy) is reported in a second, not after the budget.
_PROBE_ATTEMPTS: Final = 4
# botocore's own retries, off: cellvol retries (see _retry), and the two would multiply.
_NO_BOTOCORE_RETRIES: Final = {"mode": "standard", "total_max_attempts": 1}
# Codes S3 answers with when a bucket does not exist.
_NO_BUCKET: Final = frozenset({"NoSuchBucket", "404", "NotFound"})
# Codes S3 answers with when a policy or ACL forbids the request (credentials are valid).
_DENIED: Final = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled"})


def open_s3(location: Location, mode: Mode, options: dict[str, Any]) -> Store:
    options = dict(options)
    policy = RetryPolicy.of(options.pop("retry", None), location.url)
    options = _without_botocore_retries(_with_connection_pool(options))
    from cellvol._store._s3fs import retrying_filesystem  # s3fs loads when S3 is used

    try:
        fs = retrying_filesystem(policy, options)
    except Exception as exc:
        raise _s3_setup_error(exc, location, options) from exc
    track(fs)
    if options.get("skip_instance_cache"):
        # A filesystem of its own, which the caller may mean to drive from its own event loop:
        # probe in a loop of its own, so that this one stays unbound.
        run_in_fresh_loop(_probe_s3(None, location, mode, options, policy))
    else:
        # fsspec shares this filesystem among stores opened with the same options in this
        # thread, and zarr's synchronous API drives it from zarr's event loop: its client is
        # made there, and the probe's client shares its session (the loaded service models).
        sync(_probe_s3(fs, location, mode, options, policy))
    return S3Store(fs, path=location.path, read_only=mode == "r")


def blocking_filesystem(location: Location, options: Mapping[str, Any]) -> Any:
    """A synchronous S3 filesystem of its own, with cellvol's retries (storage option ``retry``).

    For readers that are not zarr stores (a ``.ozx`` archive read by byte ranges): the same
    budget per request as :func:`open_s3`'s stores, and botocore's own retries off.
    """
    options = dict(options)
    policy = RetryPolicy.of(options.pop("retry", None), location.url)
    options = _without_botocore_retries(_with_connection_pool(options))
    from cellvol._store._s3fs import RetryingS3FileSystem

    try:
        return RetryingS3FileSystem(**options, retry=policy, skip_instance_cache=True)
    except Exception as exc:
        raise _s3_setup_error(exc, location, options) from exc


class S3Store(FsspecStore):
    """zarr's fsspec store over S3, reading a whole object with one GET.

    s3fs reads a whole object by asking for its size first, so that it can fetch objects over
    its block size (50 MiB) in parallel parts: a HEAD before every GET, and for a missing
    object a listing after the HEAD. The whole objects zarr reads are metadata documents of a
    few KiB, and opening a node probes names that mostly do not exist (``zarr.json``,
    ``.zarray``, ``.zattrs``...), so that cost two or three round trips per document. Asked
    for an open-ended range (``bytes=0-``) instead, s3fs sends the GET alone, which returns
    the whole object or a 404. The one thing given up is the parallel fetch of a single object
    over 50 MiB read whole; cellvol reads chunks and shards by ranges, not whole.
    """

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Return the object at ``key`` (or the part ``byte_range`` names), None if absent."""
        return await super().get(key, prototype, byte_range or OffsetByteRequest(0))

    async def set_verified(self, key: str, data: bytes, sha256: str) -> None:
        """Store ``data`` at ``key`` as :meth:`set` does, with its SHA-256 (hex) for S3 to check.

        ``data`` goes as it is, past ``set``'s Buffer, whose ``to_bytes`` would copy it once
        more; see :meth:`~cellvol._store._s3fs.RetryingS3FileSystem.put_verified`.
        """
        from cellvol._store._s3fs import RetryingS3FileSystem

        if not self._is_open:
            await self._open()
        self._check_writable()
        if not isinstance(self.fs, RetryingS3FileSystem):
            await self.set(key, default_buffer_prototype().buffer.from_bytes(data))
            return
        await self.fs.put_verified(f"{self.path.rstrip('/')}/{key}", data, sha256)


def _with_connection_pool(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with botocore's pool of connections widened, unless the caller sized it.

    botocore keeps 10 connections per client by default; one plane of 64³ chunks asks for up
    to a hundred byte ranges at once, which would then wait their turn behind those 10.
    """
    config = options.get("config_kwargs")
    if config is not None and not isinstance(config, Mapping):
        return options  # s3fs reports the wrong type itself
    if config is not None and "max_pool_connections" in config:
        return options
    return {**options, "config_kwargs": {**(config or {}), "max_pool_connections": _S3_CONNECTIONS}}


def _without_botocore_retries(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with botocore's retries turned off, unless the caller configured them."""
    config = options.get("config_kwargs")
    if not isinstance(config, Mapping) or "retries" in config:
        return options
    return {**options, "config_kwargs": {**config, "retries": _NO_BOTOCORE_RETRIES}}


def _probe_options(options: dict[str, Any], session: Any) -> dict[str, Any]:
    """``options`` for the probe's own filesystem: :data:`_PROBE_LIMITS`, the given session."""
    config = dict(options.get("config_kwargs") or {})
    probe = {**options, "skip_instance_cache": True, "config_kwargs": {**_PROBE_LIMITS, **config}}
    if session is not None and "session" not in options:
        probe["session"] = session
    return probe


async def _probe_s3(
    shared: Any, location: Location, mode: Mode, options: dict[str, Any], policy: RetryPolicy
) -> None:
    """Check the bucket, and what lies under the prefix, with one listing request.

    Listing works under prefix-restricted policies, where HeadBucket would be denied. The
    request goes through a client of its own with shorter timeouts, closed afterwards; it is
    retried like any other, except that an endpoint no connection can be made to is
    reported after two tries. ``shared``, the filesystem the store will use, only lends its
    session when given.
    """
    from cellvol._store._s3fs import retrying_filesystem

    try:
        session = None
        if shared is not None:
            await shared.set_session()
            session = shared.session
        prober = retrying_filesystem(
            dataclasses.replace(policy, attempts=min(policy.attempts, _PROBE_ATTEMPTS)),
            _probe_options(options, session),
            connect_attempts=_PROBE_CONNECT_ATTEMPTS,
        )
        client = await prober.set_session()
    except Exception as exc:
        raise _s3_setup_error(exc, location, options) from exc
    endpoint = redact(str(client.meta.endpoint_url))
    bucket, _, key = location.path.partition("/")
    prefix = f"{key}/" if key else ""
    try:
        try:
            listing = await client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except Exception as exc:
            code = _s3_error_code(exc)
            if code in _NO_BUCKET:
                raise StoreNotFoundError(
                    f"bucket {bucket!r} does not exist at endpoint {endpoint} (for "
                    f"{location.url}); cellvol never creates buckets"
                ) from exc
            if code not in _DENIED:
                raise _s3_request_error(exc, location, endpoint, options) from exc
            # Listing is forbidden (a policy that grants GetObject only, say).
            if mode in ("a", "w"):
                return  # nothing to verify: writes themselves will report a refusal
            if mode == "w-":
                raise AccessDeniedError(
                    f"cannot check that {location.url} is empty for mode 'w-': listing bucket "
                    f"{bucket!r} at endpoint {endpoint} is not permitted"
                ) from exc
            await _probe_s3_metadata(client, location, endpoint, bucket, key, options)
            return
        found = int(listing.get("KeyCount", len(listing.get("Contents", [])))) > 0
        if mode == "w-" and found:
            raise WriteConflictError(
                f"{location.url} is not empty: mode 'w-' only creates a store where there is none"
            )
        if mode in ("r", "r+") and not found:
            where = f"under the prefix {prefix!r}" if prefix else "in it"
            raise StoreNotFoundError(
                f"nothing at {location.url}: bucket {bucket!r} exists at endpoint {endpoint} "
                f"but holds no object {where}"
            )
    finally:
        await client.close()


async def _probe_s3_metadata(
    client: Any, location: Location, endpoint: str, bucket: str, key: str, options: dict[str, Any]
) -> None:
    """Without listing permission, look for a zarr metadata document at the prefix."""
    denied = False
    for name in METADATA_KEYS:
        try:
            await client.head_object(Bucket=bucket, Key=f"{key}/{name}" if key else name)
        except Exception as exc:
            code = _s3_error_code(exc)
            if code in _DENIED:
                denied = True
            elif code not in ("404", "NoSuchKey", "NotFound"):
                raise _s3_request_error(exc, location, endpoint, options) from exc
        else:
            return
    if denied:
        raise AccessDeniedError(
            f"access denied to {location.url} at endpoint {endpoint}",
            hint="anonymous access: pass credentials if the bucket is private"
            if options.get("anon")
            else None,
        )
    raise StoreNotFoundError(
        f"nothing at {location.url} (endpoint {endpoint}): the bucket may not be listed, and "
        f"none of {', '.join(METADATA_KEYS)} exists there"
    )


def _s3_error_code(exc: BaseException) -> str | None:
    """Return the code of a botocore ``ClientError`` (``"NoSuchBucket"``, ``"404"``...)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = (response.get("Error") or {}).get("Code")
    if code:
        return str(code)
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return str(status) if status else None


def _s3_setup_error(exc: Exception, location: Location, options: Mapping[str, Any]) -> Exception:
    """Translate a failure to create the S3 client (bad profile, bad endpoint URL)."""
    boto = importlib.import_module("botocore.exceptions")
    if isinstance(exc, boto.ProfileNotFound):
        profile = options.get("profile") or os.environ.get("AWS_PROFILE")
        return InvalidInputError(
            f"AWS profile {profile!r} was not found (for {location.url}): check the 'profile' "
            "storage option or AWS_PROFILE, and ~/.aws/config"
        )
    if isinstance(exc, ValueError) and "endpoint" in str(exc).lower():
        endpoint = options.get("endpoint_url")
        shown = redact(endpoint) if isinstance(endpoint, str) else "from the environment"
        return InvalidInputError(f"invalid S3 endpoint URL {shown} (for {location.url})")
    if isinstance(exc, TypeError):
        return InvalidInputError(
            f"bad S3 storage options for {location.url}: {scrub(str(exc), options)}"
        )
    return exc


def _s3_request_error(
    exc: Exception, location: Location, endpoint: str, options: Mapping[str, Any]
) -> Exception:
    """Translate a failed S3 request into the exception a caller should see."""
    boto = importlib.import_module("botocore.exceptions")
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return AccessDeniedError(
            f"no usable AWS credentials for {location.url} at endpoint {endpoint}",
            hint="configure them (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or "
            "~/.aws/credentials), or use {anon=True} for a public bucket",
        )
    if isinstance(exc, boto.ConnectionError | boto.HTTPClientError):
        return EndpointUnreachableError(
            f"could not reach the S3 endpoint {endpoint} for {location.url}: "
            f"{_unreachable_reason(exc, options)}",
            hint=_endpoint_hint(options),
        )
    code = _s3_error_code(exc)
    if code is not None and is_transient(exc):
        return StoreUnavailableError(
            f"S3 kept failing the first request for {location.url} at endpoint {endpoint}, "
            f"try after try; the last failure: {scrub(describe_failure(exc), options)}",
            hint="try again later, or allow more tries with the storage option 'retry' "
            "(attempts, first_delay, max_delay)",
        )
    if code is not None:
        message = scrub(str(exc), options)
        if code in _DENIED or code in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "InvalidToken",
            "TokenRefreshRequired",
        ):
            return AccessDeniedError(
                f"S3 refused access to {location.url} at endpoint {endpoint}: {message}"
            )
        return OSError(f"S3 request for {location.url} at endpoint {endpoint} failed: {message}")
    return exc


def _unreachable_reason(exc: Exception, options: Mapping[str, Any]) -> str:
    """Why a connection failed, in a few words (botocore's text repeats the whole request)."""
    boto = importlib.import_module("botocore.exceptions")
    if isinstance(exc, boto.ConnectTimeoutError):
        return "no answer to the connection attempt in time"
    if isinstance(exc, boto.ReadTimeoutError):
        return "connected, but no reply in time"
    if isinstance(exc, boto.EndpointConnectionError):
        cause = exc.kwargs.get("error")
        return f"cannot connect ({scrub(str(cause), options)})" if cause else "cannot connect"
    return scrub(str(exc), options)


def _endpoint_hint(options: Mapping[str, Any]) -> str:
    if options.get("endpoint_url"):
        return (
            "check the address and that the server runs there, or give another with "
            "{endpoint_url='URL'}"
        )
    return (
        "the endpoint comes from the AWS configuration (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or "
        "~/.aws/config), else it is AWS itself; check the network, or give one with "
        "{endpoint_url='URL'}"
    )
