"""Reading images with channels: names, one channel as a volume, numpy, dask and xarray."""

from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol.errors import InvalidInputError
from cellvol.write._downsample import downsample

LAYOUT = {"chunks": (8, 16, 16), "shards": (16, 32, 32), "n_levels": 3}


@pytest.fixture(scope="module")
def timelapse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(5).integers(0, 60000, (3, 2, 20, 40, 50), dtype=np.uint16)
    dest = tmp_path_factory.mktemp("channels") / "tc.ome.zarr"
    cellvol.write_pyramid(data, dest, (10, 10, 10), channel_names=["em", "lm"], **LAYOUT)
    return dest, data


def test_the_whole_image_slices_over_every_axis(timelapse: tuple[Path, np.ndarray]) -> None:
    path, data = timelapse
    volume = cellvol.open(path)
    assert volume.axes == ("t", "c", "z", "y", "x")
    assert volume.channels == ("em", "lm")
    assert volume.voxel_size == cellvol.VoxelSize(10, 10, 10)
    np.testing.assert_array_equal(volume[:], data)
    for key in [(1, 0, 5), (slice(None), 1, slice(2, 9), slice(None, None, -3)), (..., 7)]:
        np.testing.assert_array_equal(volume[key], data[key])
    assert volume.info(stored_bytes=False)["channels"] == ["em", "lm"]


@pytest.mark.parametrize(("which", "t"), [("lm", 2), (0, 0), (-1, 1)])
def test_a_channel_is_a_3d_volume_at_every_level(
    timelapse: tuple[Path, np.ndarray], which: int | str, t: int
) -> None:
    path, data = timelapse
    volume = cellvol.open(path)
    channel = volume.channel(which, t=t)
    index = ["em", "lm"].index(which) if isinstance(which, str) else which
    expected = data[t, index]
    assert channel.axes == ("z", "y", "x")
    assert channel.shape == expected.shape
    assert channel.voxel_size == volume.voxel_size
    for level, whole in zip(channel.levels, volume.levels, strict=True):
        if level.index:
            expected = downsample(expected, (2, 2, 2), "mean")
        assert level.shape == expected.shape
        assert level.chunks == whole.chunks[2:]
        np.testing.assert_array_equal(level[:], expected)
        np.testing.assert_array_equal(level[1:4, ::-1, 3], expected[1:4, ::-1, 3])
    np.testing.assert_array_equal(channel.plane("z", 4), data[t, index, 4])
    region = channel.region(z=(0, 55))  # centres at 0, 10, ... 50 nm
    np.testing.assert_array_equal(region.read(), data[t, index, :6])


def test_dask_and_xarray_views(timelapse: tuple[Path, np.ndarray]) -> None:
    path, data = timelapse
    volume = cellvol.open(path)
    both = volume.to_xarray()
    assert both.dims == ("t", "c", "z", "y", "x")
    assert list(both.coords["c"].values) == ["em", "lm"]
    np.testing.assert_array_equal(both.sel(c="lm").isel(t=1).values, data[1, 1])
    # Two channels in one dask graph stay two arrays (their blocks are named apart).
    em = volume.channel("em", t=1).to_dask()
    lm = volume.channel("lm", t=1).to_dask()
    np.testing.assert_array_equal((lm - em).compute(), data[1, 1] - data[1, 0])
    assert volume.channel("lm").to_xarray().dims == ("z", "y", "x")


def test_bad_channels_are_named_in_the_error(timelapse: tuple[Path, np.ndarray]) -> None:
    volume = cellvol.open(timelapse[0])
    with pytest.raises(
        InvalidInputError, match=r"no channel 'dapi'; its channels are \('em', 'lm'\)"
    ):
        volume.channel("dapi")
    with pytest.raises(InvalidInputError, match="channel 2 is out of range"):
        volume.channel(2)
    with pytest.raises(InvalidInputError, match="time point 3 is out of range"):
        volume.channel(0, t=3)


def test_a_3d_image_has_no_channels(tmp_path: Path) -> None:
    cellvol.write_pyramid(np.zeros((4, 8, 8), np.uint8), tmp_path / "v.zarr", 1.0)
    volume = cellvol.open(tmp_path / "v.zarr")
    assert volume.channels == ()
    assert "channels" not in volume.info(stored_bytes=False)
    with pytest.raises(InvalidInputError, match="has no channel axis"):
        volume.channel(0)
