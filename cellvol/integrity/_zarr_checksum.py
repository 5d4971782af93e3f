"""The DANDI zarr checksum: one digest of every object of an image, from their MD5s.

Each object's MD5 is taken from the bytes the scan reads anyway; the digests are then
combined by the ``zarr-checksum`` package's own tree code, so the value is the one the
DANDI archive and its tools compute (``<md5>-<objects>--<bytes>``), and any of them can
recompute it from a copy of the image wherever it lies.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from zarr_checksum import compute_zarr_checksum
from zarr_checksum.generators import ZarrArchiveFile

__all__ = ["ZarrChecksum"]


class ZarrChecksum:
    """The MD5 of each object read, by key; safe to add to from several threads."""

    def __init__(self) -> None:
        self._objects: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def add(self, key: str, data: bytes) -> None:
        """Note the object at ``key`` (relative to the image's root) and its bytes."""
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        with self._lock:
            self._objects[key] = (len(data), digest)

    def zarr_checksum(self) -> str:
        """The zarr checksum of every object noted, as ``<md5>-<count>--<size>``."""
        files = [
            ZarrArchiveFile(path=Path(key), size=size, digest=digest)
            for key, (size, digest) in sorted(self._objects.items())
        ]
        return compute_zarr_checksum(files).digest
