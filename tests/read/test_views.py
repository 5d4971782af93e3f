"""The dask, xarray and Jupyter HTML views of a volume."""

import base64
import io

import numpy as np
import pytest


def test_dask_and_xarray_views(anisotropic_volume) -> None:
    xr = pytest.importorskip("xarray")
    volume, data = anisotropic_volume
    array = volume.to_dask()
    assert array.chunksize == volume.levels[0].shards
    np.testing.assert_array_equal(array[3:9].compute(), data[3:9])
    level1 = volume.to_xarray(level=1)
    assert isinstance(level1, xr.DataArray)
    assert level1.dims == ("z", "y", "x")
    assert level1.coords["x"].attrs["units"] == "nanometer"
    # Level 1 voxel i is centred on the mean of level-0 centres 2i and 2i+1: 4 i + 1 nm.
    assert float(level1.coords["x"][3]) == pytest.approx(13.0)
    picked = level1.sel(z=40.0, y=9.2, method="nearest")
    np.testing.assert_array_equal(picked.values, volume.level(1)[4, 2])


def test_html_repr_has_levels_and_a_thumbnail(anisotropic_volume) -> None:
    volume, _ = anisotropic_volume
    page = volume._repr_html_()
    assert "32 × 96 × 128" in page
    assert "10 × 8 × 8" in page
    assert 'src="data:image/png;base64,' in page


def _thumbnail_size(page: str) -> tuple[int, int]:
    from PIL import Image

    encoded = page.split('src="data:image/png;base64,')[1].split('"')[0]
    return Image.open(io.BytesIO(base64.b64decode(encoded))).size


def test_the_thumbnail_is_readable_and_in_physical_proportions(anisotropic_volume) -> None:
    volume, _ = anisotropic_volume
    # 32 x 96 x 128 voxels of 10 x 2 x 2 nm: 320 x 192 x 256 nm. The longest side (z, 320 nm)
    # is drawn 192 pixels long, so 0.6 pixel per nm: XY 154 wide, XZ 154, YZ 115, 8-pixel gaps.
    assert _thumbnail_size(volume._repr_html_()) == (154 + 154 + 115 + 16, 192)
    assert "middle planes of level 0" in volume._repr_html_()


def test_the_thumbnail_reads_the_finest_level_that_is_small(anisotropic_volume) -> None:
    from cellvol.read._views import THUMBNAIL_SOURCE_VOXELS, thumbnail_level

    volume, _ = anisotropic_volume
    assert thumbnail_level(volume.levels) is volume.levels[0]

    class Big:  # stands in for a level of a large volume: only its shape is read
        def __init__(self, shape: tuple[int, ...]) -> None:
            self.shape = shape

    levels = [Big((4096, 8192, 8192)), Big((2048, 4096, 4096)), Big((512, 512, 512))]
    assert thumbnail_level(levels) is levels[2]  # type: ignore[arg-type]
    assert max(levels[2].shape) == THUMBNAIL_SOURCE_VOXELS
    too_big = [Big((4096, 8192, 8192)), Big((2048, 4096, 4096))]
    assert thumbnail_level(too_big) is too_big[-1]  # type: ignore[arg-type]


def test_a_level_has_an_html_repr(anisotropic_volume) -> None:
    volume, _ = anisotropic_volume
    page = volume.level(1)._repr_html_()
    assert "cellvol.Level</strong> 1" in page
    assert " × ".join(map(str, volume.level(1).shape)) in page
    assert 'src="data:image/png;base64,' in page
