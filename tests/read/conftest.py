"""Fixtures of the reader's tests.

``anisotropic_volume``
    ``(volume, data)``: a small 3-level pyramid of random uint8 voxels of 10 by 2 by 2 nm,
    written once per session.
"""

from __future__ import annotations

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
