"""The command line with channels: convert a stack per channel, info, export one or all."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cellvol
from cellvol.cli import app

tifffile = pytest.importorskip("tifffile")
h5py = pytest.importorskip("h5py")
runner = CliRunner()
DATA = np.random.default_rng(9).integers(0, 255, (2, 6, 16, 20), dtype=np.uint8)


def test_a_stack_per_channel_converts_shows_and_exports(tmp_path: Path) -> None:
    for c, name in enumerate(("dna", "er")):
        (tmp_path / name).mkdir()
        for z in range(DATA.shape[1]):
            tifffile.imwrite(tmp_path / name / f"s_{z}.tif", DATA[c, z])
    dest = tmp_path / "out.zarr"
    result = runner.invoke(
        app,
        ["convert", "--channel", f"dna={tmp_path / 'dna'}", "--channel",
         f"er={tmp_path / 'er' / 's_*.tif'}", "--voxel-size", "5", str(dest)],
        terminal_width=200,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "channels: dna #00FF00, er #FF00FF" in result.output
    np.testing.assert_array_equal(cellvol.open(dest)[:], DATA)
    summary = json.loads(runner.invoke(app, ["info", str(dest), "--json"]).output)
    assert summary["channels"] == ["dna", "er"]
    assert summary["axes"] == ["c", "z", "y", "x"]
    one = runner.invoke(app, ["export", str(dest), str(tmp_path / "er.tif"), "--channel", "er"])
    assert one.exit_code == 0, one.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "er.tif"), DATA[1])
    every = runner.invoke(app, ["export", str(dest), str(tmp_path / "all.tif")])
    assert every.exit_code == 0, every.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "all.tif"), DATA)


def test_hdf5_axes_option(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["image"] = DATA.transpose(1, 0, 2, 3)
    dest = tmp_path / "h.zarr"
    result = runner.invoke(
        app, ["convert", str(tmp_path / "x.h5"), str(dest), "--axes", "zcyx", "--voxel-size", "1"]
    )
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(cellvol.open(dest)[:], DATA)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--channel", "noequals"], "expected NAME=INPUT"),
        (["--channel", "a=x.tif", "--channel", "a=y.tif"], "expected NAME=INPUT with a new name"),
    ],
)
def test_bad_channel_options(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["convert", *args, str(tmp_path / "o.zarr")], terminal_width=200)
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "o.zarr").exists()


def test_convert_without_dest_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["convert", str(tmp_path / "x.tif")], terminal_width=200)
    assert result.exit_code != 0
    assert "missing DEST" in result.output
