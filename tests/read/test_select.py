"""Choosing planes, levels and regions in physical units."""

import numpy as np
import pytest

from cellvol.errors import InvalidInputError


def test_planes_in_three_orientations(anisotropic_volume) -> None:
    volume, data = anisotropic_volume
    np.testing.assert_array_equal(volume.plane("z", 5), data[5])
    np.testing.assert_array_equal(volume.plane("y", 40), data[:, 40])
    np.testing.assert_array_equal(volume.plane("x", -1), data[:, :, -1])
    assert volume.plane("z", 0, level=2).shape == volume.level(2).shape[1:]
    with pytest.raises(IndexError, match="plane z=32 is outside level 0"):
        volume.plane("z", 32)
    with pytest.raises(InvalidInputError, match="no axis 't'"):
        volume.plane("t", 0)


def test_level_for_resolution(anisotropic_volume) -> None:
    volume, _ = anisotropic_volume
    voxels = [level.voxel_size.zyx for level in volume.levels]
    assert voxels == [(10, 2, 2), (10, 4, 4), (10, 8, 8)]
    assert volume.level_for(10).index == 2  # every axis at most 10 nm
    assert volume.level_for(9).index == 0  # z is 10 nm at every level: the best there is
    assert volume.level_for(1000).index == 2


def test_region_in_nanometres(anisotropic_volume) -> None:
    volume, data = anisotropic_volume
    region = volume.region(z=(20, 50), x=(10, 30.5))
    assert region.slices == (slice(2, 6), slice(0, 96), slice(5, 16))  # centres at 10 i nm, 2 i nm
    np.testing.assert_array_equal(region.read(), data[2:6, :, 5:16])
    assert region.origin == (20.0, 0.0, 10.0)
    with pytest.raises(InvalidInputError, match="holds no voxel centre"):
        volume.region(z=(1, 9))


def test_byte_budget_picks_the_finest_level_that_fits(anisotropic_volume) -> None:
    volume, _ = anisotropic_volume
    whole = volume.region(max_bytes=32 * 96 * 128)
    assert whole.level.index == 0
    smaller = volume.region(max_bytes=32 * 96 * 128 // 4)
    assert smaller.level.index == 1
    assert smaller.nbytes <= 32 * 96 * 128 // 4
    with pytest.raises(InvalidInputError, match="even at the coarsest level"):
        volume.region(max_bytes=10)
