"""Writing pyramids: values, layout, metadata, and refusals."""

import json
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr
from memory_helpers import resident_kib

import cellvol
from cellvol.errors import InvalidInputError, LayoutError, WriteConflictError
from cellvol.ome._validation import validate
from cellvol.progress import ProgressEvent
from cellvol.synthetic import SyntheticVolume
from cellvol.write._downsample import downsample


def test_numpy_round_trip_every_level_equals_kernel_applied_to_level_below(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 255, size=(37, 70, 90), dtype=np.uint8)
    result = cellvol.write_pyramid(
        data,
        tmp_path / "img.ome.zarr",
        (3, 1, 1),
        chunks=(16, 16, 16),
        shards=(32, 32, 32),
        n_levels=3,
    )
    vol = cellvol.open(tmp_path / "img.ome.zarr")
    np.testing.assert_array_equal(vol[:], data)
    expected = data
    for level, planned in zip(vol.levels, result.plan.levels, strict=True):
        if level.index:
            expected = downsample(expected, planned.factors, "mean")
        np.testing.assert_array_equal(level[:], expected)
        assert level.shards == planned.shards
        assert level.chunks == planned.chunks


def test_dask_and_lazy_sources_give_the_same_bytes(tmp_path: Path) -> None:
    synthetic = SyntheticVolume((48, 64, 80), seed=3)
    cellvol.write_pyramid(
        synthetic, tmp_path / "lazy.zarr", 1.0, shards=(64, 64, 64), chunks=(32, 32, 32)
    )
    cellvol.write_pyramid(
        synthetic.to_dask(chunks=(20, 30, 40)),
        tmp_path / "dask.zarr",
        1.0,
        shards=(64, 64, 64),
        chunks=(32, 32, 32),
    )
    a, b = cellvol.open(tmp_path / "lazy.zarr"), cellvol.open(tmp_path / "dask.zarr")
    assert len(a) == len(b)
    for la, lb in zip(a.levels, b.levels, strict=True):
        np.testing.assert_array_equal(la[:], lb[:])


def test_memory_mapped_source(tmp_path: Path) -> None:
    path = tmp_path / "raw.npy"
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(20, 30, 40))
    data[:] = np.arange(data.size, dtype=np.uint16).reshape(data.shape)
    data.flush()
    source = np.load(path, mmap_mode="r")
    cellvol.write_pyramid(source, tmp_path / "mm.zarr", 1.0)
    np.testing.assert_array_equal(cellvol.open(tmp_path / "mm.zarr")[:], source)


def test_metadata_is_valid_ome_zarr_05_with_aligned_levels(tmp_path: Path) -> None:
    cellvol.write_pyramid(
        np.zeros((64, 64, 64), np.uint8), tmp_path / "m.zarr", (2, 2, 2), n_levels=3
    )
    attributes = json.loads((tmp_path / "m.zarr" / "zarr.json").read_text())["attributes"]
    assert validate(attributes, strict=True) == []
    multiscale = attributes["ome"]["multiscales"][0]
    assert attributes["ome"]["version"] == "0.5"
    assert [a["name"] for a in multiscale["axes"]] == ["z", "y", "x"]
    assert {a["unit"] for a in multiscale["axes"]} == {"nanometer"}
    transforms = [d["coordinateTransformations"] for d in multiscale["datasets"]]
    assert transforms[2] == [
        {"type": "scale", "scale": [8.0, 8.0, 8.0]},
        {"type": "translation", "translation": [3.0, 3.0, 3.0]},
    ]
    record = attributes["cellvol"]
    assert record["software"]["cellvol"] == cellvol.__version__
    assert record["parameters"]["method"] == "mean"
    assert "numpy.ndarray of shape (64, 64, 64)" in record["source"]


def test_metadata_loads_in_ome_zarr_models(tmp_path: Path) -> None:
    from ome_zarr_models.v05.image import Image

    cellvol.write_pyramid(np.ones((40, 40, 40), np.float32), tmp_path / "o.zarr", 1.5, n_levels=2)
    image = Image.from_zarr(zarr.open_group(tmp_path / "o.zarr", mode="r"))
    assert image.ome_attributes.multiscales[0].datasets[1].path == "1"


def test_arrays_are_sharded_with_checksums(tmp_path: Path) -> None:
    cellvol.write_pyramid(
        np.zeros((64, 64, 64), np.uint8),
        tmp_path / "c.zarr",
        1.0,
        chunks=(16, 16, 16),
        shards=(32, 32, 32),
    )
    meta = json.loads((tmp_path / "c.zarr" / "0" / "zarr.json").read_text())
    sharding = meta["codecs"][0]
    assert sharding["name"] == "sharding_indexed"
    assert sharding["configuration"]["chunk_shape"] == [16, 16, 16]
    assert [c["name"] for c in sharding["configuration"]["codecs"]] == ["bytes", "zstd", "crc32c"]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [32, 32, 32]
    assert meta["dimension_names"] == ["z", "y", "x"]
    # Empty (all-zero) chunks are stored too: 8 shard objects for a 64³ level of 32³ shards.
    assert len(list((tmp_path / "c.zarr" / "0" / "c").rglob("*"))) >= 8


