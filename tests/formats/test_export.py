"""Export: a region of any level back to MRC or TIFF, with voxel size and origin."""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol.errors import InvalidInputError, WriteConflictError
from cellvol.formats._export import parse_region
from cellvol.formats._open import open_source

mrcfile = pytest.importorskip("mrcfile")
tifffile = pytest.importorskip("tifffile")


def mrc_header(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with mrcfile.open(path, permissive=True) as mrc:
            return mrc.header.copy(), mrc.voxel_size.copy(), np.array(mrc.data)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    data = np.random.default_rng(8).normal(0, 1, (40, 70, 90)).astype(np.float32)
    dest = tmp_path_factory.mktemp("export") / "v.ome.zarr"
    cellvol.write_pyramid(data, dest, (3.0, 1.5, 1.5), origin=(30.0, 15.0, 0.0), n_levels=2)
    return dest


def test_mrc_round_trip_keeps_values_and_voxel_size(shared_data: Path, tmp_path: Path) -> None:
    for name in ("mrc/EMD-3001.map", "mrc/EMD-3197.map", "mrc/fei-extended.mrc"):
        original = open_source(shared_data / name)
        converted = cellvol.convert(shared_data / name, tmp_path / f"{Path(name).stem}.zarr")
        back = cellvol.export(converted.url, tmp_path / f"{Path(name).stem}.mrc")
        again = open_source(back)
        np.testing.assert_array_equal(again.array[:, :, :], original.array[:, :, :])
        assert again.voxel_size.zyx == pytest.approx(original.voxel_size.zyx, rel=1e-6)
        assert again.array.dtype == original.array.dtype
        if original.origin is not None:
            assert again.origin == pytest.approx(original.origin, rel=1e-6, abs=1e-6)


def test_region_of_a_coarser_level_with_its_origin(image: Path, tmp_path: Path) -> None:
    volume = cellvol.open(image)
    level = volume.level(1)
    out = cellvol.export(image, tmp_path / "r.mrc", level=1, region="2:10,5:20,:")
    header, voxel, data = mrc_header(out)
    np.testing.assert_array_equal(data, level[2:10, 5:20, :])
    size = level.voxel_size.to("angstrom")
    assert (voxel.x, voxel.y, voxel.z) == pytest.approx((size.x, size.y, size.z), rel=1e-6)
    expected = [
        t + s * start for t, s, start in zip(level.translation, level.scale, (2, 5, 0), strict=True)
    ]
    origin_zyx = (header.origin.z / 10, header.origin.y / 10, header.origin.x / 10)
    assert origin_zyx == pytest.approx(expected, rel=1e-6)
    region = level[2:10, 5:20, :].astype(np.float64)
    assert float(header.dmin) == pytest.approx(region.min(), rel=1e-6)
    assert float(header.dmean) == pytest.approx(region.mean(), rel=1e-5, abs=1e-6)
    assert float(header.rms) == pytest.approx(region.std(), rel=1e-5)


def test_tiff_export_is_ome_with_physical_size(image: Path, tmp_path: Path) -> None:
    out = cellvol.export(image, tmp_path / "r.ome.tif", region="0:5,:,10:60")
    source = open_source(out)
    assert source.voxel_size == cellvol.VoxelSize(3.0, 1.5, 1.5)
    np.testing.assert_array_equal(source.array[:, :, :], cellvol.open(image)[0:5, :, 10:60])


def test_uint8_goes_to_mode_0_marked_unsigned_on_request(tmp_path: Path) -> None:
    data = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    cellvol.write_pyramid(data, tmp_path / "u.zarr", 1.0)
    out = cellvol.export(tmp_path / "u.zarr", tmp_path / "u.mrc", imod_unsigned=True)
    header, _, raw = mrc_header(out)
    assert int(header.mode) == 0
    # IMOD's stamp with bit 0 of its flags clear: the bytes are unsigned.
    stamp, flags = np.frombuffer(out.read_bytes()[152:160], dtype="=i4")
    assert (int(stamp), int(flags) & 1) == (1146047817, 0)
    np.testing.assert_array_equal(open_source(out).array[:, :, :], data)
    assert raw.view(np.uint8).tobytes() == data.tobytes()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name descriptors")
@pytest.mark.parametrize("name", ["s.mrc", "s.tif"])
def test_the_file_is_on_the_disk_before_it_takes_its_name(
    image: Path, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def logging_fsync(descriptor: int) -> None:
        fsync(descriptor)
        events.append(("sync", os.readlink(f"/proc/self/fd/{descriptor}")))

    def logging_replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        replace(source, target)
        events.append(("rename", str(target)))

    monkeypatch.setattr(os, "fsync", logging_fsync)
    monkeypatch.setattr(os, "replace", logging_replace)
    out = cellvol.export(image, tmp_path / name, region="0:4,:,:")
    assert events == [
        ("sync", str(out.with_name(name + ".partial"))),
        ("rename", str(out)),
        ("sync", str(out.parent)),
    ]


def test_refusals(image: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"x = 0:200 is empty or outside"):
        cellvol.export(image, tmp_path / "a.mrc", region="0:1,0:1,0:200")
    with pytest.raises(InvalidInputError, match=r"cannot tell the format"):
        cellvol.export(image, tmp_path / "a.png")
    cellvol.write_pyramid(np.zeros((2, 2, 2), np.int32), tmp_path / "i.zarr", 1.0)
    with pytest.raises(InvalidInputError, match=r"int32 has no MRC mode.*export it to TIFF"):
        cellvol.export(tmp_path / "i.zarr", tmp_path / "i.mrc")
    assert not (tmp_path / "i.mrc").exists()
    (tmp_path / "taken.mrc").write_bytes(b"keep me")
    with pytest.raises(WriteConflictError, match=r"taken\.mrc exists"):
        cellvol.export(image, tmp_path / "taken.mrc")
    assert (tmp_path / "taken.mrc").read_bytes() == b"keep me"
    assert not list(tmp_path.glob("*.partial"))


def test_parse_region() -> None:
    assert parse_region("1:3, :, 4", (5, 6, 7)) == (slice(1, 3), slice(0, 6), slice(4, 5))
    assert parse_region(None, (5, 6, 7)) == (slice(0, 5), slice(0, 6), slice(0, 7))
    with pytest.raises(InvalidInputError, match="needs three ranges"):
        parse_region("1:2,3:4", (5, 6, 7))
    with pytest.raises(InvalidInputError, match="'a:b' is not a range"):
        parse_region("a:b,:,:", (5, 6, 7))


def _validate(path: Path) -> tuple[bool, str]:
    """mrcfile's own check of a file against MRC2014, with what it printed."""
    import io

    report = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        valid = mrcfile.validate(str(path), print_file=report)
    return valid, report.getvalue()


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "float16", "float32"])
def test_every_mrc_export_is_valid_mrc2014_and_reads_the_same_everywhere(
    tmp_path: Path, dtype: str
) -> None:
    from cellvol.formats._export import MRC_MODES

    assert set(MRC_MODES) == {"int8", "uint8", "int16", "uint16", "float16", "float32"}
    # The integer types' full range; floats in a range whose sum of squares mrcfile's check
    # (which computes in the data's own type) does not overflow.
    kind = np.dtype(dtype).kind
    limits = {"float16": (-4, 4), "float32": (-1e3, 1e3)}
    low, high = (np.iinfo(dtype).min, np.iinfo(dtype).max) if kind in "iu" else limits[dtype]
    data = np.linspace(float(low), float(high), 6 * 10 * 12).astype(dtype)
    data = data.reshape(6, 10, 12)
    cellvol.write_pyramid(data, tmp_path / "v.zarr", 1.0, n_levels=1)
    out = cellvol.export(tmp_path / "v.zarr", tmp_path / "v.mrc")
    valid, report = _validate(out)
    assert valid, report
    # Any standard reader (mrcfile here, cellvol's own) gets the same values back.
    _, _, read = mrc_header(out)
    np.testing.assert_array_equal(read.astype(np.float64), data.astype(np.float64))
    np.testing.assert_array_equal(open_source(out).array[:, :, :], read)


def test_uint8_is_widened_to_mode_6_by_default(tmp_path: Path) -> None:
    data = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    cellvol.write_pyramid(data, tmp_path / "u.zarr", 1.0)
    header, _, raw = mrc_header(cellvol.export(tmp_path / "u.zarr", tmp_path / "u.mrc"))
    assert int(header.mode) == 6
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, data)
