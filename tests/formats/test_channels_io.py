"""Images with channels through convert and export: OME-TIFF, ImageJ, TIFF stacks, HDF5, npy."""

import warnings
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

import cellvol
from cellvol.errors import InvalidInputError
from cellvol.formats._channels import SeriesView
from cellvol.formats._open import open_source

tifffile = pytest.importorskip("tifffile")
h5py = pytest.importorskip("h5py")
mrcfile = pytest.importorskip("mrcfile")

# t, c, z, y, x: small, and different in every voxel
DATA = np.random.default_rng(11).integers(0, 60000, (2, 3, 12, 20, 24), dtype=np.uint16)
LUTS = [
    np.stack([np.zeros(256), np.arange(256), np.zeros(256)]).astype(np.uint8),  # green
    np.stack([np.arange(256)] * 3).astype(np.uint8),  # grey
    np.stack([np.arange(256), np.zeros(256), np.arange(256)]).astype(np.uint8),  # magenta
]


def _converted(src: object, dest: Path, **options: object) -> cellvol.Volume:
    result = cellvol.convert(src, dest, **{"voxel_size": 1.0, "n_levels": 2, **options})
    return cellvol.open(result.url)


def _check_levels(volume: cellvol.Volume, n_channels: int) -> None:
    for level in volume.levels:  # every level keeps every channel, one per chunk
        at = volume.axes.index("c")
        assert level.shape[at] == n_channels
        assert level.chunks[: at + 1] == (1,) * (at + 1)


def test_ome_tiff_with_time_and_channels_round_trips(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "tc.ome.tif", DATA, ome=True,
        metadata={"axes": "TCZYX", "Channel": {"Name": ["dna", "actin", "er"]},
                  "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1, "PhysicalSizeZ": 0.2},
    )  # fmt: skip
    volume = _converted(tmp_path / "tc.ome.tif", tmp_path / "tc.zarr", voxel_size=None)
    assert volume.axes == ("t", "c", "z", "y", "x")
    assert volume.channels == ("dna", "actin", "er")
    assert volume.voxel_size == cellvol.VoxelSize(200, 100, 100)
    np.testing.assert_array_equal(volume[:], DATA)
    _check_levels(volume, 3)
    # Back out as OME-TIFF with every channel and time point, and in again: nothing lost.
    exported = cellvol.export(volume, tmp_path / "out.tif", region="2:9,:,5:")
    with tifffile.TiffFile(exported) as tif:
        assert tif.series[0].axes == "TCZYX"
        np.testing.assert_array_equal(tif.asarray(), DATA[:, :, 2:9, :, 5:])
    again = _converted(exported, tmp_path / "again.zarr", voxel_size=None)
    assert again.channels == ("dna", "actin", "er")
    np.testing.assert_array_equal(again[:], DATA[:, :, 2:9, :, 5:])


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_imagej_hyperstack_channels_keep_their_lut_colours(
    tmp_path: Path, compression: str | None
) -> None:
    stored = np.ascontiguousarray(DATA[0].transpose(1, 0, 2, 3))  # ImageJ keeps z, c, y, x
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path, stored, imagej=True, metadata={"axes": "ZCYX", "LUTs": LUTS},
        compression=compression,
    )  # fmt: skip
    if compression is None:  # memory-mapped, and reordered region by region
        assert isinstance(open_source(path).array, SeriesView)
    volume = _converted(path, tmp_path / "ij.zarr")
    assert volume.axes == ("c", "z", "y", "x")
    np.testing.assert_array_equal(volume[:], DATA[0])
    colours = [c["color"] for c in volume.attributes["ome"]["omero"]["channels"]]
    assert colours == ["00FF00", "FFFFFF", "FF00FF"]
    _check_levels(volume, 3)


def test_a_tiff_stack_per_channel(tmp_path: Path) -> None:
    inputs = {}
    for c, name in enumerate(("membrane", "blobs")):
        folder = tmp_path / name
        folder.mkdir()
        for z in range(DATA.shape[2]):
            tifffile.imwrite(folder / f"slice_{z}.tif", DATA[0, c, z])
        inputs[name] = str(folder / "slice_*.tif")
    volume = _converted(inputs, tmp_path / "stack.zarr", voxel_size=(50, 5, 5))
    assert volume.channels == ("membrane", "blobs")
    np.testing.assert_array_equal(volume[:], DATA[0, :2])
    files = volume.provenance["input"]["files"]
    assert len(files) == 2 * DATA.shape[2]


