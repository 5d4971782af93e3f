"""Writing OME-Zarr 0.6 when asked: cellvol, ome-zarr-models and ngff-zarr all read it back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

import cellvol
from cellvol.cli import app
from cellvol.errors import InvalidInputError

runner = CliRunner()
VOXEL = (8.0, 2.0, 2.0)
ORIGIN = (100.0, 40.0, 20.0)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    rng = np.random.default_rng(6)
    return rng.integers(0, 4000, size=(48, 96, 80), dtype=np.uint16)


@pytest.fixture(scope="module")
def image06(tmp_path_factory: pytest.TempPathFactory, volume: np.ndarray) -> Path:
    dest = tmp_path_factory.mktemp("write06") / "em.ome.zarr"
    cellvol.write_pyramid(
        volume, dest, VOXEL, origin=ORIGIN, chunks=(16, 32, 32), shards=(32, 64, 64),
        n_levels=3, ome_version="0.6",
    )  # fmt: skip
    return dest


def test_the_written_metadata_is_06_and_valid(image06: Path) -> None:
    ome = json.loads((image06 / "zarr.json").read_text())["attributes"]["ome"]
    assert ome["version"] == "0.6"
    multiscale = ome["multiscales"][0]
    assert [s["name"] for s in multiscale["coordinateSystems"]] == ["physical"]
    found = cellvol.validate(image06, strict=True)
    assert found.valid, found.problems
    assert (found.version, found.kind, found.notes) == ("0.6", "image", ())


def test_cellvol_reads_its_06_back_with_every_voxel_and_placement(
    image06: Path, volume: np.ndarray
) -> None:
    vol = cellvol.open(image06)
    assert vol.ome_version == "0.6"
    np.testing.assert_array_equal(vol[:], volume)
    assert vol.voxel_size == cellvol.VoxelSize(*VOXEL)
    assert vol.levels[0].translation == ORIGIN
    assert vol.level(1).voxel_size == cellvol.VoxelSize(8.0, 4.0, 4.0)  # z coarse: y, x shrink


def test_ome_zarr_models_v06_loads_the_image(image06: Path) -> None:
    from ome_zarr_models.v06 import Image

    image = Image.from_zarr(zarr.open_group(image06, mode="r"))
    multiscale = image.attributes.ome.multiscales[0]
    assert [d.path for d in multiscale.datasets] == [
        level.path for level in cellvol.open(image06).levels
    ]


def test_ngff_zarr_reads_the_same_voxels_and_transforms(image06: Path, volume: np.ndarray) -> None:
    ngff_zarr = pytest.importorskip("ngff_zarr")
    read = ngff_zarr.from_ngff_zarr(str(image06))
    ours = cellvol.open(image06)
    assert len(read.images) == len(ours.levels)
    for theirs, level in zip(read.images, ours.levels, strict=True):
        assert tuple(theirs.scale[a] for a in "zyx") == tuple(level.scale)
        assert tuple(theirs.translation[a] for a in "zyx") == tuple(level.translation)
    np.testing.assert_array_equal(np.asarray(read.images[0].data), volume)


def test_verify_accepts_a_06_image(image06: Path) -> None:
    report = cellvol.verify(image06)
    assert report.intact, report.problems


def test_labels_of_a_06_image_are_06_too(tmp_path: Path, volume: np.ndarray) -> None:
    dest = tmp_path / "em.ome.zarr"
    cellvol.write_pyramid(volume, dest, VOXEL, n_levels=2, ome_version="0.6")
    labels = (volume > 2000).astype(np.uint8)
    cellvol.write_labels(dest, labels, "mask")
    for group in (dest / "labels", dest / "labels" / "mask"):
        assert (
            json.loads((group / "zarr.json").read_text())["attributes"]["ome"]["version"] == "0.6"
        )
    assert cellvol.validate(dest / "labels" / "mask", strict=True).valid
    np.testing.assert_array_equal(cellvol.open(dest).labels["mask"][:], labels)
    assert cellvol.verify(dest).intact


def test_convert_writes_06_when_asked(tmp_path: Path, volume: np.ndarray) -> None:
    np.save(tmp_path / "in.npy", volume)
    dest = tmp_path / "out.ome.zarr"
    args = ["convert", str(tmp_path / "in.npy"), str(dest), "--voxel-size", "8,2,2"]
    result = runner.invoke(app, [*args, "--ome-version", "0.6"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "valid OME-Zarr 0.6" in result.output
    np.testing.assert_array_equal(cellvol.open(dest)[:], volume)


def test_an_unknown_version_is_refused_before_anything_is_written(
    tmp_path: Path, volume: np.ndarray
) -> None:
    dest = tmp_path / "never.ome.zarr"
    with pytest.raises(InvalidInputError, match="ome_version"):
        cellvol.write_pyramid(volume, dest, VOXEL, ome_version="0.4")
    assert not dest.exists()


def test_ome_zarr_py_reads_the_same_voxels_and_scales(image06: Path, volume: np.ndarray) -> None:
    classes = pytest.importorskip("ome_zarr.classes.image")
    theirs = classes.OMEZarrMultiscale.from_ome_zarr(str(image06))
    ours = cellvol.open(image06)
    for their_image, level in zip(theirs.images, ours.levels, strict=True):
        assert tuple(their_image.scale[a] for a in "zyx") == tuple(level.scale)
    np.testing.assert_array_equal(np.asarray(theirs.images[0].data), volume)
