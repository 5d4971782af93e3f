"""Opening OME-Zarr 0.6 images that other tools wrote: equal voxels, equal placements."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cellvol
from cellvol.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    rng = np.random.default_rng(60)
    return rng.integers(0, 255, size=(24, 64, 48), dtype=np.uint8)


@pytest.fixture(scope="module")
def ngff_zarr_image(tmp_path_factory: pytest.TempPathFactory, volume: np.ndarray):
    ngff_zarr = pytest.importorskip("ngff_zarr")
    image = ngff_zarr.to_ngff_image(
        volume,
        dims=["z", "y", "x"],
        scale={"z": 6.0, "y": 1.5, "x": 1.5},
        translation={"z": 12.0, "y": -3.0, "x": 7.5},
        axes_units={a: "nanometer" for a in "zyx"},
    )
    multiscales = ngff_zarr.to_multiscales(image, scale_factors=[2, 4])
    dest = tmp_path_factory.mktemp("ngff_zarr06") / "lm.ome.zarr"
    ngff_zarr.to_ngff_zarr(str(dest), multiscales, version="0.6")
    return dest, multiscales


def test_an_ngff_zarr_06_image_reads_with_equal_voxels_and_transforms(
    ngff_zarr_image, volume: np.ndarray
) -> None:
    dest, written = ngff_zarr_image
    assert json.loads((dest / "zarr.json").read_text())["attributes"]["ome"]["version"] == "0.6"
    vol = cellvol.open(dest)
    assert vol.ome_version == "0.6"
    assert len(vol.levels) == len(written.images)
    for level, image in zip(vol.levels, written.images, strict=True):
        np.testing.assert_array_equal(level[:], np.asarray(image.data))
        assert tuple(level.scale) == tuple(image.scale[a] for a in "zyx")
        assert tuple(level.translation) == tuple(image.translation[a] for a in "zyx")
    np.testing.assert_array_equal(vol[:], volume)
    assert vol.voxel_size == cellvol.VoxelSize(6.0, 1.5, 1.5)


def test_cellvol_info_and_validate_accept_an_ngff_zarr_06_image(ngff_zarr_image) -> None:
    dest, _ = ngff_zarr_image
    info = runner.invoke(app, ["info", str(dest)], terminal_width=200)
    assert info.exit_code == 0, info.output
    assert "valid OME-Zarr 0.6" in info.output
    assert cellvol.validate(dest).valid


def test_an_ome_zarr_py_06_image_reads_with_equal_voxels_and_transforms(
    tmp_path: Path, volume: np.ndarray
) -> None:
    # ome-zarr-py writes 0.6 through its classes API (its write_image stops at 0.5).
    classes = pytest.importorskip("ome_zarr.classes.image")
    image = classes.OMEZarrImage(
        data=volume,
        axes="zyx",
        scale={"z": 6.0, "y": 1.5, "x": 1.5},
        axes_units={a: "nanometer" for a in "zyx"},
        axes_types={a: "space" for a in "zyx"},
        name="lm",
    )
    dest = tmp_path / "ozp.ome.zarr"
    with warnings.catch_warnings():  # its own pydantic serialiser warns as it writes
        warnings.simplefilter("ignore", UserWarning)
        classes.OMEZarrMultiscale(image, scale_factors=[2, 4]).to_ome_zarr(str(dest), version="0.6")
    theirs = classes.OMEZarrMultiscale.from_ome_zarr(str(dest))
    vol = cellvol.open(dest)
    assert vol.ome_version == "0.6"
    assert len(vol.levels) == len(theirs.images) == 3
    for level, their_image, dataset in zip(
        vol.levels, theirs.images, theirs.metadata.datasets, strict=True
    ):
        np.testing.assert_array_equal(level[:], np.asarray(their_image.data))
        assert tuple(level.scale) == tuple(their_image.scale[a] for a in "zyx")
        # Their model's own matrix of the level's transformation: diagonal and last column.
        matrix = np.asarray(dataset.coordinateTransformations[0].as_affine().affine)
        np.testing.assert_array_equal(np.diag(matrix[:, :3]), level.scale)
        np.testing.assert_array_equal(matrix[:, 3], level.translation)
    np.testing.assert_array_equal(vol[:], volume)
    assert cellvol.validate(dest).valid


def test_an_image_registered_by_an_affine_opens_with_the_affine_at_hand(
    tmp_path: Path, volume: np.ndarray
) -> None:
    dest = tmp_path / "lm.ome.zarr"
    cellvol.write_pyramid(volume, dest, (6.0, 1.5, 1.5), n_levels=2, ome_version="0.6")
    document = json.loads((dest / "zarr.json").read_text())
    multiscale = document["attributes"]["ome"]["multiscales"][0]
    em_axes = [dict(axis) for axis in multiscale["coordinateSystems"][0]["axes"]]
    multiscale["coordinateSystems"].insert(0, {"name": "em", "axes": em_axes})
    rows = [[0.98, -0.17, 0.0, 40.0], [0.17, 0.98, 0.0, -12.0], [0.0, 0.0, 1.02, 5.0]]
    multiscale["coordinateTransformations"] = [
        {"type": "affine", "affine": rows, "input": {"name": "physical"}, "output": {"name": "em"}}
    ]
    (dest / "zarr.json").write_text(json.dumps(document))
    assert cellvol.validate(dest, strict=True).valid
    vol = cellvol.open(dest)
    np.testing.assert_array_equal(vol[:], volume)
    np.testing.assert_array_equal(vol.multiscale.affine("em"), [*rows, [0, 0, 0, 1]])
    assert vol.voxel_size == cellvol.VoxelSize(6.0, 1.5, 1.5)
