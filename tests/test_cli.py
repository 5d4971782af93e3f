"""The command line, run as a user runs it: a real subprocess for the entry point."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cellvol
from cellvol.cli import app

runner = CliRunner()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``cellvol`` entry point in a new process."""
    exe = Path(sys.executable).with_name("cellvol")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("demo", "info"):
        assert command in result.stdout


def test_version() -> None:
    assert run("--version").stdout.strip() == f"cellvol {cellvol.__version__}"


def test_demo_writes_a_valid_pyramid_and_reports_it(tmp_path: Path) -> None:
    dest = tmp_path / "demo.ome.zarr"
    result = run("demo", str(dest), "--shape", "64,160,300", "--seed", "1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in (
        "level",
        "shape",
        "chunks",
        "shards",
        "voxel size (nm)",
        "compression ratio",
        "valid OME-Zarr 0.5",
        "cellvol info",
        "MiB",
    ):
        assert expected in out, f"{expected!r} missing from demo output:\n{out}"
    vol = cellvol.open(dest)
    assert vol.shape == (64, 160, 300)
    assert vol.voxel_size == cellvol.VoxelSize.of(2.0)
    assert len(vol) > 1
    # A second run replaces the earlier demo (and only a demo).
    assert run("demo", str(dest), "--shape", "32,32,32").returncode == 0
    assert cellvol.open(dest).shape == (32, 32, 32)


def test_demo_refuses_to_replace_something_else(tmp_path: Path) -> None:
    dest = tmp_path / "precious.zarr"
    cellvol.write_pyramid(np.ones((8, 8, 8), np.uint8), dest, 1.0)
    result = run("demo", str(dest), "--shape", "16,16,16")
    assert result.returncode == 1
    assert "not an earlier cellvol demo" in result.stderr
    assert "Traceback" not in result.stderr
    assert cellvol.open(dest)[:].min() == 1


def test_info_table_and_json(tmp_path: Path) -> None:
    dest = tmp_path / "i.ome.zarr"
    cellvol.write_pyramid(np.zeros((32, 64, 64), np.uint8), dest, (3, 1, 1), n_levels=2)
    table = runner.invoke(app, ["info", str(dest)], terminal_width=200)
    assert table.exit_code == 0, table.output
    assert "valid OME-Zarr 0.5" in table.output
    assert "32×64×64" in table.output
    result = runner.invoke(app, ["info", str(dest), "--json"])
    summary = json.loads(result.output)
    assert summary["metadata_problems"] == []
    assert summary["levels"][0]["voxel_size"] == [3.0, 1.0, 1.0]
    assert summary["levels"][1]["shape"] == [32, 32, 32]


def test_info_reports_invalid_metadata(tmp_path: Path) -> None:
    import zarr

    dest = tmp_path / "bad.ome.zarr"
    cellvol.write_pyramid(np.zeros((8, 8, 8), np.uint8), dest, 1.0)
    group = zarr.open_group(dest, mode="r+")
    attrs = group.attrs.asdict()
    transforms = attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    transforms.reverse()  # translation before scale: the spec requires the scale first
    group.attrs.put(attrs)
    result = runner.invoke(app, ["info", str(dest)], terminal_width=200)
    assert result.exit_code == 0
    assert "metadata has problems" in result.output
    assert "must come first" in result.output


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("{tmp}/missing.zarr", "missing.zarr"),
        ("gs://bucket/x.zarr", "gs"),
        ("{tmp}", "holds no zarr group or array"),
    ],
)
def test_info_bad_input_is_one_clear_line(tmp_path: Path, target: str, message: str) -> None:
    result = run("info", target.format(tmp=tmp_path))
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_convert_npy_then_rerun_is_a_resume(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 255, size=(40, 300, 300), dtype=np.uint8)
    np.save(tmp_path / "in.npy", data)
    dest = tmp_path / "out.ome.zarr"
    args = ["convert", str(tmp_path / "in.npy"), str(dest), "--voxel-size", "30,5,5"]
    first = runner.invoke(app, args, terminal_width=200)
    assert first.exit_code == 0, first.output
    assert "valid OME-Zarr 0.5" in first.output
    vol = cellvol.open(dest)
    np.testing.assert_array_equal(vol[:], data)
    assert vol.voxel_size == cellvol.VoxelSize(30, 5, 5)
    assert vol.level(1).voxel_size == cellvol.VoxelSize(30, 10, 10)  # anisotropic: y, x only
    second = runner.invoke(app, args, terminal_width=200)
    assert second.exit_code == 0
    assert "0 shards written" in second.output


