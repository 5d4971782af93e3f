"""``cellvol link`` and ``cellvol info SCENE``: the command line over scenes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clem_helpers import TRUE_AFFINE, write_points
from test_cli_errors import check_one_line, run_main
from typer.testing import CliRunner

import cellvol
from cellvol.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("cli_link")
    rng = np.random.default_rng(0)
    em, lm = where / "em.ome.zarr", where / "lm.ome.zarr"
    cellvol.write_pyramid(rng.random((16, 32, 32), np.float32), em, 10.0, ome_version="0.6")
    cellvol.write_pyramid(rng.random((8, 16, 16), np.float32), lm, 40.0, ome_version="0.6")
    return em, lm


def test_link_with_points_reports_the_fit_and_writes_a_valid_scene(
    images: tuple[Path, Path], tmp_path: Path
) -> None:
    em, lm = images
    lm_nm = np.array([[0, 0, 0], [300, 0, 0], [0, 500, 0], [0, 0, 500], [200, 400, 300.0]])
    em_nm = (TRUE_AFFINE[:3, :3] @ lm_nm.T).T + TRUE_AFFINE[:3, 3]
    points = write_points(tmp_path / "beads.csv", lm_nm, em_nm)
    scene = tmp_path / "s.zarr"
    result = runner.invoke(app, ["link", str(scene), f"em={em}", f"lm={lm}", "--points",
                                 str(points), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["reference"] == "em"
    assert summary["fit"]["points"] == 5
    assert summary["fit"]["rms_nm"] < 1e-6
    np.testing.assert_allclose(summary["matrices"]["lm"], TRUE_AFFINE, atol=1e-6)
    assert runner.invoke(app, ["validate", str(scene)]).exit_code == 0
    plain = runner.invoke(app, ["link", str(scene), f"em={em}", f"lm={lm}", "--points",
                                str(points), "--overwrite"])  # fmt: skip
    assert plain.exit_code == 0
    assert "RMS residual" in plain.output


def test_link_with_an_affine_or_a_scale_and_info_describes_the_scene(
    images: tuple[Path, Path], tmp_path: Path
) -> None:
    em, lm = images
    scene = tmp_path / "a.zarr"
    affine = json.dumps(TRUE_AFFINE[:3].tolist())
    result = runner.invoke(app, ["link", str(scene), f"em={em}", f"lm={lm}", "--affine", affine])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(cellvol.open_scene(scene).transform("lm", "em"), TRUE_AFFINE)
    info = runner.invoke(app, ["info", str(scene)])
    assert info.exit_code == 0, info.output
    assert "OME-Zarr 0.6 scene of 2 images" in info.output
    assert "lm → em (affine)" in info.output
    described = json.loads(runner.invoke(app, ["info", str(scene), "--json"]).output)
    assert described["images"]["em"]["shape"] == [16, 32, 32]
    scaled = tmp_path / "b.zarr"
    result = runner.invoke(app, ["link", str(scaled), f"em={em}", f"lm={lm}",
                                 "--scale", "1,2,2", "--translation", "0,5,5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.diag(cellvol.open_scene(scaled).transform("lm", "em")),
                               [1, 2, 2, 1])  # fmt: skip


def test_link_errors_are_one_line(
    images: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    em, lm = images
    flat = write_points(tmp_path / "flat.csv", np.array([[0, 0, 0], [0, 1, 0], [0, 0, 1],
                        [0, 1, 1.0]]) * 100, np.eye(4, 3) * 100)  # fmt: skip
    args = ["link", str(tmp_path / "s.zarr"), f"em={em}", f"lm={lm}", "--points", str(flat)]
    status, stderr = run_main(args, capsys)
    assert status == 1
    assert "flat.csv: the 'lm' points are coplanar" in check_one_line(args, status, stderr)
    args = ["link", str(tmp_path / "s.zarr"), "em", f"lm={lm}"]
    status, stderr = run_main(args, capsys)
    assert status == 2
    assert "expected NAME=IMAGE" in check_one_line(args, status, stderr)
