"""HTTP(S) servers as read-only zarr stores, through fsspec."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from zarr.abc.store import Store
from zarr.storage import FsspecStore

from cellvol._store._location import METADATA_KEYS, Location, redact
from cellvol._store._loop import run_in_fresh_loop
from cellvol._store._options import scrub
from cellvol._store._sessions import track
from cellvol.errors import (
    AccessDeniedError,
    EndpointUnreachableError,
    InvalidInputError,
    ReadOnlyStoreError,
    StoreNotFoundError,
)

if TYPE_CHECKING:
    from cellvol._store._open import Mode

__all__ = ["open_http"]

_HTTP_PROBE_TIMEOUT_S: Final = 30.0


def open_http(location: Location, mode: Mode, options: dict[str, Any]) -> Store:
    from fsspec.implementations.http import HTTPFileSystem

    if mode != "r":
        raise ReadOnlyStoreError(
            f"{location.url} is read-only: HTTP(S) locations can only be opened with mode 'r', "
            f"not {mode!r}"
        )
    run_in_fresh_loop(_probe_http(location, options))
    fs = HTTPFileSystem(**options, asynchronous=True)
    track(fs)
    return FsspecStore(fs, path=location.url, read_only=True)


async def _probe_http(location: Location, options: dict[str, Any]) -> None:
    """Check that the server has a zarr metadata document at the root."""
    import aiohttp
    from fsspec.implementations.http import HTTPFileSystem

    fs = HTTPFileSystem(**{**options, "skip_instance_cache": True}, asynchronous=True)
    request_options = dict(fs.kwargs)
    request_options.setdefault("timeout", aiohttp.ClientTimeout(total=_HTTP_PROBE_TIMEOUT_S))
    session = await fs.set_session()
    tried: list[str] = []
    statuses: set[int] = set()
    try:
        for name in METADATA_KEYS:
            url = f"{location.url}/{name}"
            async with session.get(fs.encode_url(url), **request_options) as response:
                if 200 <= response.status < 300:
                    return
                statuses.add(response.status)
                tried.append(f"{name} (HTTP {response.status})")
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise EndpointUnreachableError(
            f"could not reach {redact(location.url)}: {type(exc).__name__}: "
            f"{scrub(str(exc), options)}"
        ) from exc
    except aiohttp.InvalidURL as exc:
        raise InvalidInputError(f"invalid URL {redact(location.url)}") from exc
    finally:
        await session.close()
    if 401 in statuses:  # 403 is no proof: S3 answers it for missing keys it may not list
        raise AccessDeniedError(
            f"{location.url} requires authentication (HTTP 401): pass credentials in "
            "storage_options, e.g. headers={'Authorization': ...}"
        )
    raise StoreNotFoundError(
        f"no zarr store at {location.url}: none of its metadata documents could be read "
        f"(tried {', '.join(tried)})"
    )
