"""Scenes: link an LM image into an EM image's space, open the scene, resample one onto the other.

The ground truth is the known affine of the CLEM pair (``clem_helpers``): resampled into EM
space, each fiducial of the LM lands where it was put in the EM.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clem_helpers import (
    FIDUCIAL_RADIUS,
    ClemPair,
    make_pair,
    sstem_em,
    synthetic_em,
    weighted_centroid,
    write_points,
)

import cellvol
from cellvol.errors import InvalidInputError, MetadataError, WriteConflictError


def _write_pair(pair: ClemPair, where: Path) -> tuple[Path, Path]:
    em, lm = where / "em.ome.zarr", where / "lm.ome.zarr"
    cellvol.write_pyramid(pair.em, em, tuple(pair.em_voxel), ome_version="0.6", n_levels=2)
    cellvol.write_pyramid(pair.lm, lm, tuple(pair.lm_voxel), ome_version="0.6", n_levels=2)
    return em, lm


@pytest.fixture(scope="module")
def pair() -> ClemPair:
    return make_pair(*synthetic_em())


@pytest.fixture(scope="module")
def images(pair: ClemPair, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _write_pair(pair, tmp_path_factory.mktemp("clem"))


@pytest.fixture(scope="module")
def scene(images: tuple[Path, Path], pair: ClemPair) -> Path:
    em, lm = images
    path = em.parent / "cell.scene.zarr"
    cellvol.link(path, {"em": em, "lm": lm}, {"lm": pair.affine})
    return path


def _misses(resampled: np.ndarray, pair: ClemPair) -> np.ndarray:
    """How far each fiducial's centroid in the resampled LM is from its true EM position."""
    found = [weighted_centroid(resampled, pair.em_voxel, f, 2.5 * FIDUCIAL_RADIUS)
             for f in pair.fiducials_em]  # fmt: skip
    return np.abs(np.asarray(found) - pair.fiducials_em)


def test_resampled_lm_puts_every_fiducial_within_half_an_lm_voxel(
    scene: Path, pair: ClemPair
) -> None:
    opened = cellvol.open_scene(scene)
    resampled = opened.resample("lm", like="em", level=0)
    assert resampled.shape == pair.em.shape
    assert resampled.dtype == pair.lm.dtype
    misses = _misses(np.asarray(resampled.compute()), pair)
    assert np.all(misses < pair.lm_voxel / 2), misses


def test_without_the_rotation_the_fiducials_miss(
    images: tuple[Path, Path], pair: ClemPair, tmp_path: Path
) -> None:
    # The check above can fail: the same pair linked by its scale and shift alone misses.
    wrong = np.eye(4)
    wrong[:3, :3] = np.diag(np.linalg.norm(pair.affine[:3, :3], axis=0))
    wrong[:3, 3] = pair.affine[:3, 3]
    cellvol.link(tmp_path / "wrong.zarr", {"em": images[0], "lm": images[1]}, {"lm": wrong})
    resampled = cellvol.open_scene(tmp_path / "wrong.zarr").resample("lm", like="em")
    assert np.any(_misses(np.asarray(resampled.compute()), pair) > pair.lm_voxel / 2)


def test_the_scene_validates_and_its_transform_round_trips(scene: Path, pair: ClemPair) -> None:
    found = cellvol.validate(scene)
    assert found.valid, found.message
    assert (found.kind, found.version) == ("scene", "0.6")
    opened = cellvol.open_scene(scene)
    assert sorted(opened) == ["em", "lm"]
    np.testing.assert_allclose(opened.transform("lm", "em"), pair.affine, rtol=1e-12)
    np.testing.assert_allclose(opened.transform("em", "lm"), np.linalg.inv(pair.affine))
    np.testing.assert_allclose(opened.transform("em", "em"), np.eye(4))
    document = json.loads((scene / "zarr.json").read_text())["attributes"]
    (transform,) = document["ome"]["scene"]["coordinateTransformations"]
    # The images stay where they were, referred to from the scene by relative paths.
    assert transform["input"] == {"path": "../lm.ome.zarr", "name": "physical"}
    assert transform["output"] == {"path": "../em.ome.zarr", "name": "physical"}
    assert transform["type"] == "affine"
    info = opened.info()
    assert info["images"]["lm"]["shape"] == list(pair.lm.shape)


def test_the_scene_loads_in_ome_zarr_models(scene: Path) -> None:
    v06 = pytest.importorskip("ome_zarr_models.v06.scene")
    document = json.loads((scene / "zarr.json").read_text())["attributes"]
    model = v06.BaseSceneAttrs.model_validate(document["ome"])
    (transform,) = model.scene.coordinateTransformations
    assert transform.input.path == "../lm.ome.zarr"
    assert transform.output.name == "physical"


