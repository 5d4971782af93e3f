"""The synthetic inputs the comparisons read: raw ``.npy`` files every tool can memory-map."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def write_synthetic_npy(path: Path, shape: tuple[int, int, int], dtype: str = "uint8") -> Path:
    """Write the seed-0 synthetic tomogram (labels for uint32) to ``path`` once; reuse it after.

    Written slab by slab on every core into ``*.partial.npy`` and renamed when complete, so an
    interrupted run never leaves a half-written input that a later run would trust.
    """
    if path.exists():
        return path
    from cellvol.synthetic import SyntheticVolume

    if dtype == "uint32":
        volume = SyntheticVolume(shape, seed=0, kind="labels")
    else:
        volume = SyntheticVolume(shape, dtype, seed=0)
    partial = path.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=volume.dtype, shape=shape)

    def slab(z: int) -> None:
        out[z : z + 32] = volume[z : z + 32]

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(slab, range(0, shape[0], 32)))
    out.flush()
    partial.rename(path)
    return path
