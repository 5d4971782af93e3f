"""Converting files: real depositions in, provenance recorded, and malformed inputs refused."""

import hashlib
import struct
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol._store import open_store
from cellvol.errors import (
    InvalidInputError,
    SourceChangedError,
    StoreNotFoundError,
    WriteConflictError,
)
from cellvol.formats._ingest import _Digests
from cellvol.write._ledger import Ledger

mrcfile = pytest.importorskip("mrcfile")
tifffile = pytest.importorskip("tifffile")
h5py = pytest.importorskip("h5py")


def read_mrc(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # mrcfile vs numpy 2.5
        with mrcfile.open(path, permissive=True) as mrc:
            return np.array(mrc.data)


def new_mrc(path: Path, data: np.ndarray, **header: object) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(data)
            mrc.voxel_size = 10.0
            for key, value in header.items():
                mrc.header[key] = value
    return path


# -- real files ------------------------------------------------------------------------------

REAL_MRC = [
    ("mrc/EMD-3001.map", (2, 0, 1)),  # its file axes (sections, rows, cols) are (Y, X, Z)
    ("mrc/EMD-3197.map", None),
    ("mrc/fei-extended.mrc", None),
    ("cryoet/beta-tubulin.mrc", None),
]


@pytest.mark.parametrize(("name", "transpose"), REAL_MRC, ids=[n for n, _ in REAL_MRC])
def test_real_mrc_converts_and_reads_back_equal(
    shared_data: Path, tmp_path: Path, name: str, transpose
) -> None:
    path = shared_data / name
    result = cellvol.convert(path, tmp_path / "out.ome.zarr")
    volume = cellvol.open(result.url)
    expected = read_mrc(path)
    expected = expected.reshape((1, *expected.shape)) if expected.ndim == 2 else expected
    if transpose:
        expected = expected.transpose(transpose)
    np.testing.assert_array_equal(volume[:], expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            x, y, z = (float(mrc.voxel_size[a]) for a in "xyz")
    assert volume.voxel_size.unit == "nanometer"
    assert volume.voxel_size.y == pytest.approx(y / 10, rel=1e-6)
    assert volume.voxel_size.x == pytest.approx(x / 10, rel=1e-6)
    if z:
        assert volume.voxel_size.z == pytest.approx(z / 10, rel=1e-6)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    record = volume.provenance["input"]
    assert record["files"] == [{"name": path.name, "bytes": path.stat().st_size, "sha256": digest}]
    assert record["details"]["format"] == "MRC"
    assert volume.provenance["software"]["mrcfile"] == mrcfile.__version__


def test_real_tiff_tomogram(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "cryoet" / "13pf_MT.tif"
    volume = cellvol.open(cellvol.convert(path, tmp_path / "mt.ome.zarr").url)
    np.testing.assert_array_equal(volume[:], tifffile.imread(path))
    assert volume.voxel_size.zyx == pytest.approx((1.052, 1.052, 1.052))


def test_real_serial_section_stack_and_labels(shared_data: Path, tmp_path: Path) -> None:
    images = shared_data / "sstem" / "image"
    files = sorted(images.glob("*.tif"), key=lambda p: int(p.stem.split("_")[1]))
    result = cellvol.convert(images, tmp_path / "em.ome.zarr", voxel_size=(50, 4, 4))
    volume = cellvol.open(result.url)
    np.testing.assert_array_equal(volume[:], np.stack([tifffile.imread(f) for f in files]))
    assert volume.voxel_size == cellvol.VoxelSize(50, 4, 4)
    assert volume.level(1).voxel_size == cellvol.VoxelSize(50, 8, 8)  # anisotropic: y, x
    names = [entry["name"] for entry in volume.provenance["input"]["files"]]
    assert names[:3] == ["slice_0.tif", "slice_1.tif", "slice_2.tif"]
    assert len(names) == 30
    labels = cellvol.convert(
        shared_data / "sstem" / "label", tmp_path / "labels.zarr", voxel_size=(50, 4, 4),
        method="mode",
    )  # fmt: skip
    level1 = cellvol.open(labels.url).level(1)[:]
    assert set(np.unique(level1)) <= {0, 255}  # mode keeps label values exact


def test_mrc_origin_becomes_the_translation(tmp_path: Path) -> None:
    path = new_mrc(tmp_path / "o.mrc", np.zeros((4, 6, 8), np.int16), origin=(100.0, 200.0, 300.0))
    volume = cellvol.open(cellvol.convert(path, tmp_path / "o.zarr").url)
    assert volume.levels[0].translation == pytest.approx((30.0, 20.0, 10.0))  # nm, z y x


def test_image_stack_is_not_downsampled_along_z(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 100, (6, 600, 600), dtype=np.int16)
    path = new_mrc(tmp_path / "tilts.mrcs", data)
    volume = cellvol.open(cellvol.convert(path, tmp_path / "t.zarr").url)
    assert [level.shape[0] for level in volume.levels] == [6] * len(volume.levels)
    assert volume.level(-1).shape[1:] == (150, 150)


def test_hdf5_with_voxel_size_override(tmp_path: Path) -> None:
    data = np.random.default_rng(1).random((8, 30, 40), dtype=np.float32)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("em/raw", data=data, chunks=(4, 16, 16))
    with pytest.raises(InvalidInputError, match=r"v\.h5: records no complete voxel size"):
        cellvol.convert(tmp_path / "v.h5", tmp_path / "no.zarr")
    assert not (tmp_path / "no.zarr").exists()
    result = cellvol.convert(
        f"{tmp_path / 'v.h5'}:/em/raw", tmp_path / "v.zarr", voxel_size=2.5, unit="angstrom"
    )
    volume = cellvol.open(result.url)
    np.testing.assert_array_equal(volume[:], data)
    assert volume.voxel_size == cellvol.VoxelSize(2.5, 2.5, 2.5, "angstrom")


def test_files_convert_on_a_cluster_of_processes(tmp_path: Path, cluster_client) -> None:
    data = np.random.default_rng(2).integers(0, 4000, (40, 70, 90), dtype=np.uint16)
    inputs = {"v.mrc": new_mrc(tmp_path / "v.mrc", data)}
    tifffile.imwrite(tmp_path / "v.tif", data, compression="zlib", tile=(32, 32))
    inputs["v.tif"] = tmp_path / "v.tif"
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("raw", data=data, chunks=(8, 32, 32), compression="gzip")
    inputs["v.h5"] = tmp_path / "v.h5"
    layout = {"chunks": (16, 16, 16), "shards": (32, 32, 32), "voxel_size": 1.0}
    for name, path in inputs.items():
        threaded = cellvol.convert(path, tmp_path / f"{name}.local.zarr", **layout)
        spread = cellvol.convert(
            path, tmp_path / f"{name}.cluster.zarr", client=cluster_client, **layout
        )
        np.testing.assert_array_equal(cellvol.open(spread.url)[:], data, err_msg=name)
        for level in threaded.plan.levels:
            local = sorted((tmp_path / f"{name}.local.zarr" / level.path).rglob("c/*/*/*"))
            for file in local:
                twin = (
                    tmp_path
                    / f"{name}.cluster.zarr"
                    / file.relative_to(tmp_path / f"{name}.local.zarr")
                )
                assert twin.read_bytes() == file.read_bytes(), f"{name}: {file} differs"


def test_resume_flag_controls_continuing_an_interrupted_conversion(tmp_path: Path) -> None:
    directory = tmp_path / "stack"
    directory.mkdir()
    # 12 slices in chunks of 4: slice 5 is in neither the first nor the last chunk, which the
    # writer samples before it starts, so the damage is met in the middle of the write.
    data = np.random.default_rng(4).integers(0, 255, (12, 64, 64), dtype=np.uint8)
    for z, plane in enumerate(data):
        tifffile.imwrite(directory / f"s{z}.tif", plane, compression="zlib")
    good = (directory / "s5.tif").read_bytes()
    # Slice 5 keeps a valid header but its compressed pixels are garbage: found only on read.
    header_end = len(good) - 200
    (directory / "s5.tif").write_bytes(good[:header_end] + b"\x00" * 200)
    dest = tmp_path / "out.zarr"
    layout = {"voxel_size": 1.0, "chunks": (4, 32, 32), "shards": (4, 32, 32), "workers": 1}
    with pytest.raises(Exception, match=r"s5\.tif"):
        cellvol.convert(directory, dest, **layout)
    ledger = Ledger(open_store(str(dest), mode="r"), str(dest))
    assert ledger.job() is not None
    assert not ledger.is_complete()  # nothing that looks finished
    (directory / "s5.tif").write_bytes(good)
    with pytest.raises(WriteConflictError, match=r"interrupted write.*resume"):
        cellvol.convert(directory, dest, resume=False, **layout)
    result = cellvol.convert(directory, dest, resume=True, **layout)
    assert result.shards_reused > 0
    np.testing.assert_array_equal(cellvol.open(dest)[:], data)


def test_a_file_changed_during_the_conversion_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "a.raw"
    path.write_bytes(b"x" * 1000)
    digests = _Digests([str(path)])
    digests.start()
    digests.join()
    path.write_bytes(b"y" * 1001)
    with pytest.raises(SourceChangedError, match=r"a\.raw: changed while it was converted"):
        digests.result()


# -- malformed inputs ------------------------------------------------------------------------


def _patched_mrc(**fields: object) -> Callable[[Path], Path]:
    def build(directory: Path) -> Path:
        path = new_mrc(directory / "bad.mrc", np.zeros((2, 3, 4), np.int16))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, mode="r+", permissive=True) as mrc:
                for key, value in fields.items():
                    mrc.header[key] = value
        return path

    return build


def _bytes(name: str, content: bytes) -> Callable[[Path], Path]:
    def build(directory: Path) -> Path:
        (directory / name).write_bytes(content)
        return directory / name

    return build


def _cut_mrc(keep: int) -> Callable[[Path], Path]:
    def build(directory: Path) -> Path:
        path = new_mrc(directory / "cut.mrc", np.zeros((2, 3, 4), np.int16))
        data = path.read_bytes()
        path.write_bytes(data[:keep] if keep > 0 else data + b"\x00" * -keep)
        return path

    return build


def _tiff(name: str, data: np.ndarray, **options: object) -> Callable[[Path], Path]:
    def build(directory: Path) -> Path:
        tifffile.imwrite(directory / name, data, **options)
        return directory / name

    return build


def _truncated_tiff(directory: Path) -> Path:
    tifffile.imwrite(directory / "t.tif", np.zeros((5, 100, 100), np.uint8))
    data = (directory / "t.tif").read_bytes()
    (directory / "t.tif").write_bytes(data[: len(data) // 2])
    return directory / "t.tif"


def _differing_pages(directory: Path) -> Path:
    with tifffile.TiffWriter(directory / "p.tif") as tif:
        tif.write(np.zeros((10, 10), np.uint8))
        tif.write(np.zeros((10, 12), np.uint8))
    return directory / "p.tif"


def _stack(kind: str) -> Callable[[Path], Path]:
    def build(directory: Path) -> Path:
        stack = directory / "stack"
        stack.mkdir()
        for z in range(4):
            tifffile.imwrite(stack / f"slice_{z}.tif", np.zeros((20, 30), np.uint8))
        odd = stack / "slice_3.tif"
        if kind == "shape":
            tifffile.imwrite(odd, np.zeros((21, 30), np.uint8))
        elif kind == "dtype":
            tifffile.imwrite(odd, np.zeros((20, 30), np.float32))
        elif kind == "pages":
            tifffile.imwrite(odd, np.zeros((5, 20, 30), np.uint8))
        elif kind == "corrupt":
            odd.write_bytes(b"II*\x00garbage")
        return stack

    return build


def _empty_directory(directory: Path) -> Path:
    (directory / "nothing").mkdir()
    return directory / "nothing"


def _h5(dataset: str | None, data: np.ndarray, name: str = "x.h5") -> Callable[[Path], str]:
    def build(directory: Path) -> str:
        with h5py.File(directory / name, "w") as f:
            f.create_dataset("a/b", data=data)
            f.create_dataset("c", data=data)
        return f"{directory / name}:{dataset}" if dataset else str(directory / name)

    return build


MALFORMED: list[tuple[str, Callable[[Path], Path | str], str]] = [
    ("empty MRC", _bytes("e.mrc", b""), r"e\.mrc: 0 bytes is too short"),
    ("short MRC", _bytes("s.mrc", b"\x00" * 100), r"s\.mrc: 100 bytes is too short"),
    ("not an MRC", _bytes("n.mrc", b"\x01" * 3000), r"n\.mrc: (not an MRC|unreadable MRC)"),
    ("truncated MRC", _cut_mrc(1024 + 40), r"cut\.mrc: file is truncated.*1,072 bytes"),
    ("MRC too long", _cut_mrc(-7), r"cut\.mrc: file is longer than its header says"),
    ("absurd dimensions", _patched_mrc(nx=2**30, ny=2**20), r"bad\.mrc: file is truncated"),
    ("negative dimension", _patched_mrc(ny=-3), r"bad\.mrc: .*must all be positive"),
    ("zero dimension", _patched_mrc(nz=0), r"bad\.mrc: .*must all be positive"),
    ("mode 3", _patched_mrc(mode=3), r"bad\.mrc: MRC mode 3 \(complex int16"),
    ("mode 4", _patched_mrc(mode=4), r"bad\.mrc: MRC mode 4 \(complex float32"),
    ("mode 101", _patched_mrc(mode=101), r"bad\.mrc: MRC mode 101 \(4-bit"),
    ("mode 9", _patched_mrc(mode=9), r"bad\.mrc: MRC mode 9 \(not an MRC2014 mode"),
    ("axis order", _patched_mrc(mapc=2), r"bad\.mrc: .*\(2, 2, 3\) is not a permutation"),
    ("volume stack", _patched_mrc(ispg=401), r"bad\.mrc: space group 401 marks a stack"),
    ("negative nsymbt", _patched_mrc(nsymbt=-8), r"bad\.mrc: negative extended header"),
    ("huge nsymbt", _patched_mrc(nsymbt=10**9), r"bad\.mrc: file is truncated"),
    ("not a TIFF", _bytes("f.tif", b"just text"), r"f\.tif: not a readable TIFF"),
    ("truncated TIFF", _truncated_tiff, r"t\.tif: (damaged|not a readable|truncated)"),
    (
        "RGB TIFF",
        _tiff("rgb.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb"),
        r"rgb\.tif: .*colour",
    ),
    (  # channels (C) and time points (T) are converted; other axes are not
        "another axis",
        _tiff("e.tif", np.zeros((3, 2, 8, 8), np.uint8), metadata={"axes": "EZYX"}),
        r"e\.tif: has axes beyond t, c, z, y, x \(E=3",
    ),
    ("complex TIFF", _tiff("z.tif", np.zeros((2, 8, 8), np.complex64)), r"z\.tif: holds complex64"),
    (
        "boolean HDF5",
        _h5("/c", np.zeros((2, 2, 2), bool), "m.h5"),
        r"m\.h5: dataset '/c' holds bool",
    ),
    ("pages differ", _differing_pages, r"p\.tif: page 1 is \(10, 12\)"),
    ("slice shape", _stack("shape"), r"slice_3\.tif: slice is 21 × 30 uint8"),
    ("slice type", _stack("dtype"), r"slice_3\.tif: slice is 20 × 30 float32"),
    ("slice pages", _stack("pages"), r"slice_3\.tif: holds 5 pages"),
    ("corrupt slice", _stack("corrupt"), r"slice_3\.tif: not a readable TIFF"),
    ("empty directory", _empty_directory, r"nothing: directory holds no TIFF"),
    ("not HDF5", _bytes("h.h5", b"not hdf5"), r"h\.h5: not a readable HDF5"),
    ("HDF5 ambiguous", _h5(None, np.zeros((2, 2, 2))), r"x\.h5: holds 2 3-D datasets"),
    ("HDF5 missing", _h5("/q", np.zeros((2, 2, 2))), r"x\.h5: has no dataset '/q'"),
    ("HDF5 group", _h5("/a", np.zeros((2, 2, 2))), r"x\.h5: '/a' is a group"),
    ("HDF5 2-D", _h5("/c", np.zeros((2, 2))), r"x\.h5: dataset '/c' has shape \(2, 2\)"),
    ("HDF5 strings", _h5("/c", np.array([[[b"a"]]])), r"x\.h5: dataset '/c' holds \|S1"),
    ("unknown format", _bytes("v.xyz", b"?"), r"v\.xyz: cannot tell its format"),
]


@pytest.mark.parametrize(("case", "build", "message"), MALFORMED, ids=[c for c, _, _ in MALFORMED])
def test_malformed_input_is_refused_before_anything_is_written(
    tmp_path: Path, case: str, build, message: str
) -> None:
    src = build(tmp_path)
    dest = tmp_path / "out.ome.zarr"
    tracemalloc.start()
    try:
        with pytest.raises((InvalidInputError, StoreNotFoundError), match=message):
            cellvol.convert(src, dest, voxel_size=1.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not dest.exists(), f"{case}: something was written"
    assert peak < 64 * 2**20, f"{case}: {peak / 2**20:.0f} MiB allocated to refuse it"


def test_missing_inputs_are_not_found(tmp_path: Path) -> None:
    for missing in ("gone.mrc", "gone.tif", "gone.h5", "nodir", "frames_*.tif"):
        with pytest.raises(StoreNotFoundError, match=missing.replace("*", r"\*")):
            cellvol.convert(str(tmp_path / missing), tmp_path / "o.zarr", voxel_size=1.0)
    assert not (tmp_path / "o.zarr").exists()


def test_mode_0_unsigned_flag_survives_conversion(tmp_path: Path) -> None:
    raw = np.array([0, 100, 200, 255], np.uint8).reshape(1, 2, 2)
    path = new_mrc(tmp_path / "u.mrc", raw.view(np.int8))
    with path.open("r+b") as stream:
        stream.seek(152)
        stream.write(struct.pack("<ii", 1146047817, 0))
    volume = cellvol.open(cellvol.convert(path, tmp_path / "u.zarr").url)
    assert volume.dtype == np.uint8
    np.testing.assert_array_equal(volume[:], raw)


def test_ome_zarr_in_is_rechunked_and_repyramided(tmp_path: Path) -> None:
    data = np.random.default_rng(6).integers(0, 255, (20, 100, 120), dtype=np.uint8)
    cellvol.write_pyramid(data, tmp_path / "a.ome.zarr", (40, 4, 4), chunks=(8, 32, 32))
    result = cellvol.convert(tmp_path / "a.ome.zarr", tmp_path / "b.ome.zarr", chunks=(4, 16, 16))
    volume = cellvol.open(result.url)
    np.testing.assert_array_equal(volume[:], data)
    assert volume.voxel_size == cellvol.VoxelSize(40, 4, 4)
    assert volume.levels[0].chunks == (4, 16, 16)
    assert volume.provenance["input"]["files"] == []  # a store, not files: nothing to hash
