"""The ``storage_options`` a location accepts, checked before any connection is made."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any, Final

from cellvol._store._location import Location
from cellvol.errors import InvalidInputError

__all__ = ["check_options", "scrub"]

# Options cellvol sets itself: every filesystem must be asynchronous for zarr's FsspecStore.
_MANAGED_OPTIONS: Final = frozenset({"asynchronous", "loop"})
# Option names whose values are credentials: scrubbed from any message, never echoed.
_SECRET_OPTIONS: Final = ("key", "secret", "token", "username", "password")


def check_options(location: Location, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    if storage_options is None:
        return {}
    if not isinstance(storage_options, Mapping):
        raise InvalidInputError(
            "storage_options must be a mapping of option names to values, got "
            f"{type(storage_options).__name__}"
        )
    options = dict(storage_options)
    bad_names = [name for name in options if not isinstance(name, str)]
    if bad_names:
        raise InvalidInputError("storage_options keys must be strings")
    if location.scheme == "file":
        if options:
            raise InvalidInputError(
                f"storage_options ({', '.join(sorted(options))}) only apply to s3:// and "
                f"http(s):// URLs, not to the local path {location.url}"
            )
        return options
    managed = sorted(_MANAGED_OPTIONS.intersection(options))
    if managed:
        raise InvalidInputError(
            f"storage_options {', '.join(managed)} are set by cellvol (zarr needs an "
            "asynchronous filesystem) and cannot be given"
        )
    if location.scheme == "s3":
        known = _s3_option_names()
        unknown = sorted(set(options) - known)
        if unknown:
            hints = [
                f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)
                for name in unknown
                for close in [difflib.get_close_matches(name, known, n=1)]
            ]
            raise InvalidInputError(
                f"unknown S3 storage option {', '.join(hints)} for {location.url}: expected "
                "options of s3fs.S3FileSystem such as endpoint_url, anon, key, secret, token, "
                "profile, client_kwargs, config_kwargs, or cellvol's retry"
            )
    return options


def _s3_option_names() -> frozenset[str]:
    from s3fs import S3FileSystem

    parameters = inspect.signature(S3FileSystem.__init__).parameters.values()
    names = {
        p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD or p.kind is p.KEYWORD_ONLY
    }
    # S3FileSystem passes other keywords on to aiobotocore's AioSession, or to fsspec.
    names |= {"profile", "session_vars", "event_hooks", "include_builtin_handlers"}
    names |= {"use_listings_cache", "listings_expiry_time", "max_paths", "skip_instance_cache"}
    # cellvol's own: the retry budget of each request (cellvol._store._retry.RetryPolicy).
    names |= {"retry"}
    return frozenset(names - {"self"} - _MANAGED_OPTIONS)


def scrub(message: str, options: Mapping[str, Any]) -> str:
    """Replace any credential value from ``options`` that appears in ``message``."""
    for name in _SECRET_OPTIONS:
        value = options.get(name)
        if isinstance(value, str) and len(value) >= 4:
            message = message.replace(value, "***")
    return message
