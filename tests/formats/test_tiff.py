"""TIFF input: single files of every flavour, per-slice stacks, voxel sizes, real data."""

import pickle
from pathlib import Path

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

from cellvol.errors import InvalidInputError, StoreNotFoundError  # noqa: E402
from cellvol.formats._open import open_source  # noqa: E402
from cellvol.formats._tiff import TiffSeries, TiffSlices, natural_key  # noqa: E402
from cellvol.units import VoxelSize  # noqa: E402
from cellvol.write._inputs import MemmapSource  # noqa: E402

DATA = np.random.default_rng(3).integers(0, 60000, size=(7, 90, 130), dtype=np.uint16)
REGION = (slice(2, 6), slice(11, 77), slice(40, 129))


def test_natural_order() -> None:
    names = ["slice_10.tif", "slice_2.tif", "slice_1.tif", "Slice_3.tif"]
    assert sorted(names, key=natural_key) == [
        "slice_1.tif",
        "slice_2.tif",
        "Slice_3.tif",
        "slice_10.tif",
    ]


def test_uncompressed_multipage_file_is_memory_mapped(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "v.tif", DATA)
    source = open_source(tmp_path / "v.tif")
    assert isinstance(source.array, MemmapSource)
    np.testing.assert_array_equal(source.array[REGION], DATA[REGION])
    assert source.voxel_size is None  # plain TIFF resolution tags are not trusted


@pytest.mark.parametrize(
    "layout", [{"tile": (32, 32)}, {"rowsperstrip": 8}], ids=["tiled", "striped"]
)
def test_compressed_file_reads_only_regions(tmp_path: Path, layout) -> None:
    tifffile.imwrite(tmp_path / "c.tif", DATA, compression="zlib", **layout)
    source = open_source(tmp_path / "c.tif")
    assert isinstance(source.array, TiffSeries)
    np.testing.assert_array_equal(source.array[REGION], DATA[REGION])
    copy = pickle.loads(pickle.dumps(source.array))
    np.testing.assert_array_equal(copy[REGION], DATA[REGION])


def test_bigtiff_and_single_page(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "b.tif", DATA, bigtiff=True)
    np.testing.assert_array_equal(open_source(tmp_path / "b.tif").array[REGION], DATA[REGION])
    tifffile.imwrite(tmp_path / "one.tif", DATA[0], compression="zlib")
    single = open_source(tmp_path / "one.tif")
    assert single.array.shape == (1, 90, 130)
    np.testing.assert_array_equal(single.array[0:1, 5:9, :], DATA[0:1, 5:9, :])


def test_ome_tiff_voxel_size_with_units(tmp_path: Path) -> None:
    metadata = {
        "axes": "ZCYX",
        "PhysicalSizeZ": 0.03,
        "PhysicalSizeZUnit": "µm",
        "PhysicalSizeY": 5,
        "PhysicalSizeYUnit": "nm",
        "PhysicalSizeX": 50,
        "PhysicalSizeXUnit": "Å",
    }
    tifffile.imwrite(tmp_path / "o.ome.tif", DATA[:, None], ome=True, metadata=metadata)
    source = open_source(tmp_path / "o.ome.tif")
    assert source.voxel_size == VoxelSize(30, 5, 5, "nm")
    assert source.details["format"] == "OME-TIFF"
    np.testing.assert_array_equal(source.array[REGION], DATA[REGION])


def test_imagej_tags_give_the_voxel_size(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "ij.tif",
        DATA,
        imagej=True,
        resolution=(1 / 0.004, 1 / 0.004),
        metadata={"unit": "micron", "spacing": 0.05, "axes": "ZYX"},
    )
    assert open_source(tmp_path / "ij.tif").voxel_size == VoxelSize(50, 4, 4, "nm")


def test_real_imagej_tomogram(shared_data: Path) -> None:
    path = shared_data / "cryoet" / "13pf_MT.tif"
    source = open_source(path)
    assert source.voxel_size.zyx == pytest.approx((1.052, 1.052, 1.052))
    np.testing.assert_array_equal(source.array[:, :, :], tifffile.imread(path))


def write_stack(directory: Path, data: np.ndarray, **options) -> Path:
    directory.mkdir()
    for z, plane in enumerate(data):
        tifffile.imwrite(directory / f"slice_{z}.tif", plane, **options)
    return directory


@pytest.mark.parametrize("options", [{}, {"compression": "zlib"}], ids=["raw", "zlib"])
def test_slice_stack_in_natural_order(tmp_path: Path, options) -> None:
    data = np.stack([np.full((20, 30), z, np.uint8) for z in range(12)])
    directory = write_stack(tmp_path / "stack", data, **options)
    (directory / ".hidden.tif").write_bytes(b"junk")  # ignored: hidden
    (directory / "notes.txt").write_text("ignored: not a TIFF")
    source = open_source(directory)
    assert isinstance(source.array, TiffSlices)
    assert [Path(f).name for f in source.files][:3] == ["slice_0.tif", "slice_1.tif", "slice_2.tif"]
    np.testing.assert_array_equal(source.array[:, :, :], data)  # slice_10 after slice_9
    np.testing.assert_array_equal(source.array[8:11, 3:9, 20:], data[8:11, 3:9, 20:])
    by_glob = open_source(str(directory / "slice_*.tif"))
    np.testing.assert_array_equal(by_glob.array[:, :, :], data)
    assert pickle.loads(pickle.dumps(source.array))[9:10, :2, :2].ravel().tolist() == [9] * 4


