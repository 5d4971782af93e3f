"""Choosing a reader from an input's name; the .npy and zarr / OME-Zarr readers."""

from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol.errors import InvalidInputError, StoreNotFoundError
from cellvol.formats._open import open_source


def test_npy_is_memory_mapped_without_voxel_size(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    source = open_source(tmp_path / "a.npy")
    assert isinstance(source.array, np.memmap)
    assert source.voxel_size is None
    assert "a.npy: .npy array (2, 3, 4) int16" in source.description


def test_ome_zarr_gives_level_0_and_its_voxel_size(tmp_path: Path) -> None:
    data = np.ones((8, 8, 8), np.uint8)
    cellvol.write_pyramid(data, tmp_path / "i.ome.zarr", (3, 2, 2))
    source = open_source(tmp_path / "i.ome.zarr")
    assert source.voxel_size == cellvol.VoxelSize(3, 2, 2)
    np.testing.assert_array_equal(source.array[:], data)


def test_unknown_format_names_the_path_and_the_formats(tmp_path: Path) -> None:
    (tmp_path / "scan.xyz").write_bytes(b"?")
    with pytest.raises(InvalidInputError, match=r"scan\.xyz: cannot tell its format.*MRC.*TIFF"):
        open_source(tmp_path / "scan.xyz")


def test_missing_input_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match=r"tomo\.mrc: no such file"):
        open_source(tmp_path / "tomo.mrc")


def test_missing_and_broken_npy(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match=r"nope\.npy: no such file"):
        open_source(tmp_path / "nope.npy")
    (tmp_path / "bad.npy").write_bytes(b"not numpy at all")
    with pytest.raises(InvalidInputError, match=r"bad\.npy: not a readable \.npy array"):
        open_source(tmp_path / "bad.npy")
