"""Reads: planes in three orientations at two levels, subvolumes, cold and cached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cellvol
from cellvol.synthetic import random_planes


@pytest.mark.parametrize("level", [0, 2])
@pytest.mark.parametrize("axis", ["z", "y", "x"])
def test_plane(benchmark: Any, pyramid: Path, level: int, axis: str) -> None:
    chosen = cellvol.open(pyramid, cache=cellvol.ChunkCache(0)).level(level)
    keys = iter(random_planes(chosen.shape, "zyx".index(axis), 16, seed=1) * 1000)
    plane = benchmark(lambda: chosen[next(keys)])
    assert plane.ndim == 2


def test_neighbouring_planes_from_the_cache(benchmark: Any, pyramid: Path) -> None:
    level = cellvol.open(pyramid, cache=cellvol.ChunkCache()).level(0)
    planes = iter(range(10**9))
    benchmark(lambda: level[next(planes) % level.shape[0], 0:256, 0:256])


def test_subvolume(benchmark: Any, pyramid: Path) -> None:
    level = cellvol.open(pyramid, cache=cellvol.ChunkCache(0)).level(0)
    rng = np.random.default_rng(7)
    side = [min(128, n) for n in level.shape]

    def read() -> np.ndarray:
        start = [int(rng.integers(0, n - s + 1)) for n, s in zip(level.shape, side, strict=True)]
        return level[tuple(slice(a, a + s) for a, s in zip(start, side, strict=True))]

    block = benchmark(read)
    benchmark.extra_info["MB_per_read"] = round(block.nbytes / 1e6, 2)
