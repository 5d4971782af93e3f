"""Reading only what a write recorded: a shard its manifest lists must exist when read.

zarr returns the fill value for a chunk whose object is missing, which is right for a sparse
array and wrong for an archive: a lost shard would read as a block of zeros. cellvol stores
every shard (uniform ones included) and lists each in the write's manifest, so before a read
the shards it touches are checked to exist, once per shard and process, and a missing one
raises :class:`~cellvol.errors.IntegrityError` naming its key. Corrupt shards are caught by
their CRC32C checksums as zarr decodes them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from zarr.abc.store import Store, SuffixByteRequest

from cellvol._codec._keys import shard_object_key, touched_ranges
from cellvol._codec._shard import shard_fingerprint
from cellvol._store import read_objects
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
        The manifest's entries for the level: ``"z.y.x"`` shard positions, each with its
        object size and fingerprint (None in older manifests).
    tail_nbytes
        How many bytes end a shard and hold its fingerprint: its index's size plus 4 (see
        :func:`cellvol._codec._shard.shard_fingerprint`).
    """

    def __init__(
        self,
        store: Store,
        url: str,
        level_path: str,
        shards: Sequence[int],
        listed: Mapping[str, tuple[int, str | None]],
        tail_nbytes: int,
    ) -> None:
        self._store = store
        self._url = url
        self._path = level_path
        self._shards = tuple(shards)
        self._listed = frozenset(listed)
        self._fingerprints = {
            name: bytes.fromhex(print_)
            for name, (_, print_) in listed.items()
            if print_ is not None
        }
        self._tail_nbytes = tail_nbytes
        # Shards seen to exist; a plain set: concurrent readers at worst check one twice.
        self._present: set[str] = set()

    def expects(self, position: Sequence[int]) -> bool:
        """Whether the manifest lists the shard at grid ``position``."""
        return ".".join(map(str, position)) in self._listed

    def fingerprint(self, position: Sequence[int]) -> bytes | None:
        """The fingerprint the manifest records for the shard at grid ``position``.

        A shard found under another key (swapped, or copied from another image) has another
        fingerprint (unless the two are alike in every chunk size and in their last chunk),
        which is caught when its index is first read, at no extra request.
        """
        return self._fingerprints.get(".".join(map(str, position)))

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
        # A shard's tail holds its fingerprint: one small read per shard proves it exists and
        # is the shard written under its key, whichever path goes on to read it.
        tails = read_objects(self._store, keys, SuffixByteRequest(self._tail_nbytes))
        for name, key_name, tail in zip(unchecked, keys, tails, strict=True):
            if tail is None:
                raise IntegrityError(
                    f"{self._url}: shard {key_name} is listed in the write's manifest but "
                    "missing from the store; it would otherwise read as fill values"
                )
            recorded = self._fingerprints.get(name)
            if recorded is not None and shard_fingerprint(tail) != recorded:
                raise IntegrityError(
                    f"{self._url}: shard {key_name} is not the shard written under this key "
                    "(its fingerprint differs from the one the write recorded): shards were "
                    "swapped, or it comes from another image"
                )
            self._present.add(name)