def test_a_scene_holding_its_images_loads_as_an_ome_zarr_models_scene(
    pair: ClemPair, tmp_path: Path
) -> None:
    v06 = pytest.importorskip("ome_zarr_models.v06.scene")
    import zarr

    # ome-zarr-models follows paths inside the scene group only: images placed in it.
    em, lm = _write_pair(pair, tmp_path / "scene.zarr")
    cellvol.link(tmp_path / "scene.zarr", {"em": em, "lm": lm}, {"lm": pair.affine})
    loaded = v06.Scene.from_zarr(zarr.open_group(tmp_path / "scene.zarr", mode="r"))
    assert sorted(loaded.images) == ["em.ome.zarr", "lm.ome.zarr"]
    assert cellvol.validate(tmp_path / "scene.zarr").valid


def test_the_inverse_direction_gives_em_on_the_lm_grid(scene: Path, pair: ClemPair) -> None:
    opened = cellvol.open_scene(scene)
    em_on_lm = np.asarray(opened.resample("em", like="lm").compute())
    assert em_on_lm.shape == pair.lm.shape
    # The EM's fiducials (the brightest voxels) land where the LM has its own.
    for centre in pair.fiducials_lm():
        index = tuple(np.round(centre / pair.lm_voxel).astype(int))
        assert em_on_lm[index] > 5
        assert pair.lm[index] > 2


def test_a_scale_and_translation_are_written_as_such(images: tuple[Path, Path],
                                                     tmp_path: Path) -> None:  # fmt: skip
    em, lm = images
    cellvol.link(tmp_path / "s.zarr", {"em": em, "lm": lm},
                 {"lm": {"scale": [1.0, 1.1, 1.1], "translation": [5.0, 0.0, -3.0]}})  # fmt: skip
    document = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())["attributes"]
    (transform,) = document["ome"]["scene"]["coordinateTransformations"]
    assert transform["type"] == "sequence"
    assert [t["type"] for t in transform["transformations"]] == ["scale", "translation"]
    assert cellvol.validate(tmp_path / "s.zarr").valid
    matrix = cellvol.open_scene(tmp_path / "s.zarr").transform("lm", "em")
    np.testing.assert_allclose(np.diag(matrix), [1.0, 1.1, 1.1, 1.0])
    np.testing.assert_allclose(matrix[:3, 3], [5.0, 0.0, -3.0])


def test_nearest_interpolation_keeps_the_source_values(scene: Path, pair: ClemPair) -> None:
    opened = cellvol.open_scene(scene)
    nearest = np.asarray(opened.resample("lm", like="em", interpolation="nearest").compute())
    inside = nearest != 0
    assert inside.mean() > 0.5
    assert np.isin(nearest[inside], pair.lm).all()


def test_a_coarser_grid_level_reads_a_coarser_source_level(scene: Path, pair: ClemPair) -> None:
    opened = cellvol.open_scene(scene)
    coarse = opened.resample("lm", like="em", level=1)
    assert coarse.shape == opened["em"].level(1).shape
    assert np.isfinite(np.asarray(coarse.compute())).all()


def test_point_pairs_link_the_pair(images: tuple[Path, Path], pair: ClemPair,
                                   tmp_path: Path) -> None:  # fmt: skip
    rng = np.random.default_rng(3)
    lm = pair.fiducials_lm() + rng.normal(0, 2.0, (8, 3))
    points = write_points(tmp_path / "beads.csv", lm, pair.fiducials_em)
    result = cellvol.link(tmp_path / "p.zarr", {"em": images[0], "lm": images[1]}, points=points)
    assert result.reference == "em"
    assert result.fit is not None
    assert result.fit.rms_nm < 10
    resampled = cellvol.open_scene(tmp_path / "p.zarr").resample("lm", like="em")
    assert np.all(_misses(np.asarray(resampled.compute()), pair) < pair.lm_voxel / 2)


def test_bad_links_are_refused_with_the_reason(images: tuple[Path, Path], scene: Path,
                                               tmp_path: Path) -> None:  # fmt: skip
    em, lm = images
    with pytest.raises(InvalidInputError, match="at least two images"):
        cellvol.link(tmp_path / "a.zarr", {"em": em})
    with pytest.raises(InvalidInputError, match="no transformation places \\['lm'\\]"):
        cellvol.link(tmp_path / "a.zarr", {"em": em, "lm": lm}, reference="em")
    with pytest.raises(InvalidInputError, match="'lm' must be a 4 x 4 affine"):
        cellvol.link(tmp_path / "a.zarr", {"em": em, "lm": lm}, {"lm": [[1, 2], [3, 4]]})
    with pytest.raises(InvalidInputError, match="'xx', which is not an image"):
        cellvol.link(tmp_path / "a.zarr", {"em": em, "lm": lm}, {"xx": np.eye(4)})
    with pytest.raises(WriteConflictError, match="already holds a zarr group"):
        cellvol.link(scene, {"em": em, "lm": lm}, {"lm": np.eye(4)})
    v05 = tmp_path / "old.ome.zarr"
    cellvol.write_pyramid(np.zeros((8, 8, 8), np.uint8), v05, 1.0)
    with pytest.raises(MetadataError, match=r"old\.ome\.zarr is OME-Zarr 0\.5.*0\.6 images"):
        cellvol.link(tmp_path / "a.zarr", {"em": em, "old": v05}, {"old": np.eye(4)})
    with pytest.raises(InvalidInputError, match="has no image 'dapi'"):
        cellvol.open_scene(scene).resample("dapi", like="em")
    assert not (tmp_path / "a.zarr" / "zarr.json").exists()


