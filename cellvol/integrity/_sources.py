"""Where a verification reads stored objects: a store, or a ``.ozx`` archive's entries.

Each read gives the object's bytes (None if absent) and what its container found wrong with
it (an archive's entry failing its ZIP CRC-32, say); a plain store finds nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

from zarr.abc.store import Store
from zarr.storage import LocalStore

from cellvol._store import read_bytes, read_objects, will_read_file
from cellvol.integrity._report import Problem
from cellvol.ome._manifest import LEDGER_PREFIX

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

    def prefetch(self, key: str, limit: int) -> int: ...


class StoreSource:
    """A store's objects, with no container checks; runs are fetched concurrently."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def read(self, key: str) -> Read:
        return read_bytes(self.store, key), []

    def runs(self, keys: Sequence[str]) -> list[list[str]]:
        # Only cellvol's records, small by design, go in runs: anything else (a stray shard)
        # is read alone, so that memory stays bounded by a few objects.
        records = [k for k in keys if _is_record(k)]
        alone = [[k] for k in keys if not _is_record(k)]
        runs = [records[i : i + _RUN_KEYS] for i in range(0, len(records), _RUN_KEYS)]
        return runs + alone

    def read_run(self, keys: Sequence[str]) -> list[Read]:
        return [(data, []) for data in read_objects(self.store, keys)]

    def prefetch(self, key: str, limit: int) -> int:
        """Ask the kernel to start reading at most ``limit`` bytes of a local object.

        The disk then works while the threads hash what they hold, instead of waiting for
        each thread's next read; elsewhere nothing is done. Returns the bytes hinted.
        """
        if isinstance(self.store, LocalStore):
            return will_read_file(os.path.join(self.store.root, key), limit)
        return 0


def _is_record(key: str) -> bool:
    """Whether ``key`` is one of cellvol's records (``_cellvol/...`` of an image)."""
    return key.startswith(f"{LEDGER_PREFIX}/") or f"/{LEDGER_PREFIX}/" in key
