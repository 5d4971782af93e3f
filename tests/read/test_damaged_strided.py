"""Damaged chunks read through zarr's own decoding (steps, index arrays): IntegrityError (#22).

Selections that are not a box fall back to zarr, whose codecs fail with their own errors
(crc32c's ValueError, zstd's RuntimeError, a short shard's ValueError). Each must end as an
IntegrityError naming the damaged chunk's shard, and never as data.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cellvol
from cellvol._codec._shard import crc32c_bytes
from cellvol.errors import IntegrityError

SHARD = "0/c/0/0/0"
CHUNKS_PER_SHARD = 8
INDEX_BYTES = CHUNKS_PER_SHARD * 16 + 4  # offset and length per chunk, then its crc32c


def _index(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw[-INDEX_BYTES:-4], "<u8").reshape(CHUNKS_PER_SHARD, 2)


def flip_chunk_bytes(raw: bytes) -> bytes:
    """Flip bytes inside the first chunk: its checksum no longer matches."""
    offset = int(_index(raw)[0, 0])
    damaged = bytearray(raw)
    for i in range(offset + 4, offset + 24):
        damaged[i] ^= 0xFF
    return bytes(damaged)


def break_zstd_keep_crc(raw: bytes) -> bytes:
    """Damage the first chunk's zstd frame and write a matching checksum: zstd itself fails."""
    offset, length = (int(v) for v in _index(raw)[0])
    body = bytearray(raw[offset : offset + length - 4])
    for i in range(0, 24):
        body[i] ^= 0x5A
    return raw[:offset] + bytes(body) + crc32c_bytes(bytes(body)) + raw[offset + length :]


def truncate(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def truncate_below_index(raw: bytes) -> bytes:
    return raw[:3]


DAMAGES: dict[str, Callable[[bytes], bytes]] = {
    "flipped": flip_chunk_bytes,
    "zstd": break_zstd_keep_crc,
    "truncated": truncate,
    "too-short": truncate_below_index,
}

SELECTIONS: dict[str, Callable[[Any], Any]] = {
    "step": lambda v: v[::2],
    "reversed-int": lambda v: v[::-1, 5],
    "level-steps": lambda v: v.level(0)[1:30:3, ::4, 7],
    "ellipsis-step": lambda v: v[..., ::3],
    "int-list": lambda v: v[[0, 1, 3]],
    "int-array": lambda v: v[:, np.array([1, 2]), 0],
    "bool-mask": lambda v: v[_mask()],
    "box": lambda v: v[0:8, 0:8, 0:8],
    "async-step": lambda v: __import__("asyncio").run(v.level(0).read_async(np.s_[::2])),
}


def _mask() -> np.ndarray:
    mask = np.zeros((32, 32, 32), bool)
    mask[1, 2, 3] = mask[20, 20, 20] = True
    return mask


@pytest.fixture(params=sorted(DAMAGES))
def damaged(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / "d.ome.zarr"
    data = np.random.default_rng(1).integers(0, 60, (32, 32, 32)).astype(np.uint16)
    cellvol.write_pyramid(
        data, path, 1.0, chunks=(8, 8, 8), shards=(16, 16, 16), n_levels=2, uncompressed_fraction=0
    )
    shard = path / SHARD
    shard.write_bytes(DAMAGES[request.param](shard.read_bytes()))
    return path


@pytest.mark.parametrize("selection", sorted(SELECTIONS))
def test_every_selection_of_a_damaged_shard_is_an_integrity_error(
    damaged: Path, selection: str
) -> None:
    volume = cellvol.open(damaged)
    with pytest.raises(IntegrityError) as caught:
        SELECTIONS[selection](volume)
    assert SHARD in str(caught.value), caught.value


def test_a_zero_step_is_still_the_caller_s_error(damaged: Path) -> None:
    with pytest.raises(ValueError, match="step") as caught:
        cellvol.open(damaged)[::0]
    assert not isinstance(caught.value, IntegrityError)


def test_an_index_out_of_range_is_still_an_index_error(damaged: Path) -> None:
    with pytest.raises(IndexError):
        cellvol.open(damaged)[[40]]


def test_selections_away_from_the_damage_still_read(damaged: Path) -> None:
    volume = cellvol.open(damaged)
    assert volume[16::2].shape == (8, 32, 32)