def test_opening_an_image_as_a_scene_says_it_is_not_one(images: tuple[Path, Path]) -> None:
    with pytest.raises(cellvol.NotOMEZarrError, match=r"not an OME-Zarr 0\.6 scene"):
        cellvol.open_scene(images[0])


def test_the_real_sstem_pair_lands_its_fiducials(shared_data: Path, tmp_path: Path) -> None:
    pair = make_pair(*sstem_em(shared_data))
    em, lm = _write_pair(pair, tmp_path)
    cellvol.link(tmp_path / "sstem.zarr", {"em": em, "lm": lm}, {"lm": pair.affine})
    assert cellvol.validate(tmp_path / "sstem.zarr").valid
    resampled = cellvol.open_scene(tmp_path / "sstem.zarr").resample("lm", like="em")
    # ssTEM sections are 50 nm: centroids along z are resolved to the section spacing.
    misses = _misses(np.asarray(resampled.compute()), pair)
    assert np.all(misses < pair.lm_voxel / 2), misses


def test_a_scene_on_s3_refers_to_its_images_by_url(pair: ClemPair, s3_bucket) -> None:
    options = s3_bucket.storage_options
    em, lm = s3_bucket.url("em.ome.zarr"), s3_bucket.url("lm.ome.zarr")
    cellvol.write_pyramid(pair.em, em, tuple(pair.em_voxel), ome_version="0.6",
                          storage_options=options)  # fmt: skip
    cellvol.write_pyramid(pair.lm, lm, tuple(pair.lm_voxel), ome_version="0.6",
                          storage_options=options)  # fmt: skip
    scene = s3_bucket.url("scenes", "cell.zarr")
    cellvol.link(scene, {"em": em, "lm": lm}, {"lm": pair.affine}, storage_options=options)
    found = cellvol.validate(scene, storage_options=options)
    assert found.valid, found.message
    opened = cellvol.open_scene(scene, options)
    assert opened["lm"].url == lm
    edge = opened.edges[0]
    assert edge.source.path == lm
    resampled = opened.resample("lm", like="em")
    assert np.all(_misses(np.asarray(resampled.compute()), pair) < pair.lm_voxel / 2)


def test_resampling_equals_sampling_the_whole_image_whatever_the_blocks(
    scene: Path, pair: ClemPair
) -> None:
    from scipy.ndimage import map_coordinates

    opened = cellvol.open_scene(scene)
    # Every EM voxel centre, mapped into LM voxel indices, sampled from the whole LM at once.
    back = np.linalg.inv(pair.affine)
    em_nm = np.indices(pair.em.shape).reshape(3, -1) * pair.em_voxel[:, None]
    lm_index = (back[:3, :3] @ em_nm + back[:3, 3][:, None]) / pair.lm_voxel[:, None]
    whole = map_coordinates(pair.lm, lm_index, order=1, mode="constant", cval=np.nan)
    expected = np.nan_to_num(whole.reshape(pair.em.shape), nan=0.0)
    # One block of many slabs, and many small blocks that cut through the LM's voxels.
    for chunks in (pair.em.shape, (7, 50, 33)):
        found = opened.resample("lm", like="em", chunks=chunks).compute()
        np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-5)


def test_point_pairs_in_nm_link_images_in_other_units(pair: ClemPair, tmp_path: Path) -> None:
    em, lm = tmp_path / "em.ome.zarr", tmp_path / "lm_um.ome.zarr"
    cellvol.write_pyramid(pair.em, em, tuple(pair.em_voxel), ome_version="0.6")
    cellvol.write_pyramid(pair.lm, lm, tuple(pair.lm_voxel / 1000), unit="micrometer",
                          ome_version="0.6")  # fmt: skip
    points = write_points(tmp_path / "p.csv", pair.fiducials_lm(), pair.fiducials_em)
    cellvol.link(tmp_path / "s.zarr", {"em": em, "lm": lm}, points=points)
    opened = cellvol.open_scene(tmp_path / "s.zarr")
    # The stored matrix takes micrometres (LM) to nanometres (EM).
    in_um = np.append(pair.fiducials_lm()[0] / 1000, 1.0)
    np.testing.assert_allclose((opened.transform("lm", "em") @ in_um)[:3], pair.fiducials_em[0])
    resampled = opened.resample("lm", like="em")
    assert np.all(_misses(np.asarray(resampled.compute()), pair) < pair.lm_voxel / 2)
