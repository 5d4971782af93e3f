"""Opening OME-Zarr written by cellvol and by others; slicing; errors."""

import concurrent.futures
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from support import write_ome_zarr_04

import cellvol
from cellvol._codec._keys import touched_ranges
from cellvol.errors import (
    IntegrityError,
    LevelError,
    MetadataError,
    NotOMEZarrError,
    StoreNotFoundError,
)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("read") / "vol.ome.zarr"
    data = np.random.default_rng(5).integers(0, 60000, size=(40, 50, 60), dtype=np.uint16)
    cellvol.write_pyramid(data, path, (4, 2, 2), unit="nm", n_levels=3, chunks=(16, 16, 16))
    return path, data


def test_levels_describe_themselves(written) -> None:
    path, data = written
    vol = cellvol.open(path)
    assert vol.ome_version == "0.5"
    assert vol.axes == ("z", "y", "x")
    assert vol.shape == data.shape
    assert vol.dtype == np.uint16
    assert len(vol) == 3
    assert vol.voxel_size == cellvol.VoxelSize(4, 2, 2)
    assert vol.level(1).voxel_size == cellvol.VoxelSize(4, 4, 4)
    assert vol.level(-1) is vol.levels[2]
    assert vol.level(0).chunks == (16, 16, 16)
    assert vol.level(0).shards is not None
    assert "Volume" in repr(vol)
    assert "Level 0" in repr(vol.level(0))


def test_numpy_style_slicing(written) -> None:
    path, data = written
    vol = cellvol.open(path)
    np.testing.assert_array_equal(vol[3], data[3])
    np.testing.assert_array_equal(vol[:, 7], data[:, 7])
    np.testing.assert_array_equal(vol[..., -1], data[..., -1])
    np.testing.assert_array_equal(vol[5:9, 10:40:3, 1], data[5:9, 10:40:3, 1])
    assert isinstance(vol[0, 0, 0], np.ndarray)


def test_level_out_of_range_names_the_range(written) -> None:
    vol = cellvol.open(written[0])
    with pytest.raises(LevelError, match=r"level 3 is out of range: .* has 3 level\(s\), 0 to 2"):
        vol.level(3)
    with pytest.raises(IndexError):
        vol.level(-4)


def test_info_is_json_serialisable(written) -> None:
    info = cellvol.open(written[0]).info()
    json.dumps(info)
    assert info["levels"][0]["nbytes_stored"] > 0
    assert info["levels"][1]["voxel_size"] == [4.0, 4.0, 4.0]


def test_every_level_opens_in_tensorstore_and_zarr_python(written) -> None:
    ts = pytest.importorskip("tensorstore")
    path, _ = written
    vol = cellvol.open(path)
    for level in vol.levels:
        store = ts.open(
            {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / level.path)}}
        ).result()
        np.testing.assert_array_equal(store.read().result(), level[:])
        np.testing.assert_array_equal(zarr.open_array(path / level.path, mode="r")[:], level[:])


def test_reads_ome_zarr_04_on_zarr_v2(tmp_path: Path) -> None:
    data = np.arange(16 * 16 * 16, dtype=np.int16).reshape(16, 16, 16)
    write_ome_zarr_04(tmp_path / "v04.zarr", data, [0.5, 0.25, 0.25])
    vol = cellvol.open(tmp_path / "v04.zarr")
    assert vol.ome_version == "0.4"
    np.testing.assert_array_equal(vol[:], data)
    # The multiscale-wide scale multiplies each level's scale.
    assert vol.voxel_size == cellvol.VoxelSize(0.5, 0.5, 0.5, "micrometer")
    assert vol.level(1).translation == (0.25, 0.25, 0.25)
    assert vol.level(1).shape == (8, 8, 8)


