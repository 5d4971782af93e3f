"""The write ledger: what a pyramid write set out to do, and which shards it has finished.

A write keeps its bookkeeping beside the image, under ``_cellvol/`` in the image group (a plain
name, not a hidden one, so that HTTP servers that refuse dot-files still serve it)::

    _cellvol/job.json             the parameters and the UTC day the write began, written
                                  before any data
    _cellvol/done/<level>/<z>.<y>.<x>@<size>-<fingerprint>-<sha256>[-<input crc>]
                                  one empty record per finished shard, named with its object
                                  size, its fingerprint (which binds the object to its key),
                                  the SHA-256 of its bytes and, at level 0, the CRC32C of the
                                  input it was made from (a listing tells everything)
    _cellvol/manifest.json        every shard of every level with its size, after the metadata
    _cellvol/digests.json         every object of the image with its size and SHA-256
                                  (``cellvol.ome._digests``), after the manifest and metadata
    _cellvol/complete.json        the completion marker, written last

Every one of these is a function of the parameters, the data and the day the write began (the
date archives require, kept in the job record so that a resume reuses it, to the day so that
writes of one day agree; ``SOURCE_DATE_EPOCH`` fixes it, as in reproducible builds): how a
write went (how many shards it wrote or found finished, how long it took) is returned to the
caller in its ``WriteResult`` and never stored, so a resumed write leaves a store identical,
object for object, to an uninterrupted one.

A shard counts as finished only when its record exists *and* its stored object still has the
recorded size; anything else is written again. Records in the format of earlier versions
(without the SHA-256) are not trusted as finished by a resume: their shards are written again,
byte-identical, and the old records removed, so that the digests are made from records alone.
A resume first proves that the input is the one the finished level-0 shards were made from, by
their input CRCs (``cellvol.write._resume``).
Shard objects themselves are written whole by one task (zarr's local store renames a temporary
file into place; an S3 PUT is atomic), so a rewritten shard is byte-identical to the first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from zarr.abc.store import Store

from cellvol._codec._keys import shard_object_key
from cellvol._codec._shard import shard_fingerprint
from cellvol._store import (
    delete_prefix,
    list_keys,
    make_durable,
    object_size,
    read_bytes,
    read_tail,
    write_bytes,
)
from cellvol.errors import IntegrityError, WriteConflictError
from cellvol.ome._digests import COMPLETE_FORMAT, COMPLETE_KEY
from cellvol.ome._manifest import (
    LEDGER_PREFIX,
    MANIFEST_KEY,
    RECORD_FORMAT,
    dumps_record,
    encode_manifest,
    write_day,
)

__all__ = ["Ledger", "ShardKey", "ShardRecord"]


#: A shard: its level index and its position in that level's shard grid.
ShardKey = tuple[int, tuple[int, ...]]


class ShardRecord(NamedTuple):
    """What the ledger knows of a finished shard."""

    nbytes: int
    """Size of the stored object."""
    fingerprint: str
    """The CRC32Cs of the shard's last chunk and of its index, as the object stores them
    (16 hex digits; see :func:`cellvol._codec._shard.shard_fingerprint`)."""
    sha256: str | None
    """The SHA-256 of the stored object (64 hex digits); None in an earlier version's record."""
    input_crc: str | None = None
    """Level 0: the CRC32C of the input block the shard was made from (8 hex digits)."""


