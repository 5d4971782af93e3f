"""The tracked benchmark suite (pytest-benchmark): small sizes by default, ``--full`` for 1 GiB.

    .venv/bin/python -m pytest benchmarks/suite --benchmark-autosave        # record this commit
    .venv/bin/python -m pytest benchmarks/suite --benchmark-compare          # against the last
    .venv/bin/python -m pytest benchmarks/suite --full --benchmark-autosave  # 1 GiB inputs
    .venv/bin/python -m pytest benchmarks/suite --benchmark-disable          # smoke: once each

Inputs are synthetic (cellvol.synthetic.SyntheticVolume, fixed seeds), materialised once per
session into a temporary directory, so every run of a commit measures the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol.synthetic import SyntheticVolume

SMALL = (64, 256, 512)  # 8 Mi voxels
FULL = (512, 1024, 2048)  # 1 Gi voxels, the peer comparison's size


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true", help="1 Gi-voxel inputs instead of 8 Mi")


@pytest.fixture(scope="session")
def shape(request: pytest.FixtureRequest) -> tuple[int, int, int]:
    return FULL if request.config.getoption("--full") else SMALL


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench")


def materialise(path: Path, volume: SyntheticVolume) -> np.ndarray:
    """Write a synthetic volume to a raw .npy once (slab by slab) and memory-map it."""
    if not path.exists():
        out = np.lib.format.open_memmap(path, mode="w+", dtype=volume.dtype, shape=volume.shape)
        for z in range(0, volume.shape[0], 32):
            out[z : z + 32] = volume[z : z + 32]
        out.flush()
        del out
    return np.load(path, mmap_mode="r")


@pytest.fixture(scope="session")
def inputs(workdir: Path, shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """uint8, uint16 and float32 tomograms and a uint32 label volume of ``shape``."""
    return {
        dtype: materialise(workdir / f"{dtype}.npy", SyntheticVolume(shape, dtype, seed=0))
        for dtype in ("uint8", "uint16", "float32")
    } | {"labels": materialise(workdir / "labels.npy", SyntheticVolume(shape, kind="labels"))}


@pytest.fixture(scope="session")
def pyramid(workdir: Path, inputs: dict[str, np.ndarray]) -> Path:
    """A uint8 pyramid in cellvol's default layout, for the read benchmarks."""
    path = workdir / "read.ome.zarr"
    cellvol.write_pyramid(inputs["uint8"], path, 4.0, n_levels=3, name="read")
    return path
