"""Reading OME-Zarr that other tools wrote: ome-zarr-py, ngff-zarr and tensorstore, 0.4 and 0.5.

Each store is generated here by the tool itself; cellvol must give back the tool's own voxels
at every level, and the voxel sizes and offsets the tool recorded.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

import cellvol

DATA = np.random.default_rng(21).integers(0, 255, (16, 64, 48), dtype=np.uint8)
VOXEL = (30.0, 4.0, 4.0)  # z, y, x in nanometres


def assert_levels_match_the_store(volume: cellvol.Volume, group_path: Path) -> None:
    group = zarr.open_group(group_path, mode="r")
    assert len(volume.levels) >= 2
    for level in volume.levels:
        np.testing.assert_array_equal(level[:], np.asarray(group[level.path][:]))
    np.testing.assert_array_equal(volume[:], DATA)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_py(tmp_path: Path, version: str) -> None:
    pytest.importorskip("ome_zarr")
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    fmt = FormatV04() if version == "0.4" else FormatV05()
    path = tmp_path / f"omezarr-{version}.zarr"
    group = zarr.open_group(path, mode="w", zarr_format=2 if version == "0.4" else 3)
    write_image(
        DATA,
        group,
        axes="zyx",
        scale=dict(zip("zyx", VOXEL, strict=True)),
        axes_units={axis: "nanometer" for axis in "zyx"},
        scale_factors=[2],  # ome-zarr-py halves y and x only, given integers
        fmt=fmt,
    )
    volume = cellvol.open(path)
    assert volume.ome_version == version
    assert volume.voxel_size == cellvol.VoxelSize(*VOXEL)
    assert volume.level(1).voxel_size == cellvol.VoxelSize(30, 8, 8)
    assert_levels_match_the_store(volume, path)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ngff_zarr(tmp_path: Path, version: str) -> None:
    nz = pytest.importorskip("ngff_zarr")
    image = nz.to_ngff_image(
        DATA,
        dims=["z", "y", "x"],
        scale=dict(zip("zyx", VOXEL, strict=True)),
        translation={"z": 300.0, "y": 40.0, "x": -8.0},
        axes_units={axis: "nanometer" for axis in "zyx"},
    )
    multiscales = nz.to_multiscales(
        image, scale_factors=[2], chunks=16, method=nz.Methods.DASK_BIN_SHRINK
    )
    path = tmp_path / f"ngff-{version}.zarr"
    nz.to_ngff_zarr(str(path), multiscales, version=version)
    volume = cellvol.open(path)
    assert volume.ome_version == version
    assert volume.voxel_size == cellvol.VoxelSize(*VOXEL)
    assert volume.levels[0].translation == pytest.approx((300.0, 40.0, -8.0))
    assert_levels_match_the_store(volume, path)
    # Physical coordinates follow: the voxel centred at z = 300 + 2 * 30 nm is plane 2.
    np.testing.assert_array_equal(volume.region(z=(359, 361)).read()[0], DATA[2])


def test_tensorstore_arrays_in_an_ome_zarr_group(tmp_path: Path) -> None:
    ts = pytest.importorskip("tensorstore")
    path = tmp_path / "ts.ome.zarr"
    levels = [DATA, DATA[:, ::2, ::2]]
    for index, data in enumerate(levels):
        array = ts.open(
            {
                "driver": "zarr3",
                "kvstore": {"driver": "file", "path": str(path / str(index))},
                "metadata": {
                    "shape": list(data.shape),
                    "data_type": "uint8",
                    "chunk_grid": {
                        "name": "regular",
                        "configuration": {"chunk_shape": [8, 32, 32]},
                    },
                    "codecs": [
                        {
                            "name": "sharding_indexed",
                            "configuration": {
                                "chunk_shape": [8, 16, 16],
                                "codecs": [
                                    {"name": "bytes"},
                                    {"name": "zstd", "configuration": {"level": 3}},
                                ],
                                "index_codecs": [{"name": "bytes"}, {"name": "crc32c"}],
                            },
                        }
                    ],
                },
                "create": True,
            }
        ).result()
        array.write(data).result()
    multiscale = {
        "axes": [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"],
        "datasets": [
            {
                "path": str(i),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [VOXEL[0], VOXEL[1] * 2**i, VOXEL[2] * 2**i]}
                ],
            }
            for i in range(2)
        ],
    }
    group = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {"ome": {"version": "0.5", "multiscales": [multiscale]}},
    }
    (path / "zarr.json").write_text(json.dumps(group))
    volume = cellvol.open(path)
    assert volume.levels[1].shards == (8, 32, 32)
    assert volume.level(1).voxel_size == cellvol.VoxelSize(30, 8, 8)
    np.testing.assert_array_equal(volume[:], DATA)
    np.testing.assert_array_equal(volume.level(1)[:], DATA[:, ::2, ::2])
    np.testing.assert_array_equal(volume.plane("x", 5, level=1), DATA[:, ::2, 10])


def _two_dimensional_image(path: Path, units: bool) -> Path:
    """A 2-D OME-Zarr 0.4 image as neuroglancer's ``simple_0.4`` example lays it out."""
    group = zarr.open_group(path, mode="w", zarr_format=2)
    group.create_array("0", data=np.arange(64 * 80, dtype=np.uint8).reshape(64, 80))
    group.create_array("1", data=np.zeros((32, 40), np.uint8))
    axes = [
        {"name": name, "type": "space", **({"unit": "micrometer"} if units else {})}
        for name in ("y", "x")
    ]
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": axes,
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [0.5, 0.25]}],
                },
                {
                    "path": "1",
                    "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.5]}],
                },
            ],
        }
    ]
    return path


def test_two_dimensional_images_report_their_units_and_pixel_sizes(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cellvol.cli import app

    volume = cellvol.open(_two_dimensional_image(tmp_path / "2d.zarr", units=True))
    assert volume.voxel_size is None  # a VoxelSize is z, y, x
    assert volume.unit == "micrometer"
    assert volume.levels[1].spacing == (1.0, 0.5)
    info = volume.info()
    assert info["unit"] == "micrometer"
    assert [level["voxel_size"] for level in info["levels"]] == [[0.5, 0.25], [1.0, 0.5]]
    table = CliRunner().invoke(app, ["info", str(tmp_path / "2d.zarr")], terminal_width=200)
    assert table.exit_code == 0, table.output
    assert "voxel size (µm)" in table.output
    assert "unitless" not in table.output
    assert "0.5 × 0.25" in table.output
    # Without units: still the pixel sizes, and no invented unit.
    bare = cellvol.open(_two_dimensional_image(tmp_path / "bare.zarr", units=False))
    assert bare.unit is None
    assert bare.info()["levels"][0]["voxel_size"] == [0.5, 0.25]
