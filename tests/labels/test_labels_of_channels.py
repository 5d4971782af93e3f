"""Labels of an image with channels: 3-D, on the image's spatial grid."""

from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol.errors import InvalidInputError

DATA = np.random.default_rng(4).integers(0, 1000, (2, 20, 40, 50), dtype=np.uint16)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    dest = tmp_path / "c.ome.zarr"
    layout = {"chunks": (8, 16, 16), "shards": (16, 32, 32), "n_levels": 2}
    cellvol.write_pyramid(DATA, dest, (40, 10, 10), channel_names=["em", "lm"], **layout)
    return dest


def test_labels_take_the_spatial_grid_of_a_channel(image: Path) -> None:
    cells = (DATA[1] > 600).astype(np.uint32)
    labels = cellvol.write_labels(image, cells, "cells")
    volume = cellvol.open(image)
    channel = volume.channel("lm")
    assert labels.axes == ("z", "y", "x")
    for level, grid in zip(labels.levels, channel.levels, strict=True):
        assert level.shape == grid.shape
        assert level.chunks == grid.chunks
        assert level.scale == grid.scale
    np.testing.assert_array_equal(volume.labels["cells"][:], cells)
    assert cellvol.validate(image, strict=True).valid


@pytest.mark.parametrize("shape", [(2, 20, 40, 50), (20, 40, 51)])
def test_labels_of_another_shape_are_refused(image: Path, shape: tuple[int, ...]) -> None:
    message = r"whose full-resolution shape is \(20, 40, 50\) \(z, y, x\) in each of its 2 chan"
    with pytest.raises(InvalidInputError, match=message):
        cellvol.write_labels(image, np.zeros(shape, np.uint32), "bad")
    assert "bad" not in cellvol.open(image).labels
