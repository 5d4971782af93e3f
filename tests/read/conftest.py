"""Fixtures of the reader's tests.

``anisotropic_volume``
    ``(volume, data)``: a small 3-level pyramid of random uint8 voxels of 10 by 2 by 2 nm,
    written once per session.
``sstem_volume``
    The real serial-section TEM stack (30 x 512 x 512, 50 x 4 x 4 nm) as cellvol writes it;
    skipped when the shared test data is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest


@pytest.fixture(scope="session")
def anisotropic_volume(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, np.ndarray]:
    """A (32, 96, 128) uint8 pyramid, 10 nm sections of 2 nm pixels, and its data."""
    import cellvol

    data = np.random.default_rng(12).integers(0, 255, (32, 96, 128), dtype=np.uint8)
    path = tmp_path_factory.mktemp("anisotropic") / "v.ome.zarr"
    cellvol.write_pyramid(data, path, (10, 2, 2), chunks=(16, 32, 32), n_levels=3)
    return cellvol.open(path), data


@pytest.fixture(scope="session")
def sstem_volume(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The ssTEM stack converted once per session (its pyramid as ``cellvol convert`` plans it)."""
    import cellvol

    path = tmp_path_factory.mktemp("sstem") / "sstem.ome.zarr"
    cellvol.convert(shared_data / "sstem" / "image", path, voxel_size=(50, 4, 4))
    return cellvol.open(path)
