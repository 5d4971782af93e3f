"""Writing images with channels ``(c, z, y, x)`` and time points ``(t, c, z, y, x)``."""

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

import cellvol
from cellvol.errors import InvalidInputError, WriteConflictError
from cellvol.write._downsample import downsample

LAYOUT = {"chunks": (8, 16, 16), "shards": (16, 32, 32), "n_levels": 3}


def _data(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, size=shape, dtype=np.uint16)


def _ome(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())["attributes"]["ome"]


def test_channels_are_never_downsampled_and_each_is_its_own_pyramid(tmp_path: Path) -> None:
    data = _data((3, 20, 40, 50))
    dest = tmp_path / "c.ome.zarr"
    result = cellvol.write_pyramid(
        data, dest, (30, 5, 5), channel_names=["dna", "membrane", "er"], **LAYOUT
    )
    group = zarr.open_group(dest, mode="r")
    expected = [data[c] for c in range(3)]
    for planned in result.plan.levels:
        array = group[planned.path]
        assert array.shape[0] == 3  # every level keeps every channel
        assert array.chunks[0] == 1
        assert array.shards[0] == 1
        assert array.metadata.dimension_names == ("c", "z", "y", "x")
        if planned.path != "0":
            expected = [downsample(e, planned.factors[1:], "mean") for e in expected]
        np.testing.assert_array_equal(array[:], np.stack(expected))
    assert cellvol.validate(dest, strict=True).valid, cellvol.validate(dest, strict=True)


def test_a_channel_shard_holds_the_bytes_of_that_channel_written_alone(tmp_path: Path) -> None:
    data = _data((2, 3, 20, 40, 50), seed=1)
    cellvol.write_pyramid(data, tmp_path / "tc.zarr", 1.0, **LAYOUT)
    cellvol.write_pyramid(data[1, 2], tmp_path / "one.zarr", 1.0, **LAYOUT)
    for level in "012":
        alone = sorted((tmp_path / "one.zarr" / level / "c").rglob("*"))
        alone = [p for p in alone if p.is_file()]
        assert alone
        for path in alone:
            index = path.relative_to(tmp_path / "one.zarr" / level / "c")
            inside = tmp_path / "tc.zarr" / level / "c" / "1" / "2" / index
            assert inside.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("version", ["0.5", "0.6"])
def test_metadata_types_the_axes_and_displays_each_channel(tmp_path: Path, version: str) -> None:
    dest = tmp_path / "tc.zarr"
    data = _data((2, 2, 10, 20, 20), seed=2)
    data[:, 1] //= 4  # the second channel is dimmer: its own window
    cellvol.write_pyramid(
        data, dest, (40, 4, 4), channel_names=["lm", "blobs"],
        channel_colors=["#00ff00", "FF00FF"], ome_version=version, n_levels=2,
    )  # fmt: skip
    ome = _ome(dest)
    multiscale = ome["multiscales"][0]
    axes = multiscale["axes"] if version == "0.5" else multiscale["coordinateSystems"][0]["axes"]
    assert [(a["name"], a["type"]) for a in axes] == [
        ("t", "time"), ("c", "channel"), ("z", "space"), ("y", "space"), ("x", "space"),
    ]  # fmt: skip
    assert "unit" not in axes[0]
    assert "unit" not in axes[1]
    for level in cellvol.open(dest).levels:  # scale 1 and no shift on time and channel
        assert level.scale[:2] == (1.0, 1.0)
        assert level.translation[:2] == (0.0, 0.0)
    channels = ome["omero"]["channels"]
    assert [c["label"] for c in channels] == ["lm", "blobs"]
    assert [c["color"] for c in channels] == ["00FF00", "FF00FF"]
    assert channels[1]["window"]["end"] < channels[0]["window"]["end"]
    assert ome["omero"]["rdefs"]["defaultZ"] == 5
    assert cellvol.validate(dest, strict=True).valid, cellvol.validate(dest, strict=True)


def test_unnamed_channels_get_names_and_distinct_colours(tmp_path: Path) -> None:
    cellvol.write_pyramid(_data((2, 8, 16, 16)), tmp_path / "c.zarr", 1.0)
    channels = _ome(tmp_path / "c.zarr")["omero"]["channels"]
    assert [c["label"] for c in channels] == ["c0", "c1"]
    assert channels[0]["color"] != channels[1]["color"]


def test_a_finished_write_is_kept_and_a_changed_one_refused(tmp_path: Path) -> None:
    data = _data((2, 16, 32, 32), seed=3)
    dest = tmp_path / "c.zarr"
    first = cellvol.write_pyramid(data, dest, 1.0, channel_names=["a", "b"], **LAYOUT)
    assert first.shards_written > 0
    again = cellvol.write_pyramid(data, dest, 1.0, channel_names=["a", "b"], **LAYOUT)
    assert (again.shards_written, again.shards_reused) == (0, 0)
    with pytest.raises(WriteConflictError):
        cellvol.write_pyramid(data, dest, 1.0, channel_names=["b", "a"], **LAYOUT)
    report = cellvol.verify(dest)
    assert report.intact, report.summary()
    assert report.shards >= sum(level.n_shards for level in first.plan.levels)