class Ledger:
    """Read and write a pyramid write's bookkeeping in its store.

    Parameters
    ----------
    store
        The image group's store.
    url
        Its location, for messages.
    """

    def __init__(self, store: Store, url: str) -> None:
        self.store = store
        self.url = url

    # -- the job ------------------------------------------------------------------------------

    def job(self) -> dict[str, Any] | None:
        """The recorded parameters of the write at this location, or None."""
        raw = read_bytes(self.store, f"{LEDGER_PREFIX}/job.json")
        if raw is None:
            return None
        try:
            record = json.loads(raw)
            parameters = record["parameters"]
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{self.url}: unreadable {LEDGER_PREFIX}/job.json: {exc}") from exc
        if not isinstance(parameters, dict):
            raise IntegrityError(f"{self.url}: {LEDGER_PREFIX}/job.json has no parameters")
        return parameters

    def began(self) -> str | None:
        """The UTC day (``YYYY-MM-DD``) the recorded write began; None if it records none."""
        raw = read_bytes(self.store, f"{LEDGER_PREFIX}/job.json")
        try:
            day = json.loads(raw).get("began") if raw is not None else None
        except (ValueError, AttributeError):
            return None
        return day if isinstance(day, str) else None

    def begin(self, parameters: Mapping[str, Any]) -> None:
        """Record the parameters of a new write and its day (before any data is written)."""
        body = {"format": RECORD_FORMAT, "parameters": dict(parameters), "began": write_day()}
        write_bytes(self.store, f"{LEDGER_PREFIX}/job.json", dumps_record(body))
        make_durable(self.store, [f"{LEDGER_PREFIX}/job.json"])

    def check_same(self, parameters: Mapping[str, Any]) -> None:
        """Raise unless ``parameters`` are those the recorded write was started with.

        Raises
        ------
        WriteConflictError
            Naming each parameter that differs, with the recorded and the requested value.
        """
        recorded = self.job()
        wanted = json.loads(dumps_record(parameters))
        if recorded is None or recorded == wanted:
            return
        differences = [
            f"{key}: recorded {recorded.get(key)!r}, requested {wanted.get(key)!r}"
            for key in sorted(set(recorded) | set(wanted))
            if recorded.get(key) != wanted.get(key)
        ]
        raise WriteConflictError(
            f"{self.url} holds a write started with different parameters, so it cannot be "
            f"resumed with these: {'; '.join(differences)}",
            hint="pass {overwrite=True} to start again",
        )

    # -- finished shards ----------------------------------------------------------------------

    def record(self, level: int, index: tuple[int, ...], record: ShardRecord) -> None:
        """Record a finished shard: its object's size, CRCs and SHA-256."""
        write_bytes(self.store, _done_key(level, index, record), b"")

    def forget(self, level: int, index: tuple[int, ...], record: ShardRecord) -> None:
        """Remove a shard's record (before the shard is written again)."""
        delete_prefix(self.store, _done_key(level, index, record))

    def finished(self) -> dict[ShardKey, ShardRecord]:
        """Every recorded shard with what was recorded of it (one listing of the store).

        Records an earlier version wrote have no SHA-256 (``sha256`` None): they still prove
        a finished image's input, but a resume does not trust them (:meth:`trusted`). Records
        without CRCs, or not in cellvol's format, are ignored: their shards are simply
        written again.
        """
        result: dict[ShardKey, ShardRecord] = {}
        prefix = f"{LEDGER_PREFIX}/done/"
        for key in list_keys(self.store, prefix):
            level_text, _, name = key[len(prefix) :].partition("/")
            position, _, facts = name.partition("@")
            size, *digests = facts.split("-")
            try:
                shard = (int(level_text), tuple(int(i) for i in position.split(".")))
                nbytes = int(size)
            except ValueError:
                continue
            record = _parse_facts(nbytes, digests)
            if record is not None:
                result[shard] = record
        return result

    def trusted(self, finished: Mapping[ShardKey, ShardRecord]) -> dict[ShardKey, ShardRecord]:
        """The records a resume may trust; an earlier version's are deleted (see above).

        Their shards are then written again, byte-identical, and recorded with their digests,
        which the image's ``digests.json`` is made from.
        """
        for (level, index), record in finished.items():
            if record.sha256 is None:
                self.forget(level, index, record)
        return {shard: record for shard, record in finished.items() if record.sha256 is not None}

    def still_intact(
        self, level_path: str, index: tuple[int, ...], record: ShardRecord, tail_nbytes: int
    ) -> bool:
        """Whether a recorded shard's object exists with the recorded size and fingerprint.

        ``tail_nbytes`` is the size of the shard's index plus 4: the bytes that hold its
        fingerprint (see :func:`cellvol._codec._shard.shard_fingerprint`). A shard replaced by
        one of the same size (a raw level's, say) is caught by it.
        """
        key = shard_object_key(level_path, index)
        if object_size(self.store, key) != record.nbytes:
            return False
        tail = read_tail(self.store, key, tail_nbytes)
        return tail is not None and shard_fingerprint(tail).hex() == record.fingerprint

    # -- the end ------------------------------------------------------------------------------

    def write_manifest(
        self,
        shards: Mapping[str, Mapping[str, tuple[int, str]]],
        arrays: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """Write the manifest (see :func:`cellvol.ome._manifest.encode_manifest`)."""
        write_bytes(self.store, MANIFEST_KEY, encode_manifest(shards, arrays))
        make_durable(self.store, [MANIFEST_KEY])

    def mark_complete(self) -> None:
        """Write the completion marker, the last object of a write, and sync it to the disk.

        Everything it vouches for must be on the disk first: the shards are synced before
        they are recorded, the manifest when written, the zarr metadata by the writer. It
        holds no run statistics, which would make a resumed store differ from a clean one.
        """
        # Format 2 tells verify that the image's digests must exist.
        body = {"format": COMPLETE_FORMAT}
        write_bytes(self.store, COMPLETE_KEY, dumps_record(body))
        make_durable(self.store, [COMPLETE_KEY])

    def is_complete(self) -> bool:
        """Whether the completion marker exists."""
        return object_size(self.store, COMPLETE_KEY) is not None


_CRC = re.compile(r"[0-9a-f]{8}")
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _parse_facts(nbytes: int, digests: list[str]) -> ShardRecord | None:
    """A record from the digests in its name: fingerprint, [SHA-256], [input CRC]."""
    if not 1 <= len(digests) <= 3 or not _FINGERPRINT.fullmatch(digests[0]):
        return None
    fingerprint, *rest = digests
    sha256 = rest.pop(0) if rest and _SHA256.fullmatch(rest[0]) else None
    if len(rest) > 1 or (rest and not _CRC.fullmatch(rest[0])):
        return None
    return ShardRecord(nbytes, fingerprint, sha256, rest[0] if rest else None)


def _done_key(level: int, index: tuple[int, ...], record: ShardRecord) -> str:
    facts = "-".join(str(f) for f in record if f is not None)
    return f"{LEDGER_PREFIX}/done/{level}/" + ".".join(str(i) for i in index) + f"@{facts}"
