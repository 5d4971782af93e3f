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
            raise StoreNotFoundError(f"{location.url} does not exist: {_missing(root)}")
        return LocalStore(root, read_only=mode == "r")
    if mode == "w-" and root.is_dir() and any(root.iterdir()):
        raise WriteConflictError(
            f"{location.url} is not empty: mode 'w-' only creates a store where there is none"
        )
    root.mkdir(parents=True, exist_ok=True)
    return LocalStore(root, read_only=False)


def _missing(root: Path) -> str:
    """What was expected at ``root``, and the nearest part of its path that exists."""
    parent = root.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    shown = parent != root.parent and parent != parent.parent  # not the root of everything
    where = f"; the nearest existing folder is {parent}" if shown else ""
    return f"expected a zarr store (a directory) there{where}"
