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
    ├── AccessDeniedError (PermissionError)      credentials missing, refused or not enough
    ├── EndpointUnreachableError (ConnectionError)  an S3 endpoint or HTTP server is unreachable
    ├── StoreUnavailableError (ConnectionError)  a store request kept failing past its retries
    ├── AddressInUseError (OSError)              a server cannot listen on a taken address
    ├── MetadataError (ValueError)               OME-Zarr metadata missing, malformed or invalid
    │   └── NotOMEZarrError                      the location holds no OME-Zarr image at all
    ├── LevelError (IndexError)                  a pyramid level index out of range
    ├── WriteConflictError (FileExistsError)     a destination holds a different write
    ├── OutOfSpaceError (OSError)                the destination filled up during a write
    └── IntegrityError (OSError)                 stored data is missing, torn or corrupt

:class:`CellvolWarning` is the one warning category; the test suite turns it into an error so
that nothing the library warns about goes unnoticed.

An error may carry a *hint*, what to try, apart from its message. A hint names the parameters
to change as ``{name=value}`` (``"pass {overwrite=True} to replace it"``): ``str(error)``
spells them as Python keywords (``overwrite=True``), and the command line spells them as its
own options (``--overwrite``), so that one error reads right to both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

__all__ = [
    "AccessDeniedError",
    "AddressInUseError",
    "CellvolError",
    "CellvolWarning",
    "EndpointUnreachableError",
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
    "StoreUnavailableError",
    "UnsupportedURLError",
    "WriteConflictError",
]


#: A parameter named in a hint: ``{overwrite=True}``, ``{voxel_size=(z, y, x)}``.
HINT_PARAMETER: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)=([^{}]*)\}")


class CellvolError(Exception):
    """Base class of every error raised by cellvol.

    Parameters
    ----------
    message
        What went wrong, naming the file, key or URL; one line.
    hint
        What to try, if anything; parameters to change are written ``{name=value}``.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}; {self.hint_as(_as_keyword)}")

    def __reduce__(self) -> tuple[object, ...]:
        # Keeps the hint apart through pickling (errors cross process boundaries under dask).
        return (_restore, (type(self), self.message, self.hint), self.__dict__)

    @property
    def parameters(self) -> tuple[str, ...]:
        """The names of the parameters the hint asks to change, in order."""
        return tuple(m.group(1) for m in HINT_PARAMETER.finditer(self.hint or ""))

    def hint_as(self, spell: Callable[[str, str], str]) -> str | None:
        """The hint with each ``{name=value}`` replaced by ``spell(name, value)``.

        Parameters
        ----------
        spell
            Turns a parameter's name and its value (Python source text) into the words a
            caller would type: ``name=value`` for Python, an option for the command line.
        """
        if self.hint is None:
            return None
        return HINT_PARAMETER.sub(lambda m: spell(m.group(1), m.group(2)), self.hint)


def _restore(cls: type[CellvolError], message: str, hint: str | None) -> CellvolError:
    return cls(message, hint=hint)


def _as_keyword(name: str, value: str) -> str:
    return f"{name}={value}"


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


class AccessDeniedError(CellvolError, PermissionError):
    """A store refused access: no usable credentials, or credentials without the permission."""


class EndpointUnreachableError(CellvolError, ConnectionError):
    """An S3 endpoint or HTTP server could not be reached at all."""


class StoreUnavailableError(CellvolError, ConnectionError):
    """A store request kept failing (5xx, throttling, dropped connections) past its retries.

    The message names the request and its key. A write that stops with it resumes later.
    """


class AddressInUseError(CellvolError, OSError):
    """A server cannot listen on its host and port: another process holds them."""


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
