"""cellvol's own records beside the OME metadata: the ``_cellvol/`` prefix and the manifest.

A finished write leaves ``_cellvol/manifest.json``: every shard of every level with its object
size. Readers use it to tell a shard that was never written (a region of fill value) from one
that was lost; the writer's ledger (:mod:`cellvol.write`) writes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from cellvol.errors import IntegrityError

__all__ = [
    "LEASE_KEY",
    "LEDGER_PREFIX",
    "MANIFEST_KEY",
    "RECORD_FORMAT",
    "dumps_record",
    "encode_manifest",
    "parse_manifest",
]

LEDGER_PREFIX: Final = "_cellvol"
MANIFEST_KEY: Final = f"{LEDGER_PREFIX}/manifest.json"
LEASE_KEY: Final = f"{LEDGER_PREFIX}/lease.json"
"""Held by the writer at work (see ``cellvol._store._lease``); not part of the image."""
#: The version of the records' layout, stored in each of them.
RECORD_FORMAT: Final = 1


def encode_manifest(levels: Mapping[str, Mapping[str, int]]) -> bytes:
    """The manifest's bytes: for each level path, each shard position and its object size."""
    return dumps_record(
        {"format": RECORD_FORMAT, "levels": {k: dict(v) for k, v in levels.items()}}
    )


def dumps_record(body: Mapping[str, Any]) -> bytes:
    """A record's bytes: sorted, indented JSON."""
    # Sorted keys: the same write always produces the same bytes. Strict JSON: no NaN.
    return json.dumps(body, sort_keys=True, indent=1, allow_nan=False).encode()


def parse_manifest(raw: bytes | None, url: str) -> dict[str, dict[str, int]] | None:
    """A manifest's shard sizes by level path and shard key, from its stored bytes.

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
        levels = json.loads(raw)["levels"]
        return {str(k): {str(p): int(n) for p, n in v.items()} for k, v in levels.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"{url}: unreadable manifest {MANIFEST_KEY}: {exc}") from exc
