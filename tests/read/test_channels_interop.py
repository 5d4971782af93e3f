"""Images with channels between cellvol and the other OME-Zarr libraries, both ways."""

from pathlib import Path

import numpy as np
import pytest

import cellvol

DATA = np.random.default_rng(12).integers(0, 4000, (2, 2, 16, 32, 40), dtype=np.uint16)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("interop") / "tc.ome.zarr"
    cellvol.write_pyramid(DATA, dest, (20, 5, 5), channel_names=["em", "lm"], n_levels=2)
    return dest


def test_ngff_zarr_reads_cellvol_channels(written: Path) -> None:
    nz = pytest.importorskip("ngff_zarr")
    multiscales = nz.from_ngff_zarr(str(written))
    image = multiscales.images[0]
    assert tuple(image.dims) == ("t", "c", "z", "y", "x")
    assert image.scale == {"t": 1.0, "c": 1.0, "z": 20.0, "y": 5.0, "x": 5.0}
    assert [axis.type for axis in multiscales.metadata.axes][:2] == ["time", "channel"]
    assert [c.label for c in multiscales.metadata.omero.channels] == ["em", "lm"]
    np.testing.assert_array_equal(np.asarray(image.data), DATA)


def test_ome_zarr_py_reads_cellvol_channels(written: Path) -> None:
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = next(iter(Reader(parse_url(str(written)))()))
    assert node.metadata["channel_names"] == ["em", "lm"]
    np.testing.assert_array_equal(np.asarray(node.data[0]), DATA)


def test_cellvol_reads_channels_written_by_ngff_zarr(tmp_path: Path) -> None:
    nz = pytest.importorskip("ngff_zarr")
    data = DATA[0]
    image = nz.to_ngff_image(data, dims=["c", "z", "y", "x"], scale={"z": 2.0, "y": 1.0, "x": 1.0})
    nz.to_ngff_zarr(str(tmp_path / "nz.zarr"), nz.to_multiscales(image, scale_factors=[2]))
    volume = cellvol.open(tmp_path / "nz.zarr")
    assert volume.axes == ("c", "z", "y", "x")
    assert volume.channels == ("0", "1")  # no omero names: the indices
    np.testing.assert_array_equal(volume.channel(1)[:], data[1])
    np.testing.assert_array_equal(volume.channel(0).level(1)[:], np.asarray(volume.level(1)[0]))
