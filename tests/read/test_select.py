"""Choosing planes, levels and regions in physical units."""

import numpy as np
import pytest

from cellvol.errors import InvalidInputError


def test_planes_in_three_orientations(anisotropic_volume) -> None:
    volume, data = anisotropic_volume
    np.testing.assert_array_equal(volume.plane_index("z", 5), data[5])
    np.testing.assert_array_equal(volume.plane_index("y", 40), data[:, 40])
    np.testing.assert_array_equal(volume.plane_index("x", -1), data[:, :, -1])
    assert volume.plane_index("z", 0, level=2).shape == volume.level(2).shape[1:]
    with pytest.raises(IndexError, match="plane z=32 is outside level 0"):
        volume.plane_index("z", 32)
    with pytest.raises(InvalidInputError, match="no axis 't'"):
        volume.plane_index("t", 0)


def test_level_for_resolution(anisotropic_volume) -> None:
    volume, _ = anisotropic_volume
    voxels = [level.voxel_size.zyx for level in volume.levels]
    assert voxels == [(10, 2, 2), (10, 4, 4), (10, 8, 8)]
    assert volume.level_for(10).index == 2  # every axis at most 10 nm
    # z is 10 nm at every level and cannot be finer: it must not hold y and x at level 0.
    assert volume.level_for(9).index == 2
    assert volume.level_for(4).index == 1
    assert volume.level_for(5.5).index == 1
    assert volume.level_for(2).index == 0
    assert volume.level_for(1000).index == 2


def test_level_for_a_resolution_per_axis(anisotropic_volume) -> None:
    volume, _ = anisotropic_volume
    assert volume.level_for({"y": 4, "x": 4}).index == 1
    assert volume.level_for({"x": 8}).index == 2
    assert volume.level_for({"z": 10, "y": 2, "x": 8}).index == 0
    assert volume.level_for({"z": 10}).index == 2  # y and x are free
    with pytest.raises(InvalidInputError, match=r"z=5 is finer than level 0.*along z is 10"):
        volume.level_for({"z": 5, "y": 8, "x": 8})
    with pytest.raises(InvalidInputError, match="names axis 't'"):
        volume.level_for({"t": 1})
    with pytest.raises(InvalidInputError, match="at least one axis"):
        volume.level_for({})


@pytest.mark.parametrize("resolution", [1.9, 0, -4, float("nan"), {"y": 0}])
def test_level_for_refuses_what_level_0_cannot_give(anisotropic_volume, resolution) -> None:
    volume, _ = anisotropic_volume
    with pytest.raises(InvalidInputError, match=r"finer than level 0|positive number"):
        volume.level_for(resolution)


def test_level_for_serial_sections(sstem_volume) -> None:
    """Issue #25: 50 x 4 x 4 nm sections; 8 nm used to give level 0, full resolution."""
    voxels = [level.voxel_size.zyx for level in sstem_volume.levels]
    assert voxels[:2] == [(50, 4, 4), (50, 8, 8)]
    assert sstem_volume.level_for(8).index == 1
    assert sstem_volume.level_for({"y": 8, "x": 8}).index == 1
    assert sstem_volume.level_for(16).index == min(2, len(voxels) - 1)
    assert sstem_volume.level_for(4).index == 0
    with pytest.raises(InvalidInputError, match="finer than level 0, whose finest voxel is 4"):
        sstem_volume.level_for(2)
    assert sstem_volume.region(y=(0, 400), resolution=8).level.index == 1
    assert sstem_volume.plane_at(z=100.0, resolution=8).shape == sstem_volume.level(1).shape[1:]


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


def test_level_choices_exclude_each_other(anisotropic_volume) -> None:
    volume, _ = anisotropic_volume
    assert volume.region(z=(20, 50), resolution=8).level.index == 2
    with pytest.raises(InvalidInputError, match="one of level, resolution and max_bytes"):
        volume.region(level=1, max_bytes=2**20)
    with pytest.raises(InvalidInputError, match="level or resolution, not both"):
        volume.region(level=1, resolution=8)


def test_plane_index_and_plane_at_agree(anisotropic_volume) -> None:
    volume, data = anisotropic_volume
    np.testing.assert_array_equal(volume.plane_index("y", 40), data[:, 40])
    np.testing.assert_array_equal(
        volume.plane("y", 40, level=1), volume.plane_index("y", 40, level=1)
    )
    # Level 0 voxels are centred at 10 i nm in z and 2 i nm in y and x.
    np.testing.assert_array_equal(volume.plane_at(z=50.0), data[5])
    np.testing.assert_array_equal(volume.plane_at(z=54.9), data[5])  # within voxel 5
    np.testing.assert_array_equal(volume.plane_at(y=80.0), data[:, 40])
    level = volume.level(1)  # 10 x 4 x 4 nm, centres at 1 + 4 i nm in y and x
    assert level.translation[1] == 1.0
    np.testing.assert_array_equal(
        volume.plane_at(x=41.0, resolution=4), volume.plane_index("x", 10, level=1)
    )
    np.testing.assert_array_equal(
        volume.plane_at(x=41.0, level=1), volume.plane_at(x=41.0, resolution=4)
    )
    with pytest.raises(InvalidInputError, match=r"x=500\.0 lies outside the image"):
        volume.plane_at(x=500.0)
    with pytest.raises(InvalidInputError, match="exactly one of z, y, x"):
        volume.plane_at(z=1.0, y=2.0)
    with pytest.raises(InvalidInputError, match="exactly one of z, y, x"):
        volume.plane_at()
