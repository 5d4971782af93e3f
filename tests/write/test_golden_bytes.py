"""The bytes of every shard a default-layout write stores, pinned across changes of the engine.

A write's speed work (how the input is read, how shards are gathered, compressed and stored)
must not change one stored byte: readers, resumes and published digests rely on them. The
digests below were taken from the engine before issue #21's changes; a change that moves them
changes the format and must say so.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol.synthetic import SyntheticVolume

# The SHA-256 of the sorted "key digest" lines of every shard object of the image.
GOLDEN = {
    "uint8": "c0962bc432de05831c659bbf66e7ac814aa5a6ae71fc7576f3d44ec5b67fa333",
    "uint16": "4fdf76b4dd208ef63c3ee110640b1ceab1f438c841085437dae34e190902da9d",
}
SHAPES = {"uint8": (150, 300, 560), "uint16": (70, 140, 530)}


def shards_digest(image: Path) -> str:
    lines = sorted(
        f"{path.relative_to(image)} {hashlib.sha256(path.read_bytes()).hexdigest()}"
        for path in image.rglob("*")
        if path.is_file() and "/c/" in f"/{path.relative_to(image)}"
    )
    assert lines, f"{image} holds no shard"
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@pytest.mark.parametrize("dtype", sorted(GOLDEN))
def test_default_layout_shards_keep_their_bytes(tmp_path: Path, dtype: str) -> None:
    shape = SHAPES[dtype]
    volume = SyntheticVolume(shape, dtype, seed=21)
    # From a memory-mapped file, the way large inputs arrive, so its reader is the one used.
    path = tmp_path / "input.npy"
    mapped = np.lib.format.open_memmap(path, mode="w+", dtype=volume.dtype, shape=shape)
    mapped[:] = volume[:, :, :]
    mapped.flush()
    del mapped
    image = tmp_path / "image.ome.zarr"
    cellvol.write_pyramid(np.load(path, mmap_mode="r"), image, 1.0, workers=2)
    assert shards_digest(image) == GOLDEN[dtype]