def _chunk_codecs(image: Path, level: int) -> list[str]:
    meta = json.loads((image / str(level) / "zarr.json").read_text())
    return [c["name"] for c in meta["codecs"][0]["configuration"]["codecs"]]


def test_coarse_image_levels_are_uncompressed_and_read_by_every_reader(tmp_path: Path) -> None:
    data = SyntheticVolume((64, 64, 64), seed=3)
    image = tmp_path / "i.zarr"
    cellvol.write_pyramid(data, image, 1.0, chunks=(8, 8, 8), shards=(16, 16, 16), n_levels=4)
    assert [_chunk_codecs(image, level) for level in range(4)] == [
        ["bytes", "zstd", "crc32c"],
        ["bytes", "zstd", "crc32c"],
        ["bytes", "crc32c"],  # 1/64 of level 0's voxels
        ["bytes", "crc32c"],
    ]
    expected = downsample(downsample(data[:], (2, 2, 2), "mean"), (2, 2, 2), "mean")
    np.testing.assert_array_equal(cellvol.open(image).level(2)[:], expected)
    np.testing.assert_array_equal(zarr.open_array(image / "2", mode="r")[:], expected)
    ts = pytest.importorskip("tensorstore")
    stored = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(image / "2")}})
    np.testing.assert_array_equal(stored.result().read().result(), expected)


def test_labels_and_a_zero_fraction_compress_every_level(tmp_path: Path) -> None:
    labels = np.random.default_rng(4).choice([0, 5, 9], size=(32, 32, 32)).astype(np.uint32)
    cellvol.write_pyramid(labels, tmp_path / "l.zarr", 1.0, method="mode", n_levels=3)
    image = np.zeros((32, 32, 32), np.uint8)
    cellvol.write_pyramid(image, tmp_path / "z.zarr", 1.0, n_levels=3, uncompressed_fraction=0)
    for name in ("l.zarr", "z.zarr"):
        assert all("zstd" in _chunk_codecs(tmp_path / name, level) for level in range(3)), name


def test_labels_keep_ids_with_mode(tmp_path: Path) -> None:
    labels = np.random.default_rng(4).choice([0, 5, 2**33], size=(32, 32, 32)).astype(np.uint64)
    cellvol.write_pyramid(labels, tmp_path / "l.zarr", 1.0, method="mode", n_levels=3)
    vol = cellvol.open(tmp_path / "l.zarr")
    for level in vol.levels:
        assert set(np.unique(level[:])) <= {0, 5, 2**33}
    assert vol.multiscale.method == "mode"


def test_progress_events_cover_every_task(tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    result = cellvol.write_pyramid(
        np.zeros((64, 64, 64), np.uint8),
        tmp_path / "p.zarr",
        1.0,
        shards=(32, 32, 32),
        chunks=(16, 16, 16),
        n_levels=2,
        progress=events.append,
    )
    for stage in result.schedule.stages:
        final = [e for e in events if e.stage == stage.index][-1]
        top = result.plan.levels[stage.top]
        assert final.done == final.total == top.n_shards
        assert final.levels == stage.levels
    # Every source byte was read once, by the first stage.
    assert sum(e.nbytes for e in events if e.stage == 0 and e.done == e.total) == 64**3


def test_existing_destination_is_not_overwritten(tmp_path: Path) -> None:
    dest = tmp_path / "x.zarr"
    cellvol.write_pyramid(np.ones((8, 8, 8), np.uint8), dest, 1.0)
    with pytest.raises(WriteConflictError, match="different parameters"):
        cellvol.write_pyramid(np.zeros((8, 8, 8), np.uint8), dest, 1.0)
    assert cellvol.open(dest)[:].min() == 1  # untouched
    cellvol.write_pyramid(np.zeros((8, 8, 8), np.uint8), dest, 1.0, overwrite=True)
    assert cellvol.open(dest)[:].max() == 0


def test_unfinished_write_is_not_read_as_an_image(tmp_path: Path) -> None:
    dest = tmp_path / "u.zarr"
    cellvol.write_pyramid(np.ones((8, 8, 8), np.uint8), dest, 1.0)
    group = zarr.open_group(dest, mode="r+")
    group.attrs.clear()  # as if the process died before the metadata step
    with pytest.raises(cellvol.NotOMEZarrError, match="did not finish"):
        cellvol.open(dest)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (np.zeros((4, 4)), r"5-D \(t, c, z, y, x\); got shape \(4, 4\)"),
        (np.zeros((0, 4, 4)), "empty axis"),
        (np.zeros((4, 4, 4), dtype=complex), "dtype complex128 is not supported"),
        (np.zeros((4, 4, 4), dtype=bool), "dtype bool is not supported"),
        ([[[1]]], "shape, dtype and slicing"),
    ],
)
def test_bad_sources_are_refused_before_writing(tmp_path: Path, source, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        cellvol.write_pyramid(source, tmp_path / "bad.zarr", 1.0)
    assert not (tmp_path / "bad.zarr").exists()


def test_bad_layout_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="whole number of chunks"):
        cellvol.write_pyramid(
            np.zeros((8, 8, 8), np.uint8),
            tmp_path / "b.zarr",
            1.0,
            chunks=(4, 4, 4),
            shards=(6, 8, 8),
        )
    assert not (tmp_path / "b.zarr").exists()


