"""HDF5 input: choosing the dataset, voxel-size attributes, and reading in another process."""

import concurrent.futures
import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from cellvol.errors import InvalidInputError  # noqa: E402
from cellvol.formats._open import open_source  # noqa: E402
from cellvol.units import VoxelSize  # noqa: E402

DATA = np.random.default_rng(5).random((6, 40, 50), dtype=np.float32)


@pytest.fixture
def h5file(tmp_path: Path) -> Path:
    path = tmp_path / "seg.h5"
    with h5py.File(path, "w") as f:
        volume = f.create_dataset("volumes/raw", data=DATA, chunks=(2, 16, 16), compression="gzip")
        volume.attrs["resolution"] = [40.0, 4.0, 4.0]
        f.create_dataset("volumes/mask", data=DATA[0] > 0.5)
    return path


def test_only_3d_dataset_is_found_and_resolution_read(h5file: Path) -> None:
    source = open_source(h5file)
    assert source.details["dataset"] == "/volumes/raw"
    assert source.voxel_size == VoxelSize(40, 4, 4, "nm")
    np.testing.assert_array_equal(source.array[1:5, 3:33, 7:50], DATA[1:5, 3:33, 7:50])
    assert open_source(f"{h5file}:/volumes/raw").details["dataset"] == "/volumes/raw"
    assert open_source(h5file, dataset="volumes/raw").array.shape == DATA.shape


def test_element_size_um_attribute(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "i.h5", "w") as f:
        f.create_dataset("data", data=DATA).attrs["element_size_um"] = [0.05, 0.004, 0.004]
    assert open_source(tmp_path / "i.h5").voxel_size == VoxelSize(50, 4, 4, "nm")


def test_bad_dataset_choices_are_explained(h5file: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"'/volumes' is a group.*/volumes/mask"):
        open_source(f"{h5file}:/volumes")
    with pytest.raises(InvalidInputError, match=r"has shape \(40, 50\); expected 3 axes"):
        open_source(h5file, dataset="/volumes/mask")
    with pytest.raises(InvalidInputError, match=r"has no dataset '/nope'.*/volumes/raw"):
        open_source(h5file, dataset="/nope")
    with h5py.File(h5file, "a") as f:
        f.create_dataset("copy", data=DATA)
    with pytest.raises(InvalidInputError, match=r"holds 2 3-D datasets; name one"):
        open_source(h5file)


def _read_region(array) -> np.ndarray:
    return array[2:4, 10:20, 0:50]


def test_source_reopens_in_another_process(h5file: Path) -> None:
    array = open_source(h5file).array
    _read_region(array)  # the handle is open here, and must not travel
    assert len(pickle.dumps(array)) < 1000
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        result = pool.submit(_read_region, array).result(timeout=120)
    np.testing.assert_array_equal(result, DATA[2:4, 10:20, 0:50])


def test_float32_attributes_give_the_decimal_meant(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["raw"] = DATA
        f["raw"].attrs["element_size_um"] = np.array([0.0834, 0.004, 0.004], np.float32)
    source = open_source(tmp_path / "f.h5")
    assert source.voxel_size == VoxelSize(83.4, 4, 4, "nm")
    assert source.details["attributes"]["element_size_um"] == [0.0834, 0.004, 0.004]
