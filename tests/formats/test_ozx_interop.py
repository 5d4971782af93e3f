"""Zipped OME-Zarr (.ozx) between cellvol and ngff-zarr, both ways, locally and over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cellvol

ngff_zarr = pytest.importorskip("ngff_zarr", reason="ngff-zarr is not installed")

SCALE = {"z": 2.0, "y": 0.5, "x": 0.5}


@pytest.fixture(scope="module")
def cellvol_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An image cellvol wrote, and its .ozx."""
    root = tmp_path_factory.mktemp("interop") / "cv.ome.zarr"
    data = np.random.default_rng(5).integers(0, 60000, (24, 40, 36), dtype=np.uint16)
    cellvol.write_pyramid(
        data,
        root,
        (SCALE["z"], SCALE["y"], SCALE["x"]),
        chunks=(8, 16, 16),
        shards=(16, 32, 32),
        n_levels=3,
    )
    return root, cellvol.pack(root, root.parent / "cv.ozx")


@pytest.fixture(scope="module")
def ngff_archive(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Any, np.ndarray[Any, Any]]:
    """A .ozx ngff-zarr wrote with its own writer, its multiscales, and the data."""
    out = tmp_path_factory.mktemp("interop-ngff") / "nz.ozx"
    data = np.random.default_rng(6).random((20, 30, 44)).astype(np.float32)
    image = ngff_zarr.to_ngff_image(data, dims=["z", "y", "x"], scale=SCALE)
    multiscales = ngff_zarr.to_multiscales(image, scale_factors=[2], chunks=8)
    ngff_zarr.to_ngff_zarr(str(out), multiscales, version="0.5")
    return out, multiscales, data


def test_ngff_zarr_reads_cellvols_archive(cellvol_archive: tuple[Path, Path]) -> None:
    root, packed = cellvol_archive
    expected = cellvol.open(root)
    multiscales = ngff_zarr.from_ngff_zarr(str(packed))
    assert len(multiscales.images) == len(expected.levels) == 3
    for image, level in zip(multiscales.images, expected.levels, strict=True):
        np.testing.assert_array_equal(np.asarray(image.data), level[:])
        assert tuple(image.dims) == ("z", "y", "x")
        assert tuple(image.scale[axis] for axis in "zyx") == pytest.approx(level.scale)
    assert tuple(multiscales.images[0].scale[a] for a in "zyx") == (2.0, 0.5, 0.5)


def test_cellvol_reads_ngff_zarrs_archive(
    ngff_archive: tuple[Path, Any, np.ndarray[Any, Any]],
) -> None:
    path, multiscales, data = ngff_archive
    volume = cellvol.open(path)
    assert len(volume.levels) == len(multiscales.images) == 2
    np.testing.assert_array_equal(volume.levels[0][:], data)
    for level, image in zip(volume.levels, multiscales.images, strict=True):
        np.testing.assert_array_equal(level[:], np.asarray(image.data))
        assert level.scale == pytest.approx(tuple(image.scale[a] for a in "zyx"))


def test_verify_passes_ngff_zarrs_archive_and_says_what_it_cannot_check(
    ngff_archive: tuple[Path, Any, np.ndarray[Any, Any]],
) -> None:
    path, _, _ = ngff_archive
    report = cellvol.verify(path, zarr_checksum=True)
    assert report.problems == [], report.summary()
    assert report.images == [""]
    assert report.shards > 0
    # No write manifest (another tool wrote it), and ngff-zarr's chunks carry no CRC32C.
    (manifest_gap,) = [gap for gap in report.unchecked if "no write manifest" in gap]
    assert "checksums alone" in manifest_gap
    chunk_gaps = [gap for gap in report.unchecked if "chunks carry no checksum" in gap]
    assert len(chunk_gaps) == 2  # one per level
    assert len(report.unchecked) == 3
    assert report.zarr_checksum is not None


def test_cellvols_archive_over_http_reads_back_equal(
    cellvol_archive: tuple[Path, Path], http_server: Callable[[Path], str]
) -> None:
    root, packed = cellvol_archive
    url = f"{http_server(packed.parent)}/{packed.name}"
    remote, local = cellvol.open(url), cellvol.open(root)
    assert remote.attributes == local.attributes
    for got, expected in zip(remote.levels, local.levels, strict=True):
        np.testing.assert_array_equal(got[:], expected[:])
        assert got.scale == expected.scale


def test_ngff_zarrs_archive_over_http_reads_and_verifies(
    ngff_archive: tuple[Path, Any, np.ndarray[Any, Any]], http_server: Callable[[Path], str]
) -> None:
    path, _, data = ngff_archive
    url = f"{http_server(path.parent)}/{path.name}"
    np.testing.assert_array_equal(cellvol.open(url).levels[0][:], data)
    local = cellvol.verify(path, zarr_checksum=True)
    remote = cellvol.verify(url, zarr_checksum=True)
    assert remote.problems == [], remote.summary()
    assert remote.unchecked == local.unchecked
    assert remote.zarr_checksum == local.zarr_checksum
