"""Where a verification reads stored objects: a store, or a ``.ozx`` archive's entries.

Each read gives the object's bytes (None if absent) and what its container found wrong with
it (an archive's entry failing its ZIP CRC-32, say); a plain store finds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from zarr.abc.store import Store

from cellvol._store import read_bytes, read_objects
from cellvol.integrity._report import Problem

__all__ = ["Read", "Source", "StoreSource"]

#: An object's bytes (None if absent) and its container's problems with it.
Read = tuple[bytes | None, list[Problem]]
# Objects read in one go by the last pass, which reads cellvol's many small records.
_RUN_KEYS = 32


class Source(Protocol):
    """Reads objects one by one, or in runs of keys the source chooses."""

    def read(self, key: str) -> Read: ...

    def runs(self, keys: Sequence[str]) -> list[list[str]]: ...

    def read_run(self, keys: Sequence[str]) -> list[Read]: ...


class StoreSource:
    """A store's objects, with no container checks; runs are fetched concurrently."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def read(self, key: str) -> Read:
        return read_bytes(self.store, key), []

    def runs(self, keys: Sequence[str]) -> list[list[str]]:
        return [list(keys[i : i + _RUN_KEYS]) for i in range(0, len(keys), _RUN_KEYS)]

    def read_run(self, keys: Sequence[str]) -> list[Read]:
        return [(data, []) for data in read_objects(self.store, keys)]