def test_channels_of_different_shapes_are_refused(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", DATA[0, 0])
    tifffile.imwrite(tmp_path / "b.tif", DATA[0, 1, :5])
    with pytest.raises(InvalidInputError, match=r"channel 'b' is \(5, 20, 24\) uint16"):
        cellvol.convert({"a": tmp_path / "a.tif", "b": tmp_path / "b.tif"}, tmp_path / "o.zarr")
    assert not (tmp_path / "o.zarr").exists()


@pytest.mark.parametrize(
    ("axes", "stored", "expected"),
    [
        ("czyx", DATA[0], DATA[0]),
        ("zcyx", DATA[0].transpose(1, 0, 2, 3), DATA[0]),
        ("tczyx", DATA, DATA),
        ("ctzyx", DATA.transpose(1, 0, 2, 3, 4), DATA),
        ("tzyx", DATA[:, 0], DATA[:, :1]),  # a time series of one channel
    ],
)
def test_hdf5_datasets_with_an_axes_option(
    tmp_path: Path, axes: str, stored: np.ndarray, expected: np.ndarray
) -> None:
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["image"] = stored
    volume = _converted(tmp_path / "x.h5", tmp_path / "x.zarr", axes=axes)
    np.testing.assert_array_equal(volume[:], expected)
    assert volume.axes == (("t",) if "t" in axes else ()) + ("c", "z", "y", "x")


def test_npy_with_channels_by_its_dimensions(tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", DATA[1])
    volume = _converted(tmp_path / "c.npy", tmp_path / "c.zarr", channel_names=["x", "y", "z"])
    assert volume.channels == ("x", "y", "z")
    np.testing.assert_array_equal(volume.channel("y")[:], DATA[1, 1])


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ("zyx", r"x\.h5: dataset '/image' has shape \(3, 12, 20, 24\); expected axes 'zyx'"),
        ("czyq", r"unknown axes 'czyq'"),
        ("cczyx", r"unknown axes 'cczyx'"),
    ],
)
def test_bad_hdf5_axes_are_refused(tmp_path: Path, axes: str, message: str) -> None:
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["image"] = DATA[0]
    with pytest.raises(InvalidInputError, match=message):
        cellvol.convert(tmp_path / "x.h5:/image", tmp_path / "x.zarr", voxel_size=1, axes=axes)


def test_a_4d_hdf5_dataset_without_axes_says_how(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["image"] = DATA[0]
    with pytest.raises(InvalidInputError, match="give its axes"):
        cellvol.convert(tmp_path / "x.h5:/image", tmp_path / "x.zarr", voxel_size=1)


def test_one_channel_exports_to_mrc_and_all_of_them_do_not(tmp_path: Path) -> None:
    cellvol.write_pyramid(DATA, tmp_path / "tc.zarr", 10.0, channel_names=["a", "b", "c"])
    with pytest.raises(InvalidInputError, match="has 3 channels and an MRC file holds one"):
        cellvol.export(tmp_path / "tc.zarr", tmp_path / "all.mrc")
    path = cellvol.export(tmp_path / "tc.zarr", tmp_path / "b.mrc", channel="b", t=1)
    with warnings.catch_warnings():  # mrcfile's own use of deprecated numpy
        warnings.simplefilter("ignore", DeprecationWarning)
        np.testing.assert_array_equal(mrcfile.read(path), DATA[1, 1])


def test_an_ome_zarr_with_channels_converts_with_its_names_and_colours(tmp_path: Path) -> None:
    cellvol.write_pyramid(
        DATA[0], tmp_path / "a.zarr", (40, 8, 8), channel_names=["x", "y", "z"],
        channel_colors=["112233", "445566", "778899"],
    )  # fmt: skip
    volume = _converted(tmp_path / "a.zarr", tmp_path / "b.zarr", voxel_size=None, chunks=(4, 8, 8))
    assert volume.channels == ("x", "y", "z")
    colours = [c["color"] for c in volume.attributes["ome"]["omero"]["channels"]]
    assert colours == ["112233", "445566", "778899"]
    assert volume.levels[0].chunks == (1, 4, 8, 8)
    np.testing.assert_array_equal(volume[:], DATA[0])


def test_channel_colours_export_to_ome_tiff_and_back(tmp_path: Path) -> None:
    colours = ["00FF00", "FF00FF", "112233"]
    cellvol.write_pyramid(
        DATA[0], tmp_path / "a.zarr", (40, 8, 8), channel_names=["x", "y", "z"],
        channel_colors=colours,
    )  # fmt: skip
    exported = cellvol.export(tmp_path / "a.zarr", tmp_path / "a.ome.tif")
    with tifffile.TiffFile(exported) as tif:
        xml = tif.ome_metadata
        np.testing.assert_array_equal(tif.asarray(), DATA[0])
    channels = [e for e in ElementTree.fromstring(xml).iter() if e.tag.endswith("}Channel")]
    # OME's Color: RGBA as one signed 32-bit integer, opaque (green is 0x00FF00FF).
    assert [int(str(c.get("Color"))) for c in channels] == [16711935, -16711681, 287454207]
    assert [c.get("Name") for c in channels] == ["x", "y", "z"]
    again = _converted(exported, tmp_path / "b.zarr", voxel_size=None)
    assert [c["color"] for c in again.attributes["ome"]["omero"]["channels"]] == colours


def test_palette_colours_of_unnamed_colours_export_too(tmp_path: Path) -> None:
    cellvol.write_pyramid(DATA[0], tmp_path / "a.zarr", 10.0, channel_names=["x", "y", "z"])
    volume = cellvol.open(tmp_path / "a.zarr")
    stored = [c["color"] for c in volume.attributes["ome"]["omero"]["channels"]]
    exported = cellvol.export(volume, tmp_path / "a.ome.tif")
    with tifffile.TiffFile(exported) as tif:
        channels = [
            e for e in ElementTree.fromstring(tif.ome_metadata).iter() if e.tag.endswith("}Channel")
        ]
    # cellvol writes a colour for every channel (the palette's when none is given): exported.
    written = [int(str(c.get("Color"))) & 0xFFFFFFFF for c in channels]
    assert [f"{v >> 8:06X}" for v in written] == stored