@pytest.mark.parametrize(
    ("shape", "kwargs", "message"),
    [
        ((2, 4, 4, 4), {"channel_names": ["a"]}, r"1 channel names \['a'\] for 2 channel"),
        ((2, 4, 4, 4), {"channel_names": ["a", "a"]}, "distinct and non-empty"),
        ((2, 4, 4, 4), {"channel_colors": ["00FF00"]}, "1 channel colours for 2 channel"),
        ((2, 4, 4, 4), {"channel_colors": ["green", "red"]}, "'green' is not a colour"),
        ((2, 4, 4, 4), {"axes": "zcyx"}, "unknown axes 'zcyx'; expected one of zyx, czyx"),
        ((2, 4, 4, 4), {"axes": "tczyx"}, r"axes 'tczyx' need a 5-D source; got shape \(2, 4"),
        ((2, 2, 2, 4, 4, 4), {}, r"got shape \(2, 2, 2, 4, 4, 4\) \(6-D\)"),
    ],
)
def test_bad_channel_arguments_are_refused_before_writing(
    tmp_path: Path, shape: tuple[int, ...], kwargs: dict, message: str
) -> None:
    dest = tmp_path / "bad.zarr"
    with pytest.raises(InvalidInputError, match=message):
        cellvol.write_pyramid(np.zeros(shape, np.uint8), dest, 1.0, **kwargs)
    assert not dest.exists()


def test_a_3d_image_records_no_channel_parameters(tmp_path: Path) -> None:
    cellvol.write_pyramid(_data((8, 16, 16)), tmp_path / "v.zarr", 1.0)
    job = json.loads((tmp_path / "v.zarr" / "_cellvol" / "job.json").read_text())
    assert not {"axes", "channel_names", "channel_colors"} & set(job["parameters"])
    channels = _ome(tmp_path / "v.zarr")["omero"]["channels"]
    assert [(c["label"], c["color"]) for c in channels] == [("v", "FFFFFF")]


class _Flaky:
    """A source that fails after ``n`` reads, as a crashed reader or network would."""

    def __init__(self, data: np.ndarray, n: int) -> None:
        self.data, self.n, self.shape, self.dtype = data, n, data.shape, data.dtype
        self.reads = 0

    def __getitem__(self, key: object) -> np.ndarray:
        self.reads += 1
        if self.reads > self.n:
            raise OSError("simulated read failure")
        return self.data[key]


def _files(root: Path) -> dict[str, bytes]:
    """Every object of the image but the ledger (whose records name this run's moments)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != "_cellvol"
    }


def test_an_interrupted_write_resumes_to_the_same_bytes(tmp_path: Path) -> None:
    data = _data((2, 3, 20, 40, 50), seed=6)
    options = {"channel_names": ["a", "b", "c"], "workers": 1, "name": "tc", **LAYOUT}
    cellvol.write_pyramid(data, tmp_path / "clean.zarr", 1.0, **options)
    dest = tmp_path / "resumed.zarr"
    with pytest.raises(OSError, match="simulated"):
        cellvol.write_pyramid(_Flaky(data, 7), dest, 1.0, **options)
    result = cellvol.write_pyramid(data, dest, 1.0, **options)
    assert result.shards_reused > 0
    assert _files(dest) == _files(tmp_path / "clean.zarr")
    # Every shard of every (t, c) volume has its digest, and they hold.
    objects = json.loads((dest / "_cellvol" / "digests.json").read_text())["objects"]
    shards = {k for k in _files(dest) if "/c/" in k}
    assert shards <= set(objects)
    assert any(key.startswith("0/c/1/2/") for key in shards)
    assert cellvol.verify(dest).intact


def test_a_dask_source_writes_the_same_bytes_as_numpy(tmp_path: Path) -> None:
    import dask.array as da

    data = _data((3, 20, 40, 50), seed=8)
    plan = cellvol.write_pyramid(data, tmp_path / "np.zarr", 1.0, name="c", **LAYOUT).plan
    lazy = da.from_array(data, chunks=(1, 7, 13, 50))
    cellvol.write_pyramid(lazy, tmp_path / "dask.zarr", 1.0, name="c", **LAYOUT)
    shards = {k: v for k, v in _files(tmp_path / "np.zarr").items() if "/c/" in k}
    assert len(shards) == sum(level.n_shards for level in plan.levels)
    from_dask = _files(tmp_path / "dask.zarr")
    assert {k: from_dask[k] for k in shards} == shards  # the provenance tells them apart