def test_bad_compression_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="compression_level must be 1-22, got 23"):
        cellvol.write_pyramid(np.zeros((8, 8, 8)), tmp_path / "c.zarr", 1.0, compression_level=23)
    with pytest.raises(LayoutError, match="uncompressed_fraction must be between 0 and 1"):
        cellvol.write_pyramid(
            np.zeros((8, 8, 8)), tmp_path / "c.zarr", 1.0, uncompressed_fraction=2
        )
    assert not (tmp_path / "c.zarr").exists()


def test_bad_method_and_voxel_size(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown downsampling method 'median'"):
        cellvol.write_pyramid(np.zeros((8, 8, 8)), tmp_path / "m.zarr", 1.0, method="median")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="positive and finite"):
        cellvol.write_pyramid(np.zeros((8, 8, 8)), tmp_path / "m.zarr", (1, 0, 1))


def test_dask_source_is_not_computed_whole(tmp_path: Path) -> None:
    # A 1-TiB-shaped dask graph must plan without materialising; we only check the plan step
    # refuses nothing and that writing a small slice of a huge lazy source works.
    huge = SyntheticVolume((20000, 40000, 40000)).to_dask(chunks=(256, 256, 256))
    small = huge[:64, :64, :64]
    assert isinstance(small, da.Array)
    cellvol.write_pyramid(small, tmp_path / "s.zarr", 1.0)
    np.testing.assert_array_equal(cellvol.open(tmp_path / "s.zarr")[:], small.compute())


def test_memmap_views_are_not_mistaken_for_the_whole_file(tmp_path: Path) -> None:
    from cellvol.write._inputs import MemmapSource, portable

    path = tmp_path / "raw.npy"
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(10, 4, 4))
    data[:] = np.arange(10, dtype=np.uint8)[:, None, None]
    data.flush()
    mapped = np.load(path, mmap_mode="r")
    assert isinstance(portable(mapped), MemmapSource)
    np.testing.assert_array_equal(portable(mapped)[3:5], mapped[3:5])
    view = mapped[5:]
    assert portable(view) is view


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/smaps")
def test_a_memory_mapped_source_leaves_no_pages_mapped(tmp_path: Path) -> None:
    # The caller's map outlives the write: any page read through it would stay resident.
    path = tmp_path / "input.npy"
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(64, 512, 1024))
    data[:] = np.arange(1024, dtype=np.uint8)
    data.flush()
    del data
    source = np.load(path, mmap_mode="r")
    cellvol.write_pyramid(source, tmp_path / "out.zarr", 1.0, chunks=(32,) * 3, n_levels=2)
    assert resident_kib(str(path)) < 1024  # of 32 MiB read


def test_a_write_from_numpy_and_the_cli_never_import_dask(tmp_path: Path) -> None:
    # dask takes about a second to import: reading, the CLI's start and a write from numpy or
    # a file must not pay for it (a dask array's own caller has imported it already).
    import subprocess

    out = str(tmp_path / "x.zarr")
    code = (
        "import sys, numpy as np, cellvol, cellvol.cli\n"
        f"cellvol.write_pyramid(np.ones((9, 10, 11), np.uint8), {out!r}, 1.0)\n"
        "print(sorted(m for m in sys.modules if m == 'dask' or m.startswith('dask.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_dask_source_is_read_as_dask(tmp_path: Path) -> None:
    data = np.arange(9 * 10 * 11, dtype=np.uint16).reshape(9, 10, 11)
    cellvol.write_pyramid(da.from_array(data, chunks=4), tmp_path / "d.zarr", 1.0, n_levels=1)
    np.testing.assert_array_equal(cellvol.open(tmp_path / "d.zarr")[:], data)
