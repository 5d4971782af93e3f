"""Local directories as zarr stores."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zarr.abc.store import Store
from zarr.storage import LocalStore

from cellvol._store._location import Location
from cellvol.errors import InvalidInputError, StoreNotFoundError, WriteConflictError

if TYPE_CHECKING:
    from cellvol._store._open import Mode

__all__ = ["open_local"]


def open_local(location: Location, mode: Mode) -> Store:
    root = Path(location.path)
    if root.exists() and not root.is_dir():
        raise InvalidInputError(
            f"{location.url} is a file, not a directory: a local zarr store is a directory"
        )
    if mode in ("r", "r+"):
        if not root.exists():
            raise StoreNotFoundError(
                f"{location.url} does not exist: mode {mode!r} opens an existing store "
                "(use mode 'a' or 'w' to create one)"
            )
        return LocalStore(root, read_only=mode == "r")
    if mode == "w-" and root.is_dir() and any(root.iterdir()):
        raise WriteConflictError(
            f"{location.url} is not empty: mode 'w-' only creates a store where there is none"
        )
    root.mkdir(parents=True, exist_ok=True)
    return LocalStore(root, read_only=False)