def test_reads_bioformats2raw_layout(tmp_path: Path) -> None:
    root = zarr.open_group(tmp_path / "bf.zarr", mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    data = np.ones((8, 8, 8), np.uint8)
    write_ome_zarr_04(tmp_path / "bf.zarr" / "0", data, [1.0, 1.0, 1.0])
    vol = cellvol.open(tmp_path / "bf.zarr")
    assert vol.url.endswith("/0")
    np.testing.assert_array_equal(vol[:], data)


def test_reads_a_bare_array_as_one_level(tmp_path: Path) -> None:
    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    zarr.create_array(tmp_path / "bare.zarr", data=data, dimension_names=("z", "y", "x"))
    vol = cellvol.open(tmp_path / "bare.zarr")
    assert vol.ome_version is None
    assert len(vol) == 1
    np.testing.assert_array_equal(vol[:], data)
    assert vol.voxel_size == cellvol.VoxelSize(1, 1, 1)


def test_a_plain_directory_is_not_ome_zarr(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    with pytest.raises(NotOMEZarrError, match=r"plain holds no zarr group or array"):
        cellvol.open(tmp_path / "plain")


def test_a_group_without_multiscales_is_not_ome_zarr(tmp_path: Path) -> None:
    zarr.open_group(tmp_path / "g.zarr", mode="w")
    with pytest.raises(NotOMEZarrError, match="without OME-Zarr 'multiscales'"):
        cellvol.open(tmp_path / "g.zarr")


def test_missing_path_is_store_not_found(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="nope"):
        cellvol.open(tmp_path / "nope.zarr")


def test_dataset_pointing_nowhere(tmp_path: Path) -> None:
    data = np.zeros((8, 8, 8), np.uint8)
    write_ome_zarr_04(tmp_path / "v.zarr", data, [1.0, 1.0, 1.0])
    group = zarr.open_group(tmp_path / "v.zarr", mode="r+")
    meta = group.attrs["multiscales"]
    meta[0]["datasets"][1]["path"] = "missing"
    group.attrs["multiscales"] = meta
    with pytest.raises(MetadataError, match="level 1 names array 'missing', which does not exist"):
        cellvol.open(tmp_path / "v.zarr")


def test_scale_of_the_wrong_length(tmp_path: Path) -> None:
    write_ome_zarr_04(tmp_path / "w.zarr", np.zeros((8, 8, 8), np.uint8), [1.0, 1.0])
    with pytest.raises(
        MetadataError, match=r"scale \[1\.0, 1\.0\] must have one number per axis \(3\)"
    ):
        cellvol.open(tmp_path / "w.zarr")


# -- integrity: what the write's manifest lists must be there ---------------------------------


def _small_pyramid(path: Path) -> np.ndarray:
    data = np.random.default_rng(11).integers(1, 255, (32, 64, 64), dtype=np.uint8)
    cellvol.write_pyramid(data, path, 1.0, chunks=(16, 16, 16), shards=(16, 32, 32), n_levels=2)
    return data


def test_a_missing_shard_raises_instead_of_reading_zeros(tmp_path: Path) -> None:
    data = _small_pyramid(tmp_path / "v.zarr")
    (tmp_path / "v.zarr" / "0" / "c" / "1" / "0" / "1").unlink()  # z 16:32, y 0:32, x 32:64
    volume = cellvol.open(tmp_path / "v.zarr")
    np.testing.assert_array_equal(volume[0:16], data[0:16])  # other shards still read
    np.testing.assert_array_equal(volume[16:32, 32:, :], data[16:32, 32:, :])
    for selection in (np.s_[20], np.s_[16:20, 0:10, 40:50], np.s_[..., 33], np.s_[::-1, 5]):
        with pytest.raises(IntegrityError, match=r"shard 0/c/1/0/1 is listed in the write"):
            volume[selection]
    assert volume.level(1)[:].shape == (16, 32, 32)  # the coarser level is intact


def test_a_cellvol_image_that_lost_its_manifest_is_refused(tmp_path: Path) -> None:
    data = _small_pyramid(tmp_path / "v.zarr")
    (tmp_path / "v.zarr" / "_cellvol" / "manifest.json").unlink()
    (tmp_path / "v.zarr" / "0" / "c" / "1" / "0" / "1").unlink()
    with pytest.raises(IntegrityError, match=r"manifest _cellvol/manifest.json is missing"):
        cellvol.open(tmp_path / "v.zarr")
    rescued = cellvol.open(tmp_path / "v.zarr", salvage=True)
    assert rescued[20, 0, 40] == 0  # what salvage warns of: no object, fill value
    assert rescued[0, 0, 0] == data[0, 0, 0]


def test_foreign_images_without_a_manifest_read_missing_chunks_as_fill(tmp_path: Path) -> None:
    data = _small_pyramid(tmp_path / "v.zarr")
    shutil.rmtree(tmp_path / "v.zarr" / "_cellvol")
    metadata = json.loads((tmp_path / "v.zarr" / "zarr.json").read_text())
    del metadata["attributes"]["cellvol"]  # as another tool writes it: no cellvol provenance
    (tmp_path / "v.zarr" / "zarr.json").write_text(json.dumps(metadata))
    (tmp_path / "v.zarr" / "0" / "c" / "1" / "0" / "1").unlink()
    volume = cellvol.open(tmp_path / "v.zarr")
    assert volume[20, 0, 40] == 0  # zarr's rule for sparse arrays: no object, fill value
    assert volume[0, 0, 0] == data[0, 0, 0]


def test_eight_threads_read_correct_data(tmp_path: Path) -> None:
    data = _small_pyramid(tmp_path / "v.zarr")
    volume = cellvol.open(tmp_path / "v.zarr")

    def read(seed: int) -> bool:
        rng = np.random.default_rng(seed)
        for _ in range(20):
            z, y, x = (int(rng.integers(0, n - 8)) for n in data.shape)
            if not np.array_equal(volume[z : z + 8, y : y + 8, x:], data[z : z + 8, y : y + 8, x:]):
                return False
        return True

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert all(pool.map(read, range(8)))


def test_touched_ranges() -> None:
    shape = (10, 20, 30)
    assert touched_ranges(np.s_[3], shape) == [(3, 4), (0, 20), (0, 30)]
    assert touched_ranges(np.s_[..., -1], shape) == [(0, 10), (0, 20), (29, 30)]
    assert touched_ranges(np.s_[8:2:-2, 5:5], shape) == [(3, 9), (5, 5), (0, 30)]
    assert touched_ranges(np.s_[[1, 2]], shape) == [(0, 10), (0, 20), (0, 30)]


@pytest.mark.parametrize(
    "selection",
    [np.s_[::-1, 3, ::3], np.s_[60:2:-7, ::-5, 4], np.s_[..., ::-3], np.s_[1:1:-1], np.s_[::-2]],
)
def test_negative_steps_read_as_numpy_does(tmp_path: Path, selection) -> None:
    data = np.random.default_rng(4).integers(0, 255, (64, 64, 64), dtype=np.uint8)
    cellvol.write_pyramid(data, tmp_path / "v.zarr", 1.0, chunks=(16, 16, 16), n_levels=1)
    np.testing.assert_array_equal(cellvol.open(tmp_path / "v.zarr")[selection], data[selection])
