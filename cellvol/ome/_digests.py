"""The image's digests: ``_cellvol/digests.json``, the size and SHA-256 of every stored object.

A finished write leaves, after its manifest and before its completion marker, a record of every
object of the image with its size and SHA-256: the metadata documents (the group's and each
level's ``zarr.json``), every shard, ``_cellvol/job.json`` and ``_cellvol/manifest.json``.
Keys are relative to the image. Not listed: the record itself, the completion marker, the
write lease and the per-shard records under ``_cellvol/done/`` (empty bookkeeping), and nested
label images, which carry digests of their own. Later edits of the image by cellvol (labels,
annotations) rewrite the entries of the objects they change, so the record stays true.

The record checks itself: its ``sha256`` is the SHA-256 of the record's other fields as
:func:`cellvol.ome._manifest.dumps_record` encodes them, and its bytes must be that canonical
encoding, so any change to it (an entry, even white space) is blamed on the record and not on
the objects it names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from cellvol.errors import IntegrityError
from cellvol.ome._manifest import LEASE_KEY, LEDGER_PREFIX, dumps_record

__all__ = [
    "COMPLETE_FORMAT",
    "COMPLETE_KEY",
    "DIGESTS_KEY",
    "Digests",
    "encode_digests",
    "is_recordable",
    "parse_digests",
    "sha256_hex",
]

DIGESTS_KEY: Final = f"{LEDGER_PREFIX}/digests.json"
COMPLETE_KEY: Final = f"{LEDGER_PREFIX}/complete.json"
#: The completion marker's format: 2 vouches that the image has its digests.
COMPLETE_FORMAT: Final = 2
DIGESTS_FORMAT: Final = 1
_DONE_PREFIX: Final = f"{LEDGER_PREFIX}/done/"
_NOT_RECORDED: Final = frozenset({DIGESTS_KEY, COMPLETE_KEY, LEASE_KEY})

#: By key relative to the image: the object's size and SHA-256 (64 hex digits).
Digests = dict[str, tuple[int, str]]


def sha256_hex(parts: bytes | memoryview | Iterable[bytes | memoryview]) -> str:
    """The SHA-256 of an object given whole or as the parts it is written from."""
    digest = hashlib.sha256()
    for part in [parts] if isinstance(parts, bytes | memoryview) else parts:
        digest.update(part)  # hashlib releases the GIL for large buffers
    return digest.hexdigest()


def is_recordable(key: str) -> bool:
    """Whether an image's object (key relative to the image) belongs in its digests."""
    return key not in _NOT_RECORDED and not key.startswith(_DONE_PREFIX)


def encode_digests(objects: Mapping[str, tuple[int, str]]) -> bytes:
    """The record's bytes: sorted, so the same image always gives the same bytes."""
    body: dict[str, Any] = {
        "format": DIGESTS_FORMAT,
        "algorithm": "sha256",
        "objects": {key: [int(size), digest] for key, (size, digest) in objects.items()},
    }
    body["sha256"] = sha256_hex(dumps_record(body))
    return dumps_record(body)


def parse_digests(raw: bytes | None, where: str) -> Digests | None:
    """The entries of a stored record, or None when ``raw`` is None (no record).

    Raises
    ------
    IntegrityError
        If the bytes are not a record, are in a newer format, or fail their own checksum.
    """
    if raw is None:
        return None
    try:
        body = json.loads(raw)
        version = body["format"]
        recorded = body.pop("sha256")
        entries = body["objects"]
        objects = {str(k): (int(v[0]), str(v[1])) for k, v in entries.items()}
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise IntegrityError(f"{where}: unreadable digests {DIGESTS_KEY}: {exc}") from exc
    if not isinstance(version, int) or version > DIGESTS_FORMAT:
        raise IntegrityError(
            f"{where}: digests {DIGESTS_KEY} are in format {version!r}, newer than this "
            f"cellvol reads ({DIGESTS_FORMAT})",
            hint="upgrade cellvol to verify this image",
        )
    try:
        found = sha256_hex(dumps_record(body))
        canonical = dumps_record({**body, "sha256": recorded})
    except ValueError:  # NaN or infinity, which cellvol never writes
        found, canonical = "(not computable: the record holds a non-finite number)", b""
    if found != recorded or raw != canonical:
        raise IntegrityError(
            f"{where}: {DIGESTS_KEY} fails its own SHA-256 ({found}, recorded {recorded!r}): "
            "the record was changed after it was written"
        )
    return objects