def test_convert_compression_options(tmp_path: Path) -> None:
    np.save(tmp_path / "in.npy", np.arange(32**3, dtype=np.uint16).reshape(32, 32, 32))
    dest = tmp_path / "out.zarr"
    args = ["convert", str(tmp_path / "in.npy"), str(dest), "--voxel-size", "4", "--levels", "3"]
    options = ["--compression-level", "9", "--uncompressed-fraction", "0.125"]
    result = runner.invoke(app, [*args, *options], terminal_width=200)
    assert result.exit_code == 0, result.output
    codecs = [
        json.loads((dest / str(level) / "zarr.json").read_text())["codecs"][0]["configuration"][
            "codecs"
        ]
        for level in range(3)
    ]
    assert codecs[0][1] == {"name": "zstd", "configuration": {"level": 9, "checksum": False}}
    assert [c["name"] for c in codecs[1]] == ["bytes", "crc32c"]  # 1/8 of the voxels
    refused = runner.invoke(app, [*args, "--compression-level", "30"], terminal_width=200)
    assert refused.exit_code != 0
    assert "compression_level must be 1-22, got 30" in str(refused.exception or refused.output)


def test_convert_without_voxel_size_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "in.npy", np.zeros((4, 4, 4), np.uint8))
    result = run("convert", str(tmp_path / "in.npy"), str(tmp_path / "o.zarr"))
    assert result.returncode == 1
    assert "records no complete voxel size\nhint: give one with --voxel-size Z,Y,X" in result.stderr
    assert not (tmp_path / "o.zarr").exists()


def test_convert_mrc_resume_and_export(tmp_path: Path) -> None:
    mrcfile = pytest.importorskip("mrcfile")
    data = np.random.default_rng(1).integers(-500, 500, (30, 80, 90), dtype=np.int16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # mrcfile vs numpy 2.5
        with mrcfile.new(tmp_path / "tomo.mrc") as mrc:
            mrc.set_data(data)
            mrc.voxel_size = 8.0  # Å
    dest = tmp_path / "tomo.ome.zarr"
    first = run("convert", str(tmp_path / "tomo.mrc"), str(dest))
    assert first.returncode == 0, first.stderr
    assert "tomo.mrc: MRC volume 30 × 80 × 90 (z, y, x) mode 1 int16" in first.stdout
    assert "0.8 × 0.8 × 0.8 nanometer" in first.stdout
    np.testing.assert_array_equal(cellvol.open(dest)[:], data)

    # An interrupted write (no completion marker) needs --resume to continue.
    (dest / "_cellvol" / "complete.json").unlink()
    refused = run("convert", str(tmp_path / "tomo.mrc"), str(dest))
    assert refused.returncode == 1
    assert "interrupted write" in refused.stderr
    assert "--resume" in refused.stderr
    resumed = run("convert", str(tmp_path / "tomo.mrc"), str(dest), "--resume")
    assert resumed.returncode == 0, resumed.stderr

    out = tmp_path / "part.mrc"
    exported = run("export", str(dest), str(out), "--region", "0:10,:,20:60")
    assert exported.returncode == 0, exported.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with mrcfile.open(out) as mrc:
            np.testing.assert_array_equal(mrc.data, data[0:10, :, 20:60])
            assert float(mrc.voxel_size.x) == pytest.approx(8.0)
    again = run("export", str(dest), str(out))
    assert again.returncode == 1
    assert "part.mrc exists" in again.stderr


def test_export_uint8_to_mrc_standard_or_imod_unsigned(tmp_path: Path) -> None:
    mrcfile = pytest.importorskip("mrcfile")
    data = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    cellvol.write_pyramid(data, tmp_path / "u.zarr", 1.0)
    modes = {}
    for name, extra in (("standard.mrc", []), ("imod.mrc", ["--imod-unsigned"])):
        result = runner.invoke(
            app, ["export", str(tmp_path / "u.zarr"), str(tmp_path / name), *extra]
        )
        assert result.exit_code == 0, result.output
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with mrcfile.open(tmp_path / name, permissive=True) as mrc:
                modes[name] = int(mrc.header.mode)
    assert modes == {"standard.mrc": 6, "imod.mrc": 0}


def test_convert_tiff_stack_with_voxel_size(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    stack = tmp_path / "fib"
    stack.mkdir()
    data = np.random.default_rng(2).integers(0, 255, (12, 40, 50), dtype=np.uint8)
    for z, plane in enumerate(data):
        tifffile.imwrite(stack / f"img_{z}.tif", plane)
    result = runner.invoke(
        app, ["convert", str(stack), str(tmp_path / "f.zarr"), "--voxel-size", "10,5,5"],
        terminal_width=200,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "stack of 12 TIFF slices img_0.tif .. img_11.tif" in result.output
    np.testing.assert_array_equal(cellvol.open(tmp_path / "f.zarr")[:], data)