def test_real_serial_section_stack(shared_data: Path) -> None:
    directory = shared_data / "sstem" / "image"
    source = open_source(directory)
    files = sorted(directory.glob("slice_*.tif"), key=lambda p: int(p.stem.split("_")[1]))
    expected = np.stack([tifffile.imread(f) for f in files])
    assert source.array.shape == (30, 512, 512)
    np.testing.assert_array_equal(source.array[:, :, :], expected)
    assert source.voxel_size is None  # the stack records no slice thickness


def test_stack_errors_name_the_slice(tmp_path: Path) -> None:
    data = np.zeros((4, 20, 30), np.uint8)
    directory = write_stack(tmp_path / "s", data)
    tifffile.imwrite(directory / "slice_2.tif", np.zeros((20, 31), np.uint8))
    with pytest.raises(InvalidInputError, match=r"slice_2\.tif: slice is 20 × 31 uint8, but "):
        open_source(directory)
    tifffile.imwrite(directory / "slice_2.tif", np.zeros((20, 30), np.uint16))
    with pytest.raises(InvalidInputError, match=r"slice_2\.tif: .*uint16.*slice_0\.tif"):
        open_source(directory)
    tifffile.imwrite(directory / "slice_2.tif", np.zeros((2, 20, 30), np.uint8))
    with pytest.raises(InvalidInputError, match=r"slice_2\.tif: holds 2 pages"):
        open_source(directory)
    with pytest.raises(StoreNotFoundError, match=r"no file matches"):
        open_source(str(tmp_path / "s" / "frame_*.tif"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreNotFoundError, match=r"empty: directory holds no TIFF files"):
        open_source(tmp_path / "empty")


def _one_strip(path: Path, shape: tuple[int, ...], dtype: str = "uint8") -> np.ndarray:
    """A zlib TIFF whose single strip holds the whole image: tiny on disk, large decoded."""
    data = np.zeros(shape, dtype)
    data[..., ::97] = 7  # something to find again
    tifffile.imwrite(path, data, compression="zlib", rowsperstrip=shape[-2])
    return data


def test_a_large_strip_is_decoded_once_for_all_the_regions_inside_it(tmp_path: Path) -> None:
    data = _one_strip(tmp_path / "big.tif", (4096, 4096))  # 16 MiB in one strip
    source = open_source(tmp_path / "big.tif")
    assert source.block_bytes == 4096 * 4096
    array = source.array
    assert isinstance(array, TiffSeries)
    decodes = {"n": 0}
    view = array._view
    real_getitem = type(view).__getitem__

    class Counting:
        chunks, shape, dtype = view.chunks, view.shape, view.dtype

        def __getitem__(self, key):  # type: ignore[no-untyped-def]
            decodes["n"] += 1
            return real_getitem(view, key)

    array.__dict__["_view"] = Counting()
    array.__dict__.pop("_blocks", None)
    for y in range(0, 4096, 512):
        for x in range(0, 4096, 512):
            region = array[0:1, y : y + 512, x : x + 512]
            np.testing.assert_array_equal(region[0], data[y : y + 512, x : x + 512])
    assert decodes["n"] == 1  # 64 regions, one decode


def test_strips_too_large_for_the_memory_limit_are_refused(tmp_path: Path) -> None:
    import cellvol

    _one_strip(tmp_path / "big.tif", (4096, 4096))
    out = tmp_path / "out.ome.zarr"
    refused = r"decodes to 16 MiB.*allow 64 MiB or more \(memory_limit=...\)"
    with pytest.raises(InvalidInputError, match=refused):
        cellvol.convert(tmp_path / "big.tif", out, voxel_size=1, memory_limit=32 * 2**20)
    assert not out.exists()
    cellvol.convert(tmp_path / "big.tif", out, voxel_size=1, memory_limit=256 * 2**20)


def test_imagej_resolution_rationals_give_the_decimal_meant(tmp_path: Path) -> None:
    # The rational 13pf_MT.tif holds for 1 / 1.052: inverted, it is 1.0520000000950358.
    rational = (4082668531, 4294967295)
    tifffile.imwrite(
        tmp_path / "ij.tif",
        DATA,
        imagej=True,
        resolution=(rational, rational),
        metadata={"unit": "nm", "spacing": 1.052, "axes": "ZYX"},
    )
    assert open_source(tmp_path / "ij.tif").voxel_size == VoxelSize(1.052, 1.052, 1.052, "nm")


def test_real_imagej_tomogram_voxel_size_is_exact(shared_data: Path) -> None:
    source = open_source(shared_data / "cryoet" / "13pf_MT.tif")
    assert source.voxel_size == VoxelSize(1.052, 1.052, 1.052, "nm")
