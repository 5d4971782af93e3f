"""MRC input: modes, axis orders, voxel size and origin, stacks, extended headers, real maps."""

import itertools
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

mrcfile = pytest.importorskip("mrcfile")

from cellvol.formats._mrc import open_mrc  # noqa: E402
from cellvol.formats._open import open_source  # noqa: E402
from cellvol.units import VoxelSize  # noqa: E402


def write_mrc(path: Path, data: np.ndarray, **header: object) -> Path:
    """Write ``data`` with mrcfile, then set raw header fields (mapc, ispg, origin...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # mrcfile vs numpy 2.5
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(data)
            for key, value in header.items():
                if key == "voxel_size":
                    mrc.voxel_size = value
                else:
                    mrc.header[key] = value
    return path


def stamp_imod(path: Path, flags: int) -> None:
    with path.open("r+b") as stream:
        stream.seek(152)
        stream.write(struct.pack("<ii", 1146047817, flags))


def read_with_mrcfile(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with mrcfile.open(path, permissive=True) as mrc:
            return np.array(mrc.data)


@pytest.mark.parametrize(
    ("dtype", "mode"),
    [(np.int8, 0), (np.int16, 1), (np.float32, 2), (np.uint16, 6), (np.float16, 12)],
)
def test_every_supported_mode_reads_as_mrcfile_does(tmp_path: Path, dtype, mode) -> None:
    low, high = (
        (np.iinfo(dtype).min, np.iinfo(dtype).max)
        if np.dtype(dtype).kind in "iu"
        else (
            -1000.5,
            6e4,
        )
    )
    data = np.linspace(low, high, 3 * 4 * 5).astype(dtype).reshape(3, 4, 5)
    path = write_mrc(tmp_path / "v.mrc", data)
    source = open_mrc(path)
    assert source.details["header"]["mode"] == mode
    assert source.array.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(source.array[:, :, :], read_with_mrcfile(path))


def test_mode_0_is_signed_unless_imod_says_unsigned(tmp_path: Path) -> None:
    raw = np.array([0, 1, 127, -128, -1], np.int8).reshape(1, 1, 5)
    path = write_mrc(tmp_path / "bytes.mrc", raw)
    assert open_mrc(path).array.dtype == np.int8
    stamp_imod(path, flags=0)  # IMOD's stamp, "signed" bit clear: unsigned bytes
    unsigned = open_mrc(path)
    assert unsigned.array.dtype == np.uint8
    assert unsigned.array[:, :, :].ravel().tolist() == [0, 1, 127, 128, 255]
    stamp_imod(path, flags=1)
    assert open_mrc(path).array.dtype == np.int8
    assert open_mrc(path, int8="unsigned").array.dtype == np.uint8
    stamp_imod(path, flags=0)
    assert open_mrc(path, int8="signed").array.dtype == np.int8


@pytest.mark.parametrize("order", list(itertools.permutations((1, 2, 3))))
def test_every_axis_order_gives_z_y_x(tmp_path: Path, order) -> None:
    file_data = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)  # sections, rows, cols
    path = write_mrc(tmp_path / "axes.mrc", file_data, mapc=order[0], mapr=order[1], maps=order[2])
    volume = open_mrc(path).array
    # Place every file voxel by hand: column c runs along axis mapc, row r along mapr...
    sizes = {order[0]: 4, order[1]: 3, order[2]: 2}  # axis number (1=X, 2=Y, 3=Z) -> length
    assert volume.shape == (sizes[3], sizes[2], sizes[1])
    expected = np.zeros(volume.shape, np.int16)
    for s, r, c in np.ndindex(*file_data.shape):
        coordinate = {order[0]: c, order[1]: r, order[2]: s}
        expected[coordinate[3], coordinate[2], coordinate[1]] = file_data[s, r, c]
    np.testing.assert_array_equal(volume[:, :, :], expected)
    np.testing.assert_array_equal(volume[1:2, 0:2, 1:], expected[1:2, 0:2, 1:])


def test_voxel_size_in_nanometres_and_origin(tmp_path: Path) -> None:
    data = np.zeros((4, 5, 6), np.float32)
    path = write_mrc(tmp_path / "o.mrc", data, voxel_size=(2.0, 3.0, 5.0))  # x, y, z in Å
    source = open_mrc(path)
    assert source.voxel_size == VoxelSize(0.5, 0.3, 0.2, "nm")
    assert source.origin is None
    # nxstart counts along columns; with mapc = 1 that is X.
    write_mrc(path, data, voxel_size=(2.0, 3.0, 5.0), nxstart=10, nystart=-2, nzstart=1)
    assert open_mrc(path).origin == pytest.approx((0.5, -0.6, 2.0))
    # An explicit origin (Å, x y z) wins over the start indices.
    write_mrc(path, data, voxel_size=(2.0, 3.0, 5.0), nxstart=10, origin=(20.0, 30.0, 40.0))
    assert open_mrc(path).origin == pytest.approx((4.0, 3.0, 2.0))


def test_missing_voxel_size_is_none_and_one_image_takes_z_from_x(tmp_path: Path) -> None:
    path = write_mrc(tmp_path / "n.mrc", np.zeros((2, 3, 4), np.int16))
    # mrcfile's default cell is zero: no voxel size recorded.
    assert open_mrc(path).voxel_size is None
    single = write_mrc(tmp_path / "one.mrc", np.zeros((3, 4), np.int16), voxel_size=(4.0, 4.0, 0))
    assert open_mrc(single).voxel_size == VoxelSize(0.4, 0.4, 0.4, "nm")


def test_image_stacks_are_told_from_volumes(tmp_path: Path) -> None:
    data = np.zeros((3, 4, 4), np.float32)
    assert not open_mrc(write_mrc(tmp_path / "vol.mrc", data, ispg=1)).image_stack
    stack = open_mrc(write_mrc(tmp_path / "tilts.st", data, ispg=0))
    assert stack.image_stack
    assert "image stack" in stack.description
    assert open_mrc(write_mrc(tmp_path / "particles.mrcs", data, ispg=1)).image_stack
    assert not open_mrc(write_mrc(tmp_path / "one.mrc", data[:1], ispg=0)).image_stack


def test_source_pickles_as_a_reference(tmp_path: Path) -> None:
    data = np.arange(40 * 50 * 60, dtype=np.float32).reshape(40, 50, 60)
    path = write_mrc(tmp_path / "big.mrc", data, mapc=2, mapr=1, maps=3)
    array = open_mrc(path).array
    array[0:2, 0:2, 0:2]  # opened in this process...
    payload = pickle.dumps(array)
    assert len(payload) < 2000  # ...yet it travels without its data
    np.testing.assert_array_equal(pickle.loads(payload)[3:9, 1:7, 2:5], array[3:9, 1:7, 2:5])


def test_emdb_map_with_permuted_axes(shared_data: Path) -> None:
    path = shared_data / "mrc" / "EMD-3001.map"
    source = open_source(path)
    file_data = read_with_mrcfile(path)  # (sections, rows, columns) = (Y, X, Z) here
    assert source.array.shape == (73, 25, 43)
    np.testing.assert_array_equal(source.array[:, :, :], file_data.transpose(2, 0, 1))
    assert source.voxel_size.zyx == pytest.approx((0.045875, 0.03925, 0.044825), rel=1e-6)
    assert source.details["header"]["ispg"] == 4
    assert source.details["extended_header"] == {"type": "unspecified", "bytes": 160}
    assert source.details["labels"] == ["::::EMDATABANK.org::::EMD-3001::::"]


def test_fei_extended_header_is_kept(shared_data: Path) -> None:
    source = open_source(shared_data / "mrc" / "fei-extended.mrc")
    assert source.array.shape == (1, 3838, 3710)
    assert source.array.dtype == np.uint16
    extended = source.details["extended_header"]
    assert extended["type"] == "FEI1"
    assert extended["bytes"] == 786432
    assert extended["first_record"]["HT"] == 300000.0
    assert extended["first_record"]["Pixel size X"] == pytest.approx(8.537755e-11)
    assert source.voxel_size.x == pytest.approx(0.08537755)


def test_voxel_size_is_the_decimal_the_float32_header_meant(tmp_path: Path) -> None:
    # An EMDB-like map of 0.834 Å: the header's cell (float32) makes 0.83400001525878906.
    data = np.zeros((4, 5, 200), np.float32)
    path = write_mrc(tmp_path / "emd.map", data, voxel_size=0.834, origin=(-4.71, 8.3, 0.0))
    source = open_mrc(path)
    assert source.voxel_size == VoxelSize(0.0834, 0.0834, 0.0834, "nm")
    assert repr(source.voxel_size) == ("VoxelSize(z=0.0834, y=0.0834, x=0.0834, unit='nanometer')")
    assert source.origin == (0.0, 0.83, -0.471)
    assert source.details["cella_angstrom"] == [166.8, 4.17, 3.336]
    # Start indices times the voxel size: exact decimals too.
    write_mrc(path, data, voxel_size=0.834, nxstart=3)
    assert open_mrc(path).origin == (0.0, 0.0, 0.2502)


def test_real_maps_keep_their_decimal_voxel_sizes(shared_data: Path) -> None:
    expected = {
        "mrc/EMD-3001.map": (0.045875, 0.03925, 0.044825),
        "mrc/EMD-3197.map": (1.14, 1.14, 1.14),
        "cryoet/beta-tubulin.mrc": (0.5144, 0.5144, 0.5144),
        "mrc/fei-extended.mrc": (0.08537755, 0.08537755, 0.08537755),
    }
    for name, zyx in expected.items():
        assert open_source(shared_data / name).voxel_size == VoxelSize(*zyx, "nm"), name
    assert open_source(shared_data / "mrc" / "EMD-3001.map").origin == (0.0, -0.471, -0.941325)


def test_converted_map_shows_its_decimal_voxel_size_everywhere(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    import cellvol
    from cellvol.cli import app

    path = write_mrc(tmp_path / "emd.map", np.zeros((4, 5, 200), np.float32), voxel_size=0.834)
    volume = cellvol.open(cellvol.convert(path, tmp_path / "emd.ome.zarr").url)
    assert "voxel_size=0.0834 × 0.0834 × 0.0834 nanometer" in repr(volume)
    assert repr(volume.voxel_size) == "VoxelSize(z=0.0834, y=0.0834, x=0.0834, unit='nanometer')"
    assert volume.multiscale.datasets[0].scale == (0.0834, 0.0834, 0.0834)
    shown = CliRunner().invoke(app, ["info", "--json", str(tmp_path / "emd.ome.zarr")])
    assert json.loads(shown.output)["levels"][0]["voxel_size"] == [0.0834, 0.0834, 0.0834]
