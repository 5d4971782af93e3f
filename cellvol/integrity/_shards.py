"""Checking one stored shard (or unsharded chunk) object from its bytes alone."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cellvol._codec._layout import ChunkLayout
from cellvol._codec._shard import ABSENT, CRC_BYTES, crc32c_bytes, shard_fingerprint
from cellvol.integrity._report import Problem

__all__ = ["check_object"]


def check_object(
    key: str,
    data: bytes,
    layout: ChunkLayout,
    recorded: tuple[int, str | None] | None,
) -> tuple[list[Problem], int]:
    """Every problem of one stored object, and how many chunk checksums were checked.

    Parameters
    ----------
    key
        The object's key, for the problems.
    data
        The whole object.
    layout
        Its array's chunk layout.
    recorded
        The size and fingerprint the write manifest records for it, if it lists it.
    """
    problems: list[Problem] = []
    if recorded is not None:
        size = recorded[0]
        if len(data) != size:
            problems.append(
                Problem(key, "size", f"{len(data)} bytes, but the write recorded {size}")
            )
    if layout.shards is None:
        if not layout.checksum:
            return problems, 0
        return [*problems, *_check_chunk(key, data, 0, len(data), None, ())], 1
    nbytes = layout.index_nbytes
    if len(data) < nbytes:
        problems.append(
            Problem(key, "truncated", f"{len(data)} bytes, too short for its {nbytes}-byte index")
        )
        return problems, 0
    start = len(data) - nbytes if layout.index_at_end else 0
    index = data[start : start + nbytes]
    if layout.index_checksum and crc32c_bytes(index[:-CRC_BYTES]) != index[-CRC_BYTES:]:
        problems.append(
            Problem(
                key,
                "index-checksum",
                "the shard index fails its CRC32C; its chunks cannot be located",
                (start, start + nbytes),
            )
        )
        return problems, 0
    if recorded is not None and recorded[1] is not None and layout.index_at_end:
        found = shard_fingerprint(data[-(nbytes + CRC_BYTES) :]).hex()
        if found != recorded[1]:
            problems.append(
                Problem(
                    key,
                    "fingerprint",
                    f"fingerprint {found}, but the write recorded {recorded[1]} under this key: "
                    "a shard from another key or image",
                )
            )
    body = index[:-CRC_BYTES] if layout.index_checksum else index
    entries = np.frombuffer(body, dtype="<u8")
    grid = layout.chunks_per_shard
    data_stop = start if layout.index_at_end else len(data)
    data_start = 0 if layout.index_at_end else nbytes
    checked = 0
    for number, (offset, length) in enumerate(entries.reshape(-1, 2).tolist()):
        if offset == ABSENT and length == ABSENT:
            continue
        if offset < data_start or offset + length > data_stop:
            problems.append(
                Problem(
                    key,
                    "chunk-range",
                    f"chunk {_position(number, grid)} at bytes {offset}+{length} lies outside "
                    "the shard's data",
                )
            )
            continue
        if layout.checksum:
            problems += _check_chunk(key, data, offset, offset + length, number, grid)
            checked += 1
    return problems, checked


def _position(number: int, grid: Sequence[int]) -> str:
    """The chunk's position in its shard (``"0.1.1"``), from its number in the index."""
    return ".".join(map(str, np.unravel_index(number, grid)))


def _check_chunk(
    key: str, data: bytes, start: int, stop: int, number: int | None, grid: Sequence[int]
) -> Sequence[Problem]:
    """The problem of the chunk at ``data[start:stop]``, if it has one.

    It is chunk ``number`` of a shard of ``grid`` chunks, or (``None``) an unsharded chunk,
    named only in a problem: most chunks are intact, and naming each costs more than its
    checksum.
    """
    if (
        stop - start >= CRC_BYTES
        and crc32c_bytes(memoryview(data)[start : stop - CRC_BYTES])
        == data[stop - CRC_BYTES : stop]
    ):
        return []
    what = "the chunk" if number is None else f"chunk {_position(number, grid)}"
    if stop - start < CRC_BYTES:
        return [Problem(key, "truncated", f"{what} is shorter than its checksum", (start, stop))]
    return [Problem(key, "chunk-checksum", f"{what} fails its CRC32C", (start, stop))]
