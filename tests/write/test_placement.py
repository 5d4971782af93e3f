"""write_pyramid refuses voxel sizes and origins no instrument produces (#22)."""

from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol.errors import InvalidInputError
from cellvol.units import VoxelSize, check_placement

SMALL = np.zeros((4, 8, 8), np.uint8)


@pytest.mark.parametrize("voxel", [1e-41, 1e36, (1.0, 1.0, 2e9), float("nan"), float("inf")])
def test_write_refuses_an_unusable_voxel_size(tmp_path: Path, voxel: object) -> None:
    with pytest.raises(InvalidInputError, match="voxel size"):
        cellvol.write_pyramid(SMALL, tmp_path / "x.zarr", voxel)  # type: ignore[arg-type]
    assert not (tmp_path / "x.zarr").exists() or not any((tmp_path / "x.zarr").iterdir())


@pytest.mark.parametrize("origin", [(float("nan"), 0, 0), (0, float("inf"), 0), (0, 0, 1e13)])
def test_write_refuses_an_unusable_origin(tmp_path: Path, origin: tuple[float, ...]) -> None:
    with pytest.raises(InvalidInputError, match="origin"):
        cellvol.write_pyramid(SMALL, tmp_path / "x.zarr", 1.0, origin=origin)


def test_the_range_is_in_nanometres_whatever_the_unit() -> None:
    check_placement(VoxelSize(1, 1, 1, "meter"))  # the largest accepted
    check_placement(VoxelSize(1, 1, 1, "picometer"), (1e3, 0, 0))
    with pytest.raises(InvalidInputError, match="2 meter"):
        check_placement(VoxelSize(2, 1, 1, "meter"))
    with pytest.raises(InvalidInputError, match="origin along y"):
        check_placement(VoxelSize(1, 1, 1, "micrometer"), (0, -2e9, 0))
