"""cellvol's own records beside the OME metadata: the ``_cellvol/`` prefix and the manifest.

A finished write leaves ``_cellvol/manifest.json``: every level's array layout (shape, dtype,
chunk and shard shapes) and every shard with its object size and fingerprint (the CRC32Cs of
its last chunk and of its index). Readers use it to tell a shard that was never written (a
region of fill value) from one that was lost, a shard from another key or image (its
fingerprint differs), and metadata edited after the write (the layout differs). The writer's
ledger (:mod:`cellvol.write`) writes it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np

from cellvol.errors import IntegrityError

__all__ = [
    "LEASE_KEY",
    "LEDGER_PREFIX",
    "MANIFEST_FORMAT",
    "MANIFEST_KEY",
    "Manifest",
    "RECORD_FORMAT",
    "dumps_record",
    "encode_manifest",
    "layout_differences",
    "parse_manifest",
    "write_day",
]

LEDGER_PREFIX: Final = "_cellvol"
MANIFEST_KEY: Final = f"{LEDGER_PREFIX}/manifest.json"
LEASE_KEY: Final = f"{LEDGER_PREFIX}/lease.json"
"""Held by the writer at work (see ``cellvol._store._lease``); not part of the image."""
#: The version of the records' layout, stored in each of them.
RECORD_FORMAT: Final = 1
#: The manifest's layout: 2 adds the shards' fingerprints and the arrays' layouts.
MANIFEST_FORMAT: Final = 2
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest.

    Attributes
    ----------
    shards
        By level path, by shard position ``"z.y.x"``: the object's size and its fingerprint
        (16 hex digits; None in manifests written before it was recorded).
    arrays
        By level path: the layout the write created (``shape``, ``dtype``, ``chunks``,
        ``shards``); empty in manifests written before it was recorded.
    """

    shards: dict[str, dict[str, tuple[int, str | None]]]
    arrays: dict[str, dict[str, Any]]


def encode_manifest(
    shards: Mapping[str, Mapping[str, tuple[int, str]]],
    arrays: Mapping[str, Mapping[str, Any]],
) -> bytes:
    """The manifest's bytes, from each level's shards (size, fingerprint) and array layout."""
    return dumps_record(
        {
            "format": MANIFEST_FORMAT,
            "levels": {k: {p: list(v) for p, v in s.items()} for k, s in shards.items()},
            "arrays": {k: dict(v) for k, v in arrays.items()},
        }
    )


def dumps_record(body: Mapping[str, Any]) -> bytes:
    """A record's bytes: sorted, indented JSON."""
    # Sorted keys: the same write always produces the same bytes. Strict JSON: no NaN.
    return json.dumps(body, sort_keys=True, indent=1, allow_nan=False).encode()


def parse_manifest(raw: bytes | None, url: str) -> Manifest | None:
    """A manifest from its stored bytes (either format).

    Returns None when ``raw`` is None (no manifest: the write has not finished, or another
    tool wrote the image).

    Raises
    ------
    IntegrityError
        If the bytes are not a manifest.
    """
    if raw is None:
        return None
    try:
        body = json.loads(raw)
        version = body.get("format", 1)
        shards: dict[str, dict[str, tuple[int, str | None]]] = {}
        for path, entries in body["levels"].items():
            shards[str(path)] = {str(position): _shard_entry(v) for position, v in entries.items()}
        arrays = {str(k): dict(v) for k, v in body.get("arrays", {}).items()}
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise IntegrityError(f"{url}: unreadable manifest {MANIFEST_KEY}: {exc}") from exc
    if not isinstance(version, int) or version > MANIFEST_FORMAT:
        raise IntegrityError(
            f"{url}: manifest {MANIFEST_KEY} is in format {version!r}, newer than this cellvol "
            f"reads ({MANIFEST_FORMAT})",
            hint="upgrade cellvol to read this image",
        )
    return Manifest(shards, arrays)


def _shard_entry(value: Any) -> tuple[int, str | None]:
    """A manifest entry: a size (format 1), or a size and a 16-hex-digit fingerprint."""
    if isinstance(value, int):
        return value, None
    size, fingerprint = value
    if not isinstance(size, int) or not _FINGERPRINT.fullmatch(str(fingerprint)):
        raise ValueError(f"bad shard entry {value!r}: expected [size, 16 hex digits]")
    return size, str(fingerprint)


def layout_differences(array: Any, recorded: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """How a level's zarr array differs from the layout its write recorded in the manifest.

    Returns ``(field, found, recorded)`` for each of shape, dtype, chunks and shards that the
    manifest records and the array no longer has; empty when they agree.
    """
    shards = getattr(array, "shards", None)
    found = {
        "shape": list(array.shape),
        "dtype": np.dtype(array.dtype).name,
        "chunks": list(array.chunks),
        "shards": list(shards) if shards is not None else None,
    }
    return [
        (field, value, recorded[field])
        for field, value in found.items()
        if field in recorded and recorded[field] != value
    ]


def write_day() -> str:
    """Today in UTC as ``YYYY-MM-DD``, or the day ``SOURCE_DATE_EPOCH`` names when it is set.

    A day, not a time: two writes of the same data on one day store the same bytes.
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch.isdigit() else datetime.now(UTC)
    return moment.date().isoformat()
