"""Turn a path or URL into a zarr store: the one place cellvol touches storage backends.

Three kinds of location are supported, and a zipped image (``.ozx``) in any of them:

================  ==========================================  ==================================
form              examples                                    store
================  ==========================================  ==================================
local path        ``data/vol.ome.zarr``, ``~/x.zarr``,        :class:`zarr.storage.LocalStore`
                  ``file:///abs/vol.zarr``
S3                ``s3://bucket/key/vol.ome.zarr``            :class:`zarr.storage.FsspecStore`
                                                              over :class:`s3fs.S3FileSystem`
HTTP(S)           ``https://host/data/vol.ome.zarr``          read-only
                                                              :class:`zarr.storage.FsspecStore`
                                                              over fsspec's ``HTTPFileSystem``
``.ozx`` file     ``x.ozx``, ``https://host/x.ozx``           read-only
                  (local, S3 or HTTP(S))                      :class:`zarr.storage.ZipStore`
================  ==========================================  ==================================

What :func:`open_store` guarantees before it returns, by mode (the modes are zarr's):

=========  ==================================================================================
mode       guarantee
=========  ==================================================================================
``"r"``    read-only store; something exists at the location: a local directory; for S3 the
           bucket exists and at least one object lies under the prefix (or, when listing is
           not permitted, a zarr metadata document can be read there); for HTTP one of
           ``zarr.json``, ``.zattrs``, ``.zgroup``, ``.zarray`` is served at the root
``"r+"``   as ``"r"``, but the store is writable (not possible over HTTP)
``"a"``    writable store; a local directory is created if missing; an S3 bucket must exist
``"w"``    as ``"a"``. Existing content is *not* deleted here: overwriting is decided by the
           zarr call that creates the group or array (``overwrite=True`` / ``mode="w"``)
``"w-"``   as ``"a"``, and the location must be empty (else :class:`WriteConflictError`)
=========  ==================================================================================

Whether the location holds a valid OME-Zarr image is for the reader to decide. Buckets are
never created: writing to a missing bucket is a :class:`StoreNotFoundError` in every mode.

S3 options (``storage_options``) go to :class:`s3fs.S3FileSystem`: ``endpoint_url``, ``anon``,
``key``/``secret``/``token``, ``profile``, ``client_kwargs``, ``config_kwargs``... Anything
not given there comes from the standard AWS configuration, which botocore resolves itself:
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``...,
``~/.aws/config`` and ``~/.aws/credentials``, then instance metadata. HTTP options go to
fsspec's ``HTTPFileSystem`` (``client_kwargs`` for the ``aiohttp.ClientSession``, and request
options such as ``headers``).

Event loops: the S3 and HTTP stores wrap asynchronous fsspec filesystems. fsspec shares one
filesystem among the stores opened with the same options in the same thread, and a
filesystem's network session belongs to the event loop that first uses it, which under zarr's
synchronous API is zarr's own I/O loop. Code that drives zarr's asynchronous API from an event
loop of its own (a web server, say) should pass ``skip_instance_cache=True`` in
``storage_options`` and use each such store from that one loop only.

:func:`read_bytes`, :func:`read_objects`, :func:`write_bytes`, :func:`object_size`,
:func:`list_keys` and :func:`delete_prefix` read and write plain objects (bookkeeping, not
chunks) in any such store.

Error messages name the location and what was expected; they never contain credentials. A URL
with credentials in it (``https://user:pass@host/...``) is refused for that reason: pass them
in ``storage_options`` instead. An endpoint that cannot be reached at all raises
:class:`EndpointUnreachableError` (a :class:`ConnectionError`), since it says nothing about
whether the data exists; the first request to S3 is made with bounded retries, so that this
takes a second or two rather than botocore's default four retries with backoff.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

from zarr.abc.store import Store

from cellvol._store._http import open_http
from cellvol._store._local import open_local
from cellvol._store._location import Location, parse_location
from cellvol._store._options import check_options
from cellvol._store._s3 import open_s3
from cellvol._store._zip import open_zip
from cellvol.errors import InvalidInputError

__all__ = ["MODES", "Mode", "open_store"]

Mode = Literal["r", "r+", "a", "w", "w-"]
"""Access mode, as in zarr: read, read/write existing, append/create, create, create new."""


MODES: Final[tuple[str, ...]] = get_args(Mode)


def open_store(
    path_or_url: str | os.PathLike[str] | Location,
    *,
    mode: Mode = "r",
    storage_options: Mapping[str, Any] | None = None,
) -> Store:
    """Open the zarr store at a local path, ``s3://`` or ``http(s)://`` URL.

    Parameters
    ----------
    path_or_url
        Where the store is, as accepted by :func:`parse_location`.
    mode
        ``"r"`` (read-only, must exist), ``"r+"`` (writable, must exist), ``"a"`` or ``"w"``
        (writable, created if missing; nothing is deleted), ``"w-"`` (writable, must be empty).
        HTTP locations and ``.ozx`` archives are read-only.
    storage_options
        For S3, keyword arguments of :class:`s3fs.S3FileSystem` (``endpoint_url``, ``anon``,
        ``key``, ``secret``, ``token``, ``profile``, ``client_kwargs``, ``config_kwargs``...);
        for HTTP, of fsspec's ``HTTPFileSystem`` (``client_kwargs``, ``headers``...). Local
        paths take none.

    Returns
    -------
    zarr.abc.store.Store
        A :class:`~zarr.storage.LocalStore` or :class:`~zarr.storage.FsspecStore`, read-only
        for mode ``"r"``. It is not opened yet; zarr opens it on first use.

    Raises
    ------
    StoreNotFoundError
        If nothing exists at the location in mode ``"r"`` or ``"r+"``, or the S3 bucket does
        not exist (any mode).
    ReadOnlyStoreError
        For an HTTP(S) location or a ``.ozx`` archive in any mode but ``"r"``.
    WriteConflictError
        In mode ``"w-"``, if the location already holds something.
    InvalidInputError
        For an unknown mode, unknown or misplaced storage options, a malformed URL, a local
        path that is a file rather than a directory, or an AWS profile that does not exist.
    UnsupportedURLError
        For a scheme cellvol cannot open.
    AccessDeniedError
        If there are no credentials, S3 refuses them or denies access, or an HTTP server asks
        for authentication (HTTP 401). A :class:`PermissionError`.
    EndpointUnreachableError
        If the S3 endpoint or HTTP server cannot be reached. A :class:`ConnectionError`.
    """
    if mode not in MODES:
        raise InvalidInputError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
    location = parse_location(path_or_url)
    options = check_options(location, storage_options)
    if location.is_archive:
        return open_zip(location, mode, options)
    if location.scheme == "file":
        return open_local(location, mode)
    if location.scheme == "s3":
        return open_s3(location, mode, options)
    return open_http(location, mode, options)
