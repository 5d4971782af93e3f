"""The dask, xarray and Jupyter HTML views of a volume."""

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
