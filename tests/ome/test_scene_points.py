"""Point pairs to an affine: recovered within 0.5 % in scale and half an LM voxel in shift."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from clem_helpers import LM_VOXEL, TRUE_AFFINE, write_points

from cellvol.errors import InvalidInputError
from cellvol.ome._points import fit_affine, read_points

#: A 4 x 8 x 8 um LM field: the fiducials of a real CLEM registration spread through it.
_FIELD = np.array([4000.0, 8000.0, 8000.0])
_SPREAD = np.array([*itertools.product((0.15, 0.85), repeat=3), (0.5, 0.5, 0.5), (0.4, 0.6, 0.3)])


def _noisy_pairs(n: int, noise_nm: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lm = (_SPREAD[:n] + rng.uniform(-0.05, 0.05, (n, 3))) * _FIELD
    em = (TRUE_AFFINE[:3, :3] @ lm.T).T + TRUE_AFFINE[:3, 3]
    # Localisation errors on both sides: a few nm for LM beads, a quarter of that in EM.
    return lm + rng.normal(0, noise_nm, lm.shape), em + rng.normal(0, noise_nm / 4, em.shape)


def test_noisy_pairs_give_the_affine_within_half_a_percent_and_half_an_lm_voxel(
    tmp_path: Path,
) -> None:
    lm, em = _noisy_pairs(10, noise_nm=5.0)
    fit = fit_affine(read_points(write_points(tmp_path / "pairs.csv", lm, em)))
    assert (fit.pairs.moving, fit.pairs.reference) == ("lm", "em")
    true_scale = np.linalg.svd(TRUE_AFFINE[:3, :3], compute_uv=False)
    found_scale = np.linalg.svd(fit.matrix[:3, :3], compute_uv=False)
    assert np.all(np.abs(found_scale / true_scale - 1) < 0.005)
    assert np.all(np.abs(fit.matrix[:3, 3] - TRUE_AFFINE[:3, 3]) < LM_VOXEL / 2)
    # And where it matters, through the LM volume: its corners land within half an LM voxel.
    corners = np.array(np.meshgrid(*[[0, e] for e in _FIELD])).reshape(3, -1)
    true = TRUE_AFFINE[:3, :3] @ corners + TRUE_AFFINE[:3, 3][:, None]
    found = fit.matrix[:3, :3] @ corners + fit.matrix[:3, 3][:, None]
    assert np.all(np.abs(found - true) < LM_VOXEL[:, None] / 2)
    # The residuals say how well the points agree: of the order of the noise.
    assert 0 < fit.rms_nm < 30
    assert fit.max_nm >= fit.rms_nm
    assert len(fit.residuals_nm) == 10


def test_exact_points_are_fitted_exactly_with_zero_residuals(tmp_path: Path) -> None:
    lm, em = _noisy_pairs(4, noise_nm=0.0)
    fit = fit_affine(read_points(write_points(tmp_path / "four.csv", lm, em)))
    np.testing.assert_allclose(fit.matrix, TRUE_AFFINE, atol=1e-6)
    assert fit.max_nm < 1e-6


def test_json_points_read_as_the_csv_does(tmp_path: Path) -> None:
    lm, em = _noisy_pairs(6, noise_nm=5.0)
    csv_fit = fit_affine(read_points(write_points(tmp_path / "p.csv", lm, em)))
    rows = [
        {**{f"lm_{a}": v for a, v in zip("zyx", p, strict=True)},
         **{f"em_{a}": v for a, v in zip("zyx", q, strict=True)}}
        for p, q in zip(lm, em, strict=True)
    ]  # fmt: skip
    (tmp_path / "p.json").write_text(json.dumps({"points": rows}))
    (tmp_path / "list.json").write_text(json.dumps(rows))
    for name in ("p.json", "list.json"):
        np.testing.assert_allclose(fit_affine(read_points(tmp_path / name)).matrix, csv_fit.matrix)


def test_three_points_are_refused_naming_the_file(tmp_path: Path) -> None:
    lm, em = _noisy_pairs(3, noise_nm=1.0)
    path = write_points(tmp_path / "three.csv", lm, em)
    with pytest.raises(InvalidInputError, match=r"three\.csv: 3 point pairs.*at least 4"):
        fit_affine(read_points(path))


def test_coplanar_points_are_refused_naming_the_file(tmp_path: Path) -> None:
    lm, em = _noisy_pairs(10, noise_nm=0.0)
    lm[:, 0] = 2000.0  # every LM point in one z plane
    path = write_points(tmp_path / "flat.csv", lm, em)
    with pytest.raises(InvalidInputError, match=r"flat\.csv: the 'lm' points are coplanar"):
        fit_affine(read_points(path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lm_x,lm_y,lm_z,em_x,em_y\n1,2,3,4,5\n", "exactly two images"),
        ("a,b,c\n1,2,3\n", "is not <image>_x"),
        ("lm_x,lm_y,lm_z,em_x,em_y,em_z\n1,2,3,4,five,6\n", "point 1 has no number for 'em_y'"),
        ("lm_x,lm_y,lm_z,em_x,em_y,em_z\n", "holds no point pairs"),
        ('{"points": 3}', "expected a list of point objects"),
    ],
)
def test_malformed_point_files_are_refused_with_the_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / ("bad.json" if text.startswith("{") else "bad.csv")
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=message) as caught:
        read_points(path)
    assert path.name in str(caught.value)


def test_a_missing_point_file_is_named() -> None:
    with pytest.raises(InvalidInputError, match=r"cannot read the point file /nowhere/p\.csv"):
        read_points("/nowhere/p.csv")
