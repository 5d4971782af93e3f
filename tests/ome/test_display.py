"""The contrast window written at the end of every image write."""

from pathlib import Path

import numpy as np
import pytest
import zarr

import cellvol
from cellvol.ome._display import Window, contrast_window


def _window(data: np.ndarray, chunks=(8, 8, 8), sample_bytes: int = 2**30) -> Window:
    return contrast_window(
        data.__getitem__, data.shape, chunks, data.dtype, sample_bytes=sample_bytes
    )


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16"])
def test_small_integers_use_the_exact_histogram(dtype: str) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(0)
    data = rng.normal((int(info.min) + int(info.max)) / 2, 20, size=(20, 30, 40))
    data = np.clip(data, info.min, info.max).astype(dtype)
    window = _window(data)
    low, high = np.percentile(data, [0.1, 99.9], method="inverted_cdf")
    assert (window.start, window.end) == (low, high)
    assert (window.min, window.max) == (info.min, info.max)


def test_floats_ignore_nan_and_report_their_range() -> None:
    data = np.random.default_rng(1).normal(0, 1, size=(16, 16, 16)).astype(np.float32)
    data[0, 0, :5] = np.nan
    window = _window(data)
    finite = data[np.isfinite(data)]
    assert window.start == pytest.approx(np.percentile(finite, 0.1))
    assert window.end == pytest.approx(np.percentile(finite, 99.9))
    assert (window.min, window.max) == (pytest.approx(finite.min()), pytest.approx(finite.max()))


def test_a_sample_of_a_large_volume_is_close_to_the_whole() -> None:
    z, y, _ = np.mgrid[0:64, 0:128, 0:128]
    data = (100 + z + (y // 4) + np.random.default_rng(2).integers(0, 20, z.shape)).astype(np.uint8)
    whole = np.percentile(data, [0.1, 99.9])
    sampled = _window(data, chunks=(16, 16, 16), sample_bytes=32 * 16**3)  # 32 of 256 chunks
    assert abs(sampled.start - whole[0]) <= 3
    assert abs(sampled.end - whole[1]) <= 3


def test_a_constant_image_gets_a_window_one_level_wide() -> None:
    window = _window(np.full((4, 4, 4), 7, np.uint8))
    assert (window.start, window.end) == (7, 8)
    assert _window(np.zeros((4, 4, 4), np.float32)) == Window(0.0, 1.0, 0.0, 1.0)


def test_written_images_carry_the_window_and_labels_do_not(tmp_path: Path) -> None:
    data = np.random.default_rng(3).integers(300, 900, size=(16, 40, 40), dtype=np.uint16)
    cellvol.write_pyramid(data, tmp_path / "im.zarr", 2.0, name="tomo")
    volume = cellvol.open(tmp_path / "im.zarr")
    low, high = np.percentile(data, [0.1, 99.9], method="inverted_cdf")
    assert volume.window == Window(low, high, 0, 65535)
    omero = zarr.open_group(tmp_path / "im.zarr", mode="r").attrs["ome"]["omero"]
    assert omero["channels"][0]["label"] == "tomo"
    assert omero["rdefs"]["defaultZ"] == 8
    labels = cellvol.write_labels(tmp_path / "im.zarr", (data > 600).astype(np.uint8), "bright")
    assert labels.window is None
