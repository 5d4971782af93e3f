"""Zipped OME-Zarr (``.ozx``, RFC-9): one file holding a whole zarr hierarchy, read-only.

A ``.ozx`` location is a single file, local, on S3 or on an HTTP(S) server, whose zip root is
the hierarchy's root. It is opened as a read-only :class:`zarr.storage.ZipStore` over the
file: a local path directly, a remote file through an fsspec file object that reads byte
ranges, so only the central directory and the entries asked for are fetched. Writing into
an archive is refused; ``cellvol.pack`` makes one from a directory store.
"""

from __future__ import annotations

import zipfile
from typing import TYPE_CHECKING, Any, Final

from zarr.abc.store import Store
from zarr.storage import ZipStore

from cellvol._store._location import Location, redact
from cellvol._store._options import scrub
from cellvol.errors import (
    AccessDeniedError,
    EndpointUnreachableError,
    InvalidInputError,
    ReadOnlyStoreError,
    StoreNotFoundError,
)

if TYPE_CHECKING:
    from cellvol._store._open import Mode

__all__ = ["ZIP_SUFFIX", "open_zip"]

ZIP_SUFFIX: Final = ".ozx"
"""The file extension RFC-9 gives zipped OME-Zarr; a location ending in it is an archive."""

# Remote reads: the central directory and each local header are small reads; a block this
# size serves a header and its entry's first bytes in one request without fetching megabytes.
_REMOTE_BLOCK_BYTES: Final = 1 << 18


def open_zip(location: Location, mode: Mode, options: dict[str, Any]) -> Store:
    """Open the archive at ``location`` as a read-only zarr store (only mode ``"r"``)."""
    if mode != "r":
        raise ReadOnlyStoreError(
            f"{location.url} is a zipped OME-Zarr (.ozx), which is read-only: it cannot be "
            f"opened with mode {mode!r}",
            hint="write a directory store (.ome.zarr), then pack it into a .ozx with "
            "cellvol.pack or `cellvol pack`",
        )
    if location.scheme == "file":
        try:
            archive = zipfile.ZipFile(location.path)  # reads the central directory: a check
        except FileNotFoundError:
            raise StoreNotFoundError(f"{location.url} does not exist") from None
        except IsADirectoryError:
            raise InvalidInputError(
                f"{location.url} is a directory: a .ozx is a single zip file"
            ) from None
        except zipfile.BadZipFile as exc:
            raise InvalidInputError(f"{location.url} is not a zip archive: {exc}") from None
        archive.close()
        return ZipStore(location.path, mode="r")
    return ZipStore(_remote_file(location, options), mode="r")


def _remote_file(location: Location, options: dict[str, Any]) -> Any:
    """A seekable file object reading the remote archive by byte ranges, checked to be a zip."""
    import fsspec

    protocol = "s3" if location.scheme == "s3" else "http"
    # A synchronous filesystem of its own: the store's reads run on fsspec's I/O thread, not
    # on zarr's loop, which calls the store's blocking get.
    fs = fsspec.filesystem(protocol, **options, skip_instance_cache=True)
    target = location.path if location.scheme == "s3" else location.url
    try:
        handle = fs.open(target, "rb", block_size=_REMOTE_BLOCK_BYTES, cache_type="readahead")
        zipfile.ZipFile(handle).close()
    except FileNotFoundError:
        raise StoreNotFoundError(f"{location.url} does not exist") from None
    except PermissionError as exc:
        raise AccessDeniedError(
            f"access to {redact(location.url)} was refused: {scrub(str(exc), options)}"
        ) from None
    except zipfile.BadZipFile as exc:
        raise InvalidInputError(f"{location.url} is not a zip archive: {exc}") from None
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise EndpointUnreachableError(
            f"could not read {redact(location.url)}: {type(exc).__name__}: "
            f"{scrub(str(exc), options)}"
        ) from exc
    return handle
