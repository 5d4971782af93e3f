"""Reading only what a write recorded: a shard its manifest lists must exist when read.

zarr returns the fill value for a chunk whose object is missing, which is right for a sparse
array and wrong for an archive: a lost shard would read as a block of zeros. cellvol stores
every shard (uniform ones included) and lists each in the write's manifest, so before a read
the shards it touches are checked to exist, once per shard and process, and a missing one
raises :class:`~cellvol.errors.IntegrityError` naming its key. Corrupt shards are caught by
their CRC32C checksums as zarr decodes them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from zarr.abc.store import Store
from zarr.core.sync import sync

from cellvol._codec._keys import shard_object_key, touched_ranges
from cellvol.errors import IntegrityError

__all__ = ["ShardPresence"]


class ShardPresence:
    """The shards of one level that a write manifest lists, checked to exist when first read.

    Parameters
    ----------
    store
        The image's zarr store.
    url
        The image's location, for messages.
    level_path
        The level's array path in the image group.
    shards
        The level's shard shape.
    listed
        The manifest's entries for the level: ``"z.y.x"`` shard positions and their sizes.
    """

    def __init__(
        self,
        store: Store,
        url: str,
        level_path: str,
        shards: Sequence[int],
        listed: Mapping[str, int],
    ) -> None:
        self._store = store
        self._url = url
        self._path = level_path
        self._shards = tuple(shards)
        self._listed = frozenset(listed)
        # Shards seen to exist; a plain set: concurrent readers at worst check one twice.
        self._present: set[str] = set()

    def expects(self, position: Sequence[int]) -> bool:
        """Whether the manifest lists the shard at grid ``position``."""
        return ".".join(map(str, position)) in self._listed

    def check(self, key: Any, shape: Sequence[int]) -> None:
        """Raise if a listed shard the selection ``key`` touches is missing from the store.

        Raises
        ------
        IntegrityError
            Naming the first missing shard's key.
        """
        if len(self._present) == len(self._listed):
            return  # every listed shard was seen: reads no longer pay for the check
        ranges = touched_ranges(key, shape)
        grid = [
            range(start // size, (stop - 1) // size + 1) if stop > start else range(0)
            for (start, stop), size in zip(ranges, self._shards, strict=True)
        ]
        unchecked = [
            name
            for name in (".".join(map(str, index)) for index in itertools.product(*grid))
            if name in self._listed and name not in self._present
        ]
        if not unchecked:
            return
        keys = [shard_object_key(self._path, map(int, name.split("."))) for name in unchecked]
        found = sync(_exist_all(self._store, keys))
        for name, key_name, exists in zip(unchecked, keys, found, strict=True):
            if not exists:
                raise IntegrityError(
                    f"{self._url}: shard {key_name} is listed in the write's manifest but "
                    "missing from the store; it would otherwise read as fill values"
                )
            self._present.add(name)


async def _exist_all(store: Store, keys: Sequence[str]) -> list[bool]:
    return list(await asyncio.gather(*(store.exists(key) for key in keys)))
