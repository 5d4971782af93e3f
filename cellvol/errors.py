"""The exceptions cellvol raises.

Every error derives from :class:`CellvolError`, and each subclass also inherits the built-in
exception an ordinary caller would already catch, so ``except ValueError`` or ``except OSError``
keeps working without knowing about cellvol::

    CellvolError
    ├── InvalidInputError (ValueError)           a value or array the caller passed is unusable
    │   ├── LayoutError                          chunk / shard / factor layout cannot be honoured
    │   └── SourceChangedError                   an input file changed while it was converted
    ├── UnsupportedURLError (ValueError)         a URL scheme cellvol cannot open
    ├── StoreNotFoundError (FileNotFoundError)   nothing at the path, URL or bucket
    ├── ReadOnlyStoreError (PermissionError)     a write was attempted on a read-only store
    ├── MetadataError (ValueError)               OME-Zarr metadata missing, malformed or invalid
    │   └── NotOMEZarrError                      the location holds no OME-Zarr image at all
    ├── LevelError (IndexError)                  a pyramid level index out of range
    ├── WriteConflictError (FileExistsError)     a destination holds a different write
    ├── OutOfSpaceError (OSError)                the destination filled up during a write
    └── IntegrityError (OSError)                 stored data is missing, torn or corrupt

:class:`CellvolWarning` is the one warning category; the test suite turns it into an error so
that nothing the library warns about goes unnoticed.
"""

from __future__ import annotations

__all__ = [
    "CellvolError",
    "CellvolWarning",
    "IntegrityError",
    "InvalidInputError",
    "LayoutError",
    "LevelError",
    "MetadataError",
    "NotOMEZarrError",
    "OutOfSpaceError",
    "ReadOnlyStoreError",
    "SourceChangedError",
    "StoreNotFoundError",
    "UnsupportedURLError",
    "WriteConflictError",
]


class CellvolError(Exception):
    """Base class of every error raised by cellvol."""


class CellvolWarning(UserWarning):
    """Something cellvol could work around but the caller should know about."""


class InvalidInputError(CellvolError, ValueError):
    """An argument, array or file passed in cannot be used as given."""


class LayoutError(InvalidInputError):
    """A requested chunk, shard or downsampling layout cannot be honoured."""


class SourceChangedError(InvalidInputError):
    """An input file changed (size or modification time) while it was being converted."""


class UnsupportedURLError(CellvolError, ValueError):
    """A path or URL uses a scheme that cellvol cannot open."""


class StoreNotFoundError(CellvolError, FileNotFoundError):
    """Nothing exists at the given path, URL or bucket."""


class ReadOnlyStoreError(CellvolError, PermissionError):
    """A write was attempted on a store opened read-only (for example over HTTP)."""


class MetadataError(CellvolError, ValueError):
    """OME-Zarr metadata is missing, malformed, or fails validation."""


class NotOMEZarrError(MetadataError):
    """The location exists but holds neither an OME-Zarr image nor a zarr array."""


class LevelError(CellvolError, IndexError):
    """A pyramid level index is out of range."""


class WriteConflictError(CellvolError, FileExistsError):
    """The destination already holds data written with different parameters."""


class OutOfSpaceError(CellvolError, OSError):
    """The destination's disk or quota filled up during a write; resuming continues it."""


class IntegrityError(CellvolError, OSError):
    """Stored data is missing, incomplete or fails its checksum."""
